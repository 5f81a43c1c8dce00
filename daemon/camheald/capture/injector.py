"""The ``inject:`` wrapper: known, scheduled defects on top of any source (ground truth for tests).

The wrapped source gives real frames; this wrapper degrades them following a schedule and
reports the defect it applies now through ``injected()`` (``Stats["injected"]`` on D-Bus), so a
test or the HIL runner can score the detector against the truth.
"""

from __future__ import annotations

import logging
import threading
import time

import numpy as np

from camheald.capture import inject
from camheald.capture.base import Source

logger = logging.getLogger(__name__)

#: every anomaly once, each followed by a clean phase (detection is cleared in between)
DEFAULT_SCHEDULE = ("clean", "blur", "clean", "dirt", "clean", "crack", "clean", "underexposed",
                    "clean", "overexposed", "clean", "low_contrast", "clean", "color_cast",
                    "clean", "noise")


class InjectSource(Source):
    """Wraps ``inner`` and applies ``schedule[i]`` for ``phase_s`` seconds each, looping.

    The schedule clock starts at the first ``open()`` and keeps running across reconnects of
    the inner source, so the ground truth never jumps backwards. Lens defects (dirt, crack) are
    drawn once per frame size from ``seed`` and stay in place, as they would on a real lens.
    """

    def __init__(self, uri: str, inner: Source, schedule: tuple[str, ...] = DEFAULT_SCHEDULE,
                 phase_s: float = 8.0, seed: int = 1, loop: bool = True) -> None:
        if not schedule:
            raise ValueError("empty schedule")
        self.uri = uri
        self.inner = inner
        self.schedule = schedule
        self.phase_s = phase_s
        self.seed = seed
        self.loop = loop
        self._t0: float | None = None
        self._cache: dict[tuple[str, int, int], inject.Defect] = {}
        self._lock = threading.Lock()

    def open(self) -> None:
        self.inner.open()
        if self._t0 is None:
            self._t0 = time.monotonic()

    def close(self) -> None:
        self.inner.close()

    @property
    def live(self) -> bool:  # type: ignore[override]
        return self.inner.live

    def phase_at(self, elapsed_s: float) -> str:
        """Name of the defect applied ``elapsed_s`` seconds after the first open()."""
        i = int(max(elapsed_s, 0.0) // self.phase_s)
        if i >= len(self.schedule) and not self.loop:
            return "clean"
        return self.schedule[i % len(self.schedule)]

    def injected(self) -> str:
        if self._t0 is None:
            return ""
        return self.phase_at(time.monotonic() - self._t0)

    def defect(self, name: str, width: int, height: int) -> inject.Defect:
        """The renderer for ``name`` at this frame size (built once, then reused)."""
        key = (name, width, height)
        with self._lock:
            found = self._cache.get(key)
            if found is None:
                if name in ("dirt", "obstruction"):
                    found = inject.dirt(width, height, self.seed)
                elif name == "crack":
                    found = inject.crack(width, height, self.seed + 1)
                else:
                    found = inject.make(name, width, height)
                self._cache[key] = found
        return found

    def read(self) -> np.ndarray:
        frame = self.inner.read()
        name = self.injected() or "clean"
        if name == "clean":
            return frame
        return self.defect(name, frame.shape[1], frame.shape[0]).apply(frame)

    @property
    def size(self) -> tuple[int, int]:
        return self.inner.size

    @property
    def fps(self) -> float:
        return self.inner.fps
