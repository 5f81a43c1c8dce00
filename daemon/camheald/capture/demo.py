"""The demo camera: a procedurally rendered moving scene with scheduled lens/image defects."""

from __future__ import annotations

import time

import cv2
import numpy as np

from camheald.capture import inject
from camheald.capture.base import Source

DEFAULT_SCHEDULE = ("clean", "dirt", "blur", "underexposed", "crack")


def _render_world(width: int, height: int, seed: int) -> np.ndarray:
    """A wide RGB panorama with sky, textured ground, buildings, windows and signs."""
    rng = np.random.default_rng(seed)
    w, h = width * 2, height
    world = np.zeros((h, w, 3), np.float32)
    horizon = int(h * 0.45)
    sky = np.linspace(0, 1, horizon, dtype=np.float32)[:, None, None]
    world[:horizon] = (110 + 60 * sky) * np.array([0.75, 0.9, 1.25], np.float32)
    # Ground: multi-scale value noise gives grass/gravel-like texture.
    ground = np.zeros((h - horizon, w), np.float32)
    for cells, amp in ((8, 40.0), (32, 25.0), (128, 15.0), (512, 10.0)):
        small = rng.normal(0, 1, (max(2, (h - horizon) * cells // w), cells)).astype(np.float32)
        ground += amp * cv2.resize(small, (w, h - horizon), interpolation=cv2.INTER_CUBIC)
    world[horizon:] = (np.array([95, 120, 70], np.float32) + ground[..., None])
    # Slow colour variation (soil, flowers, shade) so colour statistics are not trivial.
    tint = cv2.resize(rng.normal(0, 22, (4, 16, 3)).astype(np.float32), (w, h - horizon),
                      interpolation=cv2.INTER_CUBIC)
    world[horizon:] += tint
    # Buildings with windows: strong edges and repeated structure.
    x = 0
    while x < w:
        bw = int(rng.integers(w // 20, w // 8))
        bh = int(rng.integers(h // 6, int(h * 0.4)))
        colour = rng.uniform(60, 220, 3)
        top = horizon - bh
        cv2.rectangle(world, (x, top), (x + bw, horizon), colour.tolist(), -1)
        win = max(3, bw // 10)
        for wy in range(top + win, horizon - win, win * 2):
            for wx in range(x + win, x + bw - win, win * 2):
                lit = rng.random() < 0.4
                cv2.rectangle(world, (wx, wy), (wx + win, wy + win),
                              (235, 220, 150) if lit else (40, 45, 60), -1)
        x += bw + int(rng.integers(0, w // 40 + 1))
    world = np.clip(world, 0, 255).astype(np.uint8)
    # Road with lane marks and a few coloured signs with text.
    road_top = int(h * 0.72)
    cv2.rectangle(world, (0, road_top), (w, road_top + h // 8), (70, 70, 75), -1)
    for lx in range(0, w, w // 24):
        cv2.rectangle(world, (lx, road_top + h // 16 - 2), (lx + w // 60, road_top + h // 16 + 2),
                      (230, 230, 230), -1)
    for i in range(6):
        sx = int(rng.integers(0, w - w // 12))
        sy = int(rng.integers(int(h * 0.5), int(h * 0.65)))
        colour = rng.uniform(30, 255, 3).tolist()
        cv2.rectangle(world, (sx, sy), (sx + w // 14, sy + h // 14), colour, -1)
        cv2.putText(world, f"CAM{i}", (sx + 4, sy + h // 20), cv2.FONT_HERSHEY_SIMPLEX,
                    max(0.3, h / 900), (255, 255, 255), max(1, h // 360), cv2.LINE_AA)
    return world


class DemoSource(Source):
    """A moving synthetic scene; defects follow ``schedule``, each for ``phase_s`` seconds.

    Frames are HxWx3 uint8 RGB. The view pans slowly over a wide panorama while coloured
    objects move through it, so a detector sees texture, edges, colour and motion;
    ``pan=False`` holds the view still at ``pan_at`` (0..1 across the panorama): a fixed
    camera over the traffic.
    """

    def __init__(self, uri: str = "demo", width: int = 640, height: int = 360, fps: float = 15.0,
                 phase_s: float = 8.0, schedule: tuple[str, ...] = DEFAULT_SCHEDULE,
                 seed: int = 7, pan: bool = True, pan_at: float = 0.5) -> None:
        self.uri = uri
        self.pan, self.pan_at = pan, pan_at
        self._w, self._h, self._fps = width, height, fps
        self.phase_s = phase_s
        self.schedule = schedule
        self._seed = seed
        self._world: np.ndarray | None = None
        self._defects: dict[str, inject.Defect] = {}
        self._t0 = 0.0
        self._next = 0.0
        self._n = 0

    @property
    def size(self) -> tuple[int, int]:
        return self._w, self._h

    @property
    def fps(self) -> float:
        return self._fps

    def open(self) -> None:
        if self._world is None:
            self._world = _render_world(self._w, self._h, self._seed)
            self._defects = {n: inject.make(n, self._w, self._h) for n in set(self.schedule)}
        self._t0 = time.monotonic()
        self._next = self._t0
        self._n = 0

    def phase_at(self, elapsed_s: float) -> str:
        """Name of the defect shown ``elapsed_s`` seconds after open()."""
        return self.schedule[int(elapsed_s // self.phase_s) % len(self.schedule)]

    def render(self, t: float) -> np.ndarray:
        """The clean scene at time ``t`` seconds (HxWx3 uint8 RGB)."""
        assert self._world is not None
        span = self._world.shape[1] - self._w
        x0 = int(((0.5 - 0.5 * np.cos(t * 0.15)) if self.pan else self.pan_at) * span)
        frame = self._world[:, x0:x0 + self._w].copy()
        h, w = self._h, self._w
        for i, colour in enumerate(((220, 40, 40), (40, 80, 220), (250, 200, 30))):
            cx = int((0.5 + 0.45 * np.sin(t * (0.5 + 0.2 * i) + i)) * w)
            cy = int((0.78 + 0.06 * np.cos(t * (0.7 + 0.1 * i))) * h)
            rw, rh = w // (10 + 2 * i), h // (14 + 2 * i)
            cv2.rectangle(frame, (cx - rw, cy - rh), (cx + rw, cy + rh), colour, -1)
            cv2.circle(frame, (cx - rw // 2, cy + rh), max(2, rh // 2), (15, 15, 15), -1)
            cv2.circle(frame, (cx + rw // 2, cy + rh), max(2, rh // 2), (15, 15, 15), -1)
        return frame

    def read(self) -> np.ndarray:
        if self._world is None:
            self.open()
        now = time.monotonic()
        if self._next > now:
            time.sleep(self._next - now)
        self._next = max(self._next + 1.0 / self._fps, time.monotonic() - 1.0 / self._fps)
        t = time.monotonic() - self._t0
        frame = self.render(t)
        self._n += 1
        return self._defects[self.phase_at(t)].apply(frame)

    def injected(self) -> str:
        return self.phase_at(time.monotonic() - self._t0) if self._world is not None else ""
