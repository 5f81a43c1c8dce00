"""Plain data types passed from the vision layer (detector, corrector) to the service layer."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Analysis:
    """What the detector saw in one frame.

    Attributes:
        scores: anomaly name -> probability in [0, 1], one entry per name in ANOMALIES.
        detected: names whose score passed the shipped threshold, in ANOMALIES order.
        correction: opaque global-correction parameters understood by
            ``camheald.vision.correct``; None when nothing global should be applied.
        mask: coarse obstruction probability map, float32 HxW in [0, 1] at about 1/8 of
            the analysed thumbnail, or None when the model does not produce one.
        actions: human-readable names of the corrections this analysis asks for.
        model: identifier of the model that produced it (file name + short hash).
    """

    scores: dict[str, float]
    detected: tuple[str, ...] = ()
    correction: object | None = None
    mask: np.ndarray | None = None
    actions: tuple[str, ...] = ()
    model: str = ""
    extra: dict[str, float] = field(default_factory=dict)
