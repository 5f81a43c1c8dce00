"""Defocus deblurring: the disk radius read off the spectrum, Wiener deconvolution, and where
`camheal correct` uses it (generated frames)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from camheald.vision import deblur
from support import detailed_photo


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(cv2.PSNR(a, b))


def _defocus(img: np.ndarray, radius: float) -> np.ndarray:
    return cv2.filter2D(img, -1, deblur.disk_psf(radius), borderType=cv2.BORDER_REFLECT_101)


@pytest.mark.parametrize("radius", [2.0, 3.5, 6.0])
def test_the_disk_radius_is_read_off_the_spectrum_and_deconvolved(radius: float) -> None:
    sharp = detailed_photo(1)
    blurred = _defocus(sharp, radius)
    found = deblur.estimate(blurred)
    assert found is not None and abs(found[0] - radius) <= 0.25, found
    kern = deblur.find_kernel(blurred)
    assert kern is not None and kern.kind == "disk" and kern.streak is None
    assert np.array_equal(kern.psf, deblur.disk_psf(found[0]))
    out = deblur.wiener(blurred, kern.psf, kern.k)
    assert out.shape == sharp.shape and out.dtype == np.uint8
    # more than an unsharp mask gives back (Kodak: +0.5 dB); this hard-edged scene rings
    # a little at r = 6 (+1.6 dB)
    assert _psnr(out, sharp) >= _psnr(blurred, sharp) + 1.5


@pytest.mark.parametrize("case", ["sharp", "motion", "noisy", "flat", "small"])
def test_no_disk_no_deconvolution(case: str) -> None:
    sharp = detailed_photo(2)
    rng = np.random.default_rng(0)
    if case == "sharp":
        img = sharp
    elif case == "motion":  # zeros along one direction only
        img = cv2.filter2D(sharp, -1, np.full((1, 15), 1 / 15, np.float32))
    elif case == "noisy":  # the noise fills the disk's spectral dips
        img = np.clip(_defocus(sharp, 3.0) + rng.normal(0, 12, sharp.shape), 0, 255
                      ).astype(np.uint8)
    elif case == "flat":
        img = np.full((480, 640, 3), 90, np.uint8)
    else:  # smaller than one spectral tile
        img = _defocus(sharp, 3.0)[:200, :300]
    assert deblur.estimate(img) is None
    kern = deblur.find_kernel(img)
    if case == "motion":  # its streak may show, never a disk
        assert kern is None or kern.kind == "streak"
    else:
        assert kern is None


def test_wiener_with_a_point_psf_keeps_the_frame() -> None:
    img = detailed_photo(3, 300, 400)
    point = np.zeros((3, 3), np.float32)
    point[1, 1] = 1.0
    out = deblur.wiener(img, point, 1e-4)
    assert np.abs(out.astype(int) - img).max() <= 1


# ------------------------------------------------------------------------ linear motion


def _leaves(seed: int, h: int = 480, w: int = 640, n: int = 3000) -> np.ndarray:
    """A dead-leaves image: overlapping flat discs with radii of density ~ r^-3, the usual
    stand-in for a photo's statistics (a power-law spectrum, sparse gradients), both of
    which the streak estimate and its choice between mirror-image ramps rely on."""
    rng = np.random.default_rng(seed)
    img = np.full((h, w, 3), 128, np.uint8)
    lo, hi = 3.0, 120.0
    radii = (lo ** -2 - rng.random(n) * (lo ** -2 - hi ** -2)) ** -0.5
    for r in radii:
        colour = tuple(int(v) for v in rng.integers(30, 226, 3))
        cv2.circle(img, (int(rng.integers(0, w)), int(rng.integers(0, h))), int(r), colour,
                   -1, cv2.LINE_AA)
    return img


def _streak(img: np.ndarray, length: int, angle: float, ramp: float) -> np.ndarray:
    """The training generator's motion blur (its kernel, applied as it applies it)."""
    return cv2.filter2D(img, -1, deblur.motion_psf(length, angle, ramp),
                        borderType=cv2.BORDER_REFLECT_101)


def test_the_motion_kernel_is_kornias() -> None:
    torch = pytest.importorskip("torch")
    kornia = pytest.importorskip("kornia")
    rng = np.random.default_rng(0)
    for _ in range(40):
        n, a, r = int(rng.integers(2, 18)) * 2 + 1, float(rng.uniform(0, 180)), \
            float(rng.uniform(-1, 1))
        for mode in deblur.MOTION_ROTATIONS:
            ref = kornia.filters.get_motion_kernel2d(n, torch.tensor([a]), torch.tensor([r]),
                                                     mode=mode)
            np.testing.assert_allclose(deblur.motion_psf(n, a, r, mode), ref[0].numpy(),
                                       atol=1e-6)
    with pytest.raises(ValueError, match="odd"):
        deblur.motion_psf(8, 0.0)


@pytest.mark.parametrize(("length", "angle", "ramp"),
                         [(13, 30.0, 0.0), (17, 100.0, 0.6), (25, 155.0, -0.9)])
def test_a_motion_streak_is_read_off_the_spectrum_and_deconvolved(
        length: int, angle: float, ramp: float) -> None:
    sharp = _leaves(5)
    blurred = _streak(sharp, length, angle, ramp)
    found = deblur.estimate_motion(blurred)
    assert found is not None, "no streak found"
    (a, n, r, rotation), share = found
    assert abs(n - length) <= 2 and abs((a - angle + 90) % 180 - 90) <= 3, found
    assert abs(r - abs(ramp)) <= 0.25, found
    kern = deblur.find_kernel(blurred)
    assert kern is not None and kern.kind == "streak"
    signed = kern.streak[2]
    out = deblur.wiener(blurred, kern.psf, kern.k)
    # the mirror image chosen right: filter2D correlates, so as a convolution the streak's
    # heavy end points the other way
    assert abs(signed + ramp) <= 0.25, signed
    assert out.shape == sharp.shape and out.dtype == np.uint8
    # unsharp masking cannot undo a streak (Kodak: it lost 0.6 dB); here +2.7 to +10 dB
    assert _psnr(out, sharp) >= _psnr(blurred, sharp) + 2.0


@pytest.mark.parametrize("case", ["sharp", "defocus", "flat", "small"])
def test_no_streak_no_motion_deconvolution(case: str) -> None:
    sharp = _leaves(6)
    img = {"sharp": sharp, "defocus": _defocus(sharp, 3.0),
           "flat": np.full((480, 640, 3), 90, np.uint8),
           "small": _streak(sharp, 15, 20.0, 0.0)[:200, :300]}[case]
    assert deblur.estimate_motion(img) is None
    assert deblur.motion_kernel(img) is None


@pytest.mark.parametrize("kind", ["defocus", "motion"])
def test_correct_deconvolves_a_blurred_photo(kind: str) -> None:
    from camheald.offline import correct_image, report
    from camheald.vision.correct import apply_global
    from camheald.vision.detector import Detector

    det = Detector.load()
    if kind == "defocus":
        sharp = detailed_photo(4)
        blurred = _defocus(sharp, 4.0)
    else:
        sharp = _leaves(7)
        blurred = _streak(sharp, 17, 100.0, 0.6)
        assert deblur.estimate(blurred) is None  # no disk: the streak does it
    out, a, done = correct_image(det, blurred)
    assert "blur" in a.detected
    assert "deblur" in done and "sharpen" not in done
    # diagnose suggests it where it looks for it (the disk; not the slower streak search)
    suggested = report("x.png", a, disk=deblur.estimate(blurred) is not None)["actions"]
    assert ("deblur" in suggested) == (kind == "defocus") and "sharpen" not in suggested
    # against the sharp frame with the same global correction (if the detector chose one)
    ref = sharp if a.correction is None else apply_global(sharp, a.correction)
    same = blurred if a.correction is None else apply_global(blurred, a.correction)
    assert _psnr(out, ref) >= _psnr(same, ref) + 2.0


def test_the_regularisation_follows_the_noise() -> None:
    sharp = detailed_photo(3)
    blurred = _defocus(sharp, 3.0)
    rng = np.random.default_rng(1)
    noisy = np.clip(blurred + rng.normal(0, 5, blurred.shape), 0, 255).astype(np.uint8)
    assert deblur.noise_level(blurred) < 1.0 and 2.5 < deblur.noise_level(noisy) < 6.0
    k_clean, k_noisy = deblur.regularisation(blurred), deblur.regularisation(noisy)
    assert k_clean < deblur.K < k_noisy
    assert deblur.regularisation(blurred, deblur.MOTION_K) == deblur.MOTION_K  # a streak's floor
    psf = deblur.disk_psf(3.0)
    # each frame is deconvolved better with its own K than with the other's
    assert _psnr(deblur.wiener(blurred, psf, k_clean), sharp) > \
        _psnr(deblur.wiener(blurred, psf, k_noisy), sharp) + 1.0
    assert _psnr(deblur.wiener(noisy, psf, k_noisy), sharp) > \
        _psnr(deblur.wiener(noisy, psf, k_clean), sharp) + 1.0


def test_the_borders_are_deconvolved_without_ringing() -> None:
    # an oblique streak: a mirrored border does not obey it, the tapered margin does. With
    # the mirror alone the 24-px band along the frame's edges lost 2.7 dB (middle +7.6 dB);
    # now it gains (+2.1; middle +8.7)
    sharp = _leaves(7)
    psf = deblur.motion_psf(15, 30.0)
    blurred = cv2.filter2D(sharp, -1, psf[::-1, ::-1], borderType=cv2.BORDER_REFLECT_101)
    out = deblur.wiener(blurred, psf, deblur.MOTION_K)
    edge = np.ones(sharp.shape[:2], bool)
    edge[24:-24, 24:-24] = False

    def gain(mask: np.ndarray) -> float:
        err = [((x[mask].astype(float) - sharp[mask]) ** 2).mean() for x in (blurred, out)]
        return float(10 * np.log10(err[0] / err[1]))

    assert gain(edge) >= 1.0 and gain(~edge) >= 6.0, (gain(edge), gain(~edge))


@pytest.mark.parametrize("interpolation", [cv2.INTER_CUBIC, cv2.INTER_LINEAR])
def test_a_frame_scaled_up_is_not_taken_for_a_blurred_one(interpolation: int) -> None:
    # its spectrum falls steeply past the small frame's Nyquist, as a small disk's does, but
    # never rises again to a sidelobe: deconvolving such a "disk" lost 1.7 dB (Val20, 2x)
    small = cv2.resize(detailed_photo(5, 480, 640), (320, 240), interpolation=cv2.INTER_AREA)
    up = cv2.resize(small, (640, 480), interpolation=interpolation)
    assert deblur.estimate(up) is None
    assert deblur.find_kernel(up) is None  # nor a short streak (separable interpolation)
    # while a real defocus of the same frame is still found
    assert deblur.estimate(_defocus(detailed_photo(5, 480, 640), 2.5)) is not None
