from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="model tests need the train extra (torch)")
onnx = pytest.importorskip("onnx", reason="ONNX export tests need onnx")

from camheal.constants import ANOMALIES  # noqa: E402
from camheal_train.apply import apply_global_torch  # noqa: E402
from camheal_train.export import compare, example_inputs, to_onnx_bytes  # noqa: E402
from camheal_train.net import CONFIGS, build  # noqa: E402
from camheald.vision import spec  # noqa: E402
from camheald.vision.correct import Correction, apply_global  # noqa: E402


def test_tiny_forward_shapes():
    net = build("tiny").eval()
    logits, sev, curves, matrix, mask = net(*example_inputs(3))
    assert logits.shape == (3, spec.N_ANOMALIES) and sev.shape == (3, spec.N_ANOMALIES)
    assert curves.shape == (3, 3, spec.N_KNOTS) and matrix.shape == (3, 3, 3)
    assert mask.shape == (3, 1, spec.MASK, spec.MASK)
    # an untrained net predicts the identity correction
    assert torch.allclose(curves, torch.from_numpy(spec.CURVE_X).expand_as(curves))
    assert torch.allclose(matrix, torch.eye(3).expand_as(matrix))


def test_small_is_small():
    n = sum(p.numel() for p in build(CONFIGS["small"]).parameters())
    assert n < 2_500_000  # float32 ONNX must stay far below 10 MB


def test_onnx_export_checked_and_matches_torch(tmp_path):
    net = build("tiny").eval()
    with torch.no_grad():  # make the correction head non-trivial
        net.out_curve.weight.normal_(0, 0.05)
    data = to_onnx_bytes(net)
    onnx.checker.check_model(onnx.load_from_string(data))
    diffs = compare(net, data, batch=2)
    assert max(diffs.values()) < 1e-4
    model = onnx.load_from_string(data)
    meta = {p.key: p.value for p in model.metadata_props}
    assert "camheal.spec" in meta and "camheal.anomalies" in meta


def test_correction_from_net_applies_identically(photo):
    net = build("tiny").eval()
    with torch.no_grad():
        net.out_curve.weight.normal_(0, 0.05)
        _, _, curves, matrix, _ = net(*example_inputs(1))
    ref = apply_global(photo, Correction(curves[0].numpy(), matrix[0].numpy()))
    img = torch.from_numpy(photo.transpose(2, 0, 1).copy())[None]
    got = apply_global_torch(img, curves, matrix)[0].permute(1, 2, 0).numpy()
    assert np.abs(np.rint(got * 255) - ref).max() <= 1


def test_exported_weights_load_back_into_torch(tmp_path):
    """An exported detector (BatchNorm folded into the convolutions) loads back into a
    torch model that computes the same outputs: fine-tuning can start from shipped weights."""
    from camheal_train.export import load_onnx_weights

    net = build("tiny")
    net.train()
    with torch.no_grad():  # non-trivial BatchNorm statistics and correction head
        for _ in range(3):
            net(*example_inputs(4, seed=_))
        net.out_curve.weight.normal_(0, 0.05)
    net.eval()
    path = tmp_path / "d.onnx"
    path.write_bytes(to_onnx_bytes(net))
    back = load_onnx_weights(build("tiny"), path).eval()
    x = example_inputs(2, seed=7)
    with torch.no_grad():
        for a, b in zip(net(*x), back(*x), strict=True):
            assert torch.allclose(a, b, atol=1e-4), float((a - b).abs().max())
    with pytest.raises(ValueError, match="convolutions|shape"):
        load_onnx_weights(build("small"), path)


def test_fresh_obstruction_branch_changes_nothing_until_trained(tmp_path):
    from camheal_train.export import load_onnx_weights

    base = build("tiny").eval()
    with_branch = build("tiny-obs").eval()
    missing, unexpected = with_branch.load_state_dict(base.state_dict(), strict=False)
    assert not unexpected and missing and all(k.startswith("obs.") for k in missing)
    x = example_inputs(2, seed=3)
    with torch.no_grad():
        for a, b in zip(base(*x), with_branch(*x), strict=True):
            assert torch.equal(a, b)
        # once its output layers are not zero, only the obstruction logit and the mask move
        with_branch.obs.cls[3].bias.fill_(1.5)
        with_branch.obs.mask_out[1].bias.fill_(-0.5)
        logits, _, _, _, mask = with_branch(*x)
        ref_logits, _, _, _, ref_mask = base(*x)
    i = ANOMALIES.index("obstruction")
    assert torch.allclose(logits[:, i], ref_logits[:, i] + 1.5)
    others = [j for j in range(spec.N_ANOMALIES) if j != i]
    assert torch.equal(logits[:, others], ref_logits[:, others])
    assert torch.allclose(mask, ref_mask - 0.5)
    # exported with the branch: checked, same as PyTorch, and loads back
    data = to_onnx_bytes(with_branch)
    assert max(compare(with_branch, data).values()) < 1e-4
    path = tmp_path / "obs.onnx"
    path.write_bytes(data)
    back = load_onnx_weights(build("tiny-obs"), path).eval()
    with torch.no_grad():
        for a, b in zip(with_branch(*x), back(*x), strict=True):
            assert torch.allclose(a, b, atol=1e-4)
