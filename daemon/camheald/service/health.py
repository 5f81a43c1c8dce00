"""Per-camera health: smoothed anomaly scores with hysteresis, source states, change events."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from camheal.constants import ANOMALIES


@dataclass(frozen=True)
class HealthEvent:
    """One change of camera health.

    ``kind``: 'detected' / 'cleared' (an anomaly ``name``), 'state' (source or scene state
    ``name``), 'defect_detected' / 'defect_cleared' (a persistent lens defect of kind
    ``name``, described in ``payload``), 'analysis' (frames became ``unavailable`` or
    ``available`` for analysis: only the report's ``analysis_error`` changed).
    """

    kind: str
    name: str
    wall_time: float
    score: float = 0.0
    payload: dict[str, object] | None = None


@dataclass
class HealthConfig:
    """Smoothing and hysteresis; thresholds apply to the smoothed score.

    ``on``/``off`` are the levels of an anomaly without a calibrated threshold; one with a
    threshold (``HealthTracker.thresholds``) is reported at it and cleared below the level
    ``off_gap`` under it in log-odds (smoothed log-odds swing more than probabilities: one
    "certainly not" analysis moves a score near 1 by ~5).
    """

    alpha: float = 0.35  # EMA weight of the newest analysis (on log-odds, see HealthTracker)
    on: float = 0.6
    off: float = 0.35
    confirm: int = 2  # analyses in a row past `on` before reporting (below `off`: clearing)
    off_gap: float = 2.5  # log-odds between a calibrated threshold and its `off` level
    no_signal_s: float = 3.0
    frozen_s: float = 4.0


@dataclass
class HealthTracker:
    """Aggregates per-frame analyses into the camera's health; not thread-safe (one owner)."""

    config: HealthConfig = field(default_factory=HealthConfig)
    state: str = "starting"
    model: str = ""
    # the detector's calibrated per-anomaly thresholds (its sidecar's): an anomaly is
    # reported where the detector itself would report it, not at a level shared by all
    thresholds: dict[str, float] = field(default_factory=dict)
    # anomalies reported (and scored) by another judge through ``set_detected`` instead of
    # by the detector's scores: a lens obstruction by the persistent-defect tracker (the
    # detector network's single-frame obstruction score scored F1 0.0 on Kodak and sat at
    # 0.56-0.88 on clean real clips, where it raised an alarm within a few analyses; the
    # obstruction estimator, F1 0.14, is therefore not run on a camera's analyses)
    judged_elsewhere: frozenset[str] = frozenset({"obstruction"})
    # The smoothing runs on log-odds (clipped to +-LOGIT_CLIP), kept as probabilities: a
    # steady score then crosses a threshold near 1 (noise 0.98, colour cast 0.985) about as
    # soon as one of 0.6, where an average of probabilities took 9-10 analyses to climb that
    # high from a clean start.
    scores: dict[str, float] = field(default_factory=lambda: {a: 0.0 for a in ANOMALIES})
    detected: dict[str, float] = field(default_factory=dict)  # name -> wall time since
    state_since: float = field(default_factory=time.time)
    _streak: dict[str, int] = field(default_factory=dict)
    _last_frame: float = 0.0
    _last_digest: bytes = b""
    _same_since: float | None = None

    def observe_analysis(self, scores: dict[str, float], now: float | None = None
                         ) -> list[HealthEvent]:
        """Fold in one analysis (anomaly -> probability); return the events it caused."""
        now = time.time() if now is None else now
        cfg = self.config
        events: list[HealthEvent] = []
        for name in ANOMALIES:
            if name in self.judged_elsewhere:  # its score is the other judge's too
                continue
            z = (1 - cfg.alpha) * _logit(self.scores[name]) \
                + cfg.alpha * _logit(float(scores.get(name, 0.0)))
            s = self.scores[name] = _sigmoid(z)
            on, off = self.levels(name)
            if name in self.detected:
                # cleared after `confirm` analyses in a row below `off`: on log-odds one
                # "certainly not" frame can drop a score near 1 under it (no flapping)
                self._streak[name] = self._streak.get(name, 0) + 1 if s < off else 0
                if self._streak[name] >= cfg.confirm:
                    del self.detected[name]
                    self._streak[name] = 0
                    events.append(HealthEvent("cleared", name, now, s))
            elif s >= on:
                self._streak[name] = self._streak.get(name, 0) + 1
                if self._streak[name] >= cfg.confirm:
                    self.detected[name] = now
                    self._streak[name] = 0  # from now on it counts analyses below `off`
                    events.append(HealthEvent("detected", name, now, s))
            else:
                self._streak[name] = 0
        return events

    def levels(self, name: str) -> tuple[float, float]:
        """(on, off) smoothed-score levels at which ``name`` is reported and cleared."""
        cfg = self.config
        if name not in self.thresholds:
            return cfg.on, cfg.off
        on = min(max(float(self.thresholds[name]), 1e-4), 1 - 1e-4)
        return on, _sigmoid(_logit(on) - cfg.off_gap)

    def set_detected(self, name: str, present: bool, score: float = 1.0,
                     now: float | None = None) -> list[HealthEvent]:
        """Report or clear ``name`` on another judge's word (``judged_elsewhere``); returns
        the event, if the state changed. Its score becomes ``score`` while present, else 0
        (for a lens obstruction: the tracker's confidence in its strongest defect)."""
        now = time.time() if now is None else now
        self.scores[name] = float(score) if present else 0.0
        if present and name not in self.detected:
            self.detected[name] = now
            return [HealthEvent("detected", name, now, score)]
        if not present and name in self.detected:
            del self.detected[name]
            return [HealthEvent("cleared", name, now, score)]
        return []

    def observe_frame(self, thumb: np.ndarray | None, now_mono: float,
                      now: float | None = None) -> list[HealthEvent]:
        """Note that a frame arrived (``thumb``: small grey view of it, for freeze detection)."""
        self._last_frame = now_mono
        if thumb is not None:
            digest = thumb.tobytes()
            if digest != self._last_digest:
                self._last_digest = digest
                self._same_since = now_mono
        frozen = self._same_since is not None and \
            now_mono - self._same_since >= self.config.frozen_s
        return self._set_state("frozen" if frozen else "ok", now)

    def observe_tick(self, now_mono: float, now: float | None = None) -> list[HealthEvent]:
        """Periodic check: no frame for a while means no signal."""
        if self.state in ("ok", "frozen", "starting") and self._last_frame \
                and now_mono - self._last_frame > self.config.no_signal_s:
            return self._set_state("no_signal", now)
        return []

    def source_lost(self, now: float | None = None) -> list[HealthEvent]:
        return self._set_state("no_signal", now)

    def _set_state(self, state: str, now: float | None) -> list[HealthEvent]:
        if state == self.state:
            return []
        self.state = state
        self.state_since = time.time() if now is None else now
        return [HealthEvent("state", state, self.state_since)]

    def snapshot(self) -> dict[str, object]:
        """The report served on D-Bus and by the CLI (plain Python types only)."""
        return {
            "state": self.state,
            "state_since": self.state_since,
            "detected": [n for n in ANOMALIES if n in self.detected],
            "since": dict(self.detected),
            "scores": {n: round(v, 4) for n, v in self.scores.items()},
            "model": self.model,
        }


LOGIT_CLIP = 8.0  # probabilities 0.00034 .. 0.99966


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


def _logit(p: float) -> float:
    """log(p / (1 - p)), clipped to +-LOGIT_CLIP (p 0 and 1 included)."""
    p = min(max(p, 1e-12), 1.0 - 1e-12)
    return min(max(math.log(p / (1.0 - p)), -LOGIT_CLIP), LOGIT_CLIP)
