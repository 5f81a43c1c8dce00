"""Scene states: "covered" (the view is flat) and "moved" (the view changed and stayed)."""

from __future__ import annotations

import logging
import math

import cv2
import numpy as np

from .model import DefectConfig, DefectEvent

logger = logging.getLogger(__name__)


def _ncc(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    den = math.sqrt(float((a * a).sum()) * float((b * b).sum()))
    return float((a * b).sum()) / den if den > 1e-6 else 1.0


class SceneStates:
    """Mixin of ``DefectTracker``: the covered / moved states of the view."""

    config: DefectConfig

    def _scene_states(self, g: np.ndarray, now: float) -> list[DefectEvent]:
        cfg = self.config
        small = cv2.resize(g, self._es, interpolation=cv2.INTER_AREA)
        mu = cv2.blur(small, (5, 5))
        sd = np.sqrt(np.maximum(cv2.blur(small * small, (5, 5)) - mu * mu, 0.0))
        flat = float(np.mean(sd < 2.5 + 0.03 * mu))
        dt = 0.0 if self._last_t is None else max(0.0, now - self._last_t)
        self._last_t = now
        # Edges of a ~1 s running mean: traffic blurs away, the fixed scene stays.
        a = np.float32(1.0 - math.exp(-dt / cfg.short_tau_s)) if self._short is not None else 1
        self._short = small.copy() if self._short is None else self._short + a * (small -
                                                                                  self._short)
        gx = cv2.Sobel(self._short, cv2.CV_32F, 1, 0, ksize=3)
        gy = cv2.Sobel(self._short, cv2.CV_32F, 0, 1, ksize=3)
        edges = cv2.GaussianBlur(cv2.magnitude(gx, gy), (0, 0), 1.0)
        # covered: nearly every cell flat, for a while (with hysteresis in time)
        if flat >= cfg.covered_frac:
            self._uncov_since = None
            self._cov_since = now if self._cov_since is None else self._cov_since
            if not self._covered and now - self._cov_since >= cfg.covered_s:
                self._covered = True
        else:
            self._cov_since = None
            self._uncov_since = now if self._uncov_since is None else self._uncov_since
            if self._covered and now - self._uncov_since >= cfg.uncovered_s:
                self._covered = False
        if not self._covered and flat < cfg.covered_frac:
            self._moved(edges, now, dt)
        if self._covered:
            state = "covered"
        elif now < self._moved_until:
            state = "moved"
        else:
            state = "ok"
        if state == self.state:
            return []
        self.state, self.state_since = state, now
        return [DefectEvent("state", now, state=state)]

    def _restart_view(self) -> None:
        """The view changed: restart the statistics, keep only the reported defects' votes."""
        self._nm = self._ns = 0
        self._ring.clear()
        self._key = None
        self._lens_restart()
        keep = np.zeros(self._p.shape, bool)
        for tid in [t.id for t in self._tracks.values() if not t.reported]:
            del self._tracks[tid]
        for t in self._tracks.values():
            x, y, w, h = t.bbox
            keep[y:y + h, x:x + w] = True
        self._p[~keep] = 0.0

    def _moved(self, edges: np.ndarray, now: float, dt: float) -> None:
        cfg = self.config
        if self._ref is None or self._moving:  # a panning camera has no fixed view to lose
            self._ref = edges.copy()
            self._cand_since = None
            return
        sim = _ncc(edges, self._ref)
        if self._cand_since is None:
            if sim < cfg.moved_sim:
                self._cand_since, self._cand_edges = now, None
            else:  # follow slow drift (sun, slow pan)
                a = 1.0 - math.exp(-dt / cfg.ref_tau_s)
                self._ref += np.float32(a) * (edges - self._ref)
            return
        if sim > cfg.recover_sim:  # a passing object or a flash: back to the reference
            self._cand_since = None
        elif self._cand_edges is None:
            if now - self._cand_since >= 0.5:
                self._cand_edges = edges.copy()
        elif now - self._cand_since >= cfg.moved_s:
            if _ncc(edges, self._cand_edges) > 0.75:
                self._moved_until = now + cfg.moved_latch_s
                self._restart_view()
                logger.info("camera view changed and stayed changed (moved)")
            self._ref = edges.copy()  # learn the new view (or follow a moving camera)
            self._cand_since = None
