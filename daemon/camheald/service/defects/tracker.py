"""Persistent lens defects (dirt, crack, covered) and scene states (covered, moved), per camera.

A lens defect stays put in the image and keeps its appearance while the scene behind it
changes; scene content moves with the scene. Updates in which nothing changes behind a
pixel give it no vote at all (a still scene raises no alarm, and no vote is not "clean").
At a small working resolution (<= 320 px wide), after removing the global brightness:

* camera motion: global translation against a keyframe (half-whitened cross-correlation;
  the lens defect's own peak at "no motion" is passed over when the next one explains the
  frame, continues the camera's motion, or moves steadily);
* moving camera: earlier frames shifted by the camera motion line the scene up behind each
  pixel now, and this frame shifted back lines it up for then; a pixel darker than the
  scene behind it now and then votes "defect", one that follows the scene votes "clear";
  near-white, sharp content that stays put while the scene moves (an on-screen display:
  a burned-in clock, a logo) is learned, and it and a margin around it give no evidence;
* fixed camera: the activity a pixel should show is the closing of the temporal-std map
  along the local direction of travel (dense optical flow): what passes along a lane or a
  path through it. A pixel that stays still while things (brighter than it) pass through
  it votes "defect"; swaying leaves define no path, a kerb is beside one, not on it;
* fixed camera, opt-in (``lens``): the lens-defect segmenter's map, averaged over the view,
  votes where time has no evidence (dark, still pixels it is sure of); unlike time, it can
  raise an alarm on a still scene (models/LENS_CARD.md);
* the detector's coarse obstruction mask, when given, votes where time gives no evidence;
* votes are a leaky mean with hysteresis; with a moving camera on-pixels grow into adjacent
  still pixels about as dark; connected pieces near each other form one tracked defect
  (id, since, first frame, crack if thin else dirt), reported after persisting and once
  its evidence settles, held while nothing can be seen, cleared when the evidence says the
  lens is clean.

Scene states: "covered" (nearly every cell of the view flat for ``covered_s``) and "moved"
(the edge map of the ~1 s mean view left its reference abruptly and the new view stayed
stable for ``moved_s``; a panning camera never counts as moved).

Limits: a fixed camera finds a defect only where traffic passes through it (with the
segmenter, also dark blobs where nothing moves, but no thin cracks); an object that
moves with the camera looks like a defect for as long as it does; a dark defect over dark
scene content has no contrast (docs/defects.md).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import cv2
import numpy as np

from .fixed import _BINS, FixedEvidence, _line_kernel
from .model import Defect, DefectConfig, DefectEvent
from .motion import CameraMotion
from .moving import MovingEvidence
from .scene import SceneStates
from .tracks import Tracks, _Track


@dataclass
class DefectTracker(CameraMotion, MovingEvidence, FixedEvidence, Tracks, SceneStates):
    """Per-camera persistent-defect tracker; not thread-safe (one owner), no D-Bus types."""

    config: DefectConfig = field(default_factory=DefectConfig)
    # the lens-defect segmenter (``camheald.vision.lens.LensSegmenter``: ``probability(rgb)``,
    # ``on``, ``off``, ``max_side``) voting where time gives no evidence; None: time alone
    lens: object | None = None
    state: str = "ok"
    state_since: float = 0.0

    def __post_init__(self) -> None:
        self._shape: tuple[int, int] | None = None  # frame (h, w)
        self._n = 0
        self._tracks: dict[int, _Track] = {}
        self._next_id = 1
        self._mask: np.ndarray | None = None

    # ---------------------------------------------------------------- setup
    def _reset(self, h: int, w: int) -> None:
        cfg = self.config
        self._shape = (h, w)
        self._f = max(1, math.ceil(w / cfg.work_width))
        self._ws = (max(8, round(w / self._f)), max(8, round(h / self._f)))  # (w, h)
        ww, wh = self._ws
        self._cs = (max(8, ww // 2), max(8, wh // 2))
        self._es = (max(8, ww // 4), max(8, wh // 4))
        k = max(3, int(cfg.closing * self._cs[1]) | 1)
        self._kernels = (np.ones((1, k), np.uint8), np.ones((k, 1), np.uint8))
        self._lines = [_line_kernel(k, math.pi * i / _BINS) for i in range(_BINS)]
        self._ori = [np.zeros(self._es[::-1], np.float32) for _ in range(3)]
        self._ori_k = max(3, int(cfg.closing * self._es[1]) | 1)
        self._dir = np.full(self._es[::-1], _BINS, np.uint8)
        self._prev_e: np.ndarray | None = None
        self._flow = None
        o = max(1, int(cfg.opening * self._cs[1]) | 1)
        self._open = np.ones((o, o), np.uint8)
        r = max(1, round(cfg.rim * wh))
        self._rim = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
        # what survives an opening with it is thicker than a crack (tracks._components)
        self._thick = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
        self._nm = 0  # frames in the mean view (restarted when the view changes)
        self._ns = 0  # frames in the fixed-view statistics (restarted when the camera moves)
        self._moving = False
        self._act_s: np.ndarray | None = None
        self._d_now = np.zeros((wh, ww), np.float32)
        self._act = np.zeros((wh, ww), np.float32)
        self._mean = np.zeros((wh, ww), np.float32)
        self._smean = np.zeros((wh, ww), np.float32)
        self._dark = np.zeros((wh, ww), bool)
        self._sq = np.zeros((wh, ww), np.float32)
        self._level = 1.0
        self._p = np.zeros((wh, ww), np.float32)
        self._on = np.zeros((wh, ww), bool)
        self._grown = self._on
        self._lens_voted = np.zeros((wh, ww), bool)  # pixels the look has voted "defect" for
        # updates in a row that an appearance cue (the segmenter's look, the detector's mask)
        # has voted "defect" for each pixel: a track voted so for ``confirm_fixed`` updates is
        # not held to ``confirm_fixed_s`` (a blip of the mask does not count)
        self._looked = np.zeros((wh, ww), np.int16)
        # on-screen display (near-white, fixed in the image while the camera moves): learned
        # while moving (``_motion_evidence``), no votes in it and a margin around it
        self._small = np.zeros((wh, ww, 3), np.uint8)
        self._osd_p = np.zeros((wh, ww), np.float32)
        self._osd_zone = np.zeros((wh, ww), bool)
        m = max(1, round(cfg.osd_margin * wh))
        self._osd_k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * m + 1, 2 * m + 1))
        self._lens_restart()
        self._mask = np.zeros((wh, ww), np.uint8)
        self._tracks.clear()
        self._n = 0
        self._key: tuple[np.ndarray, tuple[float, float], int] | None = None
        self._hann_w = cv2.createHanningWindow(self._ws, cv2.CV_32F)
        self._pos = (0.0, 0.0)
        self._vel = (0.0, 0.0)  # camera motion of the last update
        self._speed = 0.0  # ... its mean over the last 8 updates (px per update)
        self._tops: list[tuple[float, float]] = []  # strongest peaks against this keyframe
        self._ring: list[tuple[np.ndarray, tuple[float, float]]] = []
        self._ref: np.ndarray | None = None
        self._short: np.ndarray | None = None
        self._last_t: float | None = None
        self._cand_since: float | None = None
        self._cand_edges: np.ndarray | None = None
        self._cov_since: float | None = None
        self._uncov_since: float | None = None
        self._covered = False
        self._moved_until = -1.0

    def _lens_restart(self) -> None:
        """A new fixed view (the camera moved, or the view changed): the segmenter's averaged
        map and the pixels it voted for start again."""
        self._lens_p: np.ndarray | None = None  # the segmenter's mean map (fixed view)
        self._lens_n = 0  # maps in it
        self._lens_voted[:] = False

    @property
    def work_size(self) -> tuple[int, int]:
        """(width, height) of the working resolution (of ``mask()``)."""
        return self._ws if self._shape is not None else (0, 0)

    # ---------------------------------------------------------------- update
    def update(self, rgb: np.ndarray, obstruction_mask: np.ndarray | None = None,
               now: float | None = None, frame_index: int | None = None) -> list[DefectEvent]:
        """Fold in one frame and return the events it caused.

        Args:
            rgb: HxWx3 uint8 RGB frame (any size; a size change restarts the tracker).
            obstruction_mask: the detector's coarse obstruction probability map (float32
                HxW in [0, 1], any resolution) or None.
            now: unix time of the frame (default: time.time()).
            frame_index: index reported as ``first_frame`` (default: count of updates).

        Returns:
            DefectEvent list ("detected"/"cleared" per defect, "state" for scene states).
        """
        now = time.time() if now is None else float(now)
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"expected HxWx3 uint8, got {rgb.dtype} {rgb.shape}")
        h, w = rgb.shape[:2]
        if self._shape != (h, w):
            self._reset(h, w)
            self.state_since = self.state_since or now
        idx = self._n if frame_index is None else int(frame_index)
        self._n += 1
        small = cv2.resize(rgb, self._ws, interpolation=cv2.INTER_LINEAR)
        g = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY).astype(np.float32)
        self._small = small  # (the moving camera's on-screen-display test reads it)
        events = self._scene_states(g, now)
        if self._covered:
            return events  # nothing behind the lens to learn from
        cfg = self.config
        if self._nm == 0:
            self._level = float(g.mean()) + 1.0
        # Normalise the global brightness so a scene-wide lighting change is not "activity".
        gn = g * np.float32(np.clip(self._level / (float(g.mean()) + 1.0), 0.25, 4.0))
        self._nm += 1
        self._mean += np.float32(max(1.0 / self._nm, cfg.beta_min)) * (gn - self._mean)
        self._moving = self._global_motion(gn)
        if len(self._ring) > 1:  # short-term activity: this frame's change, kept ~3 frames
            d = self._d_now = cv2.absdiff(gn, self._ring[-2][0])
            self._act_s = d if self._act_s is None else self._act_s + np.float32(
                cfg.short_beta) * (d - self._act_s)
        if self._moving:  # the statistics of a fixed view restart when the camera stops
            self._ns = 0
            self._prev_e = None
            for a in self._ori:
                a[:] = 0.0
        else:
            self._ns += 1
            beta = np.float32(max(1.0 / self._ns, cfg.beta_min))
            self._smean += beta * (gn - self._smean)
            self._sq += beta * (gn * gn - self._sq)
            self._act = np.sqrt(np.maximum(self._sq - self._smean * self._smean, 0.0))
            self._travel(gn)
        if self._nm > cfg.warmup:
            lens = None
            # (``_ns``, the updates since the camera last moved, is 0 while it moves)
            if self.lens is not None and self._ns > cfg.warmup \
                    and max(self._ws) <= self.lens.max_side:
                # one frame's look, only for a fixed view (where time gives the least),
                # averaged over ~10 maps (~20 updates): someone who stands still for a
                # moment is not a lens defect, a lens defect keeps its look
                if self._lens_p is None or self._ns % max(1, cfg.lens_every) == 0:
                    look = self.lens.probability(small)
                    self._lens_n += 1
                    if self._lens_p is None:
                        self._lens_p = look
                    else:
                        self._lens_p += np.float32(max(1.0 / self._lens_n, cfg.lens_beta)) * (
                            look - self._lens_p)
                lens = self._lens_p
            elif self._moving and self._lens_p is not None:
                self._lens_restart()
            self._vote(gn, self._moving, obstruction_mask, lens)
        else:
            self._target = np.full((self._ws[1], self._ws[0]), -1.0, np.float32)
        return events + self._components(now, idx)
    def _vote(self, gn: np.ndarray, moving: bool, obstruction_mask: np.ndarray | None,
              lens: np.ndarray | None = None) -> None:
        cfg = self.config
        ww, wh = self._ws
        # Lens dirt and cracks are darker than what is seen around them (long-term mean).
        ref = cv2.resize(cv2.blur(cv2.resize(self._mean, self._cs, interpolation=cv2.INTER_AREA),
                                  self._kernels[0].shape[::-1]), (ww, wh))
        self._dark = self._mean < np.float32(cfg.darker_px) * ref
        target = np.full((wh, ww), -1.0, np.float32)  # -1 = no evidence
        weight = np.ones((wh, ww), np.float32)  # strength of the vote
        self._informative = False
        looked = np.zeros((wh, ww), bool)  # this update's appearance votes for "defect"
        if moving:
            self._motion_evidence(gn, target, weight)
        elif self._ns > cfg.warmup and self._act_s is not None:
            self._hole_evidence(gn, target)
        self._target = target  # kept: "no vote" holds reported defects (``_components``)
        known = target >= 0
        weight *= np.where(known, np.float32(cfg.gamma), np.float32(0.0))
        if lens is not None:  # the segmenter's look, where time has nothing to say
            free = ~known
            on = (lens >= self.lens.on) & self._dark & (self._act < cfg.lens_still)
            # "clear" where the pixel is not dark either, or where the look itself had voted
            # "defect" (a cleaned lens): a crack found by time alone must not be cleared by
            # the look between its rare temporal votes
            self._lens_voted |= free & on
            looked |= on  # (also where time voted too: the look's streak goes on)
            off = (lens < self.lens.off) & (~self._dark | self._lens_voted)
            target[free & on] = 1.0
            target[free & off] = 0.0
            weight[free & (on | off)] = cfg.gamma * cfg.lens_weight
            known = target >= 0
        if obstruction_mask is not None and obstruction_mask.size:
            pm = cv2.resize(np.asarray(obstruction_mask, np.float32), (ww, wh),
                            interpolation=cv2.INTER_LINEAR)
            free = ~known
            target[free & (pm > 0.5)] = 1.0
            looked |= pm > 0.5
            target[free & (pm < 0.2)] = 0.0
            weight[free & ((pm > 0.5) | (pm < 0.2))] = cfg.gamma * 0.5
        zone = self._osd_zone
        target[zone] = -1.0
        weight[zone] = 0.0
        looked &= ~zone
        self._looked = np.where(looked, np.minimum(self._looked + 1, 10_000), 0).astype(np.int16)
        self._p += weight * (np.maximum(target, 0.0) - self._p)
        self._on = (self._p > cfg.p_on) | (self._on & (self._p > cfg.p_off))
        self._grow(moving)

    # ---------------------------------------------------------------- queries
    def mask(self) -> np.ndarray:
        """Persistent defect mask, HxW uint8 at ``work_size``, 255 = reported defect."""
        if self._mask is None:
            return np.zeros((0, 0), np.uint8)
        if self._covered:
            return np.full_like(self._mask, 255)
        return self._mask.copy()

    def mask_at(self, width: int, height: int) -> np.ndarray:
        """The persistent mask resized to ``height`` x ``width`` (uint8, 255 = defect)."""
        m = self.mask()
        if m.size == 0:
            return np.zeros((height, width), np.uint8)
        up = cv2.resize(m, (width, height), interpolation=cv2.INTER_LINEAR)
        return np.where(up >= 128, np.uint8(255), np.uint8(0))

    def probability(self) -> np.ndarray:
        """Per-pixel defect votes, float32 in [0, 1] at ``work_size``."""
        return self._p.copy() if self._shape is not None else np.zeros((0, 0), np.float32)

    def defects(self) -> list[Defect]:
        """Reported persistent defects (a whole-frame "covered" one while covered)."""
        out = [self._public(t) for t in self._tracks.values() if t.reported]
        if self._covered and self._shape is not None:
            h, w = self._shape
            out.insert(0, Defect("covered", 1.0, (0, 0, w, h), self.state_since, 0, 0))
        return out
