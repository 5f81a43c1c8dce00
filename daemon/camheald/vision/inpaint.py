"""Filling a persistent (lens) defect mask in a frame sequence: temporal fill, then OpenCV.

A lens defect stays at the same image pixels while the camera moves, so the scene hidden
behind it in frame t was visible, at another image position, in frames before and after
t. ``SequenceInpainter`` registers neighbouring frames to frame t (a global translation,
measured by phase correlation with the defect blanked out so that it does not pull the
estimate towards zero) and copies the pixels that were visible there. Pixels never seen
(a fixed camera, the first frames of a pan, the edge of the view) are filled spatially: by
the learned inpainting network (``camheal_inpaint.onnx``, see models/RESTORE_CARD.md) when
its weights are installed, otherwise, or when asked for, by OpenCV inpainting (Telea or
Navier-Stokes). The fill is blended into the frame over a feathered rim, so a partly
transparent defect edge leaves no seam.

Limits: only a global translation is modelled (pan/tilt, shake); zoom, rotation and strong
parallax leave misregistered fills that are then only as good as their neighbourhood.
Moving objects behind the defect are filled with what was there in a neighbouring frame.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass

import cv2
import numpy as np

logger = logging.getLogger(__name__)

METHODS = {"telea": cv2.INPAINT_TELEA, "ns": cv2.INPAINT_NS}
# Spatial fills: "auto" = the learned network when its weights load and its sidecar says it
# beat Telea (``auto``), else Telea.
SPATIAL = ("auto", "learned", *METHODS)
_MEAN_RGB = np.full((1, 3), 1.0 / 3.0, np.float32)  # cv2.transform: the mean of R, G, B


def _learned(method: str):
    """The shared LearnedInpainter for ``method`` ("auto"/"learned"), or None for OpenCV.

    Raises:
        ModelError: "learned" was asked for and the network cannot be loaded.
    """
    if method not in ("auto", "learned"):
        return None
    from camheald.vision import restore

    net = restore.shared("inpaint")
    if net is None and method == "learned":
        restore.LearnedInpainter.load()  # raises the ModelError that says why
    if net is not None and method == "auto" and not net.auto:
        return None  # evaluated as no better than Telea: not worth its time
    return net


def blend_mask(mask: np.ndarray, grow: int = 2, feather: float = 1.5
               ) -> tuple[np.ndarray, np.ndarray]:
    """(pixels to fill, blend weight) for a defect mask.

    Args:
        mask: HxW uint8, 255 (or >0) = defect.
        grow: pixels added around the mask (the partly transparent rim of a defect).
        feather: Gaussian sigma of the blend ramp outside the grown mask, pixels.

    Returns:
        fill: HxW uint8 0/255, the grown mask; weight: HxW float32 in [0, 1], 1 on ``fill``.
    """
    m = (mask > 0).astype(np.uint8) * 255
    if grow > 0:
        k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1))
        m = cv2.dilate(m, k)
    w = m.astype(np.float32) / 255.0
    if feather > 0:
        w = np.maximum(w, cv2.GaussianBlur(w, (0, 0), feather))
    return m, w


def inpaint_still(rgb: np.ndarray, mask: np.ndarray, method: str = "telea", radius: int = 5,
                  grow: int = 2) -> np.ndarray:
    """OpenCV inpainting of one frame, blended at the mask edge.

    Args:
        rgb: HxWx3 uint8 RGB.
        mask: HxW uint8, >0 = defect (same size as ``rgb``).
        method: "telea" or "ns" (Navier-Stokes), or "learned" (the inpainting network;
            ModelError when its weights are missing) or "auto" (learned if available).
        radius: OpenCV inpainting neighbourhood radius, pixels.
        grow: pixels added around the mask before filling.

    Returns:
        HxWx3 uint8 (a copy; ``rgb`` untouched).
    """
    if method not in SPATIAL:
        raise ValueError(f"unknown inpainting method {method!r} (known: {', '.join(SPATIAL)})")
    fill, weight = blend_mask(mask, grow)
    if not fill.any():
        return rgb.copy()
    net = _learned(method)
    if net is not None:
        filled = net.fill(rgb, fill)
    else:
        filled = cv2.inpaint(rgb, fill, radius, METHODS.get(method, cv2.INPAINT_TELEA))
    return _blend(rgb, filled, weight)


def _blend(rgb: np.ndarray, filled: np.ndarray, weight: np.ndarray) -> np.ndarray:
    w = weight[..., None]
    out = rgb.astype(np.float32) * (1.0 - w) + filled.astype(np.float32) * w
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def _crop_shifted(img: np.ndarray, box: tuple[int, int, int, int], dx: int, dy: int
                  ) -> np.ndarray:
    """``out[y, x] = img[y - dy, x - dx]`` for (y, x) in ``box`` (y0, y1, x0, x1); 0 outside."""
    y0, y1, x0, x1 = box
    h, w = img.shape[:2]
    out = np.zeros((y1 - y0, x1 - x0) + img.shape[2:], img.dtype)
    sy0, sy1 = max(0, y0 - dy), min(h, y1 - dy)
    sx0, sx1 = max(0, x0 - dx), min(w, x1 - dx)
    if sy1 > sy0 and sx1 > sx0:
        out[sy0 + dy - y0:sy1 + dy - y0, sx0 + dx - x0:sx1 + dx - x0] = img[sy0:sy1, sx0:sx1]
    return out


@dataclass
class _Frame:
    rgb: np.ndarray
    pos: tuple[float, float]  # cumulative camera translation, full-resolution pixels


class SequenceInpainter:
    """Fills one fixed mask in every frame of a sequence, with a delay of ``window`` frames.

    Feed frames in order with ``push``; each call returns the frames that are complete (the
    one ``window`` frames back, once it has ``window`` successors); ``flush`` returns the
    rest. Frames are HxWx3 uint8 RGB of the mask's size.

    ``method`` fills the pixels no other frame shows: "auto" (the learned network when its
    weights load and it beat Telea when evaluated, else Telea), "learned", "telea" or "ns".
    ``stats`` counts filled pixels: "temporal" (copied from other frames), "learned" (filled
    by the network) and "opencv" (by OpenCV inpainting); a pixel is counted once.
    """

    def __init__(self, mask: np.ndarray, window: int = 12, method: str = "auto",
                 radius: int = 5, grow: int = 2, near: float = 1.0,
                 max_misfit: float = 14.0, max_sources: int = 8,
                 analysis_width: int = 320) -> None:
        if method not in SPATIAL:
            raise ValueError(f"unknown inpainting method {method!r}")
        self._net = _learned(method)
        self.mask = (mask > 0).astype(np.uint8) * 255
        self.fill, self.weight = blend_mask(self.mask, grow)
        self.window = max(0, int(window))
        h, w = self.mask.shape
        ring = (cv2.dilate(self.fill, np.ones((15, 15), np.uint8)) > 0) & (self.fill == 0)
        self._ring = ring
        self._visible = (self.fill == 0).astype(np.uint8)
        self._box: tuple[int, int, int, int] | None = None
        if self.fill.any():
            yy, xx = np.nonzero(self.fill)
            pad = 12 + radius
            self._box = (max(0, int(yy.min()) - pad), min(h, int(yy.max()) + pad + 1),
                         max(0, int(xx.min()) - pad), min(w, int(xx.max()) + pad + 1))
        ys, xs = np.nonzero(ring)
        step = max(1, len(ys) // 2000)  # a sample is enough to judge a shift
        self._ring_idx = (ys[::step], xs[::step])
        dist = cv2.distanceTransform(self.fill, cv2.DIST_L2, 3)
        self._near = (self.fill > 0) & (dist <= near)
        self.method, self.radius = method, radius
        self.max_misfit, self.consistency_sigma = max_misfit, 6.0
        self.max_sources = max_sources
        self._scale = max(1.0, w / analysis_width)
        self._small = (max(16, round(w / self._scale)), max(16, round(h / self._scale)))
        small_mask = cv2.resize(self.fill, self._small, interpolation=cv2.INTER_NEAREST)
        self._blank = cv2.dilate(small_mask, np.ones((5, 5), np.uint8))
        self._hann = cv2.createHanningWindow(self._small, cv2.CV_32F)
        self._buf: deque[_Frame] = deque()
        self._prev: np.ndarray | None = None
        self._pos = (0.0, 0.0)
        self._done = 0  # index in the stream of the oldest frame still in the buffer
        self._next = 0  # index of the next frame to emit
        self.stats = {"temporal": 0, "opencv": 0, "learned": 0}  # filled pixel counts

    def _analyse(self, rgb: np.ndarray) -> np.ndarray:
        g = cv2.cvtColor(cv2.resize(rgb, self._small, interpolation=cv2.INTER_AREA),
                         cv2.COLOR_RGB2GRAY)
        # Paint the defect out (it is static in the image and would vote for "no motion";
        # a flat patch would too, through its edges).
        if self._blank.any():
            g = cv2.inpaint(g, self._blank, 3, cv2.INPAINT_TELEA)
        return g.astype(np.float32)

    def push(self, rgb: np.ndarray) -> list[np.ndarray]:
        """Add the next frame; return the corrected frames now complete (in order)."""
        if rgb.shape[:2] != self.mask.shape:
            raise ValueError(f"frame {rgb.shape[1]}x{rgb.shape[0]} does not match the mask "
                             f"{self.mask.shape[1]}x{self.mask.shape[0]}")
        g = self._analyse(rgb)
        if self._prev is not None:
            # copies: OpenCV 5 applies the window to both inputs in place
            (dx, dy), resp = cv2.phaseCorrelate(self._prev.copy(), g.copy(), self._hann)
            if resp > 0.05:
                self._pos = (self._pos[0] + dx * self._scale, self._pos[1] + dy * self._scale)
        self._prev = g
        self._buf.append(_Frame(rgb, self._pos))
        out = []
        while self._next - self._done + self.window < len(self._buf):
            out.append(self._emit())
        return out

    def flush(self) -> list[np.ndarray]:
        """Return every frame not yet returned."""
        out = []
        while self._next - self._done < len(self._buf):
            out.append(self._emit())
        return out

    def _emit(self) -> np.ndarray:
        i = self._next - self._done
        frame = self._emit_one(i)
        self._next += 1
        while self._next - self._done > self.window and self._buf:
            self._buf.popleft()
            self._done += 1
        return frame

    def _emit_one(self, i: int) -> np.ndarray:
        target = self._buf[i]
        if self._box is None:
            return target.rgb
        y0, y1, x0, x1 = self._box  # all work happens in the box around the mask
        fill = self.fill[y0:y1, x0:x1] > 0
        todo = fill.copy()
        tgt = target.rgb[y0:y1, x0:x1]
        filled = tgt.copy()
        order = sorted((j for j in range(len(self._buf)) if j != i), key=lambda j: abs(j - i))
        tries = 0
        for j in order:
            if not todo.any() or tries >= self.max_sources:
                break
            src = self._buf[j]
            dx = int(round(target.pos[0] - src.pos[0]))
            dy = int(round(target.pos[1] - src.pos[1]))
            if abs(dx) + abs(dy) < 2:
                continue  # (nearly) the same view: the same pixels are hidden
            tries += 1
            dx, dy = self._refine(target.rgb, src.rgb, dx, dy)
            seen = _crop_shifted(self._visible, self._box, dx, dy) > 0
            take = todo & seen
            if not take.any():
                continue
            moved = self._match(_crop_shifted(src.rgb, self._box, dx, dy), tgt, seen)
            take &= self._consistent(moved, tgt, seen)
            filled[take] = moved[take]
            todo &= ~take
            self.stats["temporal"] += int(take.sum())
        # A thin band along the edge is better interpolated from both sides (sub-pixel
        # registration errors show most there, and a thin crack is nothing but edge).
        band = self._near[y0:y1, x0:x1]
        unseen = todo & ~band  # pixels no other frame showed
        todo |= band
        if todo.any():
            # Fill with the temporal fill in place (a better boundary for what is left).
            # The network (a few hundred ms per touched megapixel) only where no frame
            # showed the scene; the thin edge band alone is left to the cheap OpenCV fill.
            if self._net is not None and unseen.any():
                # Only the groups of what is left that hold unseen pixels, each in a crop of
                # its own: one box around pieces far apart costs the network a whole frame.
                # Pieces within reach of each other's context are one group (the network
                # must not take a neighbour's unfilled defect for scene).
                c = 2 * self._net.context + 1
                near = cv2.dilate(todo.astype(np.uint8),
                                  cv2.getStructuringElement(cv2.MORPH_RECT, (c, c)))
                _n, groups = cv2.connectedComponents(near, connectivity=8)
                ids = np.unique(groups[unseen])
                frame = target.rgb.copy()  # the network wants context beyond the box
                frame[y0:y1, x0:x1] = filled
                hole = np.zeros(self.mask.shape, np.uint8)
                for k in ids:
                    hole[y0:y1, x0:x1] = todo & (groups == k)
                    frame = self._net.fill(frame, hole)
                filled = frame[y0:y1, x0:x1]
                learned = todo & np.isin(groups, ids)
                self.stats["learned"] += int(learned.sum())
                todo &= ~learned
            if todo.any():
                filled = cv2.inpaint(filled, todo.astype(np.uint8) * 255, self.radius,
                                     METHODS.get(self.method, cv2.INPAINT_TELEA))
                self.stats["opencv"] += int(todo.sum())
        out = target.rgb.copy()
        out[y0:y1, x0:x1] = _blend(tgt, filled, self.weight[y0:y1, x0:x1])
        return out

    def _refine(self, target: np.ndarray, src: np.ndarray, dx: int, dy: int) -> tuple[int, int]:
        """Best integer shift within +-1 pixel, judged on the visible ring around the mask."""
        ys, xs = self._ring_idx
        h, w = self.mask.shape
        best, best_err = (dx, dy), float("inf")
        t = target[ys, xs].astype(np.int16)
        for ey in (-1, 0, 1):
            for ex in (-1, 0, 1):
                sy, sx = ys - (dy + ey), xs - (dx + ex)
                ok = (sy >= 0) & (sy < h) & (sx >= 0) & (sx < w)
                if ok.sum() < 32:
                    continue
                ok[ok] &= self.fill[sy[ok], sx[ok]] == 0
                if ok.sum() < 32:
                    continue
                err = float(np.abs(t[ok] - src[sy[ok], sx[ok]].astype(np.int16)).mean())
                if err < best_err:
                    best, best_err = (dx + ex, dy + ey), err
        return best

    def _consistent(self, moved: np.ndarray, target: np.ndarray, seen: np.ndarray
                    ) -> np.ndarray:
        """Where the source agrees with the target around the mask (box crops, bool).

        The misfit on the visible ring is spread inwards (normalised blur): an object that
        moved on its own between the two frames, or a bad registration, shows there.
        """
        y0, y1, x0, x1 = self._box
        ring = (self._ring[y0:y1, x0:x1] & seen).astype(np.uint8)
        diff = cv2.absdiff(moved, target)
        err = cv2.bitwise_and(diff, diff, dst=np.zeros_like(diff), mask=ring)  # on the ring
        # at half resolution (the spread field is smooth; a 1080p box costs a quarter)
        size = (max(1, (x1 - x0) // 2), max(1, (y1 - y0) // 2))
        num = cv2.transform(cv2.resize(err, size, interpolation=cv2.INTER_AREA).astype(
            np.float32), _MEAN_RGB)
        den = cv2.resize(ring.astype(np.float32), size, interpolation=cv2.INTER_AREA)
        sig = self.consistency_sigma / 2
        num = cv2.GaussianBlur(num, (0, 0), sig)
        den = cv2.GaussianBlur(den, (0, 0), sig)
        full = (x1 - x0, y1 - y0)
        local = cv2.resize(num / np.maximum(den, 1e-3), full, interpolation=cv2.INTER_LINEAR)
        den = cv2.resize(den, full, interpolation=cv2.INTER_LINEAR)
        return (den < 0.02) | (local < self.max_misfit)

    def _match(self, moved: np.ndarray, target: np.ndarray, seen: np.ndarray) -> np.ndarray:
        """Correct the source's brightness to the target's on the ring around the mask
        (where the source shows the scene, not its own copy of the defect); box crops."""
        y0, y1, x0, x1 = self._box
        ring = (self._ring[y0:y1, x0:x1] & seen).astype(np.uint8)
        if cv2.countNonZero(ring) < 16:
            return moved
        diff = np.subtract(cv2.mean(target, mask=ring)[:3], cv2.mean(moved, mask=ring)[:3])
        if np.abs(diff).max() < 1.0:
            return moved
        return cv2.add(moved, (*diff, 0.0))  # (rounded, saturated)


def fill_sequence(frames: list[np.ndarray], mask: np.ndarray, **kw) -> list[np.ndarray]:
    """Inpaint ``mask`` in every frame of a list (see SequenceInpainter for the options)."""
    inp = SequenceInpainter(mask, **kw)
    out: list[np.ndarray] = []
    for f in frames:
        out += inp.push(f)
    return out + inp.flush()
