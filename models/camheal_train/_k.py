"""Small numpy <-> torch bridges to kornia ops used by the degradation library."""

from __future__ import annotations

import numpy as np
import torch


def to_t(img: np.ndarray) -> torch.Tensor:
    """HxWx3 float32 numpy -> (1, 3, H, W) tensor (copy-free where possible)."""
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))[None]


def to_np(t: torch.Tensor) -> np.ndarray:
    """(1, 3, H, W) tensor -> HxWx3 float32 numpy."""
    return np.ascontiguousarray(t[0].permute(1, 2, 0).numpy(), dtype=np.float32)


def srgb_to_linear(img: np.ndarray) -> np.ndarray:
    """sRGB [0,1] -> linear light (kornia.color.rgb_to_linear_rgb)."""
    import kornia

    return to_np(kornia.color.rgb_to_linear_rgb(to_t(np.clip(img, 0.0, 1.0))))


def linear_to_srgb(img: np.ndarray) -> np.ndarray:
    """Linear light -> sRGB [0,1] (kornia.color.linear_rgb_to_rgb), clipping first."""
    import kornia

    return to_np(kornia.color.linear_rgb_to_rgb(to_t(np.clip(img, 0.0, 1.0))))
