"""Build a TensorRT FP16 engine from the detector ONNX, for Jetson (cached per TRT + GPU).

    python -m camheal_train.tensorrt_build --onnx models/weights/camheal_detector.onnx \
        --cache-dir /var/cache/camheal/engines

The engine file name is ``cache_key(...)`` + ".engine": a hash of the TensorRT version, the
GPU name and compute capability, the ONNX file's SHA-256 and the build options, so an engine
is never reused across TensorRT upgrades, GPUs or models. Needs ``tensorrt`` and ``pycuda``
(imported lazily; a clear error says what is missing).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

logger = logging.getLogger(__name__)
ENGINE_FORMAT = 1


class TensorRTUnavailable(RuntimeError):
    """TensorRT or a CUDA GPU is not available on this machine."""


def model_hash(onnx_path: str | os.PathLike) -> str:
    """SHA-256 (hex) of an ONNX file's bytes."""
    h = hashlib.sha256()
    with open(onnx_path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def cache_key(trt_version: str, gpu_name: str, compute_capability: str, onnx_sha256: str,
              fp16: bool = True, max_batch: int = 1) -> str:
    """Stable engine-cache key (24 hex digits) for one TensorRT/GPU/model/options combination."""
    fields = {"format": ENGINE_FORMAT, "trt": trt_version.strip(),
              "gpu": " ".join(gpu_name.split()), "sm": compute_capability.strip(),
              "onnx": onnx_sha256.lower(), "fp16": bool(fp16), "max_batch": int(max_batch)}
    blob = json.dumps(fields, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:24]


def _import_trt():
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
    except Exception as e:  # pycuda raises its own errors without a GPU
        raise TensorRTUnavailable(f"no usable CUDA GPU ({e})") from None
    return trt, cuda


def gpu_identity() -> tuple[str, str]:
    """(GPU name, compute capability "major.minor") of CUDA device 0."""
    _, cuda = _import_trt()
    dev = cuda.Device(0)
    major, minor = dev.compute_capability()
    return dev.name(), f"{major}.{minor}"


def build_engine(onnx_path: str | os.PathLike, cache_dir: str | os.PathLike, fp16: bool = True,
                 max_batch: int = 1, workspace_mb: int = 512) -> Path:
    """Build (or find in the cache) the serialized engine for ``onnx_path``; returns its path."""
    trt, _ = _import_trt()
    name, sm = gpu_identity()
    key = cache_key(trt.__version__, name, sm, model_hash(onnx_path), fp16, max_batch)
    out = Path(cache_dir) / f"{key}.engine"
    if out.is_file() and out.stat().st_size > 0:
        logger.info("engine cache hit: %s", out)
        return out
    trt_logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(trt_logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH))
    parser = trt.OnnxParser(network, trt_logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errs = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT cannot parse {onnx_path}: {errs}")
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
        raise RuntimeError("TensorRT engine build failed (see the log above)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_bytes(bytes(engine))
    os.replace(tmp, out)
    logger.info("built %s (TensorRT %s, %s sm_%s, fp16=%s)", out, trt.__version__, name, sm, fp16)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point."""
    ap = argparse.ArgumentParser(prog="python -m camheal_train.tensorrt_build", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--onnx", required=True)
    ap.add_argument("--cache-dir", required=True)
    ap.add_argument("--fp32", action="store_true", help="do not enable FP16")
    ap.add_argument("--max-batch", type=int, default=1)
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        print(build_engine(a.onnx, a.cache_dir, not a.fp32, a.max_batch))
    except TensorRTUnavailable as e:
        print(f"camheal_train.tensorrt_build: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
