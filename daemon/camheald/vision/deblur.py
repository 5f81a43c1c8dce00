"""Defocus deblurring: the blur disk's radius read off the frame's spectrum, then a Wiener
deconvolution.

Unsharp masking only steepens edges; it cannot undo a blur (Kodak, true severity: +0.5 dB
on defocus). A defocused lens spreads each point into a disk, whose transfer function has
rings of zeros at spatial frequencies ~0.61/r, 1.12/r, ... cycles per pixel: the frame's
radially averaged power spectrum dips there. ``estimate`` compares that spectrum (averaged
over tiles of the luma) with the transfer function of disks of radius 1.2..8.5 px and takes
the one that leaves the smoothest (most power-law-like) scene spectrum; it answers only
when that disk explains the spectrum far better than no blur at all, which it does not for
a sharp frame, a motion blur (zeros along one direction only) or a smooth, Gaussian-like
blur (no zeros), and rarely for a noisy one (the noise fills the dips). ``wiener`` then
divides the disk's transfer function out where it stands above the regularisation.

On Val20's defocused photos (the calibration split) the radius came out within 0.1 px of
the generator's on all 20. Offline only (``camheal correct`` / ``CorrectImage``): ~15-30 ms
to estimate (at most MAX_TILES FFTs of 256x256) plus one FFT pair per channel of the frame
(~40 ms at 768x512 on one core). numpy/OpenCV only.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

TILE = 256
MAX_TILES = 16
RADII = np.round(np.arange(1.2, 8.55, 0.1), 2)
# The fitted disk must leave at most this share of the spectrum's roughness without one.
# Val20: defocused photos 0.03-0.23; sharp photos and motion blurs > 1; Gaussian blurs
# 0.14-0.84 (a few small ones pass, as disks of ~2 px).
MAX_RESIDUAL_SHARE = 0.3
K = 5e-3  # Wiener regularisation (noise-to-signal power), best of 7 on Val20 defocus
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


def _roughness(y: np.ndarray) -> np.ndarray:
    """Mean squared residual of a straight-line fit against log-frequency, per row of y."""
    _, _, lf, _ = _grid()
    a = np.vstack([lf, np.ones_like(lf)]).T
    coef, *_ = np.linalg.lstsq(a, y.T, rcond=None)
    return np.mean((a @ coef - y.T) ** 2, axis=0)


def spectrum(rgb: np.ndarray) -> np.ndarray:
    """Radially averaged power spectrum of the luma over the fitted bins (log), from up to
    MAX_TILES windowed TILE x TILE tiles spread over the frame."""
    win, _, _, band = _grid()
    g = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
    h, w = g.shape
    ys = np.linspace(0, h - TILE, max(1, min(4, (h - TILE) // (TILE // 2) + 1))).astype(int)
    xs = np.linspace(0, w - TILE, max(1, min(4, (w - TILE) // (TILE // 2) + 1))).astype(int)
    acc = np.zeros((TILE, TILE // 2 + 1), np.float64)
    for y in ys:
        for x in xs:
            t = g[y:y + TILE, x:x + TILE]
            acc += np.abs(np.fft.rfft2((t - t.mean()) * win)) ** 2
    return np.log(_radial(acc / (len(ys) * len(xs)))[band] + 1e-6)


def estimate(rgb: np.ndarray) -> tuple[float, float] | None:
    """(radius px, residual share) of the defocus disk that best explains the frame's
    spectrum, or None when none explains it well (share > MAX_RESIDUAL_SHARE) or the frame
    is smaller than one TILE."""
    if min(rgb.shape[:2]) < TILE:
        return None
    lp = spectrum(rgb)
    without = float(_roughness(lp[None])[0])
    rough = _roughness(lp[None] - _models())
    i = int(np.argmin(rough))
    share = float(rough[i]) / max(without, 1e-9)
    return (float(RADII[i]), share) if share <= MAX_RESIDUAL_SHARE else None


def wiener(rgb: np.ndarray, psf: np.ndarray, k: float = K) -> np.ndarray:
    """Wiener deconvolution of an HxWx3 uint8 frame by a centred, odd-sized ``psf`` with
    regularisation ``k``; the frame is mirrored at its borders first, so the FFT's
    wrap-around meets continuous content. Returns uint8 of the same shape."""
    p = max(psf.shape)
    x = cv2.copyMakeBorder(rgb, p, p, p, p, cv2.BORDER_REFLECT_101).astype(np.float32)
    h, w = x.shape[:2]
    otf = _otf(psf, h, w)
    gain = (np.conj(otf) / (np.abs(otf) ** 2 + np.float32(k))).astype(np.complex64)
    out = np.empty_like(x)
    for c in range(x.shape[2]):
        out[..., c] = np.fft.irfft2(np.fft.rfft2(x[..., c]) * gain, s=(h, w))
    return np.clip(np.rint(out[p:h - p, p:w - p]), 0, 255).astype(np.uint8)


def deblur(rgb: np.ndarray) -> tuple[np.ndarray, float] | None:
    """(deblurred frame, disk radius) when the frame's spectrum shows a defocus disk
    (``estimate``), else None (the caller falls back to unsharp masking)."""
    found = estimate(rgb)
    if found is None:
        return None
    return wiener(rgb, disk_psf(found[0])), found[0]
