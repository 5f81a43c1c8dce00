"""Stacked estimators train, export and load beside a detector (tiny runs)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from camheald.vision.detector import Detector, shipped_weights
from camheald.vision.stacked import TASKS
from support import make_photo

pytest.importorskip("torch", reason="training tests need the train extra (torch)")
pytest.importorskip("kornia", reason="training tests need the train extra (kornia)")


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("cast-photos")
    for i in range(3):
        cv2.imwrite(str(d / f"p{i}.png"), make_photo(10 + i, 160, 200))
    cv2.imwrite(str(d / "val20-a.png"), make_photo(20, 160, 200))
    return d


@pytest.mark.parametrize("task", sorted(TASKS))
def test_train_export_and_load_beside_the_detector(photos, tmp_path, task):
    from camheal_train.stacked_train import main

    det_dir = tmp_path / "det"
    det_dir.mkdir()
    det = det_dir / "camheal_detector.onnx"
    shutil.copy(shipped_weights(), det)
    side = json.loads(shipped_weights().with_suffix(".json").read_text())
    side["estimators"] = {task: "mine.onnx"}
    det.with_suffix(".json").write_text(json.dumps(side))
    out = tmp_path / "run"
    args = ["--task", task, "--data", str(photos), "--out", str(out), "--detector", str(det),
            "--per-photo", "6", "--exclude", "val20-", "--val-include", "val20-",
            "--steps", "20", "--batch", "8", "--workers", "1", "--no-progress",
            "--export", str(det_dir / "mine.onnx")]
    assert main(args) == 0
    cache = list(out.glob("samples-*.npz"))
    assert len(cache) == 1
    with np.load(cache[0]) as z:
        assert z["features"].shape == (18, TASKS[task].n_features)
        assert z["logits"].shape == (18, 7)
        assert z["params"].shape == (18, TASKS[task].n_params)
    meta = json.loads((det_dir / "mine.json").read_text())
    assert meta["parity_max_abs"] < 1e-4 and meta["samples"] == 18
    if TASKS[task].uses_segmenter:  # its features come from the segmenter: the sidecar says which
        from camheald.vision import lens

        assert meta["segmenter"] == lens.shared().name
    loaded = Detector.load(det)
    anomaly = TASKS[task].anomaly
    assert list(loaded.estimators) == [anomaly]
    a = loaded.analyze(make_photo(30))
    assert 0.0 <= a.scores[anomaly] <= 1.0
    # rerunning reuses the cached samples (same detector, seed and count)
    mtime = cache[0].stat().st_mtime_ns
    assert main(args) == 0
    assert cache[0].stat().st_mtime_ns == mtime


def test_missing_detector_is_a_one_line_error(photos, tmp_path):
    from camheal_train.stacked_train import main

    with pytest.raises(SystemExit, match="not found"):
        main(["--task", "cast", "--data", str(photos), "--out", str(tmp_path), "--detector",
              str(tmp_path / "nope.onnx")])


def test_a_detection_only_task_refuses_an_image_loss(photos, tmp_path):
    from camheal_train.stacked_train import main

    with pytest.raises(SystemExit, match="no correction to apply"):
        main(["--task", "noise", "--data", str(photos), "--out", str(tmp_path), "--detector",
              str(shipped_weights()), "--w-img", "4"])


@pytest.mark.parametrize("task", sorted(t for t in TASKS if TASKS[t].n_params))
def test_training_apply_matches_the_runtime_curves(task):
    import torch

    from camheal_train.stacked_train import APPLY
    from camheald.vision.correct import Correction, apply_global

    rng = np.random.default_rng(3)
    img = make_photo(40, 48, 64)
    for _ in range(4):
        p = rng.normal(0, 0.3, TASKS[task].n_params).astype(np.float32)
        want = apply_global(img, Correction(TASKS[task].curves(p), np.eye(3)))
        x = torch.from_numpy(img).float().div(255).permute(2, 0, 1)[None]
        got = APPLY[task](x, torch.from_numpy(p)[None])[0].permute(1, 2, 0).numpy() * 255
        assert np.abs(got - want).max() <= 4.0  # the runtime's 33-knot curves, rounded
