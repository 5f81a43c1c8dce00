"""Frames as the SDK hands them to applications."""

from __future__ import annotations

import mmap
import os
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np


@dataclass
class Frame:
    """One camera frame.

    Attributes:
        image: HxWx3 uint8 RGB. For streamed frames a read-only zero-copy view into shared
            memory that stays valid until the next frame is read; use ``copy()`` to keep it.
        seq: the camera's frame sequence number (1 = first frame since the daemon started).
        timestamp_ns: capture time, CLOCK_MONOTONIC nanoseconds (comparable with
            ``time.monotonic_ns()`` on the same machine).
        corrected: whether camheal's correction was applied.
        scores: anomaly name -> probability from the latest analysis.
        actions: corrections applied to this frame.
    """

    image: np.ndarray
    seq: int
    timestamp_ns: int
    corrected: bool = True
    scores: dict[str, float] = field(default_factory=dict)
    actions: tuple[str, ...] = ()
    _ring: Any = field(default=None, repr=False, compare=False)

    def valid(self) -> bool:
        """False once the daemon has overwritten a streamed frame's shared memory."""
        return self._ring is None or self._ring.valid()

    def copy(self) -> Frame:
        """A Frame that owns its pixels (safe to keep after the next frame arrives).

        Raises:
            camheal.ring.TornFrameError: a streamed frame was overwritten before it was copied.
        """
        image = self._ring.copy().image if self._ring is not None else self.image.copy()
        return replace(self, image=image, scores=dict(self.scores), _ring=None)


def frame_from_fd(fd: int, meta: dict) -> Frame:
    """Map a sealed frame memfd the daemon returned (raw RGB24) into a Frame; closes ``fd``.

    The pixels are copied out of the mapping once, so the Frame owns them.
    """
    try:
        size = int(meta["size"])
        if os.fstat(fd).st_size < size:
            raise ValueError("frame memfd is smaller than its metadata says")
        with mmap.mmap(fd, size, prot=mmap.PROT_READ) as mm:
            data = np.frombuffer(mm, np.uint8, count=size)
            if meta.get("format", "rgb") == "rgb":
                h, w = int(meta["height"]), int(meta["width"])
                image = data.reshape(h, w, 3).copy()
            else:
                image = data.copy()  # encoded PNG/JPEG bytes
            del data
    finally:
        os.close(fd)
    return Frame(image=image, seq=int(meta.get("seq", 0)),
                 timestamp_ns=int(meta.get("timestamp_ns", 0)),
                 corrected=bool(meta.get("corrected", True)),
                 scores=dict(meta.get("scores", {})), actions=tuple(meta.get("actions", ())))


def read_fd(fd: int, size: int) -> bytes:
    """Read ``size`` bytes from the start of a memfd the daemon returned; closes ``fd``."""
    try:
        chunks, got = [], 0
        while got < size:
            chunk = os.pread(fd, size - got, got)
            if not chunk:
                raise ValueError("frame memfd is shorter than its metadata says")
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def encode_ppm(rgb: np.ndarray) -> bytes:
    """An HxWx3 uint8 RGB array as binary PPM (P6): lossless, and needs no image library."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an HxWx3 uint8 RGB array, got {rgb.shape} {rgb.dtype}")
    h, w = rgb.shape[:2]
    return b"P6\n%d %d\n255\n" % (w, h) + np.ascontiguousarray(rgb).tobytes()
