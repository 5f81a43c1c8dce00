"""Deblurring: the blur's kernel (a defocus disk, or a linear motion streak) read off the
frame's spectrum, then a Wiener deconvolution. Motion: see ``estimate_motion`` below.

Unsharp masking only steepens edges; it cannot undo a blur (Kodak, true severity: +0.5 dB
on defocus). A defocused lens spreads each point into a disk, whose transfer function has
rings of zeros at spatial frequencies ~0.61/r, 1.12/r, ... cycles per pixel: the frame's
radially averaged power spectrum dips there. ``estimate`` compares that spectrum (averaged
over tiles of the luma) with the transfer function of disks of radius 1.2..8.5 px and takes
the one that leaves the smoothest (most power-law-like) scene spectrum; it answers only
when that disk explains the spectrum far better than no blur at all, which it does not for
a sharp frame, a motion blur (zeros along one direction only) or a smooth, Gaussian-like
blur (no zeros), and rarely for a noisy one (the noise fills the dips). ``wiener`` then
divides the kernel's transfer function out where it stands above the regularisation, which
``regularisation`` keys to the frame's noise (``noise_level``); ``find_kernel`` gives the
disk, else the streak, with that regularisation.

On Val20's defocused photos (the calibration split) the radius came out within 0.1 px of
the generator's on all 20. Offline only (``camheal correct``, D-Bus ``CorrectImage`` and
``CaptureBurst``, ``correct-video``): ~15-30 ms to estimate a disk (at most MAX_TILES FFTs
of 256x256), ~1-2 s a motion streak, plus two FFT pairs per channel of the frame (~0.2 s
at 720p, ~0.55 s at 1080p on one core). numpy/OpenCV only.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import cv2
import numpy as np

from camheald.vision import directional

TILE = 256
MAX_TILES = 16
RADII = np.round(np.arange(1.2, 8.55, 0.1), 2)
# The fitted disk must leave at most this share of the spectrum's roughness without one.
# Val20: defocused photos 0.03-0.23; sharp photos and motion blurs > 1; Gaussian blurs
# 0.14-0.84 (a few small ones pass, as disks of ~2 px).
MAX_RESIDUAL_SHARE = 0.3
# A frame scaled up from a smaller one (digital zoom, a low-resolution source) has a steep
# fall in its spectrum that a small disk mimics, without a disk's zeros: Val20 and Kodak
# scaled down and back up (bicubic or bilinear) by 2 / 2.5 / 3 gave "disks" of 1.2-1.5 /
# 1.4-2.0 / 1.8-1.9 px in 63 / 35 / 30 of 88 cases, and deconvolving them lost 1.7 dB
# (Val20, 2x). The generator's defocused Val20 photos gave radii >= 1.7 and, where the
# first sidelobe lies in the band, a log-power rise to it from the first zero of 0.52-3.25.
MIN_RADIUS = 1.6
SIDELOBE_RISE = 0.25
K = 5e-3  # Wiener regularisation (noise-to-signal power) where no noise level is measured
# The regularisation that ``regularisation`` derives from the frame's noise: K_PER_VAR times
# the noise variance (grey levels^2), within K_RANGE. Val20 (calibration), blind kernels,
# the training generator's blurs with Gaussian noise of sigma 0 / 2 / 5 added (scratch
# script): the best fixed K was <= 7e-4 / 7e-3-1e-2 / 1e-2-3e-2 (defocus / motion).
K_PER_VAR = 3e-3
K_RANGE = (7e-4, 5e-2)
_BAND = (0.02, 0.45)  # cycles per pixel used for the fit (not DC, not the Nyquist corner)
_BINS = 64
_FLOOR = 1e-3  # a transfer-function zero is only as deep as the scene's noise


def disk_psf(radius: float) -> np.ndarray:
    """Anti-aliased disk (defocus) kernel of ``radius`` px, summing to 1 (the training
    generator's defocus, ``camheal_train.blur.disk_kernel``, is this one)."""
    r = int(np.ceil(radius)) + 1
    y, x = np.mgrid[-r:r + 1, -r:r + 1].astype(np.float32)
    k = np.clip(radius + 0.5 - np.sqrt(x * x + y * y), 0.0, 1.0)
    return (k / k.sum()).astype(np.float32)


def _otf(psf: np.ndarray, h: int, w: int) -> np.ndarray:
    """Transfer function (rfft2, h x w//2+1) of a centred, odd-sized kernel."""
    pad = np.zeros((h, w), np.float32)
    pad[:psf.shape[0], :psf.shape[1]] = psf
    return np.fft.rfft2(np.roll(pad, (-(psf.shape[0] // 2), -(psf.shape[1] // 2)), (0, 1)))


@functools.cache
def _grid() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(window, radial bin of each rfft2 cell, log-frequency of the fitted bins, their mask)."""
    win = np.outer(np.hanning(TILE), np.hanning(TILE)).astype(np.float32)
    fy, fx = np.meshgrid(np.fft.fftfreq(TILE), np.fft.rfftfreq(TILE), indexing="ij")
    edges = np.linspace(0.0, 0.5, _BINS + 1)
    idx = np.clip(np.digitize(np.sqrt(fx * fx + fy * fy), edges) - 1, 0, _BINS)
    centre = (edges[:-1] + edges[1:]) / 2
    band = (centre > _BAND[0]) & (centre < _BAND[1])
    return win, idx, np.log(centre[band]), band


def _radial(power: np.ndarray) -> np.ndarray:
    _, idx, _, _ = _grid()
    total = np.bincount(idx.ravel(), power.ravel(), _BINS + 1)[:_BINS]
    count = np.bincount(idx.ravel(), None, _BINS + 1)[:_BINS]
    return total / np.maximum(count, 1)


@functools.cache
def _models() -> np.ndarray:
    """log(|OTF|^2 + floor) of each candidate disk over the fitted bins (len(RADII) x bins)."""
    _, _, _, band = _grid()
    return np.stack([np.log(_radial(np.abs(_otf(disk_psf(r), TILE, TILE)) ** 2)[band] + _FLOOR)
                     for r in RADII])


def _detrend(log_f: np.ndarray) -> np.ndarray:
    """Projection (len x len) leaving the residual of a least-squares straight line in
    ``log_f``: ``y @ _detrend(log_f)`` is what no power law explains of each row of y."""
    a = np.vstack([log_f, np.ones_like(log_f)]).T
    return np.eye(len(log_f)) - a @ np.linalg.pinv(a)


def _roughness(y: np.ndarray) -> np.ndarray:
    """Mean squared residual of a straight-line fit against log-frequency, per row of y."""
    _, _, lf, _ = _grid()
    return np.mean((y @ _detrend(lf)) ** 2, axis=-1)


def _tile_power(rgb: np.ndarray) -> np.ndarray:
    """Power spectrum (rfft2 layout, TILE x TILE//2+1) of the luma, averaged over up to
    MAX_TILES windowed TILE x TILE tiles spread over the frame."""
    win, _, _, _ = _grid()
    g = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
    h, w = g.shape
    ys = np.linspace(0, h - TILE, max(1, min(4, (h - TILE) // (TILE // 2) + 1))).astype(int)
    xs = np.linspace(0, w - TILE, max(1, min(4, (w - TILE) // (TILE // 2) + 1))).astype(int)
    acc = np.zeros((TILE, TILE // 2 + 1), np.float64)
    for y in ys:
        for x in xs:
            t = g[y:y + TILE, x:x + TILE]
            acc += np.abs(np.fft.rfft2((t - t.mean()) * win)) ** 2
    return acc / (len(ys) * len(xs))


def estimate(rgb: np.ndarray) -> tuple[float, float] | None:
    """(radius px, residual share) of the defocus disk that best explains the frame's
    spectrum, or None when none explains it well (share > MAX_RESIDUAL_SHARE), when it
    looks like a frame scaled up rather than a defocus (radius < MIN_RADIUS, or no rise to
    the first sidelobe), or when the frame is smaller than one TILE."""
    if min(rgb.shape[:2]) < TILE:
        return None
    _, _, _, band = _grid()
    full = np.log(_radial(_tile_power(rgb)) + 1e-6)
    lp = full[band]
    without = float(_roughness(lp[None])[0])
    rough = _roughness(lp[None] - _models())
    i = int(np.argmin(rough))
    share = float(rough[i]) / max(without, 1e-9)
    r = float(RADII[i])
    if share > MAX_RESIDUAL_SHARE or r < MIN_RADIUS or not _sidelobe_shows(full, r):
        return None
    return r, share


def _sidelobe_shows(full: np.ndarray, r: float) -> bool:
    """Whether the radial log spectrum ``full`` (all _BINS bins up to 0.5 cycles per pixel)
    rises again after the disk's first zero (0.61 / r) to its first sidelobe (0.81 / r), as
    a defocused frame's does; True when that sidelobe lies beyond the last bin."""
    edges = np.linspace(0.0, 0.5, _BINS + 1)
    f = (edges[:-1] + edges[1:]) / 2
    if 0.81 / r > f[-1]:
        return True

    def at(freq: float) -> float:
        j = int(np.argmin(np.abs(f - freq)))
        return float(full[max(0, j - 1):j + 2].mean())

    return at(0.81 / r) - at(0.61 / r) >= SIDELOBE_RISE


def _taper(p: int, h: int, w: int) -> np.ndarray:
    """HxW weights rising linearly from 0 at the border to 1 at ``p`` px inside it."""
    ry = np.minimum(np.arange(h), np.arange(h)[::-1]) / p
    rx = np.minimum(np.arange(w), np.arange(w)[::-1]) / p
    return np.minimum(np.clip(ry, 0, 1)[:, None], np.clip(rx, 0, 1)[None, :]).astype(np.float32)


def noise_level(rgb: np.ndarray) -> float:
    """The frame's noise level (grey levels): the diagonal Haar detail's RMS in the flattest
    fifth of its 8x8 blocks (20th percentile of the block means of its square). On a blurred
    frame that band holds little but noise, and the flattest blocks none of the detail a
    motion blur leaves across its streak. It reads Gaussian noise of sigma 2 / 5 as about
    1.3-1.6 / 3.2 (Val20 blurs), and about 0.4 (defocus) or 1 (motion) on noise-free ones."""
    g = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY) if rgb.ndim == 3 else rgb
    g = g[:g.shape[0] // 16 * 16, :g.shape[1] // 16 * 16].astype(np.float32)
    if g.size == 0:
        return 0.0
    hh = (g[0::2, 0::2] - g[0::2, 1::2] - g[1::2, 0::2] + g[1::2, 1::2]) * 0.5
    blocks = (hh * hh).reshape(hh.shape[0] // 8, 8, hh.shape[1] // 8, 8).mean(axis=(1, 3))
    return float(np.sqrt(np.percentile(blocks, 20)))


def regularisation(rgb: np.ndarray, floor: float = K_RANGE[0]) -> float:
    """Wiener K for deconvolving this (blurred) frame: K_PER_VAR x its noise variance,
    between ``floor`` and K_RANGE's top. A fixed K either leaves a clean frame soft or
    amplifies a noisy one's noise. A streak's kernel is a guess that is never exact and a
    uniform streak's spectrum has true zeros, so streaks keep MOTION_K as their floor (a
    noise-free 13-px streak: 22.5 dB at K = 7e-4 against 26.2 at 5e-3)."""
    return float(np.clip(K_PER_VAR * noise_level(rgb) ** 2, floor, K_RANGE[1]))


def wiener(rgb: np.ndarray, psf: np.ndarray, k: float = K) -> np.ndarray:
    """Wiener deconvolution of an HxWx3 (or HxW) uint8 frame by a centred, odd-sized
    ``psf`` with regularisation ``k``. Returns uint8 of the same shape.

    The frame is mirrored at its borders by the kernel's size, and that margin is faded
    into the frame blurred (circularly) by the kernel itself, as MATLAB's ``edgetaper``
    does: the FFT's wrap-around then meets content that obeys the blur model. A mirror
    alone does not for an oblique streak, and its seam rang far into the frame: on
    480x360 frames the taper added 2-5 dB over the mirror alone (motion 15 px, disk 4 px;
    docs in models/RESTORE_CARD.md)."""
    p = max(psf.shape)
    x = cv2.copyMakeBorder(rgb, p, p, p, p, cv2.BORDER_REFLECT_101).astype(np.float32)
    x = x.reshape(*x.shape[:2], -1)
    h, w = x.shape[:2]
    otf = _otf(psf, h, w)
    gain = (np.conj(otf) / (np.abs(otf) ** 2 + np.float32(k))).astype(np.complex64)
    fade = _taper(p, h, w)
    out = np.empty_like(x)
    for c in range(x.shape[2]):
        ch = x[..., c]
        blurred = np.fft.irfft2(np.fft.rfft2(ch) * otf, s=(h, w))
        ch = fade * ch + (1.0 - fade) * blurred
        out[..., c] = np.fft.irfft2(np.fft.rfft2(ch) * gain, s=(h, w))
    out = np.clip(np.rint(out[p:h - p, p:w - p]), 0, 255).astype(np.uint8)
    return out.reshape(rgb.shape)


# ------------------------------------------------------------------------ linear motion
#
# A linear motion blur's transfer function varies only along its direction: its magnitude
# has dips (zeros, for a uniform streak) at spatial frequencies k / length along that
# direction, none across it. ``estimate_motion`` resamples the tiles' log power spectrum on
# a polar grid and, around the direction the structure tensor suggests (a motion blur
# removes the gradients along it), tries streaks of every length and ramp: it keeps the one
# whose log transfer function, subtracted, leaves each direction's spectrum closest to a
# straight line in log frequency (a scene's power law). The transfer functions are those of
# the rasterised kernels themselves (``motion_psf``), not of ideal lines: an ideal line's
# explained the oblique streaks' spectra badly (the right length on 11 of Val20's 20).
# The magnitude cannot tell a ramp from its mirror image, so both are deconvolved (luma)
# and the one leaving the sparser gradients (less ringing) is kept.

MOTION_LENGTHS = np.arange(5, 37, 2)  # odd lengths (px) tried; the training generator's
MOTION_RAMPS = np.array([0.0, 0.35, 0.7, 1.0])  # |ramp| tried (coarse pass)
# how the streak was rotated into place: kornia's default, and the bilinear rotation that
# its mode="bilinear" (and imgaug's MotionBlur) uses, which smooths the streak sideways
MOTION_ROTATIONS = ("nearest", "bilinear")
_ROTATION_FLAGS = {"nearest": cv2.INTER_NEAREST, "bilinear": cv2.INTER_LINEAR}
MOTION_FLOOR = 3e-2  # depth of a modelled zero: 1e-3 chose ramped streaks for uniform ones
# The fitted streak must leave at most this share of the roughness without one. Val20 (the
# calibration photos), two draws of one streak of the training generator's per photo
# (scratch scripts): motion 0.44-0.91 (median ~0.7); every defocused, Gaussian-blurred,
# shaken and clean photo >= 0.71 (first draw, nearest rotation only) and >= 0.74 (second
# draw, both rotations, the photos where no disk is found). Of those that look directional
# (coherence >= directional.SHARPEN_BELOW) none < 0.78, so a looser bound applies to a
# frame that does: 7 more of the 37 streaks pass (5 gain +3.5 to +6.9 dB, 2 lose 0.14).
MAX_MOTION_SHARE = 0.70
MAX_MOTION_SHARE_DIRECTIONAL = 0.75
# A streak shorter than MIN_STREAK and ramped by more than MAX_SHORT_RAMP (a smooth
# directional low-pass without a uniform streak's zeros) is not accepted: a frame scaled up
# from a smaller one (whose separable interpolation cuts its spectrum off in a square, not
# a circle) showed a 5-px fully ramped streak in 22 of 24 Kodak photos scaled up to
# 1920x1280, and deconvolving those lost ~2 dB. The short streaks found in the generator's
# Val20 motion blurs were uniform or nearly (|ramp| <= 0.15; 3 and 5 px gained +6 dB).
MIN_STREAK = 7
MAX_SHORT_RAMP = 0.5
MOTION_K = 5e-3  # Wiener regularisation of the sign test, and the least for a streak
_ANGLE_SPAN = 18.0  # degrees searched either side of the structure tensor's direction
_POLAR_ANGLES = np.arange(-90.0, 90.0, 2.0)  # the half plane the rfft2 holds
_POLAR_RADII = np.linspace(0.03, 0.45, 97)[:-1] + 0.42 / 96 / 2  # cycles per pixel


def motion_psf(length: int, angle: float, ramp: float = 0.0,
               rotation: str = "nearest") -> np.ndarray:
    """Linear motion kernel (length x length, odd length, summing to 1): a streak of
    ``length`` px through the centre at ``angle`` degrees (counter-clockwise as displayed,
    from +x), its weights ramping linearly from (1 + ramp) / 2 at one end to (1 - ramp) / 2
    at the other (0: uniform), rotated by ``rotation`` ("nearest" or "bilinear"). It is the
    kernel of ``kornia.filters.get_motion_kernel2d(length, angle, ramp, mode=rotation)``
    (mode "nearest" is kornia's default and what the training generator applies with
    ``cv2.filter2D``)."""
    n = int(length)
    if n < 3 or n % 2 == 0:
        raise ValueError(f"motion length must be odd and >= 3, got {length}")
    d = (float(np.clip(ramp, -1.0, 1.0)) + 1.0) / 2.0
    k = np.zeros((n, n), np.float32)
    k[n // 2] = d + (1.0 - 2.0 * d) / (n - 1) * np.arange(n)
    m = cv2.getRotationMatrix2D(((n - 1) / 2, (n - 1) / 2), float(angle), 1.0)
    k = cv2.warpAffine(k, m, (n, n), flags=_ROTATION_FLAGS[rotation], borderValue=0)
    return (k / k.sum()).astype(np.float32)


@functools.cache
def _polar() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(map x, map y) sampling an rfft2 spectrum whose rows are fftshift-ed on the polar
    grid (angles x radii), and the projection leaving a least-squares line's residual in
    log radius (radii x radii)."""
    th = np.radians(_POLAR_ANGLES)[:, None]
    mx = (_POLAR_RADII[None, :] * TILE * np.cos(th)).astype(np.float32)
    my = (TILE / 2 + _POLAR_RADII[None, :] * TILE * np.sin(th)).astype(np.float32)
    return mx, my, _detrend(np.log(_POLAR_RADII))


def _to_polar(log_power: np.ndarray) -> np.ndarray:
    mx, my, _ = _polar()
    shifted = np.fft.fftshift(log_power, axes=0).astype(np.float32)
    return cv2.remap(shifted, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def _motion_model(length: int, angle: float, ramp: float, rotation: str) -> np.ndarray:
    """Polar log(|OTF|^2 + MOTION_FLOOR) of ``motion_psf(length, angle, ramp, rotation)``."""
    k = motion_psf(length, angle, ramp, rotation)
    # not ``_otf``: only the magnitude counts here (no centring roll), and cv2.dft is a few
    # times faster than numpy's rfft2 for the ~2 600 candidates of a search
    pad = np.zeros((TILE, TILE), np.float32)
    pad[:k.shape[0], :k.shape[1]] = k
    f = cv2.dft(pad, flags=cv2.DFT_COMPLEX_OUTPUT)[:, :TILE // 2 + 1]
    return _to_polar(np.log(f[..., 0] ** 2 + f[..., 1] ** 2 + MOTION_FLOOR))


def _polar_roughness(y: np.ndarray) -> np.ndarray:
    """Mean squared residual of a straight line in log radius fitted per direction, for
    each polar map of a stack (n x angles x radii) -> (n,)."""
    _, _, proj = _polar()
    # one 2-D product: numpy's stacked matmul does not call BLAS (15x slower here)
    r = y.reshape(-1, y.shape[-1]) @ proj
    return np.mean((r * r).reshape(len(y), -1), axis=1)


Streak = tuple[float, int, float, str]  # angle, length, |ramp|, rotation


def _search(lp: np.ndarray, angles: np.ndarray, lengths: np.ndarray, ramps: np.ndarray,
            rotations: tuple[str, ...]) -> tuple[float, Streak]:
    """(roughness, streak) of the candidate streak that best flattens the polar log
    spectrum ``lp``, over every combination of the given values (roughness inf: none
    scored, e.g. a non-finite spectrum)."""
    best: tuple[float, Streak] = (np.inf, (0.0, 0, 0.0, ""))
    grid = [(int(n), float(r), rot) for n in lengths for r in ramps for rot in rotations]
    for a in angles:
        models = np.stack([_motion_model(n, float(a), r, rot) for n, r, rot in grid])
        rough = _polar_roughness(lp[None] - models)
        i = int(np.argmin(rough))
        if rough[i] < best[0]:
            best = (float(rough[i]), (float(a) % 180.0, *grid[i]))
    return best


def _motion_spectrum(rgb: np.ndarray, t: tuple[float, float, float]
                     ) -> tuple[np.ndarray, float, float]:
    """(polar log spectrum, its roughness without a streak, the share bound for this frame:
    MAX_MOTION_SHARE, or MAX_MOTION_SHARE_DIRECTIONAL when its gradients look directional
    by ``t``, the frame's ``directional.tensor``)."""
    lp = _to_polar(np.log(_tile_power(rgb) + 1e-6)).astype(np.float64)
    without = float(_polar_roughness(lp[None])[0])
    bound = MAX_MOTION_SHARE_DIRECTIONAL \
        if directional.coherence(rgb, t) >= directional.SHARPEN_BELOW else MAX_MOTION_SHARE
    return lp, without, bound


def estimate_motion(rgb: np.ndarray) -> tuple[Streak, float] | None:
    """((angle in degrees, length px, |ramp|, rotation), residual share) of the linear
    motion streak that best explains the frame's spectrum, or None when none explains it
    well (share > MAX_MOTION_SHARE, or MAX_MOTION_SHARE_DIRECTIONAL for a frame whose
    gradients look directional), when it is short and smooth (MIN_STREAK, MAX_SHORT_RAMP:
    what a frame scaled up shows) or the frame is smaller than one TILE. The length
    comes out odd, 3-39 px. ~1.5 s for a 768x512 photo on one core: a coarse pass over
    19 directions x 16 lengths x 4 ramps x 2 rotations, then a fine one around the best
    (7 directions x 5 lengths x 5 ramps); about 2 600 candidate transfer functions."""
    if min(rgb.shape[:2]) < TILE:
        return None
    tensor = directional.tensor(rgb)
    lp, without, bound = _motion_spectrum(rgb, tensor)
    # the streak runs across the dominant gradient orientation (it removes those along it)
    a0 = (directional.orientation(rgb, tensor) + 90.0) % 180.0
    rough, (a, n, r, rot) = _search(
        lp, np.arange(a0 - _ANGLE_SPAN, a0 + _ANGLE_SPAN + 0.1, 2.0), MOTION_LENGTHS,
        MOTION_RAMPS, MOTION_ROTATIONS)
    if not np.isfinite(rough) or not np.isfinite(without):
        return None
    rough, streak = _search(lp, np.arange(a - 1.5, a + 1.6, 0.5),
                            np.arange(max(3, n - 4), n + 5, 2),
                            np.linspace(max(0.0, r - 0.2), min(1.0, r + 0.2), 5), (rot,))
    share = rough / max(without, 1e-9)
    short_and_smooth = streak[1] < MIN_STREAK and streak[2] > MAX_SHORT_RAMP
    return (streak, share) if share <= bound and not short_and_smooth else None


def streak_fits(rgb: np.ndarray, streak: Streak) -> bool:
    """Whether ``streak`` (angle, length, ramp of either sign, rotation), found in another
    frame, still explains this frame's spectrum as well as ``estimate_motion`` demands of
    the streak it finds (same share bound). One candidate instead of ~2 600: ~12 ms (make bench),
    cheap enough to check every frame of a clip before deconvolving it with that streak
    (a camera's shake changes from frame to frame; a wrong streak rings)."""
    if min(rgb.shape[:2]) < TILE:
        return False
    a, n, r, rot = streak
    lp, without, bound = _motion_spectrum(rgb, directional.tensor(rgb))
    rough = float(_polar_roughness((lp - _motion_model(n, a, abs(r), rot))[None])[0])
    return bool(np.isfinite(rough) and np.isfinite(without)
                and rough / max(without, 1e-9) <= bound)


def _gradient_sparsity(grey: np.ndarray) -> float:
    """L1 / L2 norm of the image differences: ringing and ghosts raise it."""
    g = grey.astype(np.float32)
    d = np.concatenate([np.diff(g, axis=1).ravel(), np.diff(g, axis=0).ravel()])
    return float(np.abs(d).sum() / max(np.sqrt(float(np.dot(d, d))), 1e-9))


def motion_kernel(rgb: np.ndarray) -> tuple[np.ndarray, Streak] | None:
    """The linear motion streak the frame's spectrum shows, as a kernel, if any.

    Args:
        rgb: HxWx3 uint8 RGB frame.

    Returns:
        (kernel, (angle, length, signed ramp, rotation)), or None when ``estimate_motion``
        finds no streak. The ramp's sign says which way the streak's heavy end points as a
        convolution kernel: positive is ``motion_psf(length, angle, |ramp|, rotation)``,
        negative the same kernel turned by 180 degrees (its mirror image, which has the same
        spectral magnitude). A blur made with ``cv2.filter2D`` (a correlation) by
        ``motion_psf(.., ramp)`` comes out as about ``-ramp``.
    """
    found = estimate_motion(rgb)
    if found is None:
        return None
    (a, n, r, rot), _ = found
    psf = motion_psf(n, a, r, rot)
    ramp = r
    if r > 0.05:  # which end is heavier: the mirror image rings (sparser gradients win)
        grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        turned = np.ascontiguousarray(psf[::-1, ::-1])
        if _gradient_sparsity(wiener(grey, turned, MOTION_K)) \
                < _gradient_sparsity(wiener(grey, psf, MOTION_K)):
            psf, ramp = turned, -r
    return psf, (a, n, ramp, rot)


class Kernel(NamedTuple):
    """A blur kernel read off a frame's spectrum: ``psf``, ``kind`` "disk" (defocus) or
    "streak" (linear motion), ``streak`` (angle, length, signed ramp, rotation; None for a
    disk) and the Wiener regularisation ``k`` to deconvolve it with."""

    psf: np.ndarray
    kind: str
    streak: Streak | None
    k: float


def find_kernel(rgb: np.ndarray) -> Kernel | None:
    """The defocus disk when the spectrum shows one (``estimate``, tens of ms), else the
    motion streak (``motion_kernel``, seconds); None when neither shows."""
    found = estimate(rgb)
    if found is not None:
        return Kernel(disk_psf(found[0]), "disk", None, regularisation(rgb))
    streak = motion_kernel(rgb)
    return Kernel(streak[0], "streak", streak[1], regularisation(rgb, MOTION_K)) \
        if streak is not None else None


def deconvolve(rgb: np.ndarray) -> tuple[np.ndarray, str] | None:
    """(deblurred frame, "disk" or "streak") by ``find_kernel``'s kernel; None when the
    spectrum shows neither (the caller falls back to unsharp masking or leaves the frame)."""
    kern = find_kernel(rgb)
    return (wiener(rgb, kern.psf, kern.k), kern.kind) if kern is not None else None
