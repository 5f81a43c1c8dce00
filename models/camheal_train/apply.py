"""Differentiable twin of ``camheald.vision.correct.apply_global`` (same maths, torch).

Rounding to 8 bits happens at the same two places as at runtime (LUT entries, output); a
straight-through estimator passes gradients through the rounding.
"""

from __future__ import annotations

import torch

from camheald.vision import spec


def _ste_round255(x: torch.Tensor) -> torch.Tensor:
    """Round values in [0, 1] to multiples of 1/255 with an identity gradient."""
    return x + (torch.round(x * 255.0) / 255.0 - x).detach()


def curves_to_lut(curves: torch.Tensor, quantize: bool = True) -> torch.Tensor:
    """Per-channel 256-entry lookup tables from tone-curve knots.

    Args:
        curves: (B, 3, spec.N_KNOTS) float, values at spec.CURVE_X (unclipped).
        quantize: round entries to 8 bits (runtime behaviour) with a straight-through gradient.

    Returns:
        (B, 3, 256) float32 in [0, 1].
    """
    k = spec.N_KNOTS
    v = torch.arange(256, dtype=torch.float32, device=curves.device) / 255.0
    pos = v * (k - 1)
    i0 = torch.clamp(torch.floor(pos).long(), 0, k - 2)
    frac = pos - i0.float()
    y0 = curves[..., i0]
    y1 = curves[..., i0 + 1]
    lut = torch.clamp(y0 + (y1 - y0) * frac, 0.0, 1.0)
    return _ste_round255(lut) if quantize else lut


def apply_global_torch(img: torch.Tensor, curves: torch.Tensor, matrix: torch.Tensor,
                       quantize: bool = True) -> torch.Tensor:
    """Apply predicted global corrections to a batch of 8-bit images.

    Args:
        img: (B, 3, H, W) integer-valued tensor (uint8 or float holding 0..255), RGB.
        curves: (B, 3, spec.N_KNOTS) tone-curve knots.
        matrix: (B, 3, 3) colour matrices (rows = output channel).
        quantize: mimic the runtime's 8-bit rounding (straight-through gradients).

    Returns:
        (B, 3, H, W) float32 in [0, 1]; ``round(255 * result)`` equals the runtime output
        within 1/255.
    """
    b, c, h, w = img.shape
    idx = img.reshape(b, c, h * w).round().long().clamp(0, 255)
    lut = curves_to_lut(curves, quantize)
    t = torch.gather(lut, 2, idx)
    out = torch.clamp(torch.bmm(matrix, t), 0.0, 1.0)
    if quantize:
        out = _ste_round255(out)
    return out.reshape(b, c, h, w)


def identity_params(batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(curves, matrix) of the identity correction, for ``batch`` images."""
    x = torch.from_numpy(spec.CURVE_X.copy())
    return x.expand(batch, 3, -1).clone(), torch.eye(3).expand(batch, 3, 3).clone()
