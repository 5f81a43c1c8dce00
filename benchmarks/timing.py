"""Micro-timing: call a function repeatedly for a time budget, report median and p90."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from benchmarks.common import pct


@dataclass
class Timing:
    """Per-call wall time of one measured function, in milliseconds."""

    median_ms: float
    p90_ms: float
    min_ms: float
    calls: int
    cpu_ms: float  # process CPU per call (all threads: OpenCV's workers included)

    def as_dict(self) -> dict[str, float]:
        return {"median_ms": round(self.median_ms, 3), "p90_ms": round(self.p90_ms, 3),
                "min_ms": round(self.min_ms, 3), "calls": self.calls,
                "cpu_ms": round(self.cpu_ms, 3)}


def time_call(fn: Callable[[], object], budget_s: float = 1.5, min_calls: int = 5,
              max_calls: int = 500, warmup: int = 3) -> Timing:
    """Time ``fn()`` for about ``budget_s`` seconds (at least ``min_calls`` calls).

    The minimum approximates the cost on an idle machine, the median what a loaded one sees;
    CPU per call is the least sensitive to other load.
    """
    for _ in range(warmup):
        fn()
    samples: list[float] = []
    cpu0 = time.process_time()
    start = time.perf_counter()
    while len(samples) < max_calls and (len(samples) < min_calls
                                         or time.perf_counter() - start < budget_s):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1e3)
    cpu = (time.process_time() - cpu0) * 1e3 / len(samples)
    return Timing(pct(samples, 50), pct(samples, 90), min(samples), len(samples), cpu)
