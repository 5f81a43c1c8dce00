"""Rolling stream statistics (fps and capture-to-client latency) for the CLI and benchmarks."""

from __future__ import annotations

import math
import time

import numpy as np


class StreamStats:
    """Frames and latencies over the current window and in total."""

    def __init__(self) -> None:
        self.total = 0
        self.latencies_ms: list[float] = []
        self.window_start = time.monotonic()
        self.window_frames = 0

    def add(self, latency_ns: int) -> None:
        self.total += 1
        self.window_frames += 1
        self.latencies_ms.append(latency_ns / 1e6)

    def reset_window(self) -> None:
        self.window_start = time.monotonic()
        self.window_frames = 0
        self.latencies_ms = []

    def fps(self) -> float:
        elapsed = time.monotonic() - self.window_start
        return self.window_frames / elapsed if elapsed > 0 else 0.0

    def percentiles(self) -> tuple[float, float]:
        """(p50, p99) latency in ms of the window; NaN when empty."""
        if not self.latencies_ms:
            return float("nan"), float("nan")
        p50, p99 = np.percentile(self.latencies_ms, [50, 99])
        return float(p50), float(p99)

    def line(self, dropped: int) -> str:
        """One statistics line; a latency of a window without frames shows as "-"."""
        p50, p99 = (f"{v:5.1f}" if math.isfinite(v) else f"{'-':>5}" for v in self.percentiles())
        return (f"{self.fps():5.1f} fps, latency p50 {p50} ms p99 {p99} ms, "
                f"{self.total} frames, {dropped} dropped")
