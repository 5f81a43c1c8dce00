"""Scratch buffers owned by the calling thread, reused across frames (no per-frame allocation
in the capture path)."""

from __future__ import annotations

import threading

import numpy as np

_local = threading.local()


def buffers(name: str, shape: tuple[int, ...], n: int) -> list[np.ndarray]:
    """``n`` uint8 arrays of ``shape`` for this thread and ``name`` (reallocated only when the
    shape changes or more are asked for)."""
    pools: dict[str, list[np.ndarray]] = _local.__dict__.setdefault("pools", {})
    bufs = pools.get(name)
    if bufs is None or bufs[0].shape != shape or len(bufs) < n:
        bufs = [np.empty(shape, np.uint8) for _ in range(max(n, 2))]
        pools[name] = bufs
    return bufs[:n]
