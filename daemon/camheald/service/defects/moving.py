"""Moving camera: motion-compensated evidence for lens defects, and growth into still pixels.

Earlier frames shifted by the camera motion line the scene up behind each pixel now, and
this frame shifted back lines it up for then; a pixel darker than the scene behind it at
both times votes "defect", one that follows the scene votes "clear". Bright content fixed in
the image (an on-screen display: burned-in clock, camera name, logo) is learned and left out.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from .model import DefectConfig
from .motion import _shifted


def _median(imgs: list[np.ndarray]) -> np.ndarray:
    """Per-pixel median of one to three images (the lower one of two)."""
    if len(imgs) == 3:
        a, b, c = imgs
        return np.maximum(np.minimum(a, b), np.minimum(np.maximum(a, b), c))
    return imgs[0] if len(imgs) == 1 else np.minimum(*imgs)


def _value(rgb: np.ndarray) -> np.ndarray:
    """HSV value (the largest channel): white, yellow or cyan text is all near 255."""
    r, g, b = cv2.split(rgb)
    return cv2.max(cv2.max(r, g), b)


class MovingEvidence:
    """Mixin of ``DefectTracker``: the votes while the camera moves (``_ring`` and ``_pos``
    come from ``CameraMotion``)."""

    config: DefectConfig

    def _motion_evidence(self, gn: np.ndarray, target: np.ndarray, weight: np.ndarray
                         ) -> None:
        """Moving camera: earlier frames shifted by the camera motion line the scene up, the
        lens defect (fixed in the image) does not.

        A lens defect darkens whatever passes behind it: a pixel darker than the scene lined
        up behind it now (earlier frames shifted forward) *and* at the time of the earlier
        frames (this frame shifted back) votes "defect"; one that follows the scene votes
        "clear". Up to three earlier frames with different shifts are used and their median
        taken, so that the defect seen at another place in one of them (its "ghost"), or an
        object moving on its own, does not vote.
        """
        cfg = self.config
        wh, ww = gn.shape
        lim = cfg.max_shift * min(ww, wh)
        cands = []
        for frame, pos in self._ring[:-1]:
            dx, dy = self._pos[0] - pos[0], self._pos[1] - pos[1]
            if cfg.min_shift <= math.hypot(dx, dy) <= lim:
                cands.append((math.hypot(dx, dy), frame, dx, dy))
        if not cands:
            return
        dmax = max(c[0] for c in cands)
        # Stillness in the image means something only while the camera moves right now.
        recent = self._ring[max(0, len(self._ring) - 4)][1]
        self._informative = math.hypot(self._pos[0] - recent[0],
                                       self._pos[1] - recent[1]) >= 3.0
        picks: list[tuple[float, np.ndarray, float, float]] = []
        for frac in (1.0, 0.6, 0.3):
            c = min(cands, key=lambda c: abs(c[0] - frac * dmax))
            if all(math.hypot(c[2] - q[2], c[3] - q[3]) >= cfg.min_shift for q in picks):
                picks.append(c)
        raw = np.max([cv2.absdiff(gn, old) for _d, old, _x, _y in picks], axis=0)
        behind = [_shifted(old, dx, dy) for _d, old, dx, dy in picks]  # the scene now
        # Near-white (white, yellow, cyan) content with sharp edges that stays put in the
        # image while the camera moves, where the scene lined up behind it is something else
        # (burned-in text, a logo: an on-screen display; a flat bright wall is explained by
        # the scene), away from the defects found: neither scene nor lens defect (those are
        # dark). Learned here, it and a margin around it give no evidence, and it is no
        # source of "the scene behind" either (shifted onto its neighbours as if it were
        # scene, it made them look dark: "cracks" along a timestamp). A thin stroke's own
        # pixels are greyed by the reduction: its brightest neighbour counts. Learned in ~7
        # updates, forgotten in ~35 of a moving camera (digits that change stay in it); kept
        # while the camera stands still (the display is still there).
        seen = _median(behind)
        k3 = np.ones((3, 3), np.uint8)
        sharp = np.abs(cv2.Sobel(self._mean, cv2.CV_32F, 1, 0, ksize=3)) \
            + np.abs(cv2.Sobel(self._mean, cv2.CV_32F, 0, 1, ksize=3))
        cur = (raw < cfg.osd_still) & (cv2.absdiff(gn, self._mean) < cfg.osd_still) \
            & (cv2.dilate(_value(self._small), k3) >= cfg.osd_white) \
            & (cv2.dilate(sharp, k3) >= cfg.osd_edge) \
            & (seen >= 0) & (np.abs(gn - seen) > cfg.motion_diff) \
            & (cv2.dilate(self._on.astype(np.uint8), self._osd_k) == 0)
        self._osd_p = np.where(cur, self._osd_p + np.float32(0.1) * (1.0 - self._osd_p),
                               self._osd_p * np.float32(0.98))
        self._osd_zone = cv2.dilate((self._osd_p > 0.5).astype(np.uint8), self._osd_k) > 0
        zone = self._osd_zone.astype(np.float32)
        now, then = [], []
        for (_d, old, dx, dy), scene_now in zip(picks, behind, strict=True):
            # the scene behind each pixel now, and at the time of ``old``
            now.append(np.where(_shifted(zone, dx, dy) > 0.5, np.float32(-1e4), scene_now))
            ahead = _shifted(gn, -dx, -dy)
            then.append(np.where((ahead >= 0) & (_shifted(zone, -dx, -dy) <= 0.5),
                                 ahead - old, np.float32(-1e4)))
        scene = _median(now)
        dark_then = _median(then)
        valid = scene >= 0
        # A residual sub-pixel misalignment shows as an error about the size of the scene's
        # gradient there: tolerate it.
        gx = cv2.Sobel(scene, cv2.CV_32F, 1, 0, ksize=3)
        gy = cv2.Sobel(scene, cv2.CV_32F, 0, 1, ksize=3)
        tol = cv2.dilate(np.abs(gx) + np.abs(gy), np.ones((3, 3), np.uint8))
        t = np.float32(cfg.motion_diff) + np.float32(cfg.reg_tol / 8.0) * tol
        dark_now = scene - gn
        # Darker now and then: strong. Darker at one of the two times and not brighter at the
        # other (the other shift landed on the defect too): a half vote.
        both = (dark_now > t) & (dark_then > t)
        one = ((dark_now > t) & (dark_then > -0.5 * t)) | ((dark_then > t) & (dark_now > -0.5 * t))
        # (half votes only extend what strong ones found: they cannot start a defect)
        near = cv2.dilate(self._on.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
        pos = valid & (both | (one & near))
        # "Clear": it changed in place and followed the scene fully, now and then (a
        # half-transparent crack follows it partly, and is darker at one of the two times).
        neg = valid & (raw > cfg.motion_diff) & (np.abs(dark_now) < 0.35 * raw) & \
            (np.abs(dark_then) < 0.35 * raw)
        target[neg] = 0.0
        target[pos] = 1.0
        weight[pos & ~both] = cfg.half_vote

    def _grow(self, moving: bool) -> None:
        """Extend confirmed pixels into adjacent dark, still pixels (the parts of a defect
        over a region that never changes, e.g. sky, give no temporal evidence themselves)."""
        cfg = self.config
        if cfg.grow <= 0 or not moving or self._speed < cfg.grow_speed or not self._on.any():
            # What was grown stays until evidence says otherwise (a camera that stops
            # panning gives none): no vote is not a "clear" vote. Nothing new grows while the
            # camera creeps (a pan slowing to turn): then the scene barely changes anywhere,
            # and "still" says nothing.
            self._grown = self._on | (self._grown & (self._target != 0))
            return
        act = self._act_s
        coarse = cv2.resize(act, self._cs, interpolation=cv2.INTER_AREA)
        sd = cv2.resize(cv2.blur(coarse, self._kernels[0].shape[::-1]), self._ws)
        # ... about as dark as the defect next to them (not the brighter scene beside a crack)
        steps = max(1, int(cfg.grow * self._ws[1]))
        on_f, box = self._on.astype(np.float32), (2 * steps + 1, 2 * steps + 1)
        near_mean = cv2.blur(self._mean * on_f, box) / np.maximum(cv2.blur(on_f, box), 1e-3)
        cand = (self._dark & (act < np.maximum(np.float32(cfg.min_surround), 0.35 * sd))
                & (self._mean < 1.25 * near_mean + 10.0)
                ).astype(np.uint8)
        cur = self._on.astype(np.uint8)
        k = np.ones((3, 3), np.uint8)
        for _ in range(steps):
            cur = cv2.dilate(cur, k) & (cand | cur)
        self._grown = cur > 0
