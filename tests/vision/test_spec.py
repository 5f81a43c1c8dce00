from __future__ import annotations

import numpy as np
import pytest

from camheald.vision import spec


@pytest.mark.parametrize("shape", [(16, 16), (17, 300), (240, 320), (1080, 1920)])
def test_prepare_shapes(shape):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    prep = spec.prepare(rgb)
    assert prep["thumb"].shape == (spec.THUMB, spec.THUMB, 3)
    assert prep["crops"].shape == (spec.N_CROPS, spec.CROP, spec.CROP, 3)
    assert prep["hist"].shape == (spec.HIST_FEATURES,)
    assert np.array_equal(prep["texture"], spec.cell_texture(prep["thumb"]))
    sums = prep["hist"].reshape(3, spec.HIST_BINS).sum(1)
    assert np.allclose(sums, 1.0, atol=1e-5)
    inputs = spec.to_model_inputs(prep)
    assert inputs["thumb"].shape == (1, 3, spec.THUMB, spec.THUMB)
    assert inputs["crops"].shape == (1, spec.N_CROPS, 3, spec.CROP, spec.CROP)
    assert all(v.dtype == np.float32 for v in inputs.values())
    assert 0.0 <= inputs["thumb"].min() and inputs["thumb"].max() <= 1.0


def test_crops_are_native_pixels_from_textured_cells(photo):
    frame = np.zeros((512, 512, 3), np.uint8)
    frame[300:420, 40:200] = photo[:120, :160]  # texture only in one area
    th = spec.thumbnail(frame)
    (y, x) = spec.crop_origins(th, 512, 512)[0]
    assert 300 - spec.CROP <= y <= 420 and 40 - spec.CROP <= x <= 200
    crops = spec.crops(frame, th)
    assert np.array_equal(crops[0], frame[y : y + spec.CROP, x : x + spec.CROP])


@pytest.mark.parametrize("bad", [np.zeros((8, 8, 3), np.uint8), np.zeros((32, 32), np.uint8),
                                 np.zeros((32, 32, 3), np.float32)])
def test_prepare_rejects_bad_frames(bad):
    with pytest.raises(ValueError):
        spec.prepare(bad)


def test_the_minimum_size_rule_has_one_wording_width_first():
    """``too_small`` holds the MIN_SIDE rule and its message (the daemon's callers wrap it
    in their own errors); the detector's input check says it the same way, as WxH."""
    assert spec.too_small(16, 16) == spec.too_small(1920, 16) == ""
    assert spec.too_small(200, 15, "image") == \
        "image must be at least 16x16 to be analysed, got 200x15"
    with pytest.raises(ValueError) as err:
        spec.prepare(np.zeros((8, 40, 3), np.uint8))
    assert str(err.value) == spec.too_small(40, 8) == \
        "frame must be at least 16x16 to be analysed, got 40x8"
