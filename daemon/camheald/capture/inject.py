"""Known, repeatable image defects for the demo camera and for testing with ground truth.

These are simple renderings of the anomaly vocabulary (not the training generator in
``models/``): a lens defect is drawn from a fixed seed so that it stays in place from
frame to frame, the way dirt or a crack on a real lens does.
"""

from __future__ import annotations

import cv2
import numpy as np


class Defect:
    """A degradation applied to whole frames; ``mask`` is the true defect area when local."""

    name = "clean"
    anomaly: str | None = None
    mask: np.ndarray | None = None  # HxW uint8, 255 = defect

    def apply(self, rgb: np.ndarray) -> np.ndarray:
        """Return a degraded copy of ``rgb`` (HxWx3 uint8)."""
        return rgb.copy()


class _LensOverlay(Defect):
    """A fixed, partially transparent overlay (alpha HxW float32, colour HxWx3 float32)."""

    anomaly = "obstruction"

    def __init__(self, alpha: np.ndarray, colour: np.ndarray) -> None:
        self._alpha = alpha[..., None].astype(np.float32)
        self._colour = colour.astype(np.float32)
        self.mask = ((alpha > 0.25) * 255).astype(np.uint8)

    def apply(self, rgb: np.ndarray) -> np.ndarray:
        out = rgb.astype(np.float32)
        out *= 1.0 - self._alpha
        out += self._alpha * self._colour
        return np.clip(out, 0, 255).astype(np.uint8)


def dirt(width: int, height: int, seed: int = 1) -> Defect:
    """Dark, soft-edged blobs of dirt on the lens."""
    rng = np.random.default_rng(seed)
    alpha = np.zeros((height, width), np.float32)
    scale = min(width, height)
    for _ in range(int(rng.integers(3, 7))):
        centre = (int(rng.uniform(0.1, 0.9) * width), int(rng.uniform(0.1, 0.9) * height))
        axes = (int(rng.uniform(0.03, 0.09) * scale), int(rng.uniform(0.03, 0.09) * scale))
        cv2.ellipse(alpha, centre, axes, float(rng.uniform(0, 180)), 0, 360,
                    float(rng.uniform(0.7, 0.95)), -1)
    alpha = cv2.GaussianBlur(alpha, (0, 0), scale * 0.012 + 1)
    colour = np.empty((height, width, 3), np.float32)
    colour[:] = (45, 38, 30)
    return _named(_LensOverlay(alpha, colour), "dirt")


def crack(width: int, height: int, seed: int = 2) -> Defect:
    """A branching crack: thin bright-and-dark polylines across the lens."""
    rng = np.random.default_rng(seed)
    alpha = np.zeros((height, width), np.float32)
    scale = min(width, height)
    start = np.array([rng.uniform(0.2, 0.8) * width, rng.uniform(0.2, 0.8) * height])
    for _ in range(int(rng.integers(3, 6))):
        point = start.copy()
        angle = rng.uniform(0, 2 * np.pi)
        for _ in range(int(rng.integers(6, 14))):
            angle += rng.normal(0, 0.35)
            step = rng.uniform(0.03, 0.07) * scale
            nxt = point + step * np.array([np.cos(angle), np.sin(angle)])
            cv2.line(alpha, tuple(int(v) for v in point), tuple(int(v) for v in nxt), 1.0,
                     max(1, int(scale * 0.006)), cv2.LINE_AA)
            point = nxt
    alpha = np.clip(cv2.GaussianBlur(alpha, (0, 0), 0.8) * 1.2, 0, 0.95)
    colour = np.empty((height, width, 3), np.float32)
    colour[:] = (20, 20, 22)
    return _named(_LensOverlay(alpha, colour), "crack")


class _Global(Defect):
    def __init__(self, name: str, anomaly: str, fn) -> None:
        self.name = name
        self.anomaly = anomaly
        self._fn = fn

    def apply(self, rgb: np.ndarray) -> np.ndarray:
        return self._fn(rgb)


def _lut(values: np.ndarray) -> np.ndarray:
    return np.clip(values, 0, 255).astype(np.uint8)


def blur(sigma: float = 3.0) -> Defect:
    """Defocus-like Gaussian blur."""
    return _Global("blur", "blur", lambda im: cv2.GaussianBlur(im, (0, 0), sigma))


def underexposed(gain: float = 0.25) -> Defect:
    """Exposure too short: everything dark, shadows crushed."""
    table = _lut(255.0 * ((np.arange(256) / 255.0) ** 1.3) * gain)
    return _Global("underexposed", "underexposed", lambda im: cv2.LUT(im, table))


def overexposed(gain: float = 2.6) -> Defect:
    """Exposure too long: highlights clipped."""
    table = _lut(np.arange(256) * gain)
    return _Global("overexposed", "overexposed", lambda im: cv2.LUT(im, table))


def low_contrast(amount: float = 0.65) -> Defect:
    """A grey veil (haze / flare) over the scene."""
    table = _lut(np.arange(256) * (1 - amount) + 170 * amount)
    return _Global("low_contrast", "low_contrast", lambda im: cv2.LUT(im, table))


def color_cast(gains: tuple[float, float, float] = (1.25, 1.0, 0.6)) -> Defect:
    """Wrong white balance: per-channel gains."""
    m = np.diag(np.asarray(gains, np.float32))
    return _Global("color_cast", "color_cast", lambda im: cv2.transform(im, m))


def noise(sigma: float = 18.0, seed: int = 3) -> Defect:
    """Sensor noise: Gaussian, stronger in shadows relative to signal."""
    rng = np.random.default_rng(seed)

    def fn(im: np.ndarray) -> np.ndarray:
        n = rng.normal(0, sigma, im.shape).astype(np.float32)
        return np.clip(im.astype(np.float32) + n, 0, 255).astype(np.uint8)

    return _Global("noise", "noise", fn)


def _named(defect: Defect, name: str) -> Defect:
    defect.name = name
    return defect


def make(name: str, width: int, height: int) -> Defect:
    """Build the defect called ``name`` (a demo phase name or an anomaly name)."""
    builders = {
        "clean": Defect,
        "dirt": lambda: dirt(width, height),
        "obstruction": lambda: dirt(width, height),
        "crack": lambda: crack(width, height),
        "blur": blur,
        "underexposed": underexposed,
        "overexposed": overexposed,
        "low_contrast": low_contrast,
        "color_cast": color_cast,
        "noise": noise,
    }
    if name not in builders:
        raise ValueError(f"unknown defect {name!r} (known: {', '.join(sorted(builders))})")
    return builders[name]()


DEFECT_NAMES = ("clean", "dirt", "crack", "blur", "underexposed", "overexposed",
                "low_contrast", "color_cast", "noise")
