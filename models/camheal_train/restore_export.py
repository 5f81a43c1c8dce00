"""Export a trained RestoreNet to ONNX, check it, and compare ONNX Runtime with PyTorch.

    python -m camheal_train.restore_export --ckpt runs/restore/last.pt \
        --out models/weights/camheal_restore.onnx
    python -m camheal_train.restore_export --ckpt runs/inpaint/last.pt \
        --out models/weights/camheal_inpaint.onnx

Opset 17, one input ``image`` (B,C,H,W) and one output ``output`` (B,3,H,W) with dynamic batch,
height and width (multiples of ``camheal.multiple``), a single file without external data;
the layouts are in ``camheal_train.restore_net``.
A JSON sidecar beside the ONNX records the task, config, training run and parity check.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import logging
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from camheal_train.export import finish_onnx
from camheal_train.restore_net import RestoreNet, macs_per_pixel

logger = logging.getLogger(__name__)
OPSET = 17
INPUT, OUTPUT = "image", "output"
PARITY_SIZES = ((1, 64, 96), (2, 48, 32))  # (batch, height, width) in units of 1 px


def example_input(model: RestoreNet, batch: int, h: int, w: int, seed: int = 0
                  ) -> torch.Tensor:
    """A random input of the model's layout (holes zeroed for inpainting; severities, some
    unknown, for restoring)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, 3, h, w, generator=g)
    if model.cfg.task == "inpaint":
        hole = (torch.rand(batch, 1, h // 4, w // 4, generator=g) < 0.2).float()
        hole = torch.nn.functional.interpolate(hole, size=(h, w), mode="nearest")
        return torch.cat([x * (1 - hole), hole], 1)
    sev = torch.rand(batch, 2, 1, 1, generator=g)
    sev[0, 0] = -1.0  # unknown
    return torch.cat([x, sev.expand(batch, 2, h, w)], 1)


def metadata(model: RestoreNet) -> dict[str, str]:
    """ONNX metadata_props the runtime checks (task, size multiple, channels, config)."""
    cfg = model.cfg
    return {"camheal.task": cfg.task, "camheal.multiple": str(cfg.multiple),
            "camheal.in_channels": str(cfg.in_channels),
            "camheal.config": json.dumps(cfg.to_dict())}


def to_onnx_bytes(model: RestoreNet) -> bytes:
    """Serialised, checked ONNX model (single file, dynamic batch/height/width)."""

    model = model.eval()
    m = model.cfg.multiple
    buf = io.BytesIO()
    dyn = {n: {0: "batch", 2: "height", 3: "width"} for n in (INPUT, OUTPUT)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (example_input(model, 1, 4 * m, 6 * m),), buf,
                          input_names=[INPUT], output_names=[OUTPUT], dynamic_axes=dyn,
                          opset_version=OPSET, do_constant_folding=True, dynamo=False)
    return finish_onnx(buf.getvalue(), metadata(model))


def compare(model: RestoreNet, onnx_bytes: bytes, atol: float = 1e-4) -> float:
    """Max |ONNX Runtime - PyTorch| over inputs of several sizes; raises if > atol."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 3
    sess = ort.InferenceSession(onnx_bytes, opts, providers=["CPUExecutionProvider"])
    m = model.cfg.multiple
    worst = 0.0
    for i, (b, h, w) in enumerate(PARITY_SIZES):
        h, w = -(-h // m) * m, -(-w // m) * m
        x = example_input(model, b, h, w, seed=i + 1)
        with torch.no_grad():
            ref = model.eval()(x).numpy()
        got = sess.run([OUTPUT], {INPUT: x.numpy()})[0]
        if got.shape != ref.shape:
            raise AssertionError(f"ONNX output shape {got.shape} != PyTorch {ref.shape}")
        worst = max(worst, float(np.abs(ref - got).max()))
    if worst > atol:
        raise AssertionError(f"ONNX Runtime differs from PyTorch by {worst:.2e} > {atol:g}")
    return worst


def export(model: RestoreNet, out: str | os.PathLike, sidecar: dict | None = None) -> float:
    """Export, check and compare; writes ``out`` (and ``out``.json) atomically.

    Returns:
        the parity error (max absolute difference, image units 0..1).
    """
    data = to_onnx_bytes(model)
    diff = compare(model, data)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, out)
    info = {"task": model.cfg.task, "config": model.cfg.to_dict(),
            "input": INPUT, "output": OUTPUT, "multiple": model.cfg.multiple,
            "params": sum(p.numel() for p in model.parameters()),
            "gflop_per_megapixel": round(2e-3 * macs_per_pixel(model), 2),
            "onnx_sha256": hashlib.sha256(data).hexdigest(), "parity_max_abs": diff,
            **(sidecar or {})}
    side = out.with_suffix(".json")
    tmp = side.with_name(side.name + ".tmp")
    tmp.write_text(json.dumps(info, indent=1) + "\n")
    os.replace(tmp, side)
    logger.info("wrote %s (%.0f kB), parity %.1e", out, len(data) / 1024, diff)
    return diff


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point."""
    from camheal_train.restore_train import load_model

    ap = argparse.ArgumentParser(prog="python -m camheal_train.restore_export",
                                 description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", required=True, help="last.pt from camheal_train.restore_train")
    ap.add_argument("--out", required=True, help="ONNX file to write (a .json goes beside it)")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    state = torch.load(a.ckpt, map_location="cpu", weights_only=False)
    args = state.get("args", {})
    train = {"steps": int(state["step"]), "trained_s": round(float(state.get("elapsed", 0))),
             **{k: args.get(k) for k in ("batch", "crop", "lr", "device", "bf16", "seed")
                if k in args},
             # a fine-tune: what it started from and how its data differed
             **{k: args[k] for k in ("init_onnx", "mix", "saturated") if args.get(k)}}
    if train.get("init_onnx") and Path(train["init_onnx"]).is_file():
        # the path alone may later name other weights
        train["init_onnx_sha256"] = hashlib.sha256(
            Path(train["init_onnx"]).read_bytes()).hexdigest()
    export(load_model(a.ckpt), a.out, {"training": train})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
