"""The TensorRT engine path around TensorRT itself: cache, unwritable cache, failed builds.

TensorRT, pycuda and a GPU cannot exist here, so ``import_trt`` (the module's one door to
them) hands out a stand-in that records the calls and returns canned results. What this
verifies is camheal's control flow (cache hit/miss, the in-memory engine when the cache
cannot be written, ``auto`` falling back to ONNX Runtime); whether the real TensorRT and pycuda
behave like the stand-in is only checked on a Jetson.
"""

from __future__ import annotations

import logging
import types

import numpy as np
import pytest

from camheald.inference import backends
from camheald.inference import tensorrt as trt_mod
from camheald.vision.detector import shipped_weights

ENGINE = b"serialized-engine"


class FakeTensorRT:
    """What camheald calls of ``tensorrt`` and ``pycuda.driver``, with canned results."""

    __version__ = "10.3.0"

    def __init__(self, build=ENGINE, parse_ok=True):
        self.build = build  # bytes, None (TensorRT's "build failed") or an exception to raise
        self.parse_ok = parse_ok
        self.builds = 0
        self.runs = 0
        fake = self
        ns = types.SimpleNamespace
        self.Logger = type("Logger", (), {"WARNING": 2, "__init__": lambda s, level: None})
        self.NetworkDefinitionCreationFlag = ns()  # TensorRT 10: explicit batch implied
        self.MemoryPoolType = ns(WORKSPACE=0)
        self.BuilderFlag = ns(FP16=0)
        self.TensorIOMode = ns(INPUT=0, OUTPUT=1)
        self.nptype = lambda dtype: np.float32
        tensors = {"x": ((1, 3, 4, 4), 0), "y": ((1, 2), 1)}
        network = ns(num_inputs=1, get_input=lambda i: ns(name="x", shape=(-1, 3, 4, 4)))
        context = ns(set_tensor_address=lambda n, a: None, set_input_shape=lambda n, s: None,
                     execute_async_v3=lambda handle: fake._ran())
        engine = ns(num_io_tensors=2, get_tensor_name=lambda i: list(tensors)[i],
                    get_tensor_shape=lambda n: tensors[n][0], get_tensor_dtype=lambda n: 0,
                    get_tensor_mode=lambda n: tensors[n][1],
                    create_execution_context=lambda: context)

        def build_serialized_network(net, config):
            fake.builds += 1
            if isinstance(fake.build, Exception):
                raise fake.build
            return fake.build

        self.Builder = lambda lg: ns(
            create_network=lambda flags: network, platform_has_fast_fp16=True,
            create_builder_config=lambda: ns(set_memory_pool_limit=lambda *a: None,
                                             set_flag=lambda f: None,
                                             add_optimization_profile=lambda p: None),
            create_optimization_profile=lambda: ns(set_shape=lambda *a: None),
            build_serialized_network=build_serialized_network)
        self.OnnxParser = lambda net, lg: ns(parse=lambda m: fake.parse_ok, num_errors=1,
                                             get_error=lambda i: "node 3: unsupported op")
        self.Runtime = lambda lg: ns(
            deserialize_cuda_engine=lambda data: engine if data == ENGINE else None)
        # pycuda.driver
        self.cuda = ns(Device=lambda i: ns(name=lambda: "Orin", compute_capability=lambda: (8, 7)),
                       Stream=lambda: ns(handle=0, synchronize=lambda: None),
                       pagelocked_empty=np.zeros, mem_alloc=lambda n: 0x1000,
                       memcpy_htod_async=lambda d, h, s: None,
                       memcpy_dtoh_async=lambda h, d, s: None)

    def _ran(self):
        self.runs += 1


@pytest.fixture
def fake_trt(monkeypatch):
    fake = FakeTensorRT()
    monkeypatch.setattr(trt_mod, "import_trt", lambda: (fake, fake.cuda))
    return fake


@pytest.fixture
def model():
    return shipped_weights().read_bytes()


def _warnings(caplog):
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_engine_is_built_once_then_read_from_the_cache(fake_trt, model, tmp_path, caplog):
    cache = tmp_path / "engines"
    b = backends.create(shipped_weights(), model, "auto", cache_dir=cache)
    assert b.name.startswith("tensorrt:") and fake_trt.builds == 1 and fake_trt.runs == 1
    files = list(cache.iterdir())
    assert [f.read_bytes() for f in files] == [ENGINE] and files[0].suffix == ".engine"
    again = backends.create(shipped_weights(), model, "auto", cache_dir=cache)
    assert again.name == b.name and fake_trt.builds == 1
    assert not _warnings(caplog)
    out = b.run(["y"], {"x": np.ones((1, 3, 4, 4), np.float32)})
    assert out[0].shape == (1, 2)


def test_unwritable_cache_uses_the_engine_built_in_memory(fake_trt, model, tmp_path, caplog):
    # a file where the cache folder should be: mkdir fails for root too (as EROFS would)
    (tmp_path / "ro").write_text("")
    cache = tmp_path / "ro" / "engines"
    caplog.set_level(logging.INFO, logger="camheald.inference")
    b = backends.create(shipped_weights(), model, "auto", cache_dir=cache)
    assert b.name.startswith("tensorrt:") and fake_trt.builds == 1
    warned = _warnings(caplog)
    assert len(warned) == 1 and "not writable" in warned[0] and str(cache) in warned[0]
    assert "\n" not in warned[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ro"]  # no stray temporary file


def test_failed_write_leaves_no_temporary_file(fake_trt, model, tmp_path, monkeypatch):
    cache = tmp_path / "engines"

    def replace_fails(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(trt_mod.os, "replace", replace_fails)
    engine, path = trt_mod.load_engine(model, cache)
    assert engine == ENGINE and path.parent == cache
    assert list(cache.iterdir()) == []


@pytest.mark.parametrize("build, parse_ok, needle", [
    (None, True, "engine build failed"),
    (RuntimeError("[TRT] out of memory\nstack..."), True, "out of memory"),
    (ENGINE, False, "cannot parse the model: node 3"),
    (b"corrupt", True, "cannot deserialize"),
])
def test_auto_falls_back_to_onnxruntime_when_the_engine_fails(fake_trt, model, tmp_path,
                                                                caplog, build, parse_ok, needle):
    fake_trt.build, fake_trt.parse_ok = build, parse_ok
    b = backends.create(shipped_weights(), model, "auto", cache_dir=tmp_path)
    assert b.name.startswith("onnxruntime:")
    warned = _warnings(caplog)
    assert len(warned) == 1 and needle in warned[0] and "using ONNX Runtime" in warned[0]
    assert "\n" not in warned[0]
    # asked for by name, the same failure is an error of one line
    with pytest.raises(backends.BackendError, match=needle) as err:
        backends.create(shipped_weights(), model, "tensorrt", cache_dir=tmp_path)
    assert "\n" not in str(err.value)
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]  # nothing bad was cached


def test_an_unusable_cached_engine_is_built_again(fake_trt, model, tmp_path, caplog):
    # (a file of a TensorRT that crashed while writing, or a driver update that left the
    # cache key the same): not a fallback to ONNX Runtime on every start from then on
    out = trt_mod.engine_file(model, tmp_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(b"corrupt")
    b = backends.create(shipped_weights(), model, "auto", cache_dir=tmp_path)
    assert b.name.startswith("tensorrt:") and fake_trt.builds == 1
    assert out.read_bytes() == ENGINE
    warned = _warnings(caplog)
    assert len(warned) == 1 and "unusable" in warned[0] and "building it again" in warned[0]


def test_build_engine_command_names_an_unwritable_cache(fake_trt, tmp_path, capsys):
    (tmp_path / "ro").write_text("")
    args = types.SimpleNamespace(model=None, cache_dir=str(tmp_path / "ro" / "engines"),
                                 fp32=False)
    assert trt_mod.build_engine_main(args) == 1
    err = capsys.readouterr().err
    assert err.startswith("camheal: error: engine cache ") and err.count("\n") == 1
    args.cache_dir = str(tmp_path / "engines")
    assert trt_mod.build_engine_main(args) == 0
    assert capsys.readouterr().out.strip().endswith(".engine")
