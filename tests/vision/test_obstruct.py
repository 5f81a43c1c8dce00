"""Obstruction estimator features: the lens-defect segmenter and the detector's mask."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from camheal.constants import ANOMALIES
from camheald.vision import lens, obstruct, spec
from camheald.vision.detector import Detector
from camheald.vision.stacked import TASKS
from support import detailed_photo


@pytest.fixture(scope="module")
def segmenter() -> lens.LensSegmenter:
    return lens.LensSegmenter.load()


def dirty(rgb: np.ndarray, seed: int = 0, n: int = 6) -> np.ndarray:
    """``rgb`` with ``n`` soft dark blobs over it (out-of-focus dirt on the lens)."""
    rng = np.random.default_rng(seed)
    h, w = rgb.shape[:2]
    alpha = np.zeros((h, w), np.float32)
    for _ in range(n):
        c = (int(rng.integers(w // 8, 7 * w // 8)), int(rng.integers(h // 8, 7 * h // 8)))
        cv2.circle(alpha, c, int(rng.integers(h // 20, h // 10)), 0.85, -1)
    alpha = cv2.GaussianBlur(alpha, (0, 0), h / 150)[..., None]
    return np.clip(rgb * (1 - alpha) + 25.0 * alpha, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("value", [0, 128, 255])
def test_features_of_flat_frames_are_finite(segmenter, value):
    thumb = np.full((spec.THUMB, spec.THUMB, 3), value, np.uint8)
    f = obstruct.features(thumb, np.zeros((spec.MASK, spec.MASK), np.float32), segmenter)
    assert f.shape == (obstruct.N_FEATURES,) and f.dtype == np.float32
    assert np.isfinite(f).all()


def test_dark_blobs_raise_the_segmenter_statistics(segmenter):
    det = Detector.load(with_estimators=False)
    clean = detailed_photo(4, 480, 720)
    feats = {}
    for name, rgb in (("clean", clean), ("dirty", dirty(clean))):
        mask = det.run(rgb)["mask"][0, 0]
        feats[name] = obstruct.features(spec.thumbnail(rgb), mask, segmenter)
    c, d = feats["clean"], feats["dirty"]
    assert d[0] > c[0] + 2  # maximum logit
    assert d[3] > c[3] + 2  # mean of the 500 highest
    assert d[5] > max(0.02, 3 * c[5])  # share above 4
    assert d[8] < 0.6 and c[8] == 1.0  # the hot pixels are darker than the frame (none: 1)


def test_an_obstruction_estimator_needs_the_segmenter(tmp_path, monkeypatch):
    from camheald.vision.detector import EstimatorError
    from support import copy_detector

    path = copy_detector(tmp_path)
    monkeypatch.setattr(lens, "_shared", [None])  # as when camheal_lens.onnx failed to load
    with pytest.raises(EstimatorError, match="needs the lens-defect segmenter") as e:
        Detector.load(path)
    assert "\n" not in str(e.value)


def test_the_task_is_detection_only():
    t = TASKS["obstruction"]
    assert t.anomaly == "obstruction" and t.n_params == 0 and t.curves is None
    assert t.n_features == obstruct.N_FEATURES


def test_a_skipped_estimator_leaves_the_networks_score():
    det = Detector.load()
    assert "obstruction" in det.estimators  # shipped
    i = ANOMALIES.index("obstruction")
    rgb = dirty(detailed_photo(5, 360, 480))
    net = float(1 / (1 + np.exp(-det.run(rgb)["logits"][0, i])))
    assert det.estimators_to_run(det.run(rgb)["logits"][0]).count("obstruction") == 1
    skipped = det.analyze(rgb, ("obstruction",))
    assert skipped.scores["obstruction"] == pytest.approx(net, abs=1e-6)
    full = det.analyze(rgb)
    assert full.scores["obstruction"] != pytest.approx(net, abs=1e-3)
    # the other estimators still run
    assert full.scores["noise"] == pytest.approx(skipped.scores["noise"])
    # a skipped anomaly is never detected: its threshold is the estimator's, not the network's
    det.thresholds["obstruction"] = 0.0
    assert "obstruction" in det.analyze(rgb).detected
    assert "obstruction" not in det.analyze(rgb, ("obstruction",)).detected


def test_names_that_are_no_anomaly_are_refused():
    det = Detector.load(with_estimators=False)
    with pytest.raises(ValueError, match="not anomalies: cast"):
        det.analyze(detailed_photo(1, 64, 64), ("cast",))
    with pytest.raises(ValueError, match="not anomalies: contrast"):
        Detector.load(without=("contrast",))
    assert "color_cast" not in Detector.load(without=("color_cast",)).estimators


def test_an_obstruction_estimator_for_another_segmenter_is_refused(tmp_path):
    from camheald.vision.detector import EstimatorError, read_sidecar
    from support import copy_detector

    path = copy_detector(tmp_path)
    name = read_sidecar(path)["estimators"]["obstruction"]
    side = tmp_path / name.replace(".onnx", ".json")
    meta = json.loads(side.read_text())
    assert meta["segmenter"] == lens.shared().name  # the shipped pair matches
    meta["segmenter"] = "camheal_lens.onnx@00000000"
    side.write_text(json.dumps(meta))
    with pytest.raises(EstimatorError, match="another lens-defect segmenter"):
        Detector.load(path)
