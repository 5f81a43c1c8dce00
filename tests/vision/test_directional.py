"""Directional (motion) blur cue: the structure tensor's coherence on generated frames."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from camheald.vision import directional
from support import make_photo


def _texture(h: int = 720, w: int = 1280, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = rng.normal(0, 1, (180, 320, 3)).astype(np.float32)  # the same scene at any size
    img = cv2.resize(noise, (w, h), interpolation=cv2.INTER_CUBIC) * 40 + 128
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("shape", [(720, 1280), (2160, 3840), (24, 20)])
def test_isotropic_blur_is_not_directional_and_motion_blur_is(shape):
    img = _texture(*shape) if min(shape) > 100 else make_photo(1, *shape)
    n = max(3, shape[1] // 50)  # blurs in proportion to the frame
    defocus = cv2.GaussianBlur(img, (0, 0), n / 8)
    motion = cv2.filter2D(img, -1, np.full((1, n), 1 / n, np.float32))  # a horizontal streak
    if min(shape) > 100:
        assert directional.coherence(defocus) < directional.SHARPEN_BELOW
        assert directional.coherence(motion) > 0.6
        assert directional.coherence(np.ascontiguousarray(motion.transpose(1, 0, 2))) > 0.6
    for im in (img, defocus, motion):
        assert 0.0 <= directional.coherence(im) <= 1.0


def test_flat_frame_has_no_direction():
    flat = np.full((100, 200, 3), 77, np.uint8)
    assert directional.coherence(flat) == 0.0
    assert directional.orientation(flat) == 0.0


@pytest.mark.parametrize("angle", [0.0, 35.0, 90.0, 140.0])
def test_the_gradients_run_across_a_streak(angle):
    img = _texture(480, 640)
    centre = (15.0, 15.0)
    line = np.zeros((31, 31), np.float32)
    line[15] = 1.0 / 31  # a horizontal streak, turned counter-clockwise as displayed
    m = cv2.getRotationMatrix2D(centre, angle, 1.0)
    streak = cv2.warpAffine(line, m, (31, 31), flags=cv2.INTER_LINEAR)
    blurred = cv2.filter2D(img, -1, streak / streak.sum())
    across = (directional.orientation(blurred) - angle - 90.0 + 90.0) % 180.0 - 90.0
    assert abs(across) <= 5.0


def test_only_a_blur_that_looks_directional_is_left_unsharpened():
    assert directional.sharpens({})  # no cue: the unsharp mask as before
    assert directional.sharpens({"blur.coherence": 0.2})
    assert not directional.sharpens({"blur.coherence": 0.7})


def test_the_detector_measures_it_on_blurred_frames_and_correct_skips_motion():
    from camheald.offline import correct_image, report
    from camheald.vision.detector import Detector

    det = Detector.load()
    img = make_photo(3, 480, 640)
    sharp = det.analyze(img)
    assert "blur" not in sharp.detected and "blur.coherence" not in sharp.extra
    defocus = cv2.GaussianBlur(img, (0, 0), 4)
    motion = cv2.filter2D(img, -1, np.full((1, 31), 1 / 31, np.float32))
    _, a, done = correct_image(det, defocus)
    assert "blur" in a.detected and a.extra["blur.coherence"] < directional.SHARPEN_BELOW
    assert "sharpen" in done
    _, a, done = correct_image(det, motion)
    assert "blur" in a.detected and a.extra["blur.coherence"] > directional.SHARPEN_BELOW
    assert "sharpen" not in done and "deblur" in done  # the streak shows in the spectrum
    # diagnose does not suggest sharpening a motion blur (it runs no deconvolution search)
    assert "sharpen" not in report("m.png", a)["actions"]
    assert "sharpen" in report("d.png", det.analyze(defocus))["actions"]
