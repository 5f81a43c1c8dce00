"""Lens-defect segmenter: which pixels of one frame something on the lens hides.

``camheal_lens.onnx`` (camheal_weights package; trained by ``camheal_train.lens_train``, see
models/LENS_CARD.md) is a small fully convolutional network run at the defect tracker's
working resolution (<= 320 px wide). It sees one frame, so it cannot tell a lens defect from
scene content that merely looks like one; the tracker (``camheald.service.defects``) uses it
only where time gives no evidence, and only as a vote among its own.

    seg = LensSegmenter.load()          # ModelError when the weights are missing/unusable
    p = seg.probability(small_rgb)      # HxW float32 in [0, 1]
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import numpy as np

from camheald.inference import backends
from camheald.vision.detector import ModelError, read_sidecar, sigmoid
from camheald.vision.restore import TiledNet, shipped

logger = logging.getLogger(__name__)

LENS_FILE = "camheal_lens.onnx"
MAX_SIDE = 1024  # larger frames are refused: the network is meant for working resolution
ON, OFF = 0.98, 0.2  # the vote levels without a sidecar (the shipped sidecar's)


class LensSegmenter:
    """Thread-safe wrapper of the lens-defect network (one inference at a time)."""

    def __init__(self, net: TiledNet, on: float = ON, off: float = OFF):
        self._net = net
        self.name = net.name
        self.on, self.off = on, off
        self.max_side = MAX_SIDE

    @classmethod
    def load(cls, path: str | os.PathLike | None = None, threads: int = 1) -> LensSegmenter:
        """Load the network (None: the shipped one) and its sidecar thresholds (``on``: a
        pixel votes "defect" from this probability, ``off``: "clear" below it).

        Raises:
            ModelError: missing/corrupt file, or not a camheal lens network.
        """
        p = Path(path) if path is not None else shipped(LENS_FILE)
        net = TiledNet.load("lens", p, threads, "onnxruntime", tile=MAX_SIDE, overlap=0)
        side = read_sidecar(p)
        try:
            on, off = float(side.get("on", ON)), float(side.get("off", OFF))
        except (TypeError, ValueError):
            raise ModelError(f"{p.with_suffix('.json')}: on/off must be numbers") from None
        if not 0.0 <= off < on <= 1.0:
            raise ModelError(f"{p.with_suffix('.json')}: need 0 <= off < on <= 1")
        return cls(net, on, off)

    def probability(self, rgb: np.ndarray) -> np.ndarray:
        """Per-pixel probability (HxW float32 in [0, 1]) that the lens hides the pixel.

        Args:
            rgb: HxWx3 uint8 RGB, at most MAX_SIDE on each side (ValueError otherwise).
        """
        return sigmoid(self.logits(rgb)).astype(np.float32, copy=False)

    def logits(self, rgb: np.ndarray) -> np.ndarray:
        """The network's per-pixel logits (HxW float32) behind ``probability``.

        Args:
            rgb: HxWx3 uint8 RGB, at most MAX_SIDE on each side (ValueError otherwise).
        """
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"expected HxWx3 uint8, got {rgb.dtype} {rgb.shape}")
        if max(rgb.shape[:2]) > MAX_SIDE:
            raise ValueError(f"frame {rgb.shape[1]}x{rgb.shape[0]} is larger than "
                             f"{MAX_SIDE} px: pass the working-resolution frame")
        return self._net.run(rgb.astype(np.float32) * np.float32(1 / 255))[..., 0]


_shared: list[LensSegmenter | None] = []
_lock = threading.Lock()


def shared() -> LensSegmenter | None:
    """The shipped segmenter, loaded once per process; None (logged once) when its weights
    are missing or unusable (the tracker then works from time alone)."""
    with _lock:
        if not _shared:
            try:
                _shared.append(LensSegmenter.load())
            except (ModelError, backends.BackendError) as e:
                logger.info("lens-defect segmenter unavailable (%s)", e)
                _shared.append(None)
        return _shared[0]
