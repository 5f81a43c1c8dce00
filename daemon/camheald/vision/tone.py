"""Low-contrast estimator features: what a haze, veil or washed-out frame's levels look like.

Features of the detector thumbnail (its 64x64 copy, sRGB) for the stacked contrast estimator
(``camheald.vision.stacked``), the per-channel affine map it predicts, and the training
target (the least-squares affine map from the degraded frame to the clean one). A haze or a
blend towards grey is exactly such a map per channel; a flare veil is not (it varies across
the frame), a washed-out frame only partly (its desaturation mixes channels).
"""

from __future__ import annotations

import cv2
import numpy as np

from camheald.vision import spec

QUANTILES = (0.001, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.98, 0.99, 0.999)
GRID = 4
N_FEATURES = 4 * len(QUANTILES) + 6 + 4 + GRID * GRID
N_PARAMS = 6  # per channel: log slope, offset


def features(s8: np.ndarray) -> np.ndarray:
    """Feature vector (N_FEATURES float32) of the 64x64 copy of a thumbnail (``cast.small``).

    Quantiles (QUANTILES) of each channel and of luma, per-channel mean and standard
    deviation, mean saturation, mean gradient magnitude, the dark channel's mean and 90th
    percentile (haze lifts it), and the mean luma of each cell of a 4x4 grid (a veil is
    brighter on one side), all on a 0..1 scale.
    """
    planes = np.concatenate([s8.reshape(-1, 3).T,
                             cv2.cvtColor(s8, cv2.COLOR_RGB2GRAY).reshape(1, -1)], 0)
    n = planes.shape[1]
    ranks = np.array([min(n - 1, int(round(q * (n - 1)))) for q in QUANTILES])
    # nearest-rank quantiles from each plane's cumulative histogram (uint8: exact)
    cdf = np.stack([np.cumsum(np.bincount(p, minlength=256)) for p in planes])
    q = np.stack([np.searchsorted(c, ranks, side="right") for c in cdf]) / 255.0
    s = s8.astype(np.float32) * np.float32(1 / 255)
    ch = np.ascontiguousarray(s.reshape(-1, 3).T)
    f = [q.ravel().astype(np.float32), ch.mean(1), ch.std(1)]
    hi, lo = ch.max(0), ch.min(0)
    gray = planes[3].reshape(s.shape[:2]).astype(np.float32) * np.float32(1 / 255)
    gx = cv2.Sobel(gray, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(gray, cv2.CV_32F, 0, 1, ksize=3)
    dark = cv2.erode(lo.reshape(s.shape[:2]), np.ones((5, 5), np.uint8))
    k90 = int(0.9 * (dark.size - 1))
    f.append(np.array([((hi - lo) / np.maximum(hi, 1e-3)).mean(), np.hypot(gx, gy).mean(),
                       dark.mean(), np.partition(dark.ravel(), k90)[k90]], np.float32))
    c = s.shape[0] // GRID
    f.append(gray.reshape(GRID, c, GRID, c).mean(axis=(1, 3)).ravel())
    return np.concatenate(f).astype(np.float32)


def affine_curves(params: np.ndarray) -> np.ndarray:
    """Tone curves (3 x spec.N_KNOTS) of the per-channel map v -> exp(p[2c]) * v + p[2c+1]."""
    p = np.asarray(params, np.float64).reshape(3, 2)
    slope = np.exp(np.clip(p[:, 0], -1.0, 3.0))
    out = slope[:, None] * spec.CURVE_X[None, :] + np.clip(p[:, 1], -3.0, 1.0)[:, None]
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def oracle_affine(degraded: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Least-squares per-channel affine map (log slope, offset) taking degraded to target.

    Both uint8 RGB of one size, on a 0..1 scale; pixels clipped in the target are left out.
    """
    x = degraded.reshape(-1, 3).astype(np.float64) / 255.0
    t = target.reshape(-1, 3).astype(np.float64) / 255.0
    out = np.empty(N_PARAMS, np.float32)
    for c in range(3):
        ok = (t[:, c] > 0.004) & (t[:, c] < 0.996)
        xs, ts = (x[ok, c], t[ok, c]) if ok.sum() >= 32 else (x[:, c], t[:, c])
        var = float(xs.var())
        a = float(((xs - xs.mean()) * (ts - ts.mean())).mean() / var) if var > 1e-8 else 1.0
        a = float(np.clip(a, np.exp(-1.0), np.exp(3.0)))
        out[2 * c], out[2 * c + 1] = np.log(a), float(ts.mean() - a * xs.mean())
    return out
