"""Persistent lens defects (dirt, crack, covered) and scene states (covered, moved), per camera.

A lens defect stays put in the image while the scene behind it changes; a dark object in
the scene moves or changes with the scene. At a small working resolution (<= 320 px wide)
the tracker keeps, after removing the global brightness (a lighting change is not motion):

* per-pixel running mean and temporal std, and a short-term change map;
* fixed camera ("hole" cue): the expected activity of a pixel is a grey-level closing of the
  std map along both axes (change on both sides horizontally *and* vertically: a hole, not
  a strip), after an opening that removes the thin edge activity of a shaking camera. A
  pixel that stays still while its surround changes, both over the window and in the last
  few frames, and that is darker than its neighbourhood, votes "defect";
* moving camera (global translation measured by phase correlation): an earlier frame
  shifted by the camera motion lines the scene up; a pixel that disagrees with the shifted
  frame but agrees with the unshifted one (it stayed in place) votes "defect";
* the detector's coarse obstruction mask, when given, votes where time gives no evidence;
* votes are a leaky mean with hysteresis; pixels are grown into adjacent dark still pixels
  (moving camera), grouped into components, filtered (size, darker than their ring),
  confirmed over several updates, tracked (id, since, first frame), classified as crack
  (thin) or dirt, and cleared when the evidence goes away (the lens was cleaned).

Scene states: "covered" (nearly every cell of the view flat for ``covered_s``) and "moved"
(the edge map of the ~1 s mean view left its reference abruptly and the new view stayed
stable for ``moved_s``; a panning camera never counts as moved).

Limits: with temporal evidence alone a defect is only found where the scene moves behind
it. A fixed camera over a static background sees nothing behind a defect, and a static dark
object in front of moving traffic (a post, foliage gaps, a median strip) looks like one;
the darkness, size and persistence filters reduce, but cannot remove, those false alarms.
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
    a_on: float = 0.4  # attenuation above which a pixel votes "defect"
    a_off: float = 0.2  # attenuation below which a pixel votes "clear"
    min_now: float = 2.0  # grey levels of short-term surround activity for a "defect" vote
    short_beta: float = 0.15  # weight of the newest change in the short-term activity
    gamma: float = 0.15  # vote weight per update
    p_on: float = 0.6  # pixel hysteresis on the votes
    p_off: float = 0.35
    closing: float = 0.2  # closing kernel, fraction of the working height
    opening: float = 0.04  # opening kernel (removes edge-jitter activity), fraction of height
    ring: int = 24  # earlier frames kept for the motion-compensated comparison
    max_shift: float = 0.35  # largest camera shift used, fraction of the working height
    motion_diff: float = 14.0  # grey levels
    grow: float = 0.05  # growth into dark still pixels, fraction of the working height
    rim: float = 0.012  # blobs are widened by this fraction of the working height
    min_area: float = 0.0015  # fraction of the working frame
    darker_px: float = 0.92  # a voting pixel's mean must be below this fraction of the local
    darker: float = 0.9  # a component's mean must be below this fraction of its ring's
    confirm: int = 8  # updates a component must persist before it is reported
    clear_after: int = 3  # updates a reported component may be missing before "cleared"
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


def _shift_err(cur: np.ndarray, old: np.ndarray, x: int, y: int) -> float:
    """Mean absolute difference between ``cur`` and ``old`` shifted by (x, y) (overlap)."""
    h, w = cur.shape
    a = cur[max(0, y):h + min(0, y), max(0, x):w + min(0, x)]
    b = old[max(0, -y):h - max(0, y), max(0, -x):w - max(0, x)]
    return float(cv2.absdiff(a, b).mean()) if a.size else float("inf")


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
        o = max(1, int(cfg.opening * self._cs[1]) | 1)
        self._open = np.ones((o, o), np.uint8)
        r = max(1, round(cfg.rim * wh))
        self._rim = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
        self._ns = 0  # frames in the running statistics (restarted when the view moves)
        self._moving = False
        self._act_s: np.ndarray | None = None
        self._act = np.zeros((wh, ww), np.float32)
        self._mean = np.zeros((wh, ww), np.float32)
        self._sq = np.zeros((wh, ww), np.float32)
        self._level = 1.0
        self._p = np.zeros((wh, ww), np.float32)
        self._on = np.zeros((wh, ww), bool)
        self._grown = self._on
        self._mask = np.zeros((wh, ww), np.uint8)
        self._tracks.clear()
        self._n = 0
        self._prev_c: np.ndarray | None = None
        self._hann = cv2.createHanningWindow(self._cs, cv2.CV_32F)
        self._pos = (0.0, 0.0)
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
        if self._ns == 0:
            self._level = float(g.mean()) + 1.0
        # Normalise the global brightness so a scene-wide lighting change is not "activity".
        gn = g * np.float32(np.clip(self._level / (float(g.mean()) + 1.0), 0.25, 4.0))
        self._ns += 1
        beta = np.float32(max(1.0 / self._ns, self.config.beta_min))
        self._mean += beta * (gn - self._mean)
        self._sq += beta * (gn * gn - self._sq)
        self._act = np.sqrt(np.maximum(self._sq - self._mean * self._mean, 0.0))
        diff = None
        if self._ring:  # short-term activity: this frame's change, remembered for ~3 frames
            d = cv2.absdiff(gn, self._ring[-1][0])
            self._act_s = d if self._act_s is None else self._act_s + np.float32(
                self.config.short_beta) * (d - self._act_s)
            diff = self._act_s
        self._moving = self._global_motion(gn)
        if self._ns > self.config.warmup:
            self._vote(gn, diff, self._moving, obstruction_mask)
        return events + self._components(now, idx)

    def _global_motion(self, gn: np.ndarray) -> bool:
        """Track the camera's global translation; True when it moved lately."""
        c = cv2.resize(gn, self._cs, interpolation=cv2.INTER_AREA)
        if self._prev_c is not None:
            (dx, dy), resp = cv2.phaseCorrelate(self._prev_c, c, self._hann)
            ix, iy = int(round(dx)), int(round(dy))
            # Accept a shift only when it explains the change (people walking in front of a
            # fixed camera, or compression noise, give spurious peaks).
            if resp > 0.1 and (ix or iy) and \
                    _shift_err(c, self._prev_c, ix, iy) < 0.7 * _shift_err(c, self._prev_c, 0, 0):
                k = self._ws[0] / self._cs[0]
                self._pos = (self._pos[0] + dx * k, self._pos[1] + dy * k)
        self._prev_c = c
        self._ring.append((gn, self._pos))
        if len(self._ring) > self.config.ring:
            self._ring.pop(0)
        old = self._ring[max(0, len(self._ring) - 9)][1]
        return math.hypot(self._pos[0] - old[0], self._pos[1] - old[1]) > 2.0

    def _motion_evidence(self, gn: np.ndarray, target: np.ndarray) -> None:
        """Compare with an earlier frame shifted by the camera motion: the scene lines up,
        the lens defect (fixed in the image) does not, while staying the same in place."""
        cfg = self.config
        wh, ww = gn.shape
        lim = cfg.max_shift * min(ww, wh)
        best, best_d = None, 0.0
        for frame, pos in self._ring[:-1]:
            dx, dy = self._pos[0] - pos[0], self._pos[1] - pos[1]
            d = math.hypot(dx, dy)
            if best_d < d <= lim:
                best, best_d = (frame, int(round(dx)), int(round(dy))), d
        if best is None or best_d < 2.0:
            return
        old, dx, dy = best
        # Consecutive-frame estimates are biased towards 0 by the static defect itself (its
        # peak merges with the scene's when the step is small); over a long baseline the two
        # peaks are apart, so measure the shift against the chosen frame directly.
        k = ww / self._cs[0]
        (mx, my), resp = cv2.phaseCorrelate(cv2.resize(old, self._cs, interpolation=cv2.INTER_AREA),
                                            cv2.resize(gn, self._cs, interpolation=cv2.INTER_AREA),
                                            self._hann)
        if resp > 0.05 and math.hypot(mx * k - dx, my * k - dy) < 0.3 * best_d + 3:
            dx, dy = int(round(mx * k)), int(round(my * k))
        dx, dy = self._refine(gn, old, dx, dy)
        # cur[y, x] ~ old[y - dy, x - dx] for scene content
        ys, yo = (slice(dy, wh), slice(0, wh - dy)) if dy >= 0 else (slice(0, wh + dy),
                                                                       slice(-dy, wh))
        xs, xo = (slice(dx, ww), slice(0, ww - dx)) if dx >= 0 else (slice(0, ww + dx),
                                                                       slice(-dx, ww))
        cur = gn[ys, xs]
        src = old[yo, xo]
        comp = cv2.absdiff(cur, src)
        raw = cv2.absdiff(cur, old[ys, xs])
        # A sub-pixel misalignment shows as an error about the size of the scene's gradient
        # there (taken where that scene content was, in the earlier frame): tolerate it.
        gx = cv2.Sobel(src, cv2.CV_32F, 1, 0, ksize=3)
        gy = cv2.Sobel(src, cv2.CV_32F, 0, 1, ksize=3)
        tol = cv2.dilate(np.abs(gx) + np.abs(gy), np.ones((3, 3), np.uint8))
        t = np.float32(cfg.motion_diff)
        sub = target[ys, xs]
        sub[(comp > t + 0.25 * tol) & (raw < 0.35 * comp)] = 1.0
        sub[(raw > t) & (comp < 0.35 * raw)] = 0.0

    @staticmethod
    def _refine(cur: np.ndarray, old: np.ndarray, dx: int, dy: int) -> tuple[int, int]:
        """Best integer shift within +-1 pixel of (dx, dy) (drift of the summed motion)."""
        cands = [(dx + ex, dy + ey) for ey in (-1, 0, 1) for ex in (-1, 0, 1)]
        return min(cands, key=lambda s: _shift_err(cur[::2, ::2], old[::2, ::2],
                                                   s[0] // 2, s[1] // 2))

    def _vote(self, gn: np.ndarray, diff: np.ndarray | None, moving: bool,
              obstruction_mask: np.ndarray | None) -> None:
        cfg = self.config
        ww, wh = self._ws
        target, known = self._hole_evidence(diff)
        if moving:
            mot = np.full((wh, ww), -1.0, np.float32)  # -1 = no evidence
            self._motion_evidence(self._ring[-1][0], mot)
            target = np.where(target < 0, mot, target)
            known = target >= 0
        weight = np.where(target >= 0, np.float32(cfg.gamma), np.float32(0.0))
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
            self._grown = self._on
            return
        sd = cv2.resize(cv2.blur(self._coarse_act, self._kernels[0].shape[::-1]), self._ws)
        cand = (self._dark & (self._act < np.maximum(np.float32(cfg.min_surround), 0.35 * sd))
                ).astype(np.uint8)
        cur = self._on.astype(np.uint8)
        k = np.ones((3, 3), np.uint8)
        for _ in range(max(1, int(cfg.grow * self._ws[1]))):
            cur = cv2.dilate(cur, k) & (cand | cur)
        self._grown = cur > 0

    def _surround(self, act: np.ndarray) -> np.ndarray:
        """Expected activity from the surround: grey closing of ``act`` (working res)."""
        coarse = cv2.resize(act, self._cs, interpolation=cv2.INTER_AREA)
        # Scene content passing behind a defect makes broad activity; a shaking or slowly
        # drifting camera only makes thin lines of it along edges: open those away.
        coarse = cv2.morphologyEx(coarse, cv2.MORPH_OPEN, self._open,
                                  borderType=cv2.BORDER_REPLICATE)
        # A hole, not a strip: the pixel must be still with change on both sides
        # horizontally *and* vertically (a horizontal band of flat wall under a pan, or a
        # median strip between two lanes, is open at its ends).
        closed = np.minimum(*(cv2.morphologyEx(coarse, cv2.MORPH_CLOSE, k,
                                               borderType=cv2.BORDER_REPLICATE)
                              for k in self._kernels))
        sur = cv2.resize(closed, self._ws, interpolation=cv2.INTER_LINEAR)
        return np.maximum(sur, act, out=sur)

    def _hole_evidence(self, diff: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Still pixels with activity on both sides (target -1/0/1, known).

        Two time scales must agree: over the window (temporal std) and right now (the
        last few frames' change), so a single passer-by whose colour matches the background in
        places does not vote for many frames after it has gone.
        """
        cfg = self.config
        ww, wh = self._ws
        self._coarse_act = cv2.resize(self._act, self._cs, interpolation=cv2.INTER_AREA)
        sur = self._surround(self._act)
        known = sur > cfg.min_surround
        att = 1.0 - self._act / np.maximum(sur, 1e-3)
        target = np.full((wh, ww), -1.0, np.float32)  # -1 = no evidence
        # Lens dirt and cracks are darker than what is seen around them (long-term mean).
        ref = cv2.resize(cv2.blur(cv2.resize(self._mean, self._cs, interpolation=cv2.INTER_AREA),
                                  self._kernels[0].shape[::-1]), (ww, wh))
        dark = self._dark = self._mean < np.float32(cfg.darker_px) * ref
        pos = known & (att > cfg.a_on) & dark
        if diff is not None:
            sur_now = self._surround(diff)
            pos &= (sur_now > cfg.min_now) & (diff < (1.0 - cfg.a_off) * sur_now)
        target[pos] = 1.0
        target[known & (att < cfg.a_off)] = 0.0
        return target, known

    # ---------------------------------------------------------------- components
    def _components(self, now: float, idx: int) -> list[DefectEvent]:
        cfg = self.config
        ww, wh = self._ws
        on = self._grown.astype(np.uint8)
        n, labels, stats, _ = cv2.connectedComponentsWithStats(on, connectivity=8)
        min_area = max(6, int(cfg.min_area * ww * wh))
        found: list[tuple[tuple[int, int, int, int], str, float, np.ndarray]] = []
        mask = np.zeros((wh, ww), np.uint8)
        for i in (np.nonzero(stats[1:, cv2.CC_STAT_AREA] >= min_area)[0] + 1).tolist():
            x, y, bw, bh, area = (int(v) for v in stats[i])
            x0, y0 = max(0, x - 4), max(0, y - 4)
            x1, y1 = min(ww, x + bw + 4), min(wh, y + bh + 4)
            comp = (labels[y0:y1, x0:x1] == i).astype(np.uint8)
            ring = cv2.dilate(comp, np.ones((7, 7), np.uint8)) & (1 - on[y0:y1, x0:x1])
            m = self._mean[y0:y1, x0:x1]
            inside = float(m[comp > 0].mean())
            if ring.any() and inside > cfg.darker * float(m[ring > 0].mean()):
                continue  # not darker than its surround: scene content, not a lens defect
            conf = float(np.clip((self._p[y0:y1, x0:x1][comp > 0].mean() - 0.4) / 0.5, 0, 1))
            dist = cv2.distanceTransform(comp, cv2.DIST_L2, 3)
            thin = float(dist[comp > 0].mean()) <= max(1.3, 0.007 * min(ww, wh))
            found.append(((x, y, bw, bh), "crack" if thin else "dirt", conf, comp))
            if not thin:  # the soft rim of a blob is under-voted (partly transparent)
                comp = cv2.dilate(comp, self._rim)
            mask[y0:y1, x0:x1][comp > 0] = 255
        events: list[DefectEvent] = []
        matched: set[int] = set()
        for bbox, kind, conf, _comp in found:
            tr = self._match(bbox, matched)
            if tr is None:
                tr = _Track(self._next_id, now, idx, bbox)
                self._next_id += 1
                self._tracks[tr.id] = tr
            matched.add(tr.id)
            tr.bbox, tr.kind, tr.confidence = bbox, kind, conf
            tr.seen += 1
            tr.missing = 0
            if not tr.reported and tr.seen >= cfg.confirm:
                tr.reported = True
                events.append(DefectEvent("detected", now, self._public(tr)))
        for tid in list(self._tracks):
            tr = self._tracks[tid]
            if tid in matched:
                continue
            tr.missing += 1
            if tr.missing >= (cfg.clear_after if tr.reported else 1):
                del self._tracks[tid]
                if tr.reported:
                    events.append(DefectEvent("cleared", now, self._public(tr)))
        reported = [t.bbox for t in self._tracks.values() if t.reported]
        keep = np.zeros_like(mask)
        for x, y, bw, bh in reported:
            keep[y:y + bh, x:x + bw] = mask[y:y + bh, x:x + bw]
        self._mask = keep
        return events

    def _match(self, bbox: tuple[int, int, int, int], taken: set[int]) -> _Track | None:
        x, y, w, h = bbox
        best, best_ov = None, 0
        for tr in self._tracks.values():
            if tr.id in taken:
                continue
            tx, ty, tw, th = tr.bbox
            ov = max(0, min(x + w, tx + tw) - max(x, tx)) * max(0, min(y + h, ty + th) - max(y, ty))
            if ov > best_ov:
                best, best_ov = tr, ov
        return best

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
        self._ns = 0
        self._ring.clear()
        self._prev_c = None
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
