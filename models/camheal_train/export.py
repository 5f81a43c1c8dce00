"""Export a trained CamhealNet to ONNX, check it, and compare ONNX Runtime with PyTorch.

    python -m camheal_train.export --ckpt runs/small/last.pt \
        --out models/weights/camheal_detector.onnx
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from camheal.constants import ANOMALIES
from camheal_train.net import CamhealNet
from camheald.vision import spec

logger = logging.getLogger(__name__)
OPSET = 17


def example_inputs(batch: int = 1, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Random (thumb, crops, hist) tensors with the spec's shapes."""
    g = torch.Generator().manual_seed(seed)
    thumb = torch.rand(batch, 3, spec.THUMB, spec.THUMB, generator=g)
    crops = torch.rand(batch, spec.N_CROPS, 3, spec.CROP, spec.CROP, generator=g)
    hist = torch.rand(batch, spec.HIST_FEATURES, generator=g)
    return thumb, crops, hist / hist.sum(1, keepdim=True)


def metadata(model: CamhealNet) -> dict[str, str]:
    """ONNX metadata_props: the spec this model was trained against, and its config."""
    return {
        "camheal.anomalies": ",".join(ANOMALIES),
        "camheal.spec": json.dumps({"thumb": spec.THUMB, "crop": spec.CROP,
                                    "n_crops": spec.N_CROPS, "n_knots": spec.N_KNOTS,
                                    "hist_bins": spec.HIST_BINS, "mask": spec.MASK}),
        "camheal.config": json.dumps(model.cfg.to_dict()),
    }


def to_onnx_bytes(model: CamhealNet) -> bytes:
    """Serialised, checked ONNX model (single file, no external data, dynamic batch)."""

    model = model.eval()
    buf = io.BytesIO()
    dyn = {n: {0: "batch"} for n in (*spec.INPUTS, *spec.OUTPUTS)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, example_inputs(), buf, input_names=list(spec.INPUTS),
                          output_names=list(spec.OUTPUTS), dynamic_axes=dyn,
                          opset_version=OPSET, do_constant_folding=True, dynamo=False)
    return finish_onnx(buf.getvalue(), metadata(model))


def finish_onnx(data: bytes, meta: dict[str, str]) -> bytes:
    """Exported ONNX bytes with ``meta`` as metadata_props, our producer name, checked
    (``onnx.checker`` full check), serialised as one file."""
    import onnx

    proto = onnx.load_from_string(data)
    for k, v in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, v
    proto.producer_name = "camheal_train"
    onnx.checker.check_model(proto, full_check=True)
    return proto.SerializeToString()


def compare(model: CamhealNet, onnx_bytes: bytes, batch: int = 2, atol: float = 1e-4
            ) -> dict[str, float]:
    """Max |ONNX Runtime - PyTorch| per output on random inputs; raises if any > atol."""
    import onnxruntime as ort

    inputs = example_inputs(batch, seed=1)
    with torch.no_grad():
        ref = [t.numpy() for t in model.eval()(*inputs)]
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(onnx_bytes, opts, providers=["CPUExecutionProvider"])
    got = sess.run(list(spec.OUTPUTS), {n: t.numpy() for n, t in zip(spec.INPUTS, inputs,
                                                                      strict=True)})
    diffs = {n: float(np.abs(r - g).max()) for n, r, g in zip(spec.OUTPUTS, ref, got,
                                                                strict=True)}
    bad = {n: d for n, d in diffs.items() if d > atol}
    if bad:
        raise AssertionError(f"ONNX Runtime differs from PyTorch: {bad}")
    return diffs


def export(model: CamhealNet, out: str | os.PathLike) -> dict[str, float]:
    """Export, check and compare; writes ``out`` atomically. Returns the parity diffs."""
    data = to_onnx_bytes(model)
    diffs = compare(model, data)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".onnx.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, out)
    logger.info("wrote %s (%.1f kB), parity %s", out, len(data) / 1024, diffs)
    return diffs


def onnx_arrays(path: str | os.PathLike) -> tuple[object, dict[str, np.ndarray]]:
    """(graph, tensors by name) of an ONNX file: its initializers, plus the names that
    Identity and Constant nodes give tensors (identical folded tensors are shared that way)."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    arrays = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    for n in graph.node:
        if n.op_type == "Identity" and n.input[0] in arrays:
            arrays[n.output[0]] = arrays[n.input[0]]
        elif n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
            arrays[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
    return graph, arrays


def load_onnx_weights(model: CamhealNet, path: str | os.PathLike) -> CamhealNet:
    """Load the weights of an exported detector back into ``model`` (same config).

    The exporter folds each BatchNorm into the convolution before it, so the BatchNorm
    layers get identity statistics and the folded bias: in eval mode the network computes
    what the ONNX file computes. Fine-tune such a model with its BatchNorm layers kept in
    eval mode (``train --freeze-bn``); in train mode they would renormalise.
    """
    graph, arrays = onnx_arrays(path)
    state = model.state_dict()
    new = {k: torch.from_numpy(arrays[k].copy()) for k in state if k in arrays}
    modules = list(model.named_modules())
    convs = [(name, m, modules[i + 1] if i + 1 < len(modules) else None)
             for i, (name, m) in enumerate(modules) if isinstance(m, torch.nn.Conv2d)]
    nodes = [n for n in graph.node if n.op_type == "Conv"]
    if len(nodes) != len(convs):
        raise ValueError(f"{path}: {len(nodes)} convolutions, the model has {len(convs)}")
    for node, (name, conv, nxt) in zip(nodes, convs, strict=True):
        w = torch.from_numpy(arrays[node.input[1]].copy())
        b = torch.from_numpy(arrays[node.input[2]].copy()) if len(node.input) > 2 else None
        if tuple(w.shape) != tuple(conv.weight.shape):
            raise ValueError(f"{path}: conv {name} shape {tuple(w.shape)} != "
                             f"{tuple(conv.weight.shape)}")
        new[f"{name}.weight"] = w
        if nxt is not None and isinstance(nxt[1], torch.nn.BatchNorm2d):
            bn_name, bn = nxt
            zero = b if b is not None else torch.zeros(w.shape[0])
            new[f"{bn_name}.weight"] = torch.ones_like(zero)
            new[f"{bn_name}.bias"] = zero
            new[f"{bn_name}.running_mean"] = torch.zeros_like(zero)
            new[f"{bn_name}.running_var"] = torch.full_like(zero, 1.0 - bn.eps)
        elif b is not None:
            new[f"{name}.bias"] = b
    missing = [k for k in state if k not in new and not k.endswith("num_batches_tracked")]
    if missing:
        raise ValueError(f"{path}: no weights for {', '.join(missing[:5])}")
    model.load_state_dict(new, strict=False)
    return model


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point."""
    from camheal_train.train import load_model

    ap = argparse.ArgumentParser(prog="python -m camheal_train.export", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", required=True, help="checkpoint from camheal_train.train")
    ap.add_argument("--out", required=True, help="ONNX file to write")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    export(load_model(a.ckpt), a.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
