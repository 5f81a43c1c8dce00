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
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

logger = logging.getLogger(__name__)
ENGINE_FORMAT = 1


# One implementation for the daemon (runtime engine cache) and this script.
from camheald.inference.tensorrt import (  # noqa: E402
    TensorRTUnavailable,
    cache_key,
    gpu_identity,
)
from camheald.inference.tensorrt import build_engine as _build_engine  # noqa: E402
from camheald.inference.tensorrt import model_hash as _model_hash  # noqa: E402

__all__ = ["TensorRTUnavailable", "build_engine", "cache_key", "gpu_identity", "model_hash"]


def model_hash(onnx_path: str | os.PathLike) -> str:
    """SHA-256 (hex) of an ONNX file's bytes."""
    return _model_hash(Path(onnx_path).read_bytes())


def build_engine(onnx_path: str | os.PathLike, cache_dir: str | os.PathLike, fp16: bool = True,
                 max_batch: int = 1, workspace_mb: int = 512) -> Path:
    """Build (or find in the cache) the serialized engine for ``onnx_path``; returns its path."""
    return _build_engine(Path(onnx_path).read_bytes(), cache_dir, fp16, max_batch,
                         workspace_mb)


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
