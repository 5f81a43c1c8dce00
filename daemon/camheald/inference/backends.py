"""The backend interface and its selection (`auto`, `onnxruntime`, `tensorrt`, `torch`).

A backend runs the detector network: ``run(output_names, feeds) -> list[np.ndarray]``, the
same call as an ONNX Runtime session, so the detector does not know which one runs.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Protocol

import numpy as np

logger = logging.getLogger(__name__)

BACKENDS = ("auto", "onnxruntime", "tensorrt", "torch")


class BackendError(Exception):
    """A backend cannot run here; the message says why in one line."""


class Backend(Protocol):
    """Runs one network; ``name`` says which backend and device (shown in Stats and logs)."""

    name: str

    def run(self, output_names: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        ...


class OrtBackend:
    """ONNX Runtime, CPU by default; CUDA or TensorRT execution providers when present."""

    def __init__(self, model: bytes, threads: int = 1, providers: list[str] | None = None
                 ) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(1, int(threads))
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        providers = providers or ["CPUExecutionProvider"]
        # From bytes on purpose: a model pointing at external data cannot resolve it.
        self._session = ort.InferenceSession(model, opts, providers=providers)
        used = self._session.get_providers()
        self.name = "onnxruntime:" + used[0].replace("ExecutionProvider", "").lower()
        self.inputs = [i.name for i in self._session.get_inputs()]
        self.outputs = [o.name for o in self._session.get_outputs()]
        self.metadata = dict(self._session.get_modelmeta().custom_metadata_map)

    def run(self, output_names: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self._session.run(output_names, feeds)


def ort_gpu_providers() -> list[str]:
    """ONNX Runtime's GPU execution providers available here (fastest first)."""
    try:
        import onnxruntime as ort
    except ImportError:
        return []
    have = ort.get_available_providers()
    return [p for p in ("TensorrtExecutionProvider", "CUDAExecutionProvider") if p in have]


# A TensorProto's external_data entry is a StringStringEntryProto whose key is "location":
# field 1 (tag 0x0a), length 8, b"location", then the value's tag (0x12). A model that carries
# these bytes points at files beside it; ONNX Runtime would read them relative to the
# daemon's working directory, so such models are refused before they reach any runtime.
_EXTERNAL_DATA_MARK = b"\x0a\x08location\x12"


def uses_external_data(model: bytes) -> bool:
    """True when the serialized ONNX model refers to external tensor data files."""
    return _EXTERNAL_DATA_MARK in model


def create(model_path: Path, model: bytes, backend: str = "auto", threads: int = 1,
           cache_dir: str | os.PathLike | None = None) -> Backend:
    """The backend called ``backend`` for this model; ``auto`` picks the fastest available.

    ``auto``: a TensorRT engine (Jetson: pycuda + TensorRT + a GPU), else ONNX Runtime with a
    GPU execution provider, else ONNX Runtime on the CPU. It logs what it picked and why: an
    engine that cannot be built, loaded or run is one warning line, then ONNX Runtime.

    Raises:
        BackendError: an explicitly requested backend cannot run here.
    """
    if backend not in BACKENDS:
        raise BackendError(f"unknown backend {backend!r} (use one of {', '.join(BACKENDS)})")
    if uses_external_data(model):
        raise ValueError("models with ONNX external data are not supported")
    if backend == "torch":
        raise BackendError("the torch backend is for development only and is not part of the "
                           "runtime (the daemon never needs PyTorch): compare backends with "
                           "`python -m benchmarks.run` or the tests in tests/models")
    if backend in ("tensorrt", "auto"):
        from camheald.inference import tensorrt as trt_backend

        try:
            return trt_backend.TensorRTBackend.from_onnx(model_path, model, cache_dir)
        except trt_backend.TensorRTUnavailable as exc:
            if backend == "tensorrt":
                raise BackendError(str(exc)) from None
            logger.info("backend auto: no TensorRT (%s)", str(exc))  # (no traceback pinned)
        except Exception as exc:  # noqa: BLE001 - TensorRT and pycuda raise many types
            # TensorRT is here but its engine is not usable: ONNX Runtime still runs the model
            if backend == "tensorrt":
                raise BackendError(f"TensorRT engine unusable: {_one_line(exc)}") from None
            logger.warning("backend auto: TensorRT engine unusable (%s); using ONNX Runtime",
                           _one_line(exc))
    providers = ort_gpu_providers() + ["CPUExecutionProvider"]
    if backend == "auto" and len(providers) > 1:
        try:
            return OrtBackend(model, threads, providers)
        except Exception as exc:  # noqa: BLE001 - a broken GPU provider falls back to CPU
            logger.warning("backend auto: ONNX Runtime GPU providers failed (%s); using CPU",
                           _one_line(exc))
    return OrtBackend(model, threads)


def _one_line(exc: BaseException) -> str:
    """The first line of an exception's message, or its type name when it has none."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
