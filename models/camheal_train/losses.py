"""Training losses: multi-label BCE, severity L1, corrected-image L1, obstruction-mask BCE."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from camheal_train.apply import apply_global_torch

WEIGHTS = {"cls": 1.0, "sev": 0.5, "img": 8.0, "mask": 1.0, "smooth": 1.0}
MASK_POS_WEIGHT = 1.0


def compute_losses(outputs: tuple[torch.Tensor, ...], batch: dict[str, torch.Tensor],
                   weights: dict[str, float] | None = None,
                   mask_pos_weight: float = MASK_POS_WEIGHT,
                   class_weights: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """All loss terms and their weighted sum under key "total".

    Args:
        outputs: the network's (logits, severity, curves, matrix, mask logits).
        batch: tensors from ``camheal_train.data.to_tensors`` (batched).
        weights: overrides of WEIGHTS.
        mask_pos_weight: weight of obstructed pixels in the mask BCE (they are rare).
        class_weights: (7,) weight of each anomaly's term in the classification BCE
            (None: all 1).
    """
    w = {**WEIGHTS, **(weights or {})}
    logits, severity, curves, matrix, mask = outputs
    labels = batch["labels"]
    cw = None if class_weights is None else class_weights.to(logits)[None]
    out = {"cls": F.binary_cross_entropy_with_logits(logits, labels, weight=cw)}
    pos = labels.sum().clamp_min(1.0)
    out["sev"] = ((severity - batch["severity"]).abs() * labels).sum() / pos
    corrected = apply_global_torch(batch["loss_in"], curves, matrix)
    target = batch["loss_target"].float() / 255.0
    out["img"] = (corrected - target).abs().mean()
    pw = torch.tensor(mask_pos_weight, dtype=mask.dtype, device=mask.device)
    out["mask"] = F.binary_cross_entropy_with_logits(mask, batch["mask"], pos_weight=pw)
    d2 = curves[..., 2:] - 2 * curves[..., 1:-1] + curves[..., :-2]
    out["smooth"] = d2.pow(2).mean()
    out["total"] = sum(w[k] * v for k, v in out.items())
    return out
