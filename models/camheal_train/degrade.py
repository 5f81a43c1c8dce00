"""Synthetic degradation of clean photos into labelled anomalous frames.

Optical effects (blur, obstruction) come first, then exposure/contrast/colour (what the
global correction undoes), then noise, as in a camera. The correction target is the frame
after the optical effects only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from camheal.constants import ANOMALIES
from camheal_train import blur as _blur
from camheal_train import noise as _noise
from camheal_train import obstruction as _obs
from camheal_train import tone as _tone

_GLOBAL_ORDER = ("underexposed", "overexposed", "low_contrast", "color_cast")
_TONE = {"underexposed": _tone.underexposed, "overexposed": _tone.overexposed,
         "low_contrast": _tone.low_contrast, "color_cast": _tone.color_cast}
_EXCLUSIVE = {frozenset(("underexposed", "overexposed"))}


@dataclass
class Degraded:
    """One synthetic sample.

    Attributes:
        image: HxWx3 uint8 degraded RGB frame.
        target: HxWx3 uint8 what a perfect global correction would return.
        labels: (7,) float32 0/1 per anomaly, ANOMALIES order.
        severity: (7,) float32 in [0, 1] (0 where absent).
        alpha: HxW float32 obstruction map in [0, 1] (zeros when none).
        kinds: sub-kinds applied, e.g. ("motion", "haze").
    """

    image: np.ndarray
    target: np.ndarray
    labels: np.ndarray
    severity: np.ndarray
    alpha: np.ndarray
    kinds: tuple[str, ...]


def to_u8(img: np.ndarray) -> np.ndarray:
    """float [0,1] -> uint8 with rounding."""
    return np.rint(np.clip(img, 0, 1) * 255).astype(np.uint8)


def choose_anomalies(rng: np.random.Generator, p_clean: float = 0.3, p_two: float = 0.35,
                     focus: dict[str, float] | None = None) -> tuple[str, ...]:
    """Random anomaly set: empty (clean), one, or two compatible anomalies.

    ``focus`` maps anomaly names to relative sampling weights (others weigh 1); None keeps
    the uniform draw (and the random stream of earlier versions).
    """
    p = None
    if focus:
        w = np.array([float(focus.get(a, 1.0)) for a in ANOMALIES])
        p = w / w.sum()
    if rng.random() < p_clean:
        return ()
    n = 2 if rng.random() < p_two else 1
    while True:
        pick = tuple(str(a) for a in rng.choice(ANOMALIES, size=n, replace=False, p=p))
        if frozenset(pick) not in _EXCLUSIVE:
            return pick


def degrade(clean: np.ndarray, rng: np.random.Generator,
            anomalies: tuple[str, ...] | None = None, jitter: bool = True,
            focus: dict[str, float] | None = None) -> Degraded:
    """Degrade one clean photo.

    Args:
        clean: HxWx3 uint8 or float32 [0, 1] RGB.
        rng: random generator (all randomness comes from it).
        anomalies: which anomalies to apply; None draws them with ``choose_anomalies``.
        jitter: apply harmless camera-like variations first (``tone.clean_jitter``).
        focus: sampling weights for ``choose_anomalies`` (only when ``anomalies`` is None).

    Returns:
        A Degraded sample.
    """
    img = clean.astype(np.float32) / 255.0 if clean.dtype == np.uint8 else clean.astype(np.float32)
    if anomalies is None:
        anomalies = choose_anomalies(rng, focus=focus)
    labels = np.zeros(len(ANOMALIES), np.float32)
    sev = np.zeros(len(ANOMALIES), np.float32)
    kinds: list[str] = []
    alpha = np.zeros(img.shape[:2], np.float32)

    def mark(name: str, s: float, kind: str) -> None:
        i = ANOMALIES.index(name)
        labels[i] = 1.0
        sev[i] = s
        kinds.append(kind)

    if jitter and rng.random() < 0.5:
        img = _tone.clean_jitter(img, rng)
    if "blur" in anomalies:
        img, s, k = _blur.blur(img, rng)
        mark("blur", s, k)
    if "obstruction" in anomalies:
        img, alpha, s, k = _obs.obstruct(img, rng)
        mark("obstruction", s, k)
    target = to_u8(img)
    for name in _GLOBAL_ORDER:
        if name in anomalies:
            img, s, k = _TONE[name](img, rng)
            mark(name, s, k)
    if "noise" in anomalies:
        img, s, k = _noise.noise(img, rng)
        mark("noise", s, k)
    return Degraded(to_u8(img), target, labels, sev, alpha, tuple(kinds))
