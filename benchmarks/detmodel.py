"""Detector models for the benchmarks: the shipped ONNX, or a synthetic one of the same network.

Latency does not depend on the weights, so until trained weights ship the benchmarks use the
training package's network (``camheal_train.net.build``) with fixed weights, exported the way
the training package exports (``camheal_train.export.to_onnx_bytes``). Its head is set so that
every analysis detects ``color_cast`` and asks for a tone curve *and* a colour matrix: the
end-to-end runs then pay the full global-correction cost on every frame (worst case).
"""

from __future__ import annotations

import logging
from pathlib import Path

from benchmarks.common import OUT

logger = logging.getLogger(__name__)

SYNTH = OUT / "detector-synthetic-worstcase.onnx"


def shipped() -> Path | None:
    """The shipped detector ONNX, when the training run has produced it."""
    try:
        from camheald.vision.detector import shipped_weights

        path = shipped_weights()
    except Exception:  # noqa: BLE001 - package missing or not importable: nothing shipped
        return None
    return path if path.is_file() else None


def torch_net(arch: str = "small", checkpoint: Path | None = None):
    """The PyTorch network (eval mode): trained from ``checkpoint`` or the synthetic head."""
    import torch

    from camheal_train.net import build

    if checkpoint is not None:
        from camheal_train.train import load_model

        return load_model(checkpoint)
    torch.manual_seed(0)
    net = build(arch).eval()
    _worst_case_head(net)
    return net


def _worst_case_head(net) -> None:
    """Make the head ask for colour_cast correction (tone curve + matrix) on any input."""
    import torch

    from camheal.constants import ANOMALIES
    from camheald.vision import spec

    n = spec.N_ANOMALIES
    with torch.no_grad():
        net.out_cls.weight.zero_()
        net.out_cls.bias.fill_(-6.0)
        net.out_cls.bias[ANOMALIES.index("color_cast")] = 6.0
        net.out_cls.bias[n:] = 0.0
        net.out_curve.weight.zero_()
        x = torch.from_numpy(spec.CURVE_X.copy())
        gammas = (0.85, 0.9, 1.1)
        curves = torch.stack([x.pow(g) - x for g in gammas])
        matrix = torch.tensor([[0.06, -0.04, -0.02], [-0.02, 0.04, -0.02],
                               [-0.02, -0.04, 0.06]]) / 0.5
        net.out_curve.bias.copy_(torch.cat([curves.reshape(-1), matrix.reshape(-1)]))


def synthetic_onnx() -> Path:
    """Export (once) the synthetic worst-case detector; returns its path."""
    if SYNTH.is_file():
        return SYNTH
    from camheal_train.export import to_onnx_bytes

    SYNTH.parent.mkdir(parents=True, exist_ok=True)
    data = to_onnx_bytes(torch_net())
    tmp = SYNTH.with_suffix(".tmp")
    tmp.write_bytes(data)
    tmp.replace(SYNTH)
    return SYNTH
