"""Global tone/colour correction at full resolution: per-channel LUTs then a 3x3 colour matrix.

The maths (also implemented differentiably in ``camheal_train.apply``; a test keeps the two
within 1/255):
    1. lut[v, c] = round(255 * clip(interp(v / 255, CURVE_X, curves[c]), 0, 1)), v = 0..255
    2. t = lut[rgb[..., c], c]                      (uint8, per channel)
    3. out = saturate(round(matrix @ t))            (uint8, per pixel)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cached_property

import cv2
import numpy as np

from camheald.vision import scratch, spec

logger = logging.getLogger(__name__)

_IDENTITY_LUT = np.arange(256, dtype=np.uint8)
_MATRIX_EPS = 1e-4


@dataclass(frozen=True, eq=False)
class Correction:
    """Parameters of one global correction.

    Attributes:
        curves: 3 x spec.N_KNOTS float32, tone-curve values (R, G, B) at spec.CURVE_X.
        matrix: 3 x 3 float32 colour matrix applied to the curve output (rows = output channel).
    """

    curves: np.ndarray
    matrix: np.ndarray

    def __post_init__(self) -> None:
        curves = np.asarray(self.curves, np.float32).reshape(3, spec.N_KNOTS)
        matrix = np.asarray(self.matrix, np.float32).reshape(3, 3)
        if not (np.isfinite(curves).all() and np.isfinite(matrix).all()):
            raise ValueError("correction parameters must be finite")
        object.__setattr__(self, "curves", curves)
        object.__setattr__(self, "matrix", matrix)

    @classmethod
    def identity(cls) -> Correction:
        """The correction that leaves every image unchanged."""
        return cls(np.tile(spec.CURVE_X, (3, 1)), np.eye(3, dtype=np.float32))

    @cached_property
    def lut(self) -> np.ndarray:
        """256 x 3 uint8 per-channel lookup table (cached per object)."""
        v = np.arange(256, dtype=np.float32) / np.float32(255.0)
        out = np.empty((256, 3), np.uint8)
        for c in range(3):
            y = np.interp(v, spec.CURVE_X, self.curves[c]).astype(np.float32)
            out[:, c] = np.rint(np.clip(y, 0.0, 1.0) * np.float32(255.0)).astype(np.uint8)
        return out

    @cached_property
    def _cv_lut(self) -> np.ndarray | None:
        """LUT for cv2.LUT, or None when it is the identity.

        One 256-entry table when the three channels' tables are equal (exposure and contrast
        fixes usually are): cv2.LUT then applies it to every channel, with the same result
        and about half the cost of the per-channel (1, 256, 3) table, which ``apply_global``
        runs plane by plane (:attr:`_tables`).
        """
        lut = self.lut
        if all(np.array_equal(lut[:, c], _IDENTITY_LUT) for c in range(3)):
            return None
        if np.array_equal(lut[:, 0], lut[:, 1]) and np.array_equal(lut[:, 0], lut[:, 2]):
            return np.ascontiguousarray(lut[:, 0].reshape(1, 256))
        return np.ascontiguousarray(lut.reshape(1, 256, 3))

    @cached_property
    def _tables(self) -> tuple[np.ndarray, ...] | None:
        """:attr:`_cv_lut`'s per-channel tables as three contiguous 256-entry arrays (R, G,
        B), or None when one table serves all channels (or none is needed)."""
        lut = self._cv_lut
        if lut is None or lut.ndim == 2:
            return None
        return tuple(np.ascontiguousarray(lut[0, :, c]) for c in range(3))

    @cached_property
    def _tables_bgr(self) -> tuple[np.ndarray, ...] | None:
        """:attr:`_tables` in B, G, R order (for a BGR input)."""
        tables = self._tables
        return None if tables is None else tables[::-1]

    @cached_property
    def _cv_matrix_bgr(self) -> np.ndarray | None:
        """:attr:`_cv_matrix` for a BGR input with RGB output (columns in B, G, R order): the
        channel swap costs nothing when it rides on the matrix."""
        mat = self._cv_matrix
        return None if mat is None else np.ascontiguousarray(mat[:, ::-1])

    @cached_property
    def _cv_matrix(self) -> np.ndarray | None:
        """Matrix for cv2.transform, or None when it is (numerically) the identity."""
        if np.abs(self.matrix - np.eye(3, dtype=np.float32)).max() < _MATRIX_EPS:
            return None
        return self.matrix.astype(np.float32)

    @property
    def is_identity(self) -> bool:
        """True when applying this correction changes nothing."""
        return self._cv_lut is None and self._cv_matrix is None


def _lut_per_channel(src: np.ndarray, tables: tuple[np.ndarray, ...], out: np.ndarray
                     ) -> None:
    """``cv2.LUT(src, per-channel table, dst=out)``, bit for bit, at about two thirds of its
    cost: OpenCV's single-table LUT on each plane (split and merge included) is faster than
    its three-channel-table loop (720p, measured here: 1.5 vs 2.3 CPU ms). Planes are
    per-thread scratch."""
    planes = scratch.buffers("lut_planes", src.shape[:2], 3)
    cv2.split(src, planes)
    for plane, table in zip(planes, tables, strict=True):
        cv2.LUT(plane, table, dst=plane)
    cv2.merge(planes, out)


def apply_global(rgb: np.ndarray, correction: Correction | None, out: np.ndarray | None = None,
                 *, bgr: bool = False) -> np.ndarray:
    """Apply a global correction to a full-resolution frame.

    Args:
        rgb: HxWx3 uint8 frame, RGB (BGR when ``bgr``).
        correction: parameters from the detector; None means "leave unchanged".
        out: optional HxWx3 uint8 C-contiguous destination (may be ``rgb`` itself unless
            ``bgr``); when given nothing is allocated per call.
        bgr: the input is in BGR order (as OpenCV decodes); the output is RGB all the same.
            The channel swap is folded into the colour matrix when there is one (no extra
            pass), else it is a ``cvtColor`` into ``out`` before the LUT. Same result as
            converting first, except that the matrix sums its terms in another order: a
            pixel may rarely differ by 1 (float rounding at a .5 boundary).

    Returns:
        HxWx3 uint8 corrected RGB frame (``out`` when given).
    """
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected HxWx3 uint8, got {rgb.dtype} {rgb.shape}")
    if out is None:
        out = np.empty(rgb.shape, np.uint8)
    elif out.shape != rgb.shape or out.dtype != np.uint8 or not out.flags.c_contiguous:
        raise ValueError("out must be a C-contiguous uint8 array of the input's shape")
    if bgr and out is rgb:
        raise ValueError("a BGR input cannot be corrected in place")
    if not rgb.flags.c_contiguous:
        rgb = np.ascontiguousarray(rgb)
    tables = None
    if correction is None:
        lut = mat = None
    elif bgr and correction._cv_matrix_bgr is not None:
        # with a matrix, the LUT runs on BGR pixels; without one, on pixels already swapped
        # (``lut`` is only used when it is one table for all channels, or None)
        mat = correction._cv_matrix_bgr
        lut, tables = correction._cv_lut, correction._tables_bgr
    else:
        lut, mat, tables = correction._cv_lut, correction._cv_matrix, correction._tables
    src = rgb
    if bgr and mat is None:
        cv2.cvtColor(src, cv2.COLOR_BGR2RGB, dst=out)
        src = out
    # The LUT's output feeds the matrix through a per-thread scratch frame: cv2.transform in
    # place is slower than into another array (whole LUT + matrix, one thread, same pixels,
    # measured side by side: 720p 5.2 -> 4.8 ms, 1080p 11.6 -> 10.4 ms).
    has_lut = tables is not None or lut is not None
    lut_out = scratch.buffers("correct", rgb.shape, 1)[0] if has_lut and mat is not None \
        else out
    if tables is not None:
        _lut_per_channel(src, tables, lut_out)
        src = lut_out
    elif lut is not None:
        cv2.LUT(src, lut, dst=lut_out)
        src = lut_out
    if mat is not None:
        cv2.transform(src, mat, dst=out)
        src = out
    if src is not out:
        np.copyto(out, src)
    return out
