from __future__ import annotations

import numpy as np
import pytest

from camheal.constants import ANOMALIES


def test_tensorrt_cache_key_changes_with_each_part():
    from camheal_train.tensorrt_build import cache_key

    base = ("10.3.0", "Orin", "8.7", "ab" * 32)
    k = cache_key(*base)
    assert k == cache_key(*base) and len(k) == 24
    assert k == cache_key("10.3.0 ", " Orin ", "8.7", ("AB" * 32))  # normalised
    for i, alt in enumerate(("10.4.0", "Xavier", "7.2", "cd" * 32)):
        changed = list(base)
        changed[i] = alt
        assert cache_key(*changed) != k
    assert cache_key(*base, fp16=False) != k
    assert cache_key(*base, max_batch=4) != k


def test_tensorrt_build_fails_clearly_without_tensorrt(tmp_path):
    from camheal_train import tensorrt_build as tb

    try:
        import tensorrt  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("tensorrt is installed here")
    onnx_file = tmp_path / "m.onnx"
    onnx_file.write_bytes(b"x")
    with pytest.raises(tb.TensorRTUnavailable, match="TensorRT is not installed"):
        tb.build_engine(onnx_file, tmp_path / "cache")
    assert tb.main(["--onnx", str(onnx_file), "--cache-dir", str(tmp_path)]) == 2
    assert len(tb.model_hash(onnx_file)) == 64


def test_metrics_and_calibration():
    pytest.importorskip("torch", reason="evaluate imports the degradation library (torch)")
    from camheal_train.evaluate import best_threshold, calibrate, prf

    s = np.array([0.9, 0.8, 0.3, 0.1])
    y = np.array([1, 1, 0, 0])
    assert prf(s, y, 0.5) == (1.0, 1.0, 1.0)
    assert 0.3 < best_threshold(s, y) <= 0.8
    rng = np.random.default_rng(0)
    labels = (rng.random((200, len(ANOMALIES))) < 0.2).astype(float)
    scores = np.clip(labels * 0.7 + rng.random(labels.shape) * 0.4, 0, 1)
    clean = labels.sum(1) == 0
    thr = calibrate(scores, labels, clean, fp_per_class=0.01)
    assert set(thr) == set(ANOMALIES)
    for i, a in enumerate(ANOMALIES):
        assert np.mean(scores[clean, i] >= thr[a]) <= 0.01


def test_classical_baselines(photo):
    pytest.importorskip("torch", reason="camheal_train needs torch")
    from camheal_train import baselines as bl

    sc = bl.classical_scores(photo)
    assert set(sc) == set(ANOMALIES)
    for tool in bl.TOOLS.values():
        out = tool(photo)
        assert out.shape == photo.shape and out.dtype == np.uint8
    assert bl.psnr(photo, photo) == 100.0
    assert bl.ssim(photo, photo) == pytest.approx(1.0)


def test_auc_matches_pair_count():
    from camheal_train.evaluate import auc

    rng = np.random.default_rng(1)
    s = rng.integers(0, 5, 60).astype(float)  # many ties
    y = rng.integers(0, 2, 60)
    pos, neg = s[y == 1], s[y == 0]
    brute = np.mean([(p > q) + 0.5 * (p == q) for p in pos for q in neg])
    assert auc(s, y) == pytest.approx(brute)
    assert np.isnan(auc(s, np.zeros(60)))


def test_obstruction_breakdown_covers_every_kind(tmp_path):
    pytest.importorskip("torch", reason="evaluate imports the degradation library (torch)")
    import cv2

    from camheal_train import obstruction as obs
    from camheal_train.evaluate import kind_table, main, obstruction_kinds
    from camheald.vision.detector import Detector
    from support import make_photo

    for i in range(2):
        cv2.imwrite(str(tmp_path / f"p{i}.png"), cv2.cvtColor(make_photo(i), cv2.COLOR_RGB2BGR))
    r = obstruction_kinds(Detector.load(), sorted(tmp_path.iterdir()), 3, 1, 1)
    # per photo: the original and one jittered clean variant; one copy under each kind
    assert set(r) == {"clean", *obs.KINDS}
    assert len(r["clean"]["score"]) == 4 and all(len(r[k]["score"]) == 2 for k in obs.KINDS)
    rows = [line for line in kind_table(r, 0.5) if line.startswith("| ") and "---" not in line]
    assert [row.split(" | ")[0][2:] for row in rows[1:]] == list(obs.KINDS)
    assert main(["--data", str(tmp_path), "--include", "p", "--obstruction-kinds", "1",
                 "--clean", "0"]) == 0


def test_calibrating_one_class_keeps_the_others(tmp_path):
    pytest.importorskip("torch", reason="evaluate imports the degradation library (torch)")
    import json

    import cv2

    from camheal_train.evaluate import main
    from camheald.vision.detector import shipped_weights
    from support import copy_detector, make_photo

    for i in range(2):
        cv2.imwrite(str(tmp_path / f"p{i}.png"), cv2.cvtColor(make_photo(i), cv2.COLOR_RGB2BGR))
    model = tmp_path / "m" / shipped_weights().name
    model.parent.mkdir()
    copy_detector(model.parent)
    side = model.with_suffix(".json")
    before = json.loads(side.read_text())
    before["thresholds"] = {k: 0.77 for k in before["thresholds"]}
    side.write_text(json.dumps(before))
    assert main(["--data", str(tmp_path), "--include", "p", "--model", str(model),
                 "--singles", "1", "--pairs", "0", "--clean", "1", "--calibrate", str(side),
                 "--only", "color_cast"]) == 0
    after = json.loads(side.read_text())
    assert {k: v for k, v in after["thresholds"].items() if k != "color_cast"} == \
        {k: 0.77 for k in before["thresholds"] if k != "color_cast"}
    assert after["estimators"] == before["estimators"]


def test_clean_video_check_counts_detections_per_clip(tmp_path, capsys):
    pytest.importorskip("torch", reason="evaluate imports the degradation library (torch)")
    import cv2

    from camheal.constants import ANOMALIES
    from camheal_train.evaluate import clean_video, main
    from camheald.vision.detector import Detector
    from support import make_photo

    photo = cv2.cvtColor(make_photo(3), cv2.COLOR_RGB2BGR)
    clips = {"clean.avi": photo, "dark.avi": (photo * 0.08).astype(np.uint8)}
    for name, frame in clips.items():
        out = cv2.VideoWriter(str(tmp_path / name), cv2.VideoWriter_fourcc(*"MJPG"), 10,
                              (frame.shape[1], frame.shape[0]))
        for _ in range(21):
            out.write(frame)
        out.release()
    (tmp_path / "notes.txt").write_text("not a clip")
    lines = clean_video(Detector.load(), tmp_path)
    rows = {r.split(" | ")[0][2:]: r.strip(" |").split(" | ") for r in lines[2:]}
    assert list(rows) == ["clean.avi", "dark.avi"]
    assert all(r[1] == "3" for r in rows.values())  # frames 0, 10 and 20
    under = 2 + ANOMALIES.index("underexposed")
    assert float(rows["dark.avi"][under]) == 1.0 and float(rows["dark.avi"][-1]) == 1.0
    assert float(rows["clean.avi"][under]) == 0.0
    assert main(["--clean-video", str(tmp_path)]) == 0
    assert "| dark.avi | 3 |" in capsys.readouterr().out
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SystemExit, match="no video clips"):
        main(["--clean-video", str(empty)])
    with pytest.raises(SystemExit, match="not a folder"):
        main(["--clean-video", str(tmp_path / "nope")])
    (empty / "broken.avi").write_bytes(b"not a video")
    with pytest.raises(SystemExit, match="broken.avi: not a readable video"):
        main(["--clean-video", str(empty)])
