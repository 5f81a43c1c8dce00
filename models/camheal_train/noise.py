"""Noise degradations: signal-dependent sensor noise, chroma noise, JPEG-like compression.

Functions take HxWx3 float32 RGB in [0, 1] and a numpy Generator and return
(image, severity in [0, 1], kind).
"""

from __future__ import annotations

import numpy as np
import torch

from camheal_train._k import to_np, to_t


def sensor(img: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, float, str]:
    """Poisson-Gaussian noise: variance = a * x + b, per pixel and channel."""
    sigma_mid = rng.uniform(0.02, 0.14)  # std at mid grey
    shot_frac = rng.uniform(0.0, 1.0)
    a = shot_frac * sigma_mid**2 / 0.5
    b = (1 - shot_frac) * sigma_mid**2
    std = np.sqrt(a * img + b).astype(np.float32)
    n = rng.standard_normal(img.shape, dtype=np.float32)
    if rng.random() < 0.3:  # partly correlated across channels, as after demosaicing
        n = 0.6 * n + 0.4 * n.mean(axis=2, keepdims=True)
    sev = float(np.clip((sigma_mid - 0.01) / 0.1, 0.15, 1.0))
    return np.clip(img + std * n, 0, 1), sev, "sensor"


def chroma(img: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, float, str]:
    """Blotchy colour noise in the chroma channels (kornia.color YCbCr), plus light luma noise."""
    import cv2
    import kornia

    h, w = img.shape[:2]
    ycc = kornia.color.rgb_to_ycbcr(to_t(img))
    s = rng.uniform(0.03, 0.12)
    scale = rng.uniform(1.5, 4.0)
    sh, sw = max(2, int(h / scale)), max(2, int(w / scale))
    cn = rng.standard_normal((sh, sw, 2), dtype=np.float32)
    cn = cv2.resize(cn, (w, h), interpolation=cv2.INTER_LINEAR) * s
    ycc[0, 1:] += torch.from_numpy(cn.transpose(2, 0, 1))
    ycc[0, 0] += torch.from_numpy(rng.standard_normal((h, w), dtype=np.float32) * s * 0.3)
    out = to_np(kornia.color.ycbcr_to_rgb(ycc))
    return np.clip(out, 0, 1), float(np.clip(s / 0.1, 0.15, 1.0)), "chroma"


def jpeg(img: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, float, str]:
    """Heavy JPEG compression (kornia.enhance.jpeg_codec_differentiable), quality 4..22,
    optionally after mild sensor noise."""
    import kornia

    src = img
    if rng.random() < 0.5:
        src = np.clip(img + rng.normal(0, rng.uniform(0.01, 0.04), img.shape), 0, 1)
    q = float(rng.uniform(4, 22))
    with torch.no_grad():
        out = kornia.enhance.jpeg_codec_differentiable(to_t(src.astype(np.float32)),
                                                       torch.tensor([q]))
    return np.clip(to_np(out), 0, 1), float(np.clip((25 - q) / 20, 0.15, 1.0)), "jpeg"


def impulse(img: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, float, str]:
    """Salt-and-pepper / hot-pixel noise, 0.3..6 % of the pixels, per channel or whole pixels."""
    density = rng.uniform(0.003, 0.06)
    shape = img.shape if rng.random() < 0.5 else (*img.shape[:2], 1)
    hit = rng.random(shape) < density
    salt = rng.random(shape) < 0.5
    out = np.where(hit, salt.astype(np.float32), img)
    return out.astype(np.float32), float(np.clip(density / 0.04, 0.15, 1.0)), "impulse"


def speckle(img: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, float, str]:
    """Multiplicative (speckle) noise plus plain additive Gaussian noise."""
    s = rng.uniform(0.06, 0.3)
    g = rng.uniform(0.0, 0.05)
    n = rng.standard_normal(img.shape, dtype=np.float32)
    a = rng.standard_normal(img.shape, dtype=np.float32)
    out = img * (1 + s * n) + g * a
    return np.clip(out, 0, 1), float(np.clip((0.5 * s + g) / 0.12, 0.15, 1.0)), "speckle"


KINDS = {"sensor": sensor, "chroma": chroma, "jpeg": jpeg, "impulse": impulse,
         "speckle": speckle}
_P = np.array([0.45, 0.18, 0.15, 0.1, 0.12])


def noise(img: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, float, str]:
    """Random noise of a random kind; returns (image, severity, kind)."""
    kind = str(rng.choice(list(KINDS), p=_P))
    out, sev, k = KINDS[kind](img, rng)
    return out.astype(np.float32), sev, k
