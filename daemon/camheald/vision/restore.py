"""Classical local restoration used by the offline tools: denoising and sharpening.

Strength follows the detector's severity estimate (0..1). OpenCV only.
"""

from __future__ import annotations

import cv2
import numpy as np

_NLM_MAX_PIXELS = 4_000_000


def denoise(rgb: np.ndarray, severity: float) -> np.ndarray:
    """Non-local-means colour denoising (bilateral filter above 4 MP to bound the time).

    Args:
        rgb: HxWx3 uint8 RGB.
        severity: detector's noise severity in [0, 1].

    Returns:
        HxWx3 uint8.
    """
    s = float(np.clip(severity, 0.0, 1.0))
    h = 4.0 + 14.0 * s
    if rgb.shape[0] * rgb.shape[1] <= _NLM_MAX_PIXELS:
        return cv2.fastNlMeansDenoisingColored(rgb, None, h, h, 5, 15)
    return cv2.bilateralFilter(rgb, 7, 10 + 40 * s, 5)


def sharpen(rgb: np.ndarray, severity: float) -> np.ndarray:
    """Unsharp mask whose radius and amount grow with the blur severity.

    Args:
        rgb: HxWx3 uint8 RGB.
        severity: detector's blur severity in [0, 1].

    Returns:
        HxWx3 uint8.
    """
    s = float(np.clip(severity, 0.0, 1.0))
    sigma = 1.0 + 2.5 * s
    amount = 0.6 + 1.2 * s
    blurred = cv2.GaussianBlur(rgb, (0, 0), sigma)
    return cv2.addWeighted(rgb, 1.0 + amount, blurred, -amount, 0)
