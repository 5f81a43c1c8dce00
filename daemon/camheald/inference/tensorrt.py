"""TensorRT engines for Jetson: build from the shipped ONNX (FP16), cache, run with pycuda.

Verified here (no GPU): the cache key, the lazy imports and their error messages, and, with a
stand-in for the ``tensorrt`` and ``pycuda`` modules (tests/unit/test_tensorrt_engine.py), the
control flow around them: cache hit and miss, an unwritable cache (the engine built in memory
is used, one warning), a failed build (an EngineError, on which ``auto`` falls back to ONNX
Runtime). NOT run on real hardware in this project yet: the calls into TensorRT and pycuda
themselves (the engine build, deserialization, buffers, execution) are written against the
TensorRT >= 8.5 tensor API (``set_tensor_address`` + ``execute_async_v3``, JetPack 6 ships
8.6/10.x) and pycuda's page-locked buffers; the stand-in only mimics those calls, so treat
them as unverified until a Jetson run is recorded in docs/BENCHMARKS.md.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)
ENGINE_FORMAT = 1
DEFAULT_CACHE = Path("/var/cache/camheal/engines")


class TensorRTUnavailable(RuntimeError):
    """TensorRT, pycuda or a CUDA GPU is not available on this machine."""


class EngineError(RuntimeError):
    """TensorRT is here but cannot build or load an engine for this model."""


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


def engine_file(model: bytes, cache_dir: str | os.PathLike = DEFAULT_CACHE, fp16: bool = True,
                max_batch: int = 1) -> Path:
    """Where the engine of this model, for this TensorRT and GPU, is cached."""
    trt, _ = import_trt()
    name, sm = gpu_identity()
    key = cache_key(trt.__version__, name, sm, model_hash(model), fp16, max_batch)
    return Path(cache_dir) / f"{key}.engine"


def serialize_engine(model: bytes, fp16: bool = True, max_batch: int = 1,
                     workspace_mb: int = 512) -> bytes:
    """Build the serialized engine of an ONNX model (minutes on an Orin).

    Raises:
        EngineError: TensorRT cannot parse the model or the build fails.
    """
    trt, _ = import_trt()
    t0 = time.monotonic()
    trt_logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(trt_logger)
    flags = 0
    if hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH"):  # implicit in TRT 10
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, trt_logger)
    if not parser.parse(model):
        errs = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineError(f"TensorRT cannot parse the model: {errs}")
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
        raise EngineError("TensorRT engine build failed (see the log above)")
    logger.info("built a TensorRT %s engine in %.0f s (fp16=%s)", trt.__version__,
                time.monotonic() - t0, fp16)
    return bytes(engine)


def store_engine(out: Path, engine: bytes) -> None:
    """Write a serialized engine to the cache atomically (a reader never sees half a file).

    Raises:
        OSError: the cache cannot be written (read-only, permissions, disk full).
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    # unique per thread: cameras loading the same model may build it at the same time
    tmp = out.with_name(f".{out.name}.{os.getpid()}.{threading.get_native_id()}.tmp")
    try:
        with open(tmp, "xb") as f:  # mode 0666 & ~umask: root's build-engine stays readable
            f.write(engine)
        os.replace(tmp, out)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise


def build_engine(model: bytes, cache_dir: str | os.PathLike = DEFAULT_CACHE, fp16: bool = True,
                 max_batch: int = 1, workspace_mb: int = 512) -> Path:
    """Build (or find in the cache) the engine of an ONNX model; returns its cached file.

    Raises:
        OSError: the cache cannot be written.
        EngineError: see serialize_engine.
    """
    out = engine_file(model, cache_dir, fp16, max_batch)
    if out.is_file() and out.stat().st_size > 0:
        logger.info("engine cache hit: %s", out)
        return out
    store_engine(out, serialize_engine(model, fp16, max_batch, workspace_mb))
    return out


def load_engine(model: bytes, cache_dir: str | os.PathLike = DEFAULT_CACHE, fp16: bool = True,
                max_batch: int = 1, workspace_mb: int = 512) -> tuple[bytes, Path]:
    """(serialized engine, its cache file): read from the cache, else built and cached.

    An engine built but not written (the cache is not writable) is still returned, with one
    warning: it runs from memory and is built again at the next start.
    """
    out = engine_file(model, cache_dir, fp16, max_batch)
    if out.is_file() and out.stat().st_size > 0:
        logger.info("engine cache hit: %s", out)
        return out.read_bytes(), out
    engine = serialize_engine(model, fp16, max_batch, workspace_mb)
    cache_engine(out, engine)
    return engine, out


def cache_engine(out: Path, engine: bytes) -> None:
    """Write a built engine to its cache file; one warning (not an error) when it cannot be."""
    try:
        store_engine(out, engine)
    except OSError as exc:
        logger.warning("engine cache %s not writable (%s): using the engine built in memory, "
                       "built again at every start", out.parent, exc.strerror or exc)
    else:
        logger.info("engine cached: %s", out)


class TensorRTBackend:
    """Runs a serialized engine: page-locked host buffers, one CUDA stream, async copies."""

    def __init__(self, engine: bytes, label: str) -> None:
        trt, cuda = import_trt()
        self._cuda = cuda
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self._engine = runtime.deserialize_cuda_engine(engine)
        if self._engine is None:
            raise EngineError(f"cannot deserialize the engine {label}")
        self._context = self._engine.create_execution_context()
        self._stream = cuda.Stream()
        self._host: dict[str, np.ndarray] = {}
        self._device: dict[str, object] = {}
        self._inputs: list[str] = []
        self._outputs: list[str] = []
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
            else:
                self._outputs.append(tname)
        self.name = f"tensorrt:{Path(label).stem}"

    @classmethod
    def from_onnx(cls, model_path: Path, model: bytes,
                  cache_dir: str | os.PathLike | None = None) -> TensorRTBackend:
        """The engine of ``model`` (cached or built), loaded and run once on zeros.

        Raises:
            TensorRTUnavailable: no TensorRT, pycuda or GPU here.
            EngineError: the engine cannot be built or loaded.
            Exception: whatever TensorRT or pycuda raise at run time (the caller falls back).
        """
        import_trt()  # fail fast, before any build
        out = engine_file(model, cache_dir or DEFAULT_CACHE)
        if out.is_file() and out.stat().st_size > 0:
            try:
                backend = cls._started(out.read_bytes(), str(out))
            except Exception as exc:  # noqa: BLE001 - whatever TensorRT says: build it again
                logger.warning("engine cache %s unusable (%s): building it again", out, exc)
                out.unlink(missing_ok=True)
            else:
                logger.info("engine cache hit: %s", out)
                return backend
        engine = serialize_engine(model)
        backend = cls._started(engine, str(out))  # cached only once it has run
        cache_engine(out, engine)
        return backend

    @classmethod
    def _started(cls, engine: bytes, label: str) -> TensorRTBackend:
        """Loaded and run once on zeros, so that a failing execution path is a load failure
        (which `auto` survives), not a failure of the first frame."""
        backend = cls(engine, label)
        backend.run(backend._outputs,
                    {n: np.zeros_like(backend._host[n]) for n in backend._inputs})
        return backend

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
    except OSError as exc:
        print(f"camheal: error: {model}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    try:
        print(build_engine(data, args.cache_dir, fp16=not args.fp32))
    except OSError as exc:
        print(f"camheal: error: engine cache {args.cache_dir}: {exc.strerror or exc}",
              file=sys.stderr)
        return 1
    except TensorRTUnavailable as exc:
        print(f"camheal: error: {exc}", file=sys.stderr)
        return 2
    except EngineError as exc:
        print(f"camheal: error: {exc}", file=sys.stderr)
        return 1
    return 0
