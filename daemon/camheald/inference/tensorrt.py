"""TensorRT engines for Jetson: build from the shipped ONNX (FP16), cache, run with pycuda.

Verified here (no GPU): the cache key, the lazy imports and their error messages. NOT run
on real hardware in this project yet: the engine build and the pycuda execution path are
written against the TensorRT >= 8.5 tensor API (``set_tensor_address`` +
``execute_async_v3``, JetPack 6 ships 8.6/10.x) and pycuda's page-locked buffers; treat them
as unverified until a Jetson run is recorded in docs/BENCHMARKS.md.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)
ENGINE_FORMAT = 1
DEFAULT_CACHE = Path("/var/cache/camheal/engines")


class TensorRTUnavailable(RuntimeError):
    """TensorRT, pycuda or a CUDA GPU is not available on this machine."""


def model_hash(data: bytes) -> str:
    """SHA-256 (hex) of an ONNX model's bytes."""
    return hashlib.sha256(data).hexdigest()


def cache_key(trt_version: str, gpu_name: str, compute_capability: str, onnx_sha256: str,
              fp16: bool = True, max_batch: int = 1) -> str:
    """Stable engine-cache key (24 hex digits) for one TensorRT/GPU/model/options combination.

    An engine is never reused across TensorRT upgrades, GPUs, models or build options.
    """
    fields = {"format": ENGINE_FORMAT, "trt": trt_version.strip(),
              "gpu": " ".join(gpu_name.split()), "sm": compute_capability.strip(),
              "onnx": onnx_sha256.lower(), "fp16": bool(fp16), "max_batch": int(max_batch)}
    blob = json.dumps(fields, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:24]


def import_trt():
    """(tensorrt, pycuda.driver) or TensorRTUnavailable naming what is missing."""
    try:
        import tensorrt as trt
    except ImportError:
        raise TensorRTUnavailable("TensorRT is not installed (on Jetson it comes with JetPack: "
                                  "python3-libnvinfer)") from None
    try:
        import pycuda.autoinit  # noqa: F401  (creates the CUDA context)
        import pycuda.driver as cuda
    except ImportError:
        raise TensorRTUnavailable("pycuda is not installed (pip install camheal[jetson])"
                                  ) from None
    except Exception as exc:  # noqa: BLE001 - pycuda raises its own errors without a GPU
        raise TensorRTUnavailable(f"no usable CUDA GPU ({exc})") from None
    return trt, cuda


def gpu_identity() -> tuple[str, str]:
    """(GPU name, compute capability "major.minor") of CUDA device 0."""
    _, cuda = import_trt()
    dev = cuda.Device(0)
    major, minor = dev.compute_capability()
    return dev.name(), f"{major}.{minor}"


def build_engine(model: bytes, cache_dir: str | os.PathLike = DEFAULT_CACHE, fp16: bool = True,
                 max_batch: int = 1, workspace_mb: int = 512) -> Path:
    """Build (or find in the cache) the serialized engine of an ONNX model; returns its path."""
    trt, _ = import_trt()
    name, sm = gpu_identity()
    key = cache_key(trt.__version__, name, sm, model_hash(model), fp16, max_batch)
    out = Path(cache_dir) / f"{key}.engine"
    if out.is_file() and out.stat().st_size > 0:
        logger.info("engine cache hit: %s", out)
        return out
    trt_logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(trt_logger)
    flags = 0
    if hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH"):  # implicit in TRT 10
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, trt_logger)
    if not parser.parse(model):
        errs = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise TensorRTUnavailable(f"TensorRT cannot parse the model: {errs}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    if fp16 and builder.platform_has_fast_fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        inp = network.get_input(i)
        shape = tuple(inp.shape)[1:]
        profile.set_shape(inp.name, (1, *shape), (1, *shape), (max_batch, *shape))
    config.add_optimization_profile(profile)
    engine = builder.build_serialized_network(network, config)
    if engine is None:
        raise TensorRTUnavailable("TensorRT engine build failed (see the log above)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_bytes(bytes(engine))
    os.replace(tmp, out)
    logger.info("built %s (TensorRT %s, %s sm_%s, fp16=%s)", out, trt.__version__, name, sm, fp16)
    return out


class TensorRTBackend:
    """Runs a cached engine: page-locked host buffers, one CUDA stream, async copies."""

    def __init__(self, engine_path: Path) -> None:
        trt, cuda = import_trt()
        self._cuda = cuda
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self._engine = runtime.deserialize_cuda_engine(engine_path.read_bytes())
        if self._engine is None:
            raise TensorRTUnavailable(f"{engine_path}: cannot deserialize the engine")
        self._context = self._engine.create_execution_context()
        self._stream = cuda.Stream()
        self._host: dict[str, np.ndarray] = {}
        self._device: dict[str, object] = {}
        self._inputs: list[str] = []
        for i in range(self._engine.num_io_tensors):
            tname = self._engine.get_tensor_name(i)
            shape = tuple(max(1, d) for d in self._engine.get_tensor_shape(tname))
            dtype = np.dtype(trt.nptype(self._engine.get_tensor_dtype(tname)))
            self._host[tname] = cuda.pagelocked_empty(shape, dtype)
            self._device[tname] = cuda.mem_alloc(self._host[tname].nbytes)
            self._context.set_tensor_address(tname, int(self._device[tname]))
            if self._engine.get_tensor_mode(tname) == trt.TensorIOMode.INPUT:
                self._inputs.append(tname)
                self._context.set_input_shape(tname, shape)
        self.name = f"tensorrt:{engine_path.stem}"

    @classmethod
    def from_onnx(cls, model_path: Path, model: bytes,
                  cache_dir: str | os.PathLike | None = None) -> TensorRTBackend:
        import_trt()  # fail fast, before any build
        return cls(build_engine(model, cache_dir or DEFAULT_CACHE))

    def run(self, output_names: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        cuda = self._cuda
        for tname in self._inputs:
            np.copyto(self._host[tname], feeds[tname], casting="same_kind")
            cuda.memcpy_htod_async(self._device[tname], self._host[tname], self._stream)
        self._context.execute_async_v3(self._stream.handle)
        for tname in output_names:
            cuda.memcpy_dtoh_async(self._host[tname], self._device[tname], self._stream)
        self._stream.synchronize()
        return [self._host[n].copy() for n in output_names]


def build_engine_main(args) -> int:
    """`camheal build-engine`: build (or find) the engine; prints its path."""
    import sys

    from camheald.vision.detector import shipped_weights

    model = Path(args.model) if args.model else shipped_weights()
    try:
        data = model.read_bytes()
        print(build_engine(data, args.cache_dir, fp16=not args.fp32))
    except OSError as exc:
        print(f"camheal: error: {model}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except TensorRTUnavailable as exc:
        print(f"camheal: error: {exc}", file=sys.stderr)
        return 2
    return 0
