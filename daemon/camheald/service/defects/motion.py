"""Camera motion: the global translation of the view against a keyframe.

Half-whitened cross-correlation of the zero-mean windowed frames at the working resolution;
the lens defect's own peak at "no motion" is passed over when a weaker peak explains the
frame, continues the camera's recent motion, or the strongest peak moves steadily.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from .model import DefectConfig


def _spectrum(img: np.ndarray, window: np.ndarray) -> np.ndarray:
    """DFT of the zero-mean, windowed image (for ``_translations``)."""
    return cv2.dft((img - float(img.mean())) * window, flags=cv2.DFT_COMPLEX_OUTPUT)


def _translations(fa: np.ndarray, fb: np.ndarray, n: int = 3) -> list[tuple[float, float]]:
    """Candidate shifts (dx, dy) with b[y, x] ~ a[y - dy, x - dx], best peak first, from the
    spectra of a and b.

    Half-whitened cross-correlation: full whitening (phase correlation) lets thin sharp
    structures such as a crack on the lens (which does not move) outweigh a smooth scene;
    none lets the brightest broad shapes decide. Even so the lens defect makes a peak at no
    shift, so the next peaks are returned too (the caller checks which one explains the frame).
    """
    r = cv2.mulSpectrums(fb, fa, 0, conjB=True)
    mag = cv2.magnitude(r[..., 0], r[..., 1])
    r /= np.sqrt(mag + 1e-3)[..., None]
    c = cv2.idft(r, flags=cv2.DFT_REAL_OUTPUT | cv2.DFT_SCALE)
    h, w = c.shape

    def sub(m1: float, m0: float, p1: float) -> float:  # parabola through three samples
        den = m1 - 2 * m0 + p1
        return 0.0 if den >= 0 else float(np.clip(0.5 * (m1 - p1) / den, -0.5, 0.5))

    out = []
    for _ in range(n):
        _, _, _, (px, py) = cv2.minMaxLoc(c)
        dx = px + sub(c[py, px - 1], c[py, px], c[py, (px + 1) % w])
        dy = py + sub(c[py - 1, px], c[py, px], c[(py + 1) % h, px])
        out.append((dx - w if dx > w / 2 else dx, dy - h if dy > h / 2 else dy))
        low = float(c.min())
        for yy in range(py - 2, py + 3):  # suppress this peak (the surface wraps around)
            c[yy % h, [(xx % w) for xx in range(px - 2, px + 3)]] = low
    return out


def _shifted(img: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """``img`` moved by (dx, dy) pixels (bilinear); pixels from outside it are < 0."""
    h, w = img.shape
    return cv2.warpAffine(img, np.float32([[1, 0, dx], [0, 1, dy]]), (w, h),
                          flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=-1e4)


class CameraMotion:
    """Mixin of ``DefectTracker``: measures the camera's translation per update.

    Keeps ``_key``/``_key_spec`` (keyframe), ``_pos``/``_vel`` (camera position and last
    step, working pixels), ``_tops`` (recent strongest peaks) and ``_ring`` (recent
    normalised frames with their camera positions, for the moving-camera evidence).
    """

    config: DefectConfig

    def _global_motion(self, gn: np.ndarray) -> bool:
        """Track the camera's global translation against a keyframe; True when it moved lately.

        Measured against a keyframe rather than the previous frame so that a slow pan (a
        fraction of a pixel per update) adds up to a measurable shift.
        """
        cfg = self.config
        c = self._painted(gn)
        self._cur_spec = _spectrum(c, self._hann_w)
        if self._key is None:
            self._key, self._key_spec = (c, self._pos, 0), self._cur_spec
        else:
            kc, kpos, age = self._key
            d = self._camera_shift(kc, c)
            if d is not None:
                pos = (kpos[0] + d[0], kpos[1] + d[1])
                self._vel = (pos[0] - self._pos[0], pos[1] - self._pos[1])
                self._pos = pos
            # A failed measurement keeps the keyframe: a sub-pixel step is hard to confirm,
            # but it adds up to one that is not.
            if (d is not None and math.hypot(*d) > cfg.key_shift * self._ws[1]) or \
                    age >= cfg.key_age:
                self._key, self._key_spec, self._tops = (c, self._pos, 0), self._cur_spec, []
            else:
                self._key = (kc, kpos, age + 1)
        self._ring.append((gn, self._pos))
        if len(self._ring) > cfg.ring:
            self._ring.pop(0)
        back = min(8, len(self._ring) - 1)
        old = self._ring[-1 - back][1]
        moved = math.hypot(self._pos[0] - old[0], self._pos[1] - old[1])
        self._speed = moved / max(1, back)  # working px per update, over the last 8
        return moved > 2.0

    def _painted(self, img: np.ndarray) -> np.ndarray:
        """``img`` with the known defect pixels set to the mean (its zero-shift peak would
        otherwise pull the camera-motion estimate towards no motion)."""
        if not self._grown.any():
            return img
        m = cv2.resize(self._grown.astype(np.uint8), img.shape[::-1],
                       interpolation=cv2.INTER_NEAREST) > 0
        out = img.copy()
        out[m] = float(img[~m].mean()) if (~m).any() else 0.0
        return out

    def _camera_shift(self, old: np.ndarray, cur: np.ndarray) -> tuple[float, float] | None:
        """Global shift (dx, dy) with cur[y, x] ~ old[y - dy, x - dx], or None when no
        translation explains the change (a fixed camera with people moving, a cut)."""
        h, w = cur.shape
        m = max(2, min(h, w) // 4)  # the largest shift considered; the border it uncovers
        inner = (slice(m, h - m), slice(m, w - m))
        still = cv2.absdiff(cur[inner], old[inner])
        cands = _translations(self._key_spec, self._cur_spec)
        kpos = self._key[1]
        pred = (self._pos[0] + self._vel[0] - kpos[0], self._pos[1] + self._vel[1] - kpos[1])
        tops = self._tops = [*self._tops[-2:], cands[0]]
        if len(tops) == 3:
            (ax, ay), (bx, by), (cx, cy) = tops
            if math.hypot(bx - ax, by - ay) > 0.5 and \
                    math.hypot(cx - 2 * bx + ax, cy - 2 * by + ay) < 0.5:
                return cands[0]  # the strongest peak has moved steadily: the camera pans
        for i, (dx, dy) in enumerate(cands):
            if math.hypot(dx, dy) < 0.25 or max(abs(dx), abs(dy)) >= m:
                continue
            if i == 0 and math.hypot(dx - pred[0], dy - pred[1]) < 1.0:
                return (dx, dy)  # the strongest peak continues the camera's recent motion
            warped = cv2.warpAffine(old, np.float32([[1, 0, dx], [0, 1, dy]]), (w, h),
                                    flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            moved = cv2.absdiff(cur[inner], warped[inner])
            # Pixels vote for the shift or for no motion, each by a clear margin: the lens
            # defect votes for no motion, a truck filling half the view votes at random, and
            # neither outweighs the scene by the size of its errors. The strongest peak needs a
            # majority; a weaker one (the first being the defect's, at no shift) a clear one.
            # Not the best fit of all: a fence or lane marks would offer a repeat.
            n_moved = int(np.count_nonzero(moved < still - 6.0))
            n_still = int(np.count_nonzero(still < moved - 6.0))
            if n_moved > (1.2 if i == 0 else 2.0) * n_still + 0.01 * moved.size:
                return (dx, dy)
        return cands[0] if math.hypot(*cands[0]) < 0.25 else None  # no measurable motion
