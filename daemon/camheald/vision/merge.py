"""Multi-frame denoising of a burst: each frame averaged with its aligned neighbours where
they agree with it.

A burst holds the same scene several times with independent noise; averaging N aligned
frames divides the noise's variance by N, which no single-frame denoiser matches without
smoothing detail away. Each neighbour is aligned to the frame by a global sub-pixel
translation (phase correlation: a hand-held burst's shake, a pan) and weighted per pixel by
how well it agrees with the frame there (the 5x5 mean of their grey difference against what
the noise alone explains). Where something moved on its own, or the translation does not
describe the motion (rotation, parallax), the weight falls to 0 and the frame keeps its own
pixels: no ghosts, less denoising there.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

RADIUS = 2  # neighbours on each side of a frame that are merged into it
MAX_SHIFT = 0.1  # of the frame's smaller side: beyond it a neighbour is not merged
# weight exp(-(d / (_AGREE x the noise of d))^2) for a 5x5 mean grey difference d: of 1, 1.5,
# 2 and 3, 2 and 3 gave the best PSNR on a 5-frame synthetic burst with an object moving on
# its own (scratch script; sigma 5 / 12 / 25: +6.2 / +6.5 / +6.0 dB), 2 is the stricter
_AGREE = 2.0
_WORK_SIDE = 512  # the shift is measured on a copy at most this large


def _grey(rgb: np.ndarray) -> tuple[np.ndarray, float]:
    """(grey float32 copy at most _WORK_SIDE large, the factor to full resolution)."""
    g = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    k = max(1.0, max(g.shape) / _WORK_SIDE)
    if k > 1.0:
        g = cv2.resize(g, (round(g.shape[1] / k), round(g.shape[0] / k)),
                       interpolation=cv2.INTER_AREA)
    return g.astype(np.float32), k


def _correlate(a: np.ndarray, b: np.ndarray) -> tuple[tuple[float, float], float]:
    """((tx, ty), peak response) of a Hann-windowed phase correlation: ``b`` moved by t lies
    on ``a`` (grey float32 of one size)."""
    win = cv2.createHanningWindow(a.shape[::-1], cv2.CV_32F)
    # copies: OpenCV 5 multiplies its inputs by the window in place (docs/defects.md)
    return cv2.phaseCorrelate(b.copy(), a.copy(), win)


def shift(ref: np.ndarray, other: np.ndarray) -> tuple[float, float] | None:
    """(tx, ty) in px: ``other`` moved by it (content at x goes to x + t) lies on ``ref``
    (HxWx3 uint8 RGB of one size); None when no single translation explains them (weak
    correlation peak) or it is larger than MAX_SHIFT of the frame."""
    a, k = _grey(ref)
    b, _ = _grey(other)
    if min(a.shape) < 8:  # too thin a frame to correlate
        return None
    (tx, ty), response = _correlate(a, b)
    tx, ty = tx * k, ty * k
    if response < 0.05 or max(abs(tx), abs(ty)) > MAX_SHIFT * min(ref.shape[:2]):
        return None
    if k > 1.0:  # a shrunk copy's sub-pixel error grows by k: refine at full resolution
        tx, ty = _refine(ref, other, tx, ty)
    return float(tx), float(ty)


def _refine(ref: np.ndarray, other: np.ndarray, tx: float, ty: float) -> tuple[float, float]:
    """(tx, ty) refined by a phase correlation of full-resolution central crops (at most
    _WORK_SIDE square), ``other``'s taken where the coarse shift puts it; the coarse shift
    when the crops are too small or the residual is more than 2 px."""
    h, w = ref.shape[:2]
    ix, iy = round(tx), round(ty)
    c = min(_WORK_SIDE, h - 2 * abs(iy) - 2, w - 2 * abs(ix) - 2)
    if c < 32:
        return tx, ty
    y0, x0 = (h - c) // 2, (w - c) // 2
    a = cv2.cvtColor(ref[y0:y0 + c, x0:x0 + c], cv2.COLOR_RGB2GRAY).astype(np.float32)
    b = cv2.cvtColor(other[y0 - iy:y0 - iy + c, x0 - ix:x0 - ix + c],
                     cv2.COLOR_RGB2GRAY).astype(np.float32)
    (rx, ry), response = _correlate(a, b)
    if response < 0.05 or max(abs(rx), abs(ry)) > 2.0:
        return tx, ty
    return ix + rx, iy + ry


def merge_one(frames: list[np.ndarray], i: int, sigma: float,
              radius: int = RADIUS) -> tuple[np.ndarray, int]:
    """Frame ``i`` of ``frames`` (HxWx3 uint8 RGB, one size) averaged with its aligned
    neighbours (up to ``radius`` on each side) where they agree with it; ``sigma`` is the
    frames' noise level in grey levels (``deblur.noise_level``). Returns (merged frame,
    number of neighbours merged)."""
    ref = frames[i]
    h, w = ref.shape[:2]
    acc = ref.astype(np.float32)
    total = np.ones((h, w), np.float32)
    ref_grey = cv2.cvtColor(ref, cv2.COLOR_RGB2GRAY).astype(np.float32)
    # the 5x5 mean of the difference of two frames' grey noise has a std of ~sqrt(2) x
    # sigma / 5 (grey averages the channels' noise, which only lowers it)
    scale = _AGREE * max(np.sqrt(2.0) * sigma / 5.0, 0.5)
    used = 0
    for j in range(max(0, i - radius), min(len(frames), i + radius + 1)):
        if j == i:
            continue
        t = shift(ref, frames[j])
        if t is None:
            continue
        m = np.float32([[1, 0, t[0]], [0, 1, t[1]]])
        moved = cv2.warpAffine(frames[j], m, (w, h), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REFLECT_101)
        diff = cv2.cvtColor(moved, cv2.COLOR_RGB2GRAY).astype(np.float32) - ref_grey
        diff = cv2.blur(diff, (5, 5))
        weight = np.exp(-(diff / scale) ** 2)
        # the border the warp mirrored in is not the scene: keep the frame's own pixels there
        cx, cy = int(np.ceil(abs(t[0]))) + 1, int(np.ceil(abs(t[1]))) + 1
        weight[:, :cx] *= t[0] <= 0
        weight[:, w - cx:] *= t[0] >= 0
        weight[:cy] *= t[1] <= 0
        weight[h - cy:] *= t[1] >= 0
        acc += weight[..., None] * moved
        total += weight
        used += 1
    out = acc / total[..., None]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8), used


def merge_burst(frames: list[np.ndarray], sigma: float,
                radius: int = RADIUS) -> tuple[list[np.ndarray], list[int]]:
    """Every frame of a burst merged with its neighbours (``merge_one``); returns (frames,
    how many neighbours each merged)."""
    out, used = [], []
    for i in range(len(frames)):
        img, n = merge_one(frames, i, sigma, radius)
        out.append(img)
        used.append(n)
    return out, used


class SlidingMerge:
    """A clip's frames in order in, the same frames out ``radius`` frames later, each merged
    with its neighbours (``merge_one``) while noise was found: every ``every`` frames
    ``sigma_for(frame)`` decides for that frame and the ones up to the next decision (the
    noise level in grey levels, or None: not noisy, frames pass unchanged). ``merged``
    counts the frames that merged at least one neighbour."""

    def __init__(self, sigma_for: Callable[[np.ndarray], float | None], every: int,
                 radius: int = RADIUS) -> None:
        self._sigma_for = sigma_for
        self._every = max(1, every)
        self._radius = radius
        self._window: list[np.ndarray] = []
        self._sigmas: list[float | None] = []
        self._first = 0  # clip index of _window[0]
        self._next = 0  # clip index of the next frame out
        self._sigma: float | None = None
        self.merged = 0

    def push(self, rgb: np.ndarray) -> list[np.ndarray]:
        """Add the next frame; returns the frames now ready (0 or 1)."""
        i = self._first + len(self._window)
        if i % self._every == 0:
            self._sigma = self._sigma_for(rgb)
        self._window.append(rgb)
        self._sigmas.append(self._sigma)
        out = []
        while self._next + self._radius < self._first + len(self._window):
            out.append(self._emit())
        return out

    def flush(self) -> list[np.ndarray]:
        """The frames still held, at the end of the clip."""
        out = []
        while self._next < self._first + len(self._window):
            out.append(self._emit())
        return out

    def _emit(self) -> np.ndarray:
        k = self._next - self._first
        sigma = self._sigmas[k]
        img = self._window[k]
        if sigma is not None:
            img, used = merge_one(self._window, k, sigma, self._radius)
            self.merged += used > 0
        self._next += 1
        while self._next - self._first > self._radius:  # no longer anyone's neighbour
            self._window.pop(0)
            self._sigmas.pop(0)
            self._first += 1
        return img
