"""apply_global stays bit-identical to its first implementation while it is made faster.

``reference`` below is the original per-channel implementation, frozen: every fast path
(one shared LUT when the curves agree, skipped identity steps, in-place output into a ring
slot) must give exactly its bytes.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from camheald.vision import spec
from camheald.vision.correct import Correction, apply_global


def reference(rgb: np.ndarray, corr: Correction) -> np.ndarray:
    """The original implementation: (1, 256, 3) LUT unless identity, then the 3x3 matrix."""
    rgb = np.ascontiguousarray(rgb)
    out = np.empty(rgb.shape, np.uint8)
    lut = corr.lut
    src = rgb
    if not all(np.array_equal(lut[:, c], np.arange(256, dtype=np.uint8)) for c in range(3)):
        cv2.LUT(src, np.ascontiguousarray(lut.reshape(1, 256, 3)), dst=out)
        src = out
    if np.abs(corr.matrix - np.eye(3, dtype=np.float32)).max() >= 1e-4:
        cv2.transform(src, corr.matrix.astype(np.float32), dst=out)
        src = out
    if src is not out:
        np.copyto(out, src)
    return out


def corrections(rng: np.random.Generator) -> list[tuple[str, Correction]]:
    x = spec.CURVE_X
    eye = np.eye(3, dtype=np.float32)
    mat = (eye + rng.normal(0, 0.1, (3, 3))).astype(np.float32)
    one = np.maximum.accumulate(np.clip(x + rng.normal(0, 0.1, spec.N_KNOTS), 0, 1))
    three = np.maximum.accumulate(np.clip(x + rng.normal(0, 0.1, (3, spec.N_KNOTS)), 0, 1),
                                  axis=1)
    return [
        ("equal curves + matrix", Correction(np.tile(one, (3, 1)), mat)),
        ("equal curves only", Correction(np.tile(one, (3, 1)), eye)),
        ("equal gamma curves", Correction(np.tile(x ** 0.7, (3, 1)), eye)),
        ("three curves + matrix", Correction(three, mat)),
        ("three curves only", Correction(three, eye)),
        ("two equal curves", Correction(np.stack([one, one, three[2]]), mat)),
        ("matrix only", Correction(np.tile(x, (3, 1)), mat)),
        ("identity", Correction.identity()),
    ]


@pytest.mark.parametrize("seed", range(4))
def test_bit_identical_to_the_original(photo, seed):
    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 256, (97, 131, 3), dtype=np.uint8)  # odd sizes, every value
    for name, corr in corrections(rng):
        for img in (photo, noise, photo[::2, 1::3]):  # a strided view too
            expected = reference(img, corr)
            assert np.array_equal(apply_global(img, corr), expected), name
            out = np.empty(img.shape, np.uint8)
            assert np.array_equal(apply_global(img, corr, out), expected), name
            if img.flags.c_contiguous:
                inplace = img.copy()
                apply_global(inplace, corr, inplace)
                assert np.array_equal(inplace, expected), name
            # a BGR input (as OpenCV decodes) gives the same RGB output, the swap folded in
            bgr = np.ascontiguousarray(img[..., ::-1])
            out = np.empty(img.shape, np.uint8)
            assert np.array_equal(apply_global(bgr, corr, out, bgr=True), expected), name
            assert np.array_equal(apply_global(img[..., ::-1], corr, bgr=True), expected), name
            with pytest.raises(ValueError, match="in place"):
                apply_global(bgr, corr, bgr, bgr=True)


def test_equal_curves_use_one_table():
    x = spec.CURVE_X
    same = Correction(np.tile(x ** 0.8, (3, 1)), np.eye(3))
    assert same._cv_lut.shape == (1, 256)
    differ = Correction(np.stack([x ** 0.8, x ** 0.8, x ** 0.9]), np.eye(3))
    assert differ._cv_lut.shape == (1, 256, 3)
    # three tables run as one single-table LUT per plane (checked bit for bit above)
    assert same._tables is None and [t.shape for t in differ._tables] == [(256,)] * 3
    assert np.array_equal(differ._tables_bgr[0], differ._tables[2])
