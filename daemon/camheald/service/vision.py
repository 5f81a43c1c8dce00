"""The service's view of the models: load the detector if it can, otherwise pass frames through."""

from __future__ import annotations

import logging
import time
from collections.abc import Collection

import numpy as np

from camheald.errors import ConfigError
from camheald.inference.backends import BackendError
from camheald.vision.types import Analysis

logger = logging.getLogger(__name__)


class VisionEngine:
    """Detector + global corrector behind one small interface, safe when the model is missing.

    When the model cannot be loaded (file missing, corrupt, runtime absent), ``error`` says
    why, ``analyze`` returns None and frames pass through uncorrected: the camera keeps
    working and its health reports the problem.
    """

    def __init__(self, model_path: str | None = None, threads: int = 1,
                 backend: str = "onnxruntime", engine_cache: str | None = None,
                 estimators: bool = True, lens: bool = False) -> None:
        self.model_path = model_path
        self.threads = threads
        self.estimators = estimators
        self.use_lens = lens
        self.lens = None  # the lens-defect segmenter (camheald.vision.lens), when loaded
        self.backend = backend
        self.engine_cache = engine_cache
        self.detector = None
        self.error = ""
        self.name = ""
        self._apply = None

    def load(self) -> None:
        """Load and warm up the model (slow: call off the event loop)."""
        t0 = time.monotonic()
        self._load_lens()
        try:
            from camheald.vision.correct import apply_global
            from camheald.vision.detector import Detector

            # a broken estimator costs its own better score (and correction), not the whole
            # model nor the other estimators: it is left out and the health report says why
            broken: list[str] = []
            self.detector = Detector.load(self.model_path, threads=self.threads,
                                          backend=self.backend, cache_dir=self.engine_cache,
                                          with_estimators=self.estimators, errors=broken)
            if broken:
                self.error = "estimators unavailable: " + "; ".join(broken)
                logger.warning("%s; running the detector without them", self.error)
            self._apply = apply_global
        except BackendError as exc:
            if self.backend not in ("auto", "onnxruntime"):
                raise ConfigError(f"backend {self.backend}: {exc}") from None
            self.detector = None
            self.error = f"model unavailable: {exc}".splitlines()[0]
            logger.warning("%s; frames pass through uncorrected", self.error)
            return
        except Exception as exc:  # noqa: BLE001 - any failure means "run without the model"
            self.detector = None
            self.error = f"model unavailable: {exc}".splitlines()[0]
            logger.warning("%s; frames pass through uncorrected", self.error)
            return
        self.name = getattr(self.detector, "name", "detector")
        self.backend = getattr(self.detector, "backend", self.backend)
        logger.info("model %s loaded in %.0f ms", self.name, (time.monotonic() - t0) * 1e3)

    def _load_lens(self) -> None:
        """The lens-defect segmenter when configured (``[model] lens``); the defect tracker
        works from time alone without it, so a failure is a warning, not an error."""
        if not self.use_lens:
            return
        try:
            from camheald.vision import lens

            self.lens = lens.shared()
        except Exception as exc:  # noqa: BLE001 - never costs the detector
            logger.warning("lens-defect segmenter unavailable: %s", exc)
            return
        if self.lens is None:
            logger.warning("[model] lens = true, but the lens-defect segmenter "
                           "(camheal_lens.onnx) could not be loaded: defects from time alone")

    @property
    def ready(self) -> bool:
        return self.detector is not None

    @property
    def thresholds(self) -> dict[str, float]:
        """The loaded model's calibrated per-anomaly thresholds ({} without them)."""
        return dict(getattr(self.detector, "thresholds", None) or {})

    def analyze(self, rgb: np.ndarray, skip: Collection[str] = ()) -> Analysis | None:
        """Run the detector on one frame (HxWx3 uint8 RGB); None without a model. ``skip``:
        anomalies whose estimators need not run (``Detector.analyze``)."""
        if self.detector is None:
            return None
        return self.detector.analyze(rgb, skip)

    def correct(self, rgb: np.ndarray, analysis: Analysis | None,
                out: np.ndarray | None = None) -> tuple[np.ndarray, tuple[str, ...]]:
        """Apply the analysis' global correction; returns (image, actions applied).

        Returns ``rgb`` itself (no copy) when there is nothing to apply.
        """
        if analysis is None or analysis.correction is None or self._apply is None:
            return rgb, ()
        return self._apply(rgb, analysis.correction, out), analysis.actions
