"""Restoration networks for real: tiny configs trained a few steps on generated photos,
resumed, exported to ONNX and compared with PyTorch at several sizes."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from support import make_photo

torch = pytest.importorskip("torch", reason="training tests need the train extra (torch)")
pytest.importorskip("kornia", reason="training tests need the train extra (kornia)")
ort = pytest.importorskip("onnxruntime")

TINY = ["--batch", "2", "--crop", "32", "--val", "2", "--no-progress", "--warmup", "1",
        "--log-every", "1"]


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("photos")
    for i in range(3):
        cv2.imwrite(str(d / f"p{i}.png"), make_photo(i, 120, 160))
    (d / "kodak24-held.png").write_bytes(b"not read: held out")  # would fail if it were read
    return d


def _run(photos: Path, out: Path, task: str, steps: int, *extra: str) -> dict:
    from camheal_train.restore_train import main

    assert main(["--task", task, "--arch", f"tiny-{task}", "--data", str(photos), "--out",
                 str(out), "--steps", str(steps), "--device", "cpu", *TINY, *extra]) == 0
    return torch.load(out / "last.pt", weights_only=False)


def test_untrained_restore_net_is_the_identity_and_inpaint_keeps_known_pixels():
    from camheal_train.restore_net import build

    x = torch.rand(2, 3, 32, 48)
    sev = torch.tensor([[0.3, -1.0], [0.0, 0.7]]).view(2, 2, 1, 1).expand(2, 2, 32, 48)
    assert torch.equal(build("tiny-restore").eval()(torch.cat([x, sev], 1)), x)
    hole = (torch.rand(2, 1, 32, 48) < 0.3).float()
    y = build("tiny-inpaint").eval()(torch.cat([x * (1 - hole), hole], 1))
    assert torch.allclose(y * (1 - hole), x * (1 - hole))
    assert bool(((y - x).abs() * hole).sum() > 0)  # something was put in the holes


def test_push_pull_fills_a_flat_image_exactly():
    from camheal_train.restore_net import push_pull

    rgb = torch.tensor([0.2, 0.5, 0.9]).view(1, 3, 1, 1).expand(1, 3, 64, 64).clone()
    valid = torch.ones(1, 1, 64, 64)
    valid[..., 10:40, 5:50] = 0
    fill = push_pull(rgb * valid, valid, 4)
    assert torch.allclose(fill, rgb, atol=1e-4)


def test_restore_train_resume_export_parity(photos, tmp_path):
    from camheal_train.restore_export import INPUT, OUTPUT, export
    from camheal_train.restore_train import load_model

    out = tmp_path / "run"
    state = _run(photos, out, "restore", 2, "--workers", "1")  # a real worker process
    assert state["step"] == 2 and state["config"]["task"] == "restore"
    assert _run(photos, out, "restore", 4, "--workers", "0")["step"] == 4  # resumed
    assert (out / "train.log").read_text().count("resumed from") == 1
    net = load_model(out / "last.pt")
    onnx_path = tmp_path / "r.onnx"
    assert export(net, onnx_path) < 1e-4
    assert (tmp_path / "r.json").is_file()
    sess = ort.InferenceSession(onnx_path.read_bytes(), providers=["CPUExecutionProvider"])
    meta = sess.get_modelmeta().custom_metadata_map
    assert meta["camheal.task"] == "restore" and meta["camheal.multiple"] == "4"
    for h, w in ((8, 12), (36, 20)):  # dynamic height and width
        x = np.random.default_rng(h).random((1, 5, h, w), dtype=np.float32)
        got = sess.run([OUTPUT], {INPUT: x})[0]
        with torch.no_grad():
            ref = net(torch.from_numpy(x)).numpy()
        assert got.shape == (1, 3, h, w)
        assert np.abs(got - ref).max() < 1e-4


def test_inpaint_train_and_export(photos, tmp_path):
    from camheal_train.restore_export import export
    from camheal_train.restore_train import load_model

    out = tmp_path / "inp"
    assert _run(photos, out, "inpaint", 2, "--workers", "0")["step"] == 2
    assert export(load_model(out / "last.pt"), tmp_path / "i.onnx") < 1e-4


def test_time_limit_stops_with_a_checkpoint(photos, tmp_path):
    out = tmp_path / "t"
    state = _run(photos, out, "restore", 1000, "--workers", "0", "--time-limit", "0.001")
    assert state["step"] < 1000
    assert "time limit" in (out / "train.log").read_text()


def test_pairs_are_deterministic_and_in_range(photos):
    from camheal_train.data import list_photos
    from camheal_train.restore_data import RestoreDataset, hole_mask

    ph = list_photos(photos, exclude=["kodak24-"])
    for task, ch in (("restore", 5), ("inpaint", 4)):
        ds = RestoreDataset(ph, task, crop=48, seed=3)
        x1, y1 = ds[5]
        x2, y2 = RestoreDataset(ph, task, crop=48, seed=3)[5]
        assert torch.equal(x1, x2) and torch.equal(y1, y2)
        assert x1.shape == (ch, 48, 48) and y1.shape == (3, 48, 48)
        assert float(x1[:3].min()) >= 0 and float(x1.max()) <= 1
        assert float(x1[3:].min()) >= -1  # severities, -1 = unknown
    m = hole_mask(96, 128, np.random.default_rng(0), "crack")
    assert m.shape == (96, 128) and set(np.unique(m)) <= {0.0, 1.0} and m.mean() > 0


def test_init_onnx_starts_from_exported_weights(photos, tmp_path):
    from camheal_train.restore_export import export
    from camheal_train.restore_train import load_model, main

    first = _run(photos, tmp_path / "a", "restore", 3, "--workers", "0")
    export(load_model(tmp_path / "a" / "last.pt"), tmp_path / "a.onnx")
    # zero steps: the checkpoint holds exactly what was loaded
    again = _run(photos, tmp_path / "b", "restore", 0, "--workers", "0",
                 "--init-onnx", str(tmp_path / "a.onnx"))
    assert again["step"] == 0
    for k, v in first["model"].items():
        assert torch.equal(v, again["model"][k]), k
    from camheal_train.restore_export import main as export_main

    assert export_main(["--ckpt", str(tmp_path / "b" / "last.pt"),
                        "--out", str(tmp_path / "b.onnx")]) == 0
    training = json.loads((tmp_path / "b.json").read_text())["training"]
    assert training["init_onnx"] == str(tmp_path / "a.onnx") and training["steps"] == 0
    assert training["init_onnx_sha256"] == hashlib.sha256(
        (tmp_path / "a.onnx").read_bytes()).hexdigest()
    # another architecture, or not an ONNX file: one line, no traceback
    for bad in (tmp_path / "a.onnx", tmp_path / "nothing.onnx"):
        with pytest.raises(SystemExit, match="--init-onnx") as e:
            main(["--task", "inpaint", "--arch", "tiny-inpaint", "--data", str(photos),
                  "--out", str(tmp_path / "c"), "--steps", "1", "--device", "cpu", *TINY,
                  "--workers", "0", "--init-onnx", str(bad)])
        assert "\n" not in str(e.value)


def test_saturated_crops_are_more_colourful_and_keep_greys(photos):
    from camheal_train.data import list_photos
    from camheal_train.restore_data import RestoreDataset, saturate

    rng = np.random.default_rng(0)
    img = rng.random((32, 32, 3), dtype=np.float32)
    img[:8] = 0.4  # a grey band stays grey
    out = saturate(img, rng)
    assert out.dtype == np.float32 and out.min() >= 0 and out.max() <= 1
    assert np.allclose(out[:8], 0.4, atol=1e-6)
    chroma = lambda x: np.abs(x - x.mean(2, keepdims=True)).mean()  # noqa: E731
    assert chroma(out) > 1.2 * chroma(img)
    ph = list_photos(photos, exclude=["kodak24-"])
    plain = RestoreDataset(ph, "restore", crop=48, seed=3)
    rich = RestoreDataset(ph, "restore", crop=48, seed=3, saturated=1.0)
    ys = [(plain.pair(i)[1], rich.pair(i)[1]) for i in range(6)]
    assert sum(chroma(b) > chroma(a) for a, b in ys) >= 5
