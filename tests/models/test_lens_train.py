"""The lens-defect segmenter for real: a tiny network trained a few steps on generated
photos, resumed, exported to ONNX and run through the daemon's LensSegmenter."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from support import make_photo

torch = pytest.importorskip("torch", reason="training tests need the train extra (torch)")


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("lens-photos")
    for i in range(3):
        cv2.imwrite(str(d / f"p{i}.png"), make_photo(i, 160, 240))
    cv2.imwrite(str(d / "val20-v.png"), make_photo(7, 160, 240))
    (d / "kodak24-held.png").write_bytes(b"not read: held out")  # would fail if it were read
    return d


def _train(photos: Path, out: Path, steps: int, *extra: str) -> dict:
    from camheal_train.lens_train import main

    assert main(["--data", str(photos), "--out", str(out), "--steps", str(steps), "--batch",
                 "2", "--width", "8", "--val", "4", "--workers", "0", "--ckpt-every", "2",
                 *extra]) == 0
    return torch.load(out / "last.pt", weights_only=False)


def test_samples_mark_the_obstruction_and_stay_in_range(photos):
    from camheal_train.lens_train import make_sample

    rng = np.random.default_rng(3)
    img = cv2.cvtColor(make_photo(1, 200, 300), cv2.COLOR_BGR2RGB)
    pairs = [make_sample(img, rng) for _ in range(40)]
    assert all(x.shape == (128, 128, 3) and x.dtype == np.uint8 for x, _ in pairs)
    assert all(set(np.unique(t)) <= {0, 255} for _, t in pairs)
    with_defect = sum(bool(t.any()) for _, t in pairs)
    assert 15 <= with_defect <= 38  # 70 % draw one (a few fall outside their crop)


def test_train_resume_export_and_run_in_the_daemon(photos, tmp_path):
    from camheald.vision.detector import ModelError
    from camheald.vision.lens import LensSegmenter

    out = tmp_path / "run"
    assert _train(photos, out, 2)["step"] == 2
    assert _train(photos, out, 4)["step"] == 4  # resumed
    assert "resumed at step 2" in (out / "train.log").read_text()
    onnx_path = tmp_path / "lens.onnx"
    _train(photos, out, 4, "--export-only", "--export", str(onnx_path))
    seg = LensSegmenter.load(onnx_path)
    rgb = cv2.cvtColor(make_photo(2, 90, 150), cv2.COLOR_BGR2RGB)  # not a multiple of 16
    p = seg.probability(rgb)
    assert p.shape == (90, 150) and p.dtype == np.float32 and 0 <= p.min() <= p.max() <= 1

    from camheal_train.lens_train import LensSegNet

    net = LensSegNet(8)
    net.load_state_dict(torch.load(out / "last.pt", weights_only=False)["model"])
    x = torch.from_numpy(np.pad(rgb, ((0, 6), (0, 10), (0, 0)), mode="reflect")
                         ).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        ref = torch.sigmoid(net.eval()(x))[0, 0, :90, :150].numpy()
    assert np.abs(p - ref).max() < 1e-4
    with pytest.raises(ValueError, match="larger than"):
        seg.probability(np.zeros((1100, 40, 3), np.uint8))
    (tmp_path / "lens.json").write_text('{"on": 0.2, "off": 0.5}')
    with pytest.raises(ModelError, match="off < on"):
        LensSegmenter.load(onnx_path)
    with pytest.raises(ModelError, match="not found"):
        LensSegmenter.load(tmp_path / "missing.onnx")
