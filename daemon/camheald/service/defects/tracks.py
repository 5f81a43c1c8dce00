"""Pixels -> defects: connected pieces of the votes, tracks, detected/cleared events."""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from .model import Defect, DefectConfig, DefectEvent


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
    looked: int  # ... of them, pixels an appearance cue has voted for lately (``_looked``)
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
    # image-space change inside it and around it, summed over its moving-camera updates,
    # and how many updates that sums
    follow: tuple[float, float, int] = (0.0, 0.0, 0)


class Tracks:
    """Mixin of ``DefectTracker``: turns the on-pixels into tracked, reported defects."""

    config: DefectConfig

    def _components(self, now: float, idx: int) -> list[DefectEvent]:
        cfg = self.config
        ww, wh = self._ws
        on = self._grown.astype(np.uint8)
        n, labels, stats, _ = cv2.connectedComponentsWithStats(on, connectivity=8)
        min_area = self._min_area()
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
            # Thin (a crack) or a blob: thin on average, or a thin majority that voted thin
            # by itself (a crack with a dark, featureless patch of the scene grown onto its
            # end would otherwise turn into a widened "dirt" blob)
            limit = max(1.3, 0.007 * min(ww, wh))
            dist = cv2.distanceTransform(comp, cv2.DIST_L2, 3)
            inside = dist[comp > 0]
            thin = float(inside.mean()) <= limit
            if not thin and own.sum() < area and float(np.median(inside)) <= limit:
                own_dist = cv2.distanceTransform(own.astype(np.uint8), cv2.DIST_L2, 3)
                thin = float(own_dist[own].mean()) <= limit
            if not thin:  # the soft rim of a blob is under-voted (partly transparent)
                comp = cv2.dilate(comp, self._rim)
            elif own.sum() < area:  # a crack keeps only the thin part of what grew onto it
                thick = cv2.morphologyEx(comp, cv2.MORPH_OPEN, self._thick)
                comp = (comp > 0) & ~((thick > 0) & ~own)
                comp = comp.astype(np.uint8)
            bx, by, bw, bh = cv2.boundingRect(comp)
            pieces.append(_Piece((x0 + bx, y0 + by, bw, bh), "crack" if thin else "dirt", conf,
                                 area, int(own.sum()),
                                 int((own & (self._looked[y0:y1, x0:x1] >= cfg.looked_for)
                                          ).sum()), (x0, y0, comp)))
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

    def _min_area(self) -> int:
        """Smallest reported piece, working pixels."""
        ww, wh = self._ws
        return max(6, int(self.config.min_area * ww * wh))

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
        if self._moving and not tr.reported:  # (only the decision to report uses it)
            r = self._follows(box, group)
            if r is not None:
                tr.follow = (tr.follow[0] + r[0], tr.follow[1] + r[1], tr.follow[2] + 1)
        # Reported once it has persisted and its evidence has about settled (it spreads
        # over a defect for a while: a partial first mask would have to be filled in twice).
        need = cfg.confirm if self._moving else cfg.confirm_fixed
        settled = tr.areas[-1] <= cfg.settled * tr.areas[0] or tr.seen >= need + cfg.confirm
        # (a fixed camera's temporal cue waits out a gap in the traffic; its appearance cues
        # have their own guards)
        aged = self._moving or now - tr.since >= cfg.confirm_fixed_s \
            or 2 * sum(pc.looked for pc in group) >= sum(pc.voted for pc in group)
        voted = tr.areas[-1] >= cfg.min_voted * self._min_area()
        # While the camera pans, a lens defect hides (part of) the scene's change behind it;
        # something moving with the camera (a walker the pan follows) changes inside at least
        # as much as around it: its legs, its drift.
        inside, around, n = tr.follow
        still = n < 3 or inside < cfg.follow * around
        if not tr.reported and tr.seen >= need and settled and still and aged and voted:
            tr.reported = True
            return [DefectEvent("detected", now, self._public(tr))]
        return []

    def _follows(self, box: tuple[int, int, int, int], group: list[_Piece]
                 ) -> tuple[float, float] | None:
        """Image-space change over the last ``follow_lag`` updates inside the pieces and in a
        ring around them, mean grey levels (None when the ring hardly changed: the scene
        did not move behind it, no evidence either way)."""
        lag = min(self.config.follow_lag, len(self._ring) - 1)
        if lag < 1:
            return None
        ww, wh = self._ws
        r = 4  # ring width (working pixels)
        x0, y0 = max(0, box[0] - r), max(0, box[1] - r)
        x1, y1 = min(ww, box[0] + box[2] + r), min(wh, box[1] + box[3] + r)
        own = np.zeros((y1 - y0, x1 - x0), np.uint8)
        for pc in group:
            px, py, comp = pc.mask
            sub = own[py - y0:py - y0 + comp.shape[0], px - x0:px - x0 + comp.shape[1]]
            sub |= comp[:sub.shape[0], :sub.shape[1]]
        ring = cv2.dilate(own, np.ones((2 * r + 1, 2 * r + 1), np.uint8)) & (1 - own)
        if not ring.any() or not own.any():
            return None
        d = cv2.absdiff(self._ring[-1][0][y0:y1, x0:x1], self._ring[-1 - lag][0][y0:y1, x0:x1])
        around = float(d[ring > 0].mean())
        return (float(d[own > 0].mean()), around) if around >= 2.0 else None

    def _public(self, tr: _Track) -> Defect:
        f = self._f
        assert self._shape is not None
        h, w = self._shape
        x, y, bw, bh = tr.bbox
        box = (x * f, y * f, min(w - x * f, bw * f), min(h - y * f, bh * f))
        return Defect(tr.kind, round(tr.confidence, 3), box, tr.since, tr.first_frame, tr.id)
