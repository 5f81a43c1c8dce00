"""Obstruction estimator features: the lens-defect segmenter and the detector's coarse mask,
summarised for one frame.

The detector network scores obstructions barely above chance in one frame (Val20 AUC 0.71:
dirt 0.62, raindrops 0.75), though its coarse mask finds large soft ones (fingers, smudges).
The lens-defect segmenter (``camheald.vision.lens``, trained on dirt, cracks, scratches and
raindrops) ranks small dark blobs far better (dirt 0.92, raindrops 0.87 on the squeezed
thumbnail). These statistics of both maps feed the stacked obstruction estimator
(``camheald.vision.stacked``, task ``obstruction``), which turns them and the network's
logits into a score. numpy/OpenCV plus the segmenter's ONNX Runtime session.

The segmenter looks at the detector's thumbnail as it is (squeezed to THUMB x THUMB), so the
features cost one segmenter pass at THUMB^2 (about 8.6 ms on one core of the 2-vCPU host)
whatever the frame size.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import cv2
import numpy as np

N_FEATURES = 15
VERSION = "o1"  # bump when the features change (training caches samples under it)
_TOP = (50, 500)  # the mean of the k highest segmenter logits, for each k
_LN4 = math.log(4.0)


if TYPE_CHECKING:
    from camheald.vision.lens import LensSegmenter


def features(thumb: np.ndarray, mask: np.ndarray, segmenter: LensSegmenter) -> np.ndarray:
    """Feature vector (N_FEATURES float32) of one frame.

    Args:
        thumb: the detector's thumbnail (``spec.thumbnail``), THUMBxTHUMBx3 uint8 RGB.
        mask: the detector's coarse obstruction mask, as logits (MASKxMASK).
        segmenter: a ``camheald.vision.lens.LensSegmenter``.

    Returns:
        Segmenter logits: maximum, maximum after a Gaussian blur (sigma 3 px), the means of
        the 50 and 500 highest, the share above 0, 4 and 8, the mean; the luma of the
        pixels above 4 against the frame's (dirt is dark; 1 when there are none). Mask
        logits: maximum, mean, the mean of the 10 highest, the share of probabilities above
        0.5 and 0.8; and the share of the segmenter's pixels above 4 that fall where the
        mask's probability is above 0.5 (the two maps agree).
    """
    z = segmenter.logits(thumb)
    flat = z.ravel()
    top = np.partition(flat, flat.size - max(_TOP))[flat.size - max(_TOP):]
    top.sort()
    hot = z > 4.0
    luma = cv2.cvtColor(thumb, cv2.COLOR_RGB2GRAY).astype(np.float32)
    dark = float(luma[hot].mean() / (luma.mean() + 1.0)) if hot.any() else 1.0
    m = np.asarray(mask, np.float32)
    mflat = np.sort(m.ravel())
    # probability above 0.5 / 0.8 <=> logit above 0 / ln 4
    wide = cv2.resize((m > 0.0).astype(np.uint8), (z.shape[1], z.shape[0]),
                      interpolation=cv2.INTER_NEAREST).astype(bool)
    agree = float((hot & wide).sum() / hot.sum()) if hot.any() else 0.0
    return np.array([
        z.max(), cv2.GaussianBlur(z, (0, 0), 3.0).max(),
        *(top[-k:].mean() for k in _TOP),
        (z > 0.0).mean(), hot.mean(), (z > 8.0).mean(), z.mean(), dark,
        mflat[-1], mflat.mean(), mflat[-10:].mean(), (m > 0.0).mean(), (m > _LN4).mean(),
        agree], np.float32)
