"""Inference backends: selection, clear errors where a backend cannot run, parity."""

from __future__ import annotations

import numpy as np
import pytest

from camheald.inference import backends
from camheald.inference import tensorrt as trt
from camheald.vision.detector import Detector, shipped_weights
from support import run_cli


def _has_tensorrt() -> bool:
    try:
        trt.import_trt()
    except trt.TensorRTUnavailable:
        return False
    return True


def test_auto_picks_what_runs_here_and_says_so():
    data = shipped_weights().read_bytes()
    b = backends.create(shipped_weights(), data, "auto", 1)
    expected = "tensorrt" if _has_tensorrt() else "onnxruntime"
    assert b.name.startswith(expected)


@pytest.mark.parametrize("name, needle", [
    ("torch", "development only"),
    ("openvino", "unknown backend"),
])
def test_unavailable_backends_fail_with_one_line(name, needle):
    with pytest.raises(backends.BackendError, match=needle) as err:
        backends.create(shipped_weights(), b"", name)
    assert "\n" not in str(err.value)


@pytest.mark.skipif(_has_tensorrt(), reason="TensorRT is installed here")
def test_tensorrt_missing_is_named():
    with pytest.raises(backends.BackendError, match="TensorRT is not installed"):
        backends.create(shipped_weights(), b"", "tensorrt")


def test_every_available_backend_gives_the_same_detections():
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (180, 320, 3), np.uint8),
              (rng.integers(0, 255, (240, 320, 3), np.uint8) * 0.2).astype(np.uint8)]
    names = ["onnxruntime", "auto"] + (["tensorrt"] if _has_tensorrt() else [])
    results = {}
    for name in names:
        det = Detector.load(None, backend=name)
        results[name] = [det.analyze(f) for f in frames]
    ref = results["onnxruntime"]
    for name, got in results.items():
        for a, b in zip(ref, got, strict=True):
            assert a.detected == b.detected, name
            for k in a.scores:
                assert abs(a.scores[k] - b.scores[k]) < 0.02, (name, k)


def test_engine_cache_key_is_the_one_the_build_script_uses():
    key = trt.cache_key("10.3.0", "Orin", "8.7", "ab" * 32)
    assert len(key) == 24 and key != trt.cache_key("10.3.0", "Orin", "8.7", "cd" * 32)


def test_build_engine_command_without_tensorrt(bus_env, tmp_path):
    if _has_tensorrt():
        pytest.skip("TensorRT is installed here")
    res = run_cli("build-engine", "--cache-dir", str(tmp_path), env=bus_env)
    assert res.returncode == 2 and "TensorRT is not installed" in res.stderr
    assert res.stderr.count("\n") == 1
