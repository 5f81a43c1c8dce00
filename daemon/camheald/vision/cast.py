"""Colour-cast estimator: a white-balance gain per channel, learned over classical statistics.

The detector network alone told a cast from a naturally tinted scene poorly (Kodak recall
0.36) and corrected it no better than gray world. This second stage looks at what colour
constancy methods look at — gray world, shades of gray, white patch, the brightest and the
darkest pixels, gray edge, a coarse log-chroma histogram — computed in linear light on a
64x64 copy of the detector's thumbnail; with the detector's own logits, a small MLP
(``camheald.vision.stacked``, trained by ``camheal_train.stacked_train --task cast``, shipped
as ``camheal_cast.onnx``) returns per-channel log gains in linear light that undo the cast,
and whether the frame has one (replacing the network's own score).

The gain becomes an ordinary ``Correction`` (per-channel tone curves, identity matrix), so
``apply_global`` and every backend apply it unchanged. numpy/OpenCV only.
"""

from __future__ import annotations

import cv2
import numpy as np

from camheald.vision import spec

SIDE = 64
HIST = 8
HIST_RANGE = 1.5
_EPS = np.float32(1e-4)
_CLIP = 250
_LUMA = np.array([0.2126, 0.7152, 0.0722], np.float32)


def _srgb_to_linear(v: np.ndarray) -> np.ndarray:
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)


def _linear_to_srgb(v: np.ndarray) -> np.ndarray:
    v = np.clip(v, 0.0, 1.0)
    return np.where(v <= 0.0031308, v * 12.92, 1.055 * np.power(np.maximum(v, 0.0031308),
                                                                  1 / 2.4) - 0.055)


_LIN = _srgb_to_linear(np.arange(256) / 255.0).astype(np.float32)
N_STATS = 11  # chroma estimates (2 numbers each), see ``features``
N_FEATURES = 2 * N_STATS + 2 + HIST * HIST + 4


def _chroma(e: np.ndarray) -> tuple[float, float]:
    e = np.maximum(np.asarray(e, np.float32), _EPS)
    return float(np.log(e[0] / e[1])), float(np.log(e[2] / e[1]))


def _kth(a: np.ndarray, q: float, axis: int = 0) -> np.ndarray:
    """The q-quantile (nearest rank) along ``axis``, by partition (faster than percentile)."""
    n = a.shape[axis]
    k = min(n - 1, max(0, int(round(q * (n - 1)))))
    return np.take(np.partition(a, k, axis=axis), k, axis=axis)


def small(thumb: np.ndarray) -> np.ndarray:
    """SIDE x SIDE area-downscaled copy of the detector thumbnail (uint8 RGB)."""
    return cv2.resize(thumb, (SIDE, SIDE), interpolation=cv2.INTER_AREA)


def features(s: np.ndarray) -> np.ndarray:
    """Feature vector (N_FEATURES float32) of the SIDE x SIDE copy of a thumbnail (``small``).

    Chroma estimates are (log R/G, log B/G) of: the mean, shades of gray (p = 2, 4, 8), the
    99th percentile (white patch), the brightest 5 %, gray edge (mean and RMS gradient), the
    darkest 30 %, the median, and the sRGB mean; then the spread of the pixels' log chroma, an
    8x8 luminance-weighted log-chroma histogram (square-rooted), mean luminance, clipped share,
    mean saturation and the share of usable pixels. Pixels near clipping or black are left out
    of the estimates (all are used when fewer than 64 remain).
    """
    px8 = s.reshape(-1, 3)
    px = _LIN[px8]
    lum = px @ _LUMA
    mx = px8.max(1)
    valid = (mx < _CLIP) & (lum > 0.002)
    if int(valid.sum()) < 64:
        valid[:] = True
    vt = np.ascontiguousarray(px[valid].T)  # channels first: reductions along rows are fast
    lv = lum[valid]
    f: list[float] = []
    f += _chroma(vt.mean(1))
    v2 = vt * vt
    v4 = v2 * v2
    f += _chroma(np.sqrt(v2.mean(1)))
    f += _chroma(np.sqrt(np.sqrt(v4.mean(1))))
    f += _chroma(np.mean(v4 * v4, 1) ** 0.125)
    f += _chroma(_kth(np.ascontiguousarray(px.T), 0.99, axis=1))
    hi_l, lo_l = _kth(lv, 0.95), _kth(lv, 0.3)
    f += _chroma(vt[:, lv >= hi_l].mean(1))
    lin = px.reshape(SIDE, SIDE, 3)
    gx = cv2.Sobel(lin, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(lin, cv2.CV_32F, 0, 1, ksize=3)
    g2 = np.ascontiguousarray((gx * gx + gy * gy).reshape(-1, 3).T)
    f += _chroma(np.sqrt(g2).mean(1))
    f += _chroma(np.sqrt(g2.mean(1)))
    f += _chroma(vt[:, lv <= lo_l].mean(1))
    f += _chroma(_kth(vt, 0.5, axis=1))
    f += _chroma(np.ascontiguousarray(px8.T).mean(1, dtype=np.float32) + 1.0)
    c = np.log(np.maximum(vt, _EPS))
    u, w = c[0] - c[1], c[2] - c[1]
    f += [float(u.std()), float(w.std())]
    iu = np.clip(((u + HIST_RANGE) * (HIST / (2 * HIST_RANGE))).astype(np.int64), 0, HIST - 1)
    iw = np.clip(((w + HIST_RANGE) * (HIST / (2 * HIST_RANGE))).astype(np.int64), 0, HIST - 1)
    h = np.bincount(iu * HIST + iw, np.sqrt(lv), HIST * HIST)
    f += list(np.sqrt(h / max(float(h.sum()), 1e-4)))
    top = mx.astype(np.float32)
    sat = (top - px8.min(1)) / np.maximum(top, 0.255)
    f += [float(lum.mean()), float((mx >= _CLIP).mean()), float(sat.mean()), float(valid.mean())]
    return np.asarray(f, np.float32)


def gain_curves(log_gain: np.ndarray) -> np.ndarray:
    """Tone curves (3 x spec.N_KNOTS, sRGB in and out) multiplying linear light by exp(log_gain)."""
    g = np.exp(np.clip(np.asarray(log_gain, np.float64).reshape(3), -3.0, 3.0))
    x = _srgb_to_linear(spec.CURVE_X.astype(np.float64))
    return _linear_to_srgb(x[None, :] * g[:, None]).astype(np.float32)


def oracle_log_gain(degraded: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Least-squares per-channel linear-light gain taking ``degraded`` to ``target`` (log).

    Both uint8 RGB of the same size; pixels clipped in either are left out. The training
    target of the estimator.
    """
    xs, ts = degraded.reshape(-1, 3), target.reshape(-1, 3)
    ok = (xs.max(1) < _CLIP) & (ts.max(1) < _CLIP)
    if int(ok.sum()) < 32:
        ok[:] = True
    x, t = _LIN[xs[ok]], _LIN[ts[ok]]
    g = (x * t).sum(0) / np.maximum((x * x).sum(0), 1e-6)
    return np.log(np.clip(g, 0.05, 20.0)).astype(np.float32)

