"""Is a frame's blur directional (motion) rather than isotropic (defocus)?

Unsharp masking restores some of what a defocus blurs away, but not a motion blur: on Kodak
the severity-keyed mask (``restore.sharpen``) gained +0.67 dB on defocused photos and lost
0.66 dB on motion-blurred ones (ringing along the streak). A motion blur removes gradients
across its direction and keeps those along it, so the frame's gradient structure tensor
turns anisotropic: its coherence ((l1 - l2) / (l1 + l2) of the summed tensor) was a median
0.50 on Val20's motion-blurred samples against 0.16-0.19 for defocus and Gaussian blur and
0.14 for clean photos. Frames whose blur looks directional are left unsharpened.
numpy/OpenCV only.
"""

from __future__ import annotations

import cv2
import numpy as np

MAX_SIDE = 512  # coherence is measured on an aspect-preserving copy at most this large
# Sharpen only below this coherence: on Val20 (the calibration photos) it let through 90 %
# of the defocus and Gaussian blurs (their 90th percentile 0.33) and 90 % of the clean
# photos (0.36), and held back all but about a tenth of the motion blurs (10th percentile
# 0.30).
SHARPEN_BELOW = 0.35


def tensor(rgb: np.ndarray) -> tuple[float, float, float]:
    """(Jxx, Jyy, Jxy): the gradient structure tensor averaged over the whole frame (HxWx3
    uint8 RGB), measured on an aspect-preserving copy at most MAX_SIDE large."""
    h, w = rgb.shape[:2]
    k = max(1, round(max(h, w) / MAX_SIDE))
    if k > 1:  # an integer factor keeps the aspect ratio (a squeeze would add anisotropy);
        # bilinear: the mean of 2x2 pixels per output, the area mean for k = 2, and 0.6 ms
        # at 1080p where the area mean took 3.8 ms (a blurred frame has little to alias)
        rgb = cv2.resize(rgb, (max(1, w // k), max(1, h // k)), interpolation=cv2.INTER_LINEAR)
    g = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    gx = cv2.Sobel(g, cv2.CV_32F, 1, 0).ravel()  # (exact: integer sums of 8-bit values)
    gy = cv2.Sobel(g, cv2.CV_32F, 0, 1).ravel()
    # dot products: no temporary arrays (the means of products took 0.8 ms at 1080p)
    jxx, jyy, jxy = (float(np.dot(a, b)) / gx.size for a, b in ((gx, gx), (gy, gy), (gx, gy)))
    return jxx, jyy, jxy


def coherence(rgb: np.ndarray, t: tuple[float, float, float] | None = None) -> float:
    """Coherence in [0, 1] of the gradient structure tensor summed over the whole frame
    (HxWx3 uint8 RGB; or ``t``, its ``tensor`` when already computed): 0 when gradients
    point every way equally, 1 when all are parallel."""
    jxx, jyy, jxy = tensor(rgb) if t is None else t
    trace = jxx + jyy
    if trace <= 1e-6:
        return 0.0
    return float(np.sqrt((jxx - jyy) ** 2 + 4.0 * jxy * jxy) / trace)


def orientation(rgb: np.ndarray, t: tuple[float, float, float] | None = None) -> float:
    """Dominant gradient orientation of the frame (or of ``t``, its ``tensor``) in degrees
    [0, 180), counter-clockwise as displayed from +x (0 for a flat frame). A motion blur
    removes the gradients along its streak, so the streak runs across this."""
    jxx, jyy, jxy = tensor(rgb) if t is None else t
    # image rows run downwards: negate the angle to count counter-clockwise as displayed
    return float(-np.degrees(0.5 * np.arctan2(2.0 * jxy, jxx - jyy)) % 180.0)


def sharpens(extra: dict[str, float]) -> bool:
    """Whether a detected blur should get the unsharp mask, from an analysis' ``extra``
    (``blur.coherence``, set by the detector when it detects blur; absent: yes)."""
    return float(extra.get("blur.coherence", 0.0)) < SHARPEN_BELOW
