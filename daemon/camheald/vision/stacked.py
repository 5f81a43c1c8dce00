"""Estimators stacked on the detector: one anomaly each, scored (and corrected) anew.

The detector network ranks and corrects some anomalies poorly (colour cast: no better than
gray world; low contrast: barely past auto levels; noise: it sees grain only in four crops
picked for texture). Each estimator here is a small MLP over hand-made statistics of the
frame (``Views``: the detector's thumbnail, its 64x64 copy, native-resolution crops) plus
the network's seven logits that returns a logit for its anomaly, which replaces the
network's, and for the global anomalies the parameters of that anomaly's correction, which
become ordinary tone curves (``Task.curves``), so ``apply_global`` applies them unchanged.
A detection-only task (noise; obstruction, whose statistics come from a pass of the
lens-defect segmenter and the network's coarse mask, ``Views.mask``) returns no parameters.
Trained by ``camheal_train.stacked_train``; each ONNX has a JSON sidecar naming the detector
(sha256) whose logits it was trained on.

ONNX: inputs ``features`` (B x n_features), ``logits`` (B x 7); outputs ``params``
(B x n_params), ``logit`` (B x 1); metadata ``camheal.task`` and ``camheal.features``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from camheald.vision import cast, grain, obstruct, spec, tone

if TYPE_CHECKING:
    from camheald.vision.lens import LensSegmenter


class Views:
    """What the estimators look at in one frame, each computed once and only when asked."""

    def __init__(self, rgb: np.ndarray, thumb: np.ndarray,
                 texture: np.ndarray | None = None, mask: np.ndarray | None = None) -> None:
        self.rgb = rgb  # the frame, HxWx3 uint8 RGB
        self.thumb = thumb  # its detector thumbnail (``spec.thumbnail``)
        self.mask = mask  # the detector's coarse obstruction mask (logits), when run
        if texture is not None:  # ``spec.prepare`` computed it already
            self.texture = texture

    @cached_property
    def small(self) -> np.ndarray:
        """64x64 copy of the thumbnail (``cast.small``)."""
        return cast.small(self.thumb)

    @cached_property
    def texture(self) -> np.ndarray:
        """Gradient energy of the thumbnail's grid cells (``spec.cell_texture``)."""
        return spec.cell_texture(self.thumb)


@dataclass(frozen=True)
class Task:
    """What one estimator looks at and what its parameters mean.

    A detection-only task (``n_params`` 0, ``curves`` None) only replaces its anomaly's
    score; ``target`` then returns an empty vector.
    """

    anomaly: str
    features: Callable[[Views], np.ndarray]
    n_features: int
    n_params: int
    curves: Callable[[np.ndarray], np.ndarray] | None  # params -> 3 x N_KNOTS tone curves
    target: Callable[[np.ndarray, np.ndarray], np.ndarray]  # (degraded, clean) small -> params
    version: str = "v2"  # of the features: training caches its samples under it
    # the features come from the lens-defect segmenter (``segmenter()``): an estimator is
    # tied to the one it was trained on (its sidecar names it)
    uses_segmenter: bool = False


def _no_params(degraded: np.ndarray, clean: np.ndarray) -> np.ndarray:
    return np.zeros(0, np.float32)


def segmenter() -> LensSegmenter | None:
    """The shipped lens-defect segmenter, or None (``camheald.vision.lens.shared``): the
    obstruction estimator's features come from it."""
    from camheald.vision import lens  # imports the detector module, which imports this one

    return lens.shared()


def _obstruction_features(v: Views) -> np.ndarray:
    if v.mask is None:
        raise ValueError("the obstruction estimator needs the detector's mask")
    seg = segmenter()
    if seg is None:
        raise ValueError("the obstruction estimator needs the lens-defect segmenter")
    return obstruct.features(v.thumb, v.mask, seg)


TASKS: dict[str, Task] = {
    "cast": Task("color_cast", lambda v: cast.features(v.small), cast.N_FEATURES, 3,
                 cast.gain_curves, cast.oracle_log_gain),
    "contrast": Task("low_contrast", lambda v: tone.features(v.small), tone.N_FEATURES,
                     tone.N_PARAMS, tone.affine_curves, tone.oracle_affine),
    "noise": Task("noise", lambda v: grain.features(v.rgb, v.thumb, v.texture),
                  grain.N_FEATURES, 0, None, _no_params, grain.VERSION),
    "obstruction": Task("obstruction", _obstruction_features, obstruct.N_FEATURES, 0, None,
                        _no_params, obstruct.VERSION, uses_segmenter=True),
}
INPUTS = ("features", "logits")
OUTPUTS = ("params", "logit")


class StackedModel:
    """One estimator (ONNX Runtime, CPU, one thread: an MLP of ~20 k weights)."""

    def __init__(self, task: str, session, name: str) -> None:
        self.task = TASKS[task]
        self.task_name = task
        self._session = session
        self.name = name

    @classmethod
    def load(cls, path: Path, detector_sha256: str) -> StackedModel:
        """Load ``path`` (with its JSON sidecar), made for the detector whose sha256 is given.

        Raises:
            ValueError: one line naming the problem (missing, unreadable, not an estimator,
                made for another detector or other features).
        """
        from camheald.inference.backends import OrtBackend

        try:
            data = path.read_bytes()
            side = json.loads(path.with_suffix(".json").read_text())
        except (OSError, ValueError) as e:
            raise ValueError(f"{path}: cannot read the estimator or its sidecar ({e})"
                             ) from None
        made_for = str(side.get("detector_sha256", "")) if isinstance(side, dict) else ""
        if made_for != detector_sha256:
            raise ValueError(f"{path}: made for another detector (sha256 {made_for[:8]}, "
                             f"this one {detector_sha256[:8]})")
        try:
            sess = OrtBackend(data, 1)
        except Exception as e:  # onnxruntime raises several unrelated types
            raise ValueError(f"{path}: not a loadable ONNX model "
                             f"({str(e).splitlines()[0][:200] if str(e) else e!r})") from None
        task = sess.metadata.get("camheal.task", "")
        if tuple(sess.inputs) != INPUTS or tuple(sess.outputs) != OUTPUTS or task not in TASKS \
                or sess.metadata.get("camheal.features") != str(TASKS[task].n_features):
            raise ValueError(f"{path}: not a camheal estimator for these features")
        if TASKS[task].uses_segmenter:
            seg = segmenter()
            if seg is None:
                raise ValueError(f"{path}: needs the lens-defect segmenter (camheal_lens.onnx), "
                                 "which is missing or cannot be loaded")
            if side.get("segmenter") != seg.name:
                raise ValueError(f"{path}: made for another lens-defect segmenter "
                                 f"({side.get('segmenter') or 'none recorded'}, "
                                 f"this one {seg.name})")
        return cls(task, sess, f"{path.name}@{hashlib.sha256(data).hexdigest()[:8]}")

    def __call__(self, views: Views, logits: np.ndarray) -> tuple[np.ndarray, float]:
        """(params, logit) for a frame's ``Views`` and the detector's logits (7,)."""
        p, z = self._session.run(list(OUTPUTS), {
            "features": self.task.features(views)[None],
            "logits": np.asarray(logits, np.float32).reshape(1, -1)})
        return p[0].astype(np.float32), float(z[0, 0])
