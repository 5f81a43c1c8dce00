"""Blur degradations: defocus (disk), Gaussian, motion (kornia kernel), camera shake.

All functions take HxWx3 float32 RGB in [0, 1] and a numpy Generator and return
(image, severity in [0, 1]).
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from camheal_train._k import to_np, to_t
from camheald.vision.deblur import disk_psf

# the defocus disk: the same kernel the runtime's deblurring divides out
disk_kernel = disk_psf


def shake_kernel(rng: np.random.Generator, size: int) -> np.ndarray:
    """Camera-shake kernel: a smooth random-walk trajectory rasterised into size x size."""
    n = 64
    vel = np.zeros(2)
    pos = np.zeros((n, 2))
    for i in range(1, n):
        vel = 0.7 * vel + rng.normal(0, 1, 2)
        pos[i] = pos[i - 1] + vel
    pos -= pos.mean(0)
    scale = (size / 2 - 1) / max(np.abs(pos).max(), 1e-6)
    pos = pos * scale + size / 2
    k = np.zeros((size, size), np.float32)
    for (x0, y0), (x1, y1) in zip(pos[:-1], pos[1:], strict=True):
        cv2.line(k, (int(x0 * 16), int(y0 * 16)), (int(x1 * 16), int(y1 * 16)), 1.0,
                 1, cv2.LINE_AA, shift=4)
    k = cv2.GaussianBlur(k, (0, 0), 0.6)
    return k / max(k.sum(), 1e-6)


def _convolve(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    return cv2.filter2D(img, -1, kernel, borderType=cv2.BORDER_REFLECT_101)


def defocus(img: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """Out-of-focus blur, disk radius 1.3..8 px."""
    r = float(rng.uniform(1.3, 8.0) if rng.random() < 0.7 else rng.uniform(1.3, 3.0))
    return _convolve(img, disk_kernel(r)), float(np.clip((r - 1.0) / 6.0, 0.15, 1.0))


def gaussian(img: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """Gaussian blur (kornia.filters.gaussian_blur2d), sigma 1..4.5 px."""
    import kornia

    s = float(rng.uniform(1.0, 4.5))
    k = 2 * int(np.ceil(3 * s)) + 1
    out = to_np(kornia.filters.gaussian_blur2d(to_t(img), (k, k), (s, s)))
    return out, float(np.clip((s - 0.7) / 3.0, 0.15, 1.0))


def motion(img: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """Linear motion blur: kernel from kornia.filters.get_motion_kernel2d, length 5..35 px."""
    import kornia

    length = int(rng.integers(2, 18)) * 2 + 1
    angle = float(rng.uniform(0, 180))
    direction = float(rng.uniform(-1, 1))
    k = kornia.filters.get_motion_kernel2d(length, torch.tensor([angle]),
                                           torch.tensor([direction]))
    return _convolve(img, k[0].numpy()), float(np.clip((length - 3) / 25.0, 0.15, 1.0))


def shake(img: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """Hand-shake blur along a random smooth trajectory, extent 7..31 px."""
    size = int(rng.integers(3, 16)) * 2 + 1
    return _convolve(img, shake_kernel(rng, size)), float(np.clip((size - 4) / 22.0, 0.15, 1.0))


KINDS = {"defocus": defocus, "gaussian": gaussian, "motion": motion, "shake": shake}


def blur(img: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, float, str]:
    """Random blur of a random kind; returns (image, severity, kind)."""
    kind = str(rng.choice(list(KINDS)))
    out, sev = KINDS[kind](img, rng)
    return np.clip(out, 0.0, 1.0), sev, kind
