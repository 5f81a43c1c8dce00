"""Anomaly detector runtime: ONNX Runtime on a thumbnail + native crops (no torch).

    det = Detector.load()            # shipped weights (package camheal_weights)
    analysis = det.analyze(rgb)      # HxWx3 uint8 RGB -> camheald.vision.types.Analysis
"""

from __future__ import annotations

import hashlib
import importlib.resources
import json
import logging
import os
import threading
from collections.abc import Collection
from pathlib import Path

import numpy as np

from camheal.constants import ANOMALIES
from camheald.inference import backends
from camheald.vision import directional, spec
from camheald.vision.correct import Correction
from camheald.vision.stacked import TASKS, StackedModel, Views
from camheald.vision.types import Analysis

logger = logging.getLogger(__name__)

WEIGHTS_PACKAGE = "camheal_weights"
WEIGHTS_FILE = "camheal_detector.onnx"
MAX_MODEL_BYTES = 64 * 1024 * 1024
_CURVE_EPS = 1.0 / 255.0
_MATRIX_EPS = 1e-3

# Local restorations other stages may perform, by anomaly (not part of ``Analysis.actions``,
# which lists only what ``apply_global`` does with ``Analysis.correction``).
LOCAL_ACTIONS = {"blur": "sharpen", "noise": "denoise", "obstruction": "inpaint"}


class ModelError(Exception):
    """The model file is missing, unreadable, corrupt or not a camheal detector."""


class EstimatorError(ModelError):
    """A stacked estimator named by the detector's sidecar cannot be used (the detector can)."""


def shipped_weights() -> Path:
    """Path of the detector ONNX shipped in the camheal_weights package."""
    return Path(str(importlib.resources.files(WEIGHTS_PACKAGE).joinpath(WEIGHTS_FILE)))


def read_sidecar(path: Path) -> dict:
    """The JSON object beside a model file ({} if there is none); ModelError if unusable."""
    side = path.with_suffix(".json")
    if not side.is_file():
        return {}
    try:
        data = json.loads(side.read_text())
    except (OSError, ValueError) as e:
        raise ModelError(f"{side}: unreadable model sidecar ({e})") from None
    if not isinstance(data, dict):
        raise ModelError(f"{side}: model sidecar must be a JSON object")
    return data


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function of logits, clipped to +-30 (no overflow warnings)."""
    return 1.0 / (1.0 + np.exp(-np.clip(x, -30.0, 30.0)))


def _check_anomalies(names: Collection[str], what: str) -> None:
    unknown = sorted(set(names) - set(ANOMALIES))
    if unknown:
        raise ValueError(f"{what}: not anomalies: {', '.join(unknown)}")


class Detector:
    """Per-frame anomaly detector and global-correction predictor.

    ``analyze`` may be called from several threads (a camera's analysis thread and a
    burst's): the network's session runs under the detector's lock, the estimators'
    ONNX Runtime sessions are thread-safe, and everything else is per call, except the
    obstruction estimator's lens-defect segmenter: one per process
    (``camheald.vision.lens.shared``), also used by every camera's defect tracker, one
    inference at a time."""

    def __init__(self, session, name: str, thresholds: dict[str, float],
                 correction_gate: float = 0.5,
                 estimators: dict[str, StackedModel] | None = None):
        self._session = session
        # Estimators stacked on this network, by anomaly (camheald.vision.stacked): each
        # replaces the network's score for its anomaly and, when that anomaly alone gates the
        # correction and the network's own probabilities are at least
        # ``estimator_network_gate`` for it and below it for the other global anomalies, the
        # correction too (``_global_params``).
        self.estimators = dict(estimators or {})
        self.estimator_network_gate = 0.5
        # An estimator is not run when the network's own probability for its anomaly is
        # below this: the anomaly keeps the network's score. Most frames are spared the
        # estimators' cost (their statistics take longer than the network's tail). On the
        # Kodak and Val20 evaluation sets no colour-cast or contrast detection came from an
        # estimator where the network said < 0.29; the noise estimator loses 2 of Kodak's 60
        # noisy samples to it (models/MODEL_CARD.md). 0 runs them on every frame.
        self.estimator_skip_below = 0.0
        self._lock = threading.Lock()
        self.name = name
        self.backend = "onnxruntime:cpu"
        self.thresholds = {a: float(thresholds.get(a, 0.5)) for a in ANOMALIES}
        # The global correction is applied when a global anomaly is detected, or merely
        # likely (score >= correction_gate): on clean frames the predicted correction is
        # close to the identity anyway, and mild casts/exposure errors below the reporting
        # threshold still get fixed.
        self.correction_gate = float(correction_gate)

    @classmethod
    def load(cls, path: str | os.PathLike | None = None, threads: int = 1,
             backend: str = "onnxruntime", cache_dir: str | os.PathLike | None = None,
             with_estimators: bool = True, without: Collection[str] = (),
             errors: list[str] | None = None) -> Detector:
        """Load a detector ONNX (None = shipped weights) and run one warm-up inference.

        ``backend``: see camheald.inference.backends (auto, onnxruntime, tensorrt); the one in
        use is in ``.backend``. The estimators named by the sidecar's ``estimators`` (task ->
        file beside the model) are loaded too unless ``with_estimators`` is False, except
        those of the anomalies in ``without`` (ValueError for a name that is none). With an
        ``errors`` list, an estimator that cannot be used is left out and its one-line
        reason appended there, instead of raising EstimatorError.

        Raises:
            ModelError: missing/corrupt file, external data, or outputs not matching the spec;
                EstimatorError (a ModelError) when only a named estimator is unusable.
        """
        p = Path(path) if path is not None else shipped_weights()
        if not p.is_file():
            raise ModelError(f"{p}: model file not found")
        size = p.stat().st_size
        if size == 0 or size > MAX_MODEL_BYTES:
            raise ModelError(f"{p}: model file has an implausible size ({size} bytes)")
        data = p.read_bytes()
        try:
            sess = backends.create(p, data, backend, threads, cache_dir)
        except backends.BackendError:
            raise
        except Exception as e:  # onnxruntime raises several unrelated types
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            if "external" in msg.lower():
                raise ModelError(f"{p}: models with ONNX external data are not supported"
                                 ) from None
            raise ModelError(f"{p}: not a loadable ONNX model ({msg[:200]})") from None
        meta_sess = sess if isinstance(sess, backends.OrtBackend) else \
            backends.OrtBackend(data, 1)  # names and metadata from the ONNX itself
        names_in, names_out = meta_sess.inputs, meta_sess.outputs
        if names_in != list(spec.INPUTS) or names_out != list(spec.OUTPUTS):
            raise ModelError(f"{p}: not a camheal detector "
                             f"(inputs {names_in}, outputs {names_out})")
        meta = meta_sess.metadata
        if meta.get("camheal.anomalies", ",".join(ANOMALIES)) != ",".join(ANOMALIES):
            raise ModelError(f"{p}: model was trained for another anomaly vocabulary")
        if "camheal.spec" in meta:
            want = {"thumb": spec.THUMB, "crop": spec.CROP, "n_crops": spec.N_CROPS,
                    "n_knots": spec.N_KNOTS, "hist_bins": spec.HIST_BINS, "mask": spec.MASK}
            if json.loads(meta["camheal.spec"]) != want:
                raise ModelError(f"{p}: model was trained for another preprocessing spec")
        side = read_sidecar(p)
        sha = hashlib.sha256(data).hexdigest()
        name = f"{p.name}@{sha[:8]}"
        _check_anomalies(without, "without")
        estimators = {}
        problems: list[str] = []
        named = side.get("estimators", {}) if with_estimators else {}
        if not isinstance(named, dict):
            problems.append(f"{p}: sidecar 'estimators' must map tasks to file names")
            named = {}
        for task, fname in named.items():
            if task in TASKS and TASKS[task].anomaly in without:
                continue
            try:
                est = StackedModel.load(p.parent / str(fname), sha)
                if est.task_name != task:
                    raise ValueError(f"{p.parent / str(fname)}: a {est.task_name} estimator, "
                                     f"listed as {task}")
            except ValueError as e:
                problems.append(str(e).splitlines()[0])
                continue
            estimators[est.task.anomaly] = est
        if problems and errors is None:
            raise EstimatorError(problems[0])
        if errors is not None:
            errors.extend(problems)
        # the name says which estimators ride along (Stats "model", reports, the log)
        name = "+".join([name, *(e.name for e in estimators.values())])
        det = cls(sess, name, side.get("thresholds", {}), side.get("correction_gate", 0.5),
                  estimators)
        for key in ("estimator_network_gate", "estimator_skip_below"):
            value = side.get(key, getattr(det, key))
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not 0.0 <= value <= 1.0:
                raise ModelError(f"{p.with_suffix('.json')}: {key} must be a probability "
                                 f"(0..1), got {value!r}")
            setattr(det, key, float(value))
        try:
            det.analyze(np.full((64, 64, 3), 128, np.uint8))
        except Exception as e:
            raise ModelError(f"{p}: warm-up inference failed ({e})") from None
        det.backend = sess.name
        logger.info("loaded detector %s on %s (%d threads)", name, sess.name, threads)
        return det

    def run(self, rgb: np.ndarray) -> dict[str, np.ndarray]:
        """Raw model outputs (batch of one) for a frame; see camheald.vision.spec."""
        return self._run(spec.prepare(rgb))

    def _run(self, prep: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        inputs = spec.to_model_inputs(prep)
        with self._lock:
            outs = self._session.run(list(spec.OUTPUTS), inputs)
        return dict(zip(spec.OUTPUTS, outs, strict=True))

    def estimators_to_run(self, logits: np.ndarray) -> list[str]:
        """Anomalies whose estimator runs for the network's logits (7,): all but those the
        network all but rules out (probability < ``estimator_skip_below``; their network
        score stands)."""
        return [a for a in self.estimators
                if sigmoid(float(logits[ANOMALIES.index(a)])) >= self.estimator_skip_below]

    def _global_params(self, out: dict[str, np.ndarray], scores: dict[str, float],
                       params: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray] | None:
        """(curves, matrix) of the global correction to apply, or None for none."""
        gated = {a for a in spec.GLOBAL_ANOMALIES
                 if scores[a] >= min(self.thresholds[a], self.correction_gate)}
        if not gated:
            return None
        (only,) = gated if len(gated) == 1 else (None,)
        if only in self.estimators:
            # One anomaly with its own estimator: the estimator's correction replaces the
            # network's, but only when the network leans that way too (the colour-cast
            # estimator alone recoloured 15 of Kodak's 72 clean photos at the 0.8 gate)
            # and towards no other global anomaly (the contrast estimator's levels did worse
            # than the network's curves on overexposed frames it took for low contrast).
            # A detection-only estimator (no curves) leaves the network's correction, under
            # the same first condition.
            net = {a: sigmoid(float(out["logits"][0, ANOMALIES.index(a)]))
                   for a in spec.GLOBAL_ANOMALIES}
            if net[only] < self.estimator_network_gate:
                return None
            if only in params and self.estimators[only].task.curves is not None \
                    and all(v < self.estimator_network_gate for a, v in net.items() if a != only):
                return (self.estimators[only].task.curves(params[only]),
                        np.eye(3, dtype=np.float32))
        return out["curves"][0].astype(np.float32), out["matrix"][0].astype(np.float32)

    def analyze(self, rgb: np.ndarray, skip: Collection[str] = ()) -> Analysis:
        """Analyse one frame.

        Args:
            rgb: HxWx3 uint8 RGB, at least 16x16 (ValueError otherwise).
            skip: anomalies whose estimators do not run on this frame, for callers that do
                not use those anomalies (the camera, whose obstruction is judged by its
                defect tracker, skips the obstruction estimator's segmenter pass): their
                score is the network's, and they are never in ``detected`` (the thresholds
                are the estimators'). ValueError for a name that is no anomaly.

        Returns:
            Analysis with scores for every anomaly, detections, a Correction (or None when
            no global anomaly is detected), the coarse obstruction mask, and in ``actions``
            the global corrections that ``apply_global(rgb, correction)`` performs
            ("tone_curve", "color_matrix"); ``extra`` holds "severity.<anomaly>" in [0, 1]
            and, when blur is detected, "blur.coherence" (``vision.directional``).
        """
        _check_anomalies(skip, "skip")
        prep = spec.prepare(rgb)
        out = self._run(prep)
        logits = out["logits"][0].astype(np.float64)
        params = {}
        views = Views(rgb, prep["thumb"], prep["texture"], out["mask"][0, 0])
        for anomaly in self.estimators_to_run(out["logits"][0]):
            if anomaly in skip:
                continue
            params[anomaly], logits[ANOMALIES.index(anomaly)] = \
                self.estimators[anomaly](views, out["logits"][0])
        probs = sigmoid(logits)
        scores = {a: float(p) for a, p in zip(ANOMALIES, probs, strict=True)}
        detected = tuple(a for a in ANOMALIES if scores[a] >= self.thresholds[a]
                         and not (a in skip and a in self.estimators))
        actions: list[str] = []
        correction = None
        glob = self._global_params(out, scores, params)
        if glob is not None:
            curves, matrix = glob
            tone = np.abs(curves - spec.CURVE_X).max() >= _CURVE_EPS
            colour = np.abs(matrix - np.eye(3, dtype=np.float32)).max() >= _MATRIX_EPS
            if not colour:
                matrix = np.eye(3, dtype=np.float32)
            if tone or colour:
                correction = Correction(curves, matrix)
                actions += ["tone_curve"] if tone else []
                actions += ["color_matrix"] if colour else []
        sev = out["severity"][0]
        extra = {f"severity.{a}": float(s) for a, s in zip(ANOMALIES, sev, strict=True)}
        if "blur" in detected:  # motion or defocus? (whether an unsharp mask can help)
            extra["blur.coherence"] = directional.coherence(rgb)
        mask = sigmoid(out["mask"][0, 0]).astype(np.float32)
        return Analysis(scores=scores, detected=detected, correction=correction, mask=mask,
                        actions=tuple(actions), model=self.name, extra=extra)
