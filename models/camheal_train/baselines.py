"""Classical baselines: hand-made detectors (scores) and correction tools, for evaluation.

Detectors return a score per anomaly where larger means "more likely"; thresholds are fitted
by the evaluation. Tools take and return HxWx3 uint8 RGB.
"""

from __future__ import annotations

import cv2
import numpy as np


def _gray(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


def laplacian_variance(rgb: np.ndarray) -> float:
    """Variance of the Laplacian (sharpness); low = blurry."""
    return float(cv2.Laplacian(_gray(rgb), cv2.CV_64F).var())


def noise_sigma(rgb: np.ndarray) -> float:
    """Immerkaer's fast noise standard-deviation estimate (grey levels)."""
    g = _gray(rgb).astype(np.float64)
    k = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float64)
    r = cv2.filter2D(g, -1, k)
    h, w = g.shape
    return float(np.sqrt(np.pi / 2) / (6 * (w - 2) * (h - 2)) * np.abs(r[1:-1, 1:-1]).sum())


def classical_scores(rgb: np.ndarray) -> dict[str, float]:
    """Score per anomaly from histogram statistics, Laplacian variance, gray-world and noise."""
    g = _gray(rgb).astype(np.float32) / 255.0
    mean = float(g.mean())
    p1, p99 = np.percentile(g, [1, 99])
    means = rgb.reshape(-1, 3).mean(0) / 255.0 + 1e-3
    cast = float(np.abs(np.log(means / means.mean())).max())
    return {
        "blur": -np.log(laplacian_variance(rgb) + 1e-6),
        "obstruction": float(np.mean(g < 0.04)),  # dark-covered fraction: a weak proxy
        "underexposed": -mean,
        "overexposed": mean + float(np.mean(g > 0.98)),
        "low_contrast": -float(p99 - p1),
        "color_cast": cast,
        "noise": noise_sigma(rgb),
    }


def gray_world(rgb: np.ndarray) -> np.ndarray:
    """Gray-world white balance: scale channels so their means are equal."""
    f = rgb.astype(np.float32)
    m = f.reshape(-1, 3).mean(0) + 1e-3
    return np.clip(f * (m.mean() / m), 0, 255).astype(np.uint8)


def auto_levels(rgb: np.ndarray, lo: float = 0.5, hi: float = 99.5) -> np.ndarray:
    """Per-channel percentile stretch (Photoshop-style auto levels)."""
    out = np.empty_like(rgb)
    for c in range(3):
        a, b = np.percentile(rgb[..., c], [lo, hi])
        scale = 255.0 / max(b - a, 1.0)
        out[..., c] = np.clip((rgb[..., c].astype(np.float32) - a) * scale, 0, 255)
    return out


def auto_gamma(rgb: np.ndarray) -> np.ndarray:
    """Global gamma that maps the mean luminance to mid-grey."""
    m = float(_gray(rgb).mean()) / 255.0
    gamma = np.log(0.5) / np.log(np.clip(m, 0.01, 0.99))
    lut = np.clip(255.0 * (np.arange(256) / 255.0) ** gamma, 0, 255).astype(np.uint8)
    return cv2.LUT(rgb, lut)


def clahe(rgb: np.ndarray) -> np.ndarray:
    """CLAHE on the L channel of Lab."""
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB)
    lab[..., 0] = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8)).apply(lab[..., 0])
    return cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)


def unsharp_mask(rgb: np.ndarray, sigma: float = 2.0, amount: float = 1.0) -> np.ndarray:
    """Classic unsharp masking."""
    blurred = cv2.GaussianBlur(rgb, (0, 0), sigma)
    return cv2.addWeighted(rgb, 1 + amount, blurred, -amount, 0)


TOOLS = {"gray_world": gray_world, "auto_levels": auto_levels, "auto_gamma": auto_gamma,
         "clahe": clahe, "unsharp_mask": unsharp_mask}


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB between two uint8 images (capped at 100 for identical images)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 100.0 if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM of the luminance (Gaussian window sigma 1.5, Wang et al. 2004 constants)."""
    x = _gray(a).astype(np.float64)
    y = _gray(b).astype(np.float64)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def f(z: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(z, (11, 11), 1.5)

    mx, my = f(x), f(y)
    sxx, syy, sxy = f(x * x) - mx * mx, f(y * y) - my * my, f(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    return float(s.mean())
