"""Training runs for real: tiny config, single process + resume, and 2-process DDP (gloo)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from support import make_photo

torch = pytest.importorskip("torch", reason="training tests need the train extra (torch)")
pytest.importorskip("kornia", reason="training tests need the train extra (kornia)")

TINY = ["--arch", "tiny", "--batch", "2", "--workers", "0", "--threads", "1",
        "--epoch-samples", "8", "--no-progress", "--warmup", "1"]


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("photos")
    for i in range(3):
        cv2.imwrite(str(d / f"p{i}.png"), make_photo(i, 160, 200))
    (d / "kodak24-held.png").write_bytes((d / "p0.png").read_bytes())
    return d


def test_train_and_resume(photos, tmp_path):
    from camheal_train.train import load_model, main

    out = tmp_path / "run"
    assert main(["--data", str(photos), "--out", str(out), "--steps", "2", *TINY]) == 0
    state = torch.load(out / "last.pt", weights_only=False)
    assert state["step"] == 2
    assert main(["--data", str(photos), "--out", str(out), "--steps", "3", *TINY]) == 0
    assert torch.load(out / "last.pt", weights_only=False)["step"] == 3
    net = load_model(out / "last.pt")
    assert not net.training


def test_ddp_two_processes_gloo(photos, tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
           "2", "-m", "camheal_train.train", "--data", str(photos), "--out", str(out),
           "--steps", "2", *TINY]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=150, env=env)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    state = torch.load(out / "last.pt", weights_only=False)
    assert state["step"] == 2
    assert "module." not in next(iter(state["model"]))


def test_fine_tune_from_exported_onnx_keeps_batchnorm_frozen(photos, tmp_path):
    from camheal_train.export import to_onnx_bytes
    from camheal_train.net import build
    from camheal_train.train import main

    onnx_path = tmp_path / "tiny.onnx"
    onnx_path.write_bytes(to_onnx_bytes(build("tiny").eval()))
    out = tmp_path / "ft"
    assert main(["--data", str(photos), "--out", str(out), "--steps", "2",
                 "--init-onnx", str(onnx_path), *TINY]) == 0
    state = torch.load(out / "last.pt", weights_only=False)["model"]
    var = state["stem.1.running_var"]
    assert torch.allclose(var, torch.full_like(var, 1 - 1e-5))  # statistics never updated
    assert state["stem.1.num_batches_tracked"] == 0


def test_class_weights_scale_one_anomaly_term():
    from camheal.constants import ANOMALIES
    from camheal_train.losses import compute_losses

    b, n = 4, len(ANOMALIES)
    logits = torch.zeros(b, n)
    labels = torch.zeros(b, n)
    labels[:, ANOMALIES.index("obstruction")] = 1.0
    outputs = (logits, torch.zeros(b, n), torch.zeros(b, 3, 33), torch.eye(3).repeat(b, 1, 1),
               torch.zeros(b, 1, 32, 32))
    batch = {"labels": labels, "severity": torch.zeros(b, n),
             "loss_in": torch.zeros(b, 3, 8, 8, dtype=torch.uint8),
             "loss_target": torch.zeros(b, 3, 8, 8, dtype=torch.uint8),
             "mask": torch.zeros(b, 1, 32, 32)}
    plain = compute_losses(outputs, batch)["cls"]
    w = torch.ones(n)
    w[ANOMALIES.index("obstruction")] = 8.0
    weighted = compute_losses(outputs, batch, class_weights=w)["cls"]
    # all logits 0: every term is log 2, so the mean goes from 1 to (6 + 8) / 7 of it
    assert weighted.item() == pytest.approx(plain.item() * 14 / 7, rel=1e-6)


@pytest.mark.parametrize("bad", ["obstruction", "dirt=2", "blur=0", "noise=x", "blur=nan"])
def test_bad_anomaly_weight_is_one_line_error(bad, capsys):
    from camheal_train.train import parse_args

    with pytest.raises(SystemExit) as e:
        parse_args(["--out", "x", "--focus", bad])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "ANOMALY=W" in err and bad in err


def test_focus_needs_on_the_fly_data(tmp_path, capsys):
    from camheal_train.train import parse_args

    with pytest.raises(SystemExit):
        parse_args(["--out", "x", "--cache", str(tmp_path), "--focus", "blur=2"])
    assert "--focus needs on-the-fly data" in capsys.readouterr().err


def test_train_only_the_obstruction_branch_on_exported_weights(photos, tmp_path):
    from camheal_train.export import load_onnx_weights, to_onnx_bytes
    from camheal_train.net import build
    from camheal_train.train import main

    base = build("tiny").eval()
    onnx_path = tmp_path / "tiny.onnx"
    onnx_path.write_bytes(to_onnx_bytes(base))
    out = tmp_path / "obs"
    args = ["--data", str(photos), "--out", str(out), "--steps", "3", "--init-onnx",
            str(onnx_path), "--train-only", "obs.", "--lr", "0.05", *TINY]
    args[args.index("tiny")] = "tiny-obs"
    assert main(args) == 0
    state = torch.load(out / "last.pt", weights_only=False)["model"]
    # the exported network's weights did not move; the branch did, BatchNorm included
    ref = load_onnx_weights(build("tiny"), onnx_path).state_dict()
    for k, v in ref.items():
        if not k.endswith("num_batches_tracked"):
            assert torch.equal(state[k], v), k
    assert state["obs.cls.3.weight"].abs().sum() > 0
    assert state["obs.stem.1.num_batches_tracked"] == 3
    assert state["stem.1.num_batches_tracked"] == 0


def test_train_only_unknown_prefix_is_an_error(photos, tmp_path):
    from camheal_train.train import main

    with pytest.raises(SystemExit, match="no such parameters"):
        main(["--data", str(photos), "--out", str(tmp_path / "x"), "--steps", "1",
              "--train-only", "nothing.", *TINY])
