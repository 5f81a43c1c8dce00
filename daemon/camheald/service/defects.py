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
* fixed camera: the activity a pixel should show is the closing of the temporal-std map
  along the local direction of travel (dense optical flow): what passes along a lane or a
  path through it. A pixel that stays still while things (brighter than it) pass through
  it votes "defect"; swaying leaves define no path, a kerb is beside one, not on it;
* the detector's coarse obstruction mask, when given, votes where time gives no evidence;
* votes are a leaky mean with hysteresis; with a moving camera on-pixels grow into adjacent
  still pixels about as dark; connected pieces near each other form one tracked defect
  (id, since, first frame, crack if thin else dirt), reported after persisting and once
  its evidence settles, held while nothing can be seen, cleared when the evidence says the
  lens is clean.

Scene states: "covered" (nearly every cell of the view flat for ``covered_s``) and "moved"
(the edge map of the ~1 s mean view left its reference abruptly and the new view stayed
stable for ``moved_s``; a panning camera never counts as moved).

Limits: a fixed camera finds a defect only where traffic passes through it; an object that
moves with the camera looks like a defect for as long as it does; a dark defect over dark
scene content has no contrast (docs/defects.md).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field

import cv2
import numpy as np

logger = logging.getLogger(__name__)

KINDS = ("dirt", "crack", "covered")


@dataclass(frozen=True)
class Defect:
    """One persistent defect.

    Attributes:
        kind: "dirt", "crack" or "covered".
        confidence: 0..1.
        bbox: (x, y, w, h) in frame pixels of the frames given to ``update``.
        since: unix time when the evidence first appeared.
        first_frame: index of the update (or the caller's frame index) where it first appeared.
        id: stable identity while the defect persists.
    """

    kind: str
    confidence: float
    bbox: tuple[int, int, int, int]
    since: float
    first_frame: int
    id: int = 0


@dataclass(frozen=True)
class DefectEvent:
    """A change: kind "detected"/"cleared" (``defect`` set) or "state" (``state`` set)."""

    kind: str
    wall_time: float
    defect: Defect | None = None
    state: str = ""


@dataclass
class DefectConfig:
    """Tuning of the tracker; the defaults suit 5-15 updates per second."""

    work_width: int = 320  # frames are reduced by an integer factor to at most this width
    beta_min: float = 0.04  # running-mean weight floor of the temporal statistics
    warmup: int = 4  # updates before any vote
    min_surround: float = 6.0  # grey levels (temporal std) of surround activity
    rel_surround: float = 0.25  # ... and this fraction of the scene's busiest (95th percentile)
    a_on: float = 0.4  # attenuation above which a pixel votes "defect"
    a_off: float = 0.2  # attenuation below which a pixel votes "clear"
    min_now: float = 2.0  # grey levels of short-term surround activity for a "defect" vote
    short_beta: float = 0.15  # weight of the newest change in the short-term activity
    gamma: float = 0.15  # vote weight per update
    p_on: float = 0.6  # pixel hysteresis on the votes
    p_off: float = 0.35
    closing: float = 0.2  # closing kernel, fraction of the working height
    coherence: float = 0.5  # consistency of the direction of travel needed for the hole cue
    min_travel: float = 0.05  # mean speed (px per update, half resolution) of a path or lane
    opening: float = 0.04  # opening kernel (removes edge-jitter activity), fraction of height
    ring: int = 32  # earlier frames kept for the motion-compensated comparison
    max_shift: float = 0.35  # largest camera shift used, fraction of the working height
    motion_diff: float = 14.0  # grey levels
    half_vote: float = 0.5  # weight of a one-sided motion vote
    min_shift: float = 2.0  # pixels of camera shift that give evidence
    reg_tol: float = 1.0  # pixels of misregistration tolerated (times the local gradient)
    key_shift: float = 0.05  # a new camera-motion keyframe after this shift (fraction of height)
    key_age: int = 8  # ... or after this many updates
    grow: float = 0.05  # growth into dark still pixels, fraction of the working height
    rim: float = 0.012  # blobs are widened by this fraction of the working height
    min_area: float = 0.0015  # fraction of the working frame
    darker_px: float = 0.92  # a voting pixel's mean must be below this fraction of the local
    darker: float = 0.9  # a component's mean must be below this fraction of its ring's
    confirm: int = 6  # updates a component must persist before it is reported (moving camera)
    confirm_fixed: int = 8  # ... with a fixed camera, whose cue is the weaker one
    clear_after: int = 3  # updates a reported component may be missing before "cleared"
    join: float = 0.03  # pieces this close (fraction of the working height) are one defect
    settled: float = 1.15  # growth over two updates below which a new defect's extent is settled
    held: float = 0.05  # a reported defect is held while less of it than this has votes
    covered_frac: float = 0.92  # fraction of flat cells for "covered"
    covered_s: float = 2.0
    uncovered_s: float = 1.0
    moved_sim: float = 0.5  # edge similarity to the reference below which a change starts
    recover_sim: float = 0.65
    moved_s: float = 5.0  # the change must last this long and be stable
    moved_latch_s: float = 30.0  # the "moved" state is shown for this long
    ref_tau_s: float = 10.0  # time constant of the reference edge map
    short_tau_s: float = 1.0  # time constant of the view whose edges are compared


def _ncc(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    den = math.sqrt(float((a * a).sum()) * float((b * b).sum()))
    return float((a * b).sum()) / den if den > 1e-6 else 1.0


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


_BINS = 8  # directions of travel told apart by the fixed-camera cue


def _line_kernel(k: int, angle: float) -> np.ndarray:
    """A k x k structuring element: a one-pixel line through the centre at ``angle``
    (radians, image axes: x right, y down)."""
    c = k // 2
    dx, dy = c * math.cos(angle), c * math.sin(angle)
    kern = np.zeros((k, k), np.uint8)
    cv2.line(kern, (round(c - dx), round(c - dy)), (round(c + dx), round(c + dy)), 1, 1)
    return kern


def _shifted(img: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """``img`` moved by (dx, dy) pixels (bilinear); pixels from outside it are < 0."""
    h, w = img.shape
    return cv2.warpAffine(img, np.float32([[1, 0, dx], [0, 1, dy]]), (w, h),
                          flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=-1e4)


def _median(imgs: list[np.ndarray]) -> np.ndarray:
    """Per-pixel median of one to three images (the lower one of two)."""
    if len(imgs) == 3:
        a, b, c = imgs
        return np.maximum(np.minimum(a, b), np.minimum(np.maximum(a, b), c))
    return imgs[0] if len(imgs) == 1 else np.minimum(*imgs)


def _near(a: tuple[int, int, int, int], b: tuple[int, int, int, int], margin: int) -> bool:
    """Boxes (x, y, w, h) overlap or are within ``margin`` pixels of each other."""
    return (a[0] - margin < b[0] + b[2] and b[0] - margin < a[0] + a[2] and
            a[1] - margin < b[1] + b[3] and b[1] - margin < a[1] + a[3])


def _union(a: tuple[int, int, int, int], b: tuple[int, int, int, int]
           ) -> tuple[int, int, int, int]:
    x, y = min(a[0], b[0]), min(a[1], b[1])
    return x, y, max(a[0] + a[2], b[0] + b[2]) - x, max(a[1] + a[3], b[1] + b[3]) - y


@dataclass
class _Piece:
    """One connected component of the defect votes in an update (working pixels)."""

    bbox: tuple[int, int, int, int]
    kind: str
    conf: float
    area: int
    voted: int  # pixels on by their own votes (the rest were grown into)
    mask: tuple[int, int, np.ndarray]  # x0, y0 and the (rim-widened) pixels from there


@dataclass
class _Track:
    id: int
    since: float
    first_frame: int
    bbox: tuple[int, int, int, int]  # working pixels
    kind: str = "dirt"
    confidence: float = 0.0
    seen: int = 0
    missing: int = 0
    reported: bool = False
    pieces: list[_Piece] = field(default_factory=list)
    areas: list[int] = field(default_factory=list)  # voted pixels, last three updates


@dataclass
class DefectTracker:
    """Per-camera persistent-defect tracker; not thread-safe (one owner), no D-Bus types."""

    config: DefectConfig = field(default_factory=DefectConfig)
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
        self._mask = np.zeros((wh, ww), np.uint8)
        self._tracks.clear()
        self._n = 0
        self._key: tuple[np.ndarray, tuple[float, float], int] | None = None
        self._hann_w = cv2.createHanningWindow(self._ws, cv2.CV_32F)
        self._pos = (0.0, 0.0)
        self._vel = (0.0, 0.0)  # camera motion of the last update
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
            self._vote(gn, self._moving, obstruction_mask)
        else:
            self._target = np.full((self._ws[1], self._ws[0]), -1.0, np.float32)
        return events + self._components(now, idx)

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
        old = self._ring[max(0, len(self._ring) - 9)][1]
        return math.hypot(self._pos[0] - old[0], self._pos[1] - old[1]) > 2.0

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
        now, then, raw = [], [], None
        for _d, old, dx, dy in picks:
            now.append(_shifted(old, dx, dy))  # the scene behind each pixel now
            ahead = _shifted(gn, -dx, -dy)  # ... and at the time of ``old``
            then.append(np.where(ahead >= 0, ahead - old, np.float32(-1e4)))
            r = cv2.absdiff(gn, old)
            raw = r if raw is None else np.maximum(raw, r)
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

    def _vote(self, gn: np.ndarray, moving: bool, obstruction_mask: np.ndarray | None) -> None:
        cfg = self.config
        ww, wh = self._ws
        # Lens dirt and cracks are darker than what is seen around them (long-term mean).
        ref = cv2.resize(cv2.blur(cv2.resize(self._mean, self._cs, interpolation=cv2.INTER_AREA),
                                  self._kernels[0].shape[::-1]), (ww, wh))
        self._dark = self._mean < np.float32(cfg.darker_px) * ref
        target = np.full((wh, ww), -1.0, np.float32)  # -1 = no evidence
        weight = np.ones((wh, ww), np.float32)  # strength of the vote
        self._informative = False
        if moving:
            self._motion_evidence(gn, target, weight)
        elif self._ns > cfg.warmup and self._act_s is not None:
            self._hole_evidence(gn, target)
        self._target = target  # kept: "no vote" holds reported defects (``_components``)
        known = target >= 0
        weight *= np.where(known, np.float32(cfg.gamma), np.float32(0.0))
        if obstruction_mask is not None and obstruction_mask.size:
            pm = cv2.resize(np.asarray(obstruction_mask, np.float32), (ww, wh),
                            interpolation=cv2.INTER_LINEAR)
            free = ~known
            target[free & (pm > 0.5)] = 1.0
            target[free & (pm < 0.2)] = 0.0
            weight[free & ((pm > 0.5) | (pm < 0.2))] = cfg.gamma * 0.5
        self._p += weight * (np.maximum(target, 0.0) - self._p)
        self._on = (self._p > cfg.p_on) | (self._on & (self._p > cfg.p_off))
        self._grow(moving)

    def _grow(self, moving: bool) -> None:
        """Extend confirmed pixels into adjacent dark, still pixels (the parts of a defect
        over a region that never changes, e.g. sky, give no temporal evidence themselves)."""
        cfg = self.config
        if cfg.grow <= 0 or not moving or not self._on.any():
            # What was grown stays until evidence says otherwise (a camera that stops
            # panning gives none): no vote is not a "clear" vote.
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

    # ---------------------------------------------------------------- components
    def _components(self, now: float, idx: int) -> list[DefectEvent]:
        cfg = self.config
        ww, wh = self._ws
        on = self._grown.astype(np.uint8)
        n, labels, stats, _ = cv2.connectedComponentsWithStats(on, connectivity=8)
        min_area = max(6, int(cfg.min_area * ww * wh))
        pieces: list[_Piece] = []
        kept = np.zeros((wh, ww), bool)
        for i in range(1, n):
            x, y, bw, bh, _area = (int(v) for v in stats[i])
            x0, y0 = max(0, x - 4), max(0, y - 4)
            x1, y1 = min(ww, x + bw + 4), min(wh, y + bh + 4)
            comp = (labels[y0:y1, x0:x1] == i).astype(np.uint8)
            own = (comp > 0) & self._on[y0:y1, x0:x1]
            if not own.any():
                continue  # grown pixels whose evidence has gone: dropped
            kept[y0:y1, x0:x1] |= comp > 0
            area = int(comp.sum())
            if area < min_area:
                continue
            ring = cv2.dilate(comp, np.ones((7, 7), np.uint8)) & (1 - on[y0:y1, x0:x1])
            m = self._mean[y0:y1, x0:x1]
            if ring.any() and float(m[comp > 0].mean()) > cfg.darker * float(m[ring > 0].mean()):
                continue  # not darker than its surround: scene content, not a lens defect
            # confidence: how far the votes of its own (not grown-into) pixels are past "off"
            conf = float(np.clip((self._p[y0:y1, x0:x1][own].mean() - cfg.p_off)
                                 / (1.0 - cfg.p_off), 0.01, 1.0))
            dist = cv2.distanceTransform(comp, cv2.DIST_L2, 3)
            thin = float(dist[comp > 0].mean()) <= max(1.3, 0.007 * min(ww, wh))
            if not thin:  # the soft rim of a blob is under-voted (partly transparent)
                comp = cv2.dilate(comp, self._rim)
            bx, by, bw, bh = cv2.boundingRect(comp)
            pieces.append(_Piece((x0 + bx, y0 + by, bw, bh), "crack" if thin else "dirt", conf,
                                 area, int(own.sum()), (x0, y0, comp)))
        self._grown = kept
        events: list[DefectEvent] = []
        matched: set[int] = set()
        used = [False] * len(pieces)
        margin = max(2, round(cfg.join * wh))
        # A defect voted in several pieces (a crack, a blob half over the sky) stays one: each
        # track takes every piece near it, reported ones first.
        # No vote is not a "clear" vote: a reported defect where nothing could be seen this
        # update (the camera stopped panning, the traffic stopped) is held as it was.
        known = self._target >= 0
        for tr in sorted(self._tracks.values(), key=lambda t: (not t.reported, t.id)):
            group = [i for i, pc in enumerate(pieces) if not used[i] and
                     _near(tr.bbox, pc.bbox, margin)]
            for i in group:
                used[i] = True
            if tr.reported and self._share(tr, known) < cfg.held:
                matched.add(tr.id)
            elif group:
                events += self._assign(tr, [pieces[i] for i in group], now)
                matched.add(tr.id)
        for i, pc in enumerate(pieces):
            if used[i]:
                continue
            group, box = [pc], pc.bbox
            used[i] = True
            for j in range(i + 1, len(pieces)):
                if not used[j] and _near(box, pieces[j].bbox, margin):
                    used[j] = True
                    group.append(pieces[j])
                    box = _union(box, pieces[j].bbox)
            tr = _Track(self._next_id, now, idx, box)
            self._next_id += 1
            self._tracks[tr.id] = tr
            events += self._assign(tr, group, now)
            matched.add(tr.id)
        for tid in list(self._tracks):
            tr = self._tracks[tid]
            if tid in matched:
                continue
            tr.missing += 1
            if tr.missing >= (cfg.clear_after if tr.reported else 1):
                del self._tracks[tid]
                if tr.reported:
                    events.append(DefectEvent("cleared", now, self._public(tr)))
        mask = np.zeros((wh, ww), np.uint8)
        for tr in self._tracks.values():
            if tr.reported and not tr.missing:  # (or held: its last pieces)
                for pc in tr.pieces:
                    x0, y0, comp = pc.mask
                    mask[y0:y0 + comp.shape[0], x0:x0 + comp.shape[1]][comp > 0] = 255
            elif tr.reported:  # briefly missing: keep what it last covered
                x, y, bw, bh = tr.bbox
                mask[y:y + bh, x:x + bw] |= self._mask[y:y + bh, x:x + bw]
        self._mask = mask
        return events

    @staticmethod
    def _share(tr: _Track, where: np.ndarray) -> float:
        """Share of the track's last pixels where ``where`` (working-size bool) holds."""
        hit = tot = 0
        for pc in tr.pieces:
            x0, y0, comp = pc.mask
            sel = comp > 0
            hit += int(where[y0:y0 + comp.shape[0], x0:x0 + comp.shape[1]][sel].sum())
            tot += int(sel.sum())
        return hit / tot if tot else 0.0

    def _assign(self, tr: _Track, group: list[_Piece], now: float) -> list[DefectEvent]:
        """This update's pieces of a track: box, kind (of the largest), confidence."""
        cfg = self.config
        box = group[0].bbox
        for pc in group[1:]:
            box = _union(box, pc.bbox)
        area = sum(pc.area for pc in group)
        tr.bbox, tr.pieces = box, group
        tr.kind = max(group, key=lambda pc: pc.area).kind
        tr.confidence = sum(pc.conf * pc.area for pc in group) / area
        tr.seen += 1
        tr.missing = 0
        tr.areas = [*tr.areas[-2:], sum(pc.voted for pc in group)]
        # Reported once it has persisted and its evidence has about settled (it spreads
        # over a defect for a while: a partial first mask would have to be filled in twice).
        need = cfg.confirm if self._moving else cfg.confirm_fixed
        settled = tr.areas[-1] <= cfg.settled * tr.areas[0] or tr.seen >= need + cfg.confirm
        if not tr.reported and tr.seen >= need and settled:
            tr.reported = True
            return [DefectEvent("detected", now, self._public(tr))]
        return []

    def _public(self, tr: _Track) -> Defect:
        f = self._f
        assert self._shape is not None
        h, w = self._shape
        x, y, bw, bh = tr.bbox
        box = (x * f, y * f, min(w - x * f, bw * f), min(h - y * f, bh * f))
        return Defect(tr.kind, round(tr.confidence, 3), box, tr.since, tr.first_frame, tr.id)

    # ---------------------------------------------------------------- scene states
    def _scene_states(self, g: np.ndarray, now: float) -> list[DefectEvent]:
        cfg = self.config
        small = cv2.resize(g, self._es, interpolation=cv2.INTER_AREA)
        mu = cv2.blur(small, (5, 5))
        sd = np.sqrt(np.maximum(cv2.blur(small * small, (5, 5)) - mu * mu, 0.0))
        flat = float(np.mean(sd < 2.5 + 0.03 * mu))
        dt = 0.0 if self._last_t is None else max(0.0, now - self._last_t)
        self._last_t = now
        # Edges of a ~1 s running mean: traffic blurs away, the fixed scene stays.
        a = np.float32(1.0 - math.exp(-dt / cfg.short_tau_s)) if self._short is not None else 1
        self._short = small.copy() if self._short is None else self._short + a * (small -
                                                                                  self._short)
        gx = cv2.Sobel(self._short, cv2.CV_32F, 1, 0, ksize=3)
        gy = cv2.Sobel(self._short, cv2.CV_32F, 0, 1, ksize=3)
        edges = cv2.GaussianBlur(cv2.magnitude(gx, gy), (0, 0), 1.0)
        # covered: nearly every cell flat, for a while (with hysteresis in time)
        if flat >= cfg.covered_frac:
            self._uncov_since = None
            self._cov_since = now if self._cov_since is None else self._cov_since
            if not self._covered and now - self._cov_since >= cfg.covered_s:
                self._covered = True
        else:
            self._cov_since = None
            self._uncov_since = now if self._uncov_since is None else self._uncov_since
            if self._covered and now - self._uncov_since >= cfg.uncovered_s:
                self._covered = False
        if not self._covered and flat < cfg.covered_frac:
            self._moved(edges, now, dt)
        if self._covered:
            state = "covered"
        elif now < self._moved_until:
            state = "moved"
        else:
            state = "ok"
        if state == self.state:
            return []
        self.state, self.state_since = state, now
        return [DefectEvent("state", now, state=state)]

    def _restart_view(self) -> None:
        """The view changed: restart the statistics, keep only the reported defects' votes."""
        self._nm = self._ns = 0
        self._ring.clear()
        self._key = None
        keep = np.zeros(self._p.shape, bool)
        for tid in [t.id for t in self._tracks.values() if not t.reported]:
            del self._tracks[tid]
        for t in self._tracks.values():
            x, y, w, h = t.bbox
            keep[y:y + h, x:x + w] = True
        self._p[~keep] = 0.0

    def _moved(self, edges: np.ndarray, now: float, dt: float) -> None:
        cfg = self.config
        if self._ref is None or self._moving:  # a panning camera has no fixed view to lose
            self._ref = edges.copy()
            self._cand_since = None
            return
        sim = _ncc(edges, self._ref)
        if self._cand_since is None:
            if sim < cfg.moved_sim:
                self._cand_since, self._cand_edges = now, None
            else:  # follow slow drift (sun, slow pan)
                a = 1.0 - math.exp(-dt / cfg.ref_tau_s)
                self._ref += np.float32(a) * (edges - self._ref)
            return
        if sim > cfg.recover_sim:  # a passing object or a flash: back to the reference
            self._cand_since = None
        elif self._cand_edges is None:
            if now - self._cand_since >= 0.5:
                self._cand_edges = edges.copy()
        elif now - self._cand_since >= cfg.moved_s:
            if _ncc(edges, self._cand_edges) > 0.75:
                self._moved_until = now + cfg.moved_latch_s
                self._restart_view()
                logger.info("camera view changed and stayed changed (moved)")
            self._ref = edges.copy()  # learn the new view (or follow a moving camera)
            self._cand_since = None

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
