"""Fixed camera: evidence from what passes along its path and is occluded by the defect.

Dense optical flow gives, per region, the orientation along which things travel; the
activity a pixel should show is the closing of the temporal-std map along it. A pixel that
stays still while brighter things pass through it votes "defect".
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from .model import DefectConfig

_BINS = 8  # directions of travel told apart by the fixed-camera cue


def _line_kernel(k: int, angle: float) -> np.ndarray:
    """A k x k structuring element: a one-pixel line through the centre at ``angle``
    (radians, image axes: x right, y down)."""
    c = k // 2
    dx, dy = c * math.cos(angle), c * math.sin(angle)
    kern = np.zeros((k, k), np.uint8)
    cv2.line(kern, (round(c - dx), round(c - dy)), (round(c + dx), round(c + dy)), 1, 1)
    return kern


class FixedEvidence:
    """Mixin of ``DefectTracker``: the votes while the camera is fixed."""

    config: DefectConfig

    def _travel(self, gn: np.ndarray) -> None:
        """Fixed camera: accumulate the orientation along which things move (people along a
        path, cars along a lane): dense optical flow (DIS) at half the working resolution,
        as a doubled-angle vector (so that both ways along a lane agree) weighted by speed."""
        c = np.clip(cv2.resize(gn, self._cs, interpolation=cv2.INTER_AREA), 0, 255
                    ).astype(np.uint8)
        prev, self._prev_e = self._prev_e, c
        if prev is None:
            return
        if self._flow is None:
            self._flow = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST)
        f = cv2.resize(self._flow.calc(prev, c, None), self._es, interpolation=cv2.INTER_AREA)
        u, v = f[..., 0], f[..., 1]
        m2 = u * u + v * v
        w = np.minimum(np.sqrt(m2), 3.0) * (m2 > 0.25)
        m2 = np.maximum(m2, np.float32(1e-6))
        beta = np.float32(self.config.beta_min)
        for acc, val in ((self._ori[0], (u * u - v * v) / m2 * w),
                         (self._ori[1], 2 * u * v / m2 * w), (self._ori[2], w)):
            acc += beta * (val - acc)

    def _surround(self, act: np.ndarray) -> np.ndarray:
        """Expected activity of each pixel from what happens before and after it along the
        direction of travel there (grey closing of ``act`` with a line along it).

        Along the travel direction, not in every direction: a median strip between two lanes,
        or the kerb beside one, has traffic on both sides across it but never before and after
        it along the lane. Where nothing moves in a consistent direction (swaying foliage,
        water), there is no expectation at all.
        """
        coarse = cv2.resize(act, self._cs, interpolation=cv2.INTER_AREA)
        # Scene content passing behind a defect makes broad activity; a shaking or slowly
        # drifting camera only makes thin lines of it along edges: open those away.
        coarse = cv2.morphologyEx(coarse, cv2.MORPH_OPEN, self._open,
                                  borderType=cv2.BORDER_REPLICATE)
        coarse *= self._travelled  # only change made by things passing (not swaying leaves)
        return cv2.resize(self._along(coarse, cv2.MORPH_CLOSE), self._ws,
                          interpolation=cv2.INTER_LINEAR)

    def _along(self, img: np.ndarray, op: int) -> np.ndarray:
        """Grey morphology of ``img`` (half resolution) with a line along the direction of
        travel at each pixel; 0 where there is none."""
        pick = cv2.resize(self._dir, self._cs, interpolation=cv2.INTER_NEAREST)
        out = np.zeros_like(img)
        for i, k in enumerate(self._lines):
            sel = pick == i
            if sel.any():
                out[sel] = cv2.morphologyEx(img, op, k, borderType=cv2.BORDER_CONSTANT,
                                            borderValue=0)[sel]
        return out

    def _directions(self) -> None:
        """Per pixel (quarter resolution): index of the line kernel along the travel direction,
        or len(lines) where the direction is not consistent."""
        k = self._ori_k
        c, s, w = (cv2.blur(a, (k, k)) for a in self._ori)
        coh = np.sqrt(c * c + s * s) / np.maximum(w, 1e-6)
        ang = 0.5 * np.arctan2(s, c)  # radians, orientation of the motion
        idx = np.round(ang / (np.pi / _BINS)).astype(np.int32) % _BINS
        idx[(coh < self.config.coherence) | (w < 1e-3)] = _BINS
        self._dir = idx.astype(np.uint8)
        moving = cv2.blur(self._ori[2], (3, 3)) > self.config.min_travel
        self._travelled = cv2.resize(moving.astype(np.float32), self._cs,
                                     interpolation=cv2.INTER_NEAREST)

    def _hole_evidence(self, gn: np.ndarray, target: np.ndarray) -> None:
        """Fixed camera: still pixels with activity before and after them along the direction
        of travel vote "defect"; pixels that change like that surround vote "clear".

        Two time scales must agree: over the window (temporal std) and right now (the
        last few frames' change), so a single passer-by whose colour matches the background in
        places does not vote for many frames after it has gone.
        """
        cfg = self.config
        self._directions()
        diff = self._act_s
        sur = self._surround(self._act)
        # The surround itself changed (not only the pixel), by a fair share of what things
        # passing make in this scene: the edge of a lane, or leaves next to it, sees a little
        # of the traffic's change.
        busy = float(np.percentile(sur, 95)) if sur.any() else 0.0
        known = sur > max(cfg.min_surround, cfg.rel_surround * busy)
        att = 1.0 - self._act / np.maximum(np.maximum(sur, self._act), 1e-3)
        pos = known & (att > cfg.a_on) & self._dark
        sur_now = self._surround(diff)
        pos &= (sur_now > cfg.min_now) & (diff < (1.0 - cfg.a_off) * np.maximum(sur_now, diff))
        # ... and what passes is brighter than the pixel: a still pixel that merely matches
        # the colour of what passes (the same walker, again and again) says nothing.
        passing = cv2.resize(self._d_now, self._cs, interpolation=cv2.INTER_AREA) > cfg.min_now
        seen = np.where(passing, cv2.resize(gn, self._cs, interpolation=cv2.INTER_AREA), 0.0)
        seen = cv2.resize(self._along(seen, cv2.MORPH_DILATE), self._ws,
                          interpolation=cv2.INTER_LINEAR)
        pos &= seen - gn > cfg.motion_diff
        target[pos] = 1.0
        target[known & (att < cfg.a_off)] = 0.0
