from __future__ import annotations

import threading

import numpy as np
import pytest

from camheal.constants import ANOMALIES
from camheald.vision import spec
from camheald.vision.correct import Correction, apply_global
from camheald.vision.detector import Detector, ModelError, shipped_weights
from camheald.vision.types import Analysis


@pytest.fixture(scope="module")
def detector() -> Detector:
    return Detector.load()


def test_shipped_weights_are_small_single_file():
    p = shipped_weights()
    assert p.is_file()
    assert p.stat().st_size <= 10 * 1024 * 1024


@pytest.mark.parametrize("shape", [(16, 16), (31, 500), (240, 320), (720, 1280)])
def test_analyze_any_size(detector, shape):
    rng = np.random.default_rng(0)
    a = detector.analyze(rng.integers(0, 256, (*shape, 3), dtype=np.uint8))
    assert isinstance(a, Analysis)
    assert list(a.scores) == list(ANOMALIES)
    assert all(0.0 <= v <= 1.0 for v in a.scores.values())
    assert set(a.detected) <= set(ANOMALIES)
    assert a.mask is not None and a.mask.shape == (spec.MASK, spec.MASK)
    assert a.mask.dtype == np.float32
    assert a.model.startswith("camheal_detector.onnx@")
    assert all(f"severity.{n}" in a.extra for n in ANOMALIES)


def test_detected_follow_thresholds(detector, photo):
    a = detector.analyze(photo)
    assert a.detected == tuple(n for n in ANOMALIES if a.scores[n] >= detector.thresholds[n])
    if a.correction is not None:
        assert isinstance(a.correction, Correction)
        assert set(a.actions) <= {"tone_curve", "color_matrix"}


def test_dark_frame_is_underexposed_and_gets_brighter(detector, photo):
    dark = (photo.astype(np.float32) * 0.07).astype(np.uint8)
    a = detector.analyze(dark)
    assert "underexposed" in a.detected
    assert a.correction is not None and "tone_curve" in a.actions
    fixed = apply_global(dark, a.correction)
    assert fixed.mean() > 2 * dark.mean()


def test_rejects_bad_frames(detector):
    with pytest.raises(ValueError):
        detector.analyze(np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ValueError):
        detector.analyze(np.zeros((32, 32, 4), np.uint8))


def test_one_caller_at_a_time_from_threads(detector, photo):
    ref = detector.analyze(photo).scores
    results = []

    def work():
        results.append(detector.analyze(photo).scores)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r == pytest.approx(ref, abs=1e-6) for r in results)


def test_missing_file(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        Detector.load(tmp_path / "nope.onnx")


@pytest.mark.parametrize("content", [b"", b"this is not onnx at all" * 10])
def test_corrupt_file(tmp_path, content):
    p = tmp_path / "bad.onnx"
    p.write_bytes(content)
    with pytest.raises(ModelError) as e:
        Detector.load(p)
    assert "\n" not in str(e.value)


def test_truncated_model(tmp_path):
    p = tmp_path / "cut.onnx"
    p.write_bytes(shipped_weights().read_bytes()[:5000])
    with pytest.raises(ModelError):
        Detector.load(p)


def test_external_data_refused(tmp_path):
    onnx = pytest.importorskip("onnx", reason="writing an external-data model needs onnx")
    model = onnx.load(str(shipped_weights()))
    p = tmp_path / "ext.onnx"
    onnx.save_model(model, str(p), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="ext.onnx.data", size_threshold=0)
    with pytest.raises(ModelError, match="external data"):
        Detector.load(p)
