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
