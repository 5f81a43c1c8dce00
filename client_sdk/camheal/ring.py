"""Shared-memory frame ring: the memfd layout (defined once, here) and the read-only reader.

Layout (all integers little-endian, every page-aligned block starts on a 4096-byte boundary)::

    [ring header, HEADER_SIZE bytes]
    [slot 0: slot header (SLOT_FIXED_SIZE + meta blob, page-aligned) | pixels (height * stride)]
    [slot 1] ... [slot N-1]

Each slot is guarded by a seqlock word: odd while the writer fills the slot, even when the
slot is complete (0 = never written). A reader records the word before reading and checks it
again afterwards; if it changed, what it read may mix two frames. Pixels are handed out as
zero-copy views, so the check is repeated on demand by :meth:`RingFrame.valid` and by
:meth:`RingFrame.copy`.

Drop accounting uses the ring's own write number (1, 2, 3, ... per write), not the camera
sequence number: a gap in write numbers is a frame that was in the ring and this reader never
returned. Gaps in ``seq`` that come from capture itself are not counted as reader drops.

Importable with numpy only (no OpenCV, no D-Bus).
"""

from __future__ import annotations

import fcntl
import json
import logging
import mmap
import os
import select
import stat
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from camheal.errors import CamhealError

logger = logging.getLogger(__name__)

MAGIC = b"CAMRING\x01"
VERSION = 1
PAGE = 4096
HEADER_SIZE = PAGE
# V4L2 fourcc "RGB3": packed 8-bit R, G, B.
FORMAT_RGB24 = int.from_bytes(b"RGB3", "little")
CHANNELS = 3
DEFAULT_SLOTS = 4
DEFAULT_META_BYTES = 4096
MAX_SLOTS = 64
MAX_META_BYTES = 1 << 20
MAX_DIMENSION = 16384

# magic, version, header_size, slot_count, slot_header_size, width, height, stride, format,
# meta_bytes, reserved, slot_stride, total_size. The write counter follows at WRITE_COUNT_OFFSET.
HEADER_STRUCT = struct.Struct("<8sIIIIIIIIIIQQ")
WRITE_COUNT_OFFSET = 64

# Slot header: lock, write_no, seq, timestamp_ns (u64) then width, height, stride, format,
# meta_len, reserved (u32) then reserved u64. The meta blob follows at SLOT_FIXED_SIZE.
SLOT_U64_FIELDS = 4  # lock, write_no, seq, timestamp_ns
SLOT_U32_OFFSET = 32
SLOT_U32_FIELDS = 6  # width, height, stride, format, meta_len, reserved
SLOT_FIXED_SIZE = 64

# Seals (fcntl has them on Linux since Python 3.8; the numeric values are the kernel ABI).
F_ADD_SEALS: int = getattr(fcntl, "F_ADD_SEALS", 1033)
F_GET_SEALS: int = getattr(fcntl, "F_GET_SEALS", 1034)
F_SEAL_SEAL: int = getattr(fcntl, "F_SEAL_SEAL", 0x0001)
F_SEAL_SHRINK: int = getattr(fcntl, "F_SEAL_SHRINK", 0x0002)
F_SEAL_GROW: int = getattr(fcntl, "F_SEAL_GROW", 0x0004)
F_SEAL_WRITE: int = getattr(fcntl, "F_SEAL_WRITE", 0x0008)
F_SEAL_FUTURE_WRITE: int = getattr(fcntl, "F_SEAL_FUTURE_WRITE", 0x0010)


class RingError(CamhealError):
    """Base class of frame-ring errors."""


class RingFormatError(RingError, ValueError):
    """The fd is not a camheal frame ring (wrong kind of file, size, magic or version)."""


class TornFrameError(RingError):
    """The slot was overwritten while the frame was being read; the data is not one frame."""


def align(n: int, to: int = PAGE) -> int:
    """Round ``n`` up to a multiple of ``to``."""
    return (n + to - 1) // to * to


@dataclass(frozen=True)
class RingLayout:
    """Geometry of a ring; computed by the writer, parsed back and checked by readers."""

    slots: int
    width: int
    height: int
    meta_bytes: int
    stride: int
    pixel_format: int = FORMAT_RGB24

    @classmethod
    def for_frame(cls, width: int, height: int, slots: int, meta_bytes: int) -> RingLayout:
        """Layout for packed RGB24 frames of ``width`` x ``height`` pixels."""
        layout = cls(slots, width, height, meta_bytes, width * CHANNELS)
        layout.check()
        return layout

    @property
    def slot_header_size(self) -> int:
        return align(SLOT_FIXED_SIZE + self.meta_bytes)

    @property
    def frame_bytes(self) -> int:
        return self.height * self.stride

    @property
    def slot_stride(self) -> int:
        return align(self.slot_header_size + self.frame_bytes)

    @property
    def total_size(self) -> int:
        return HEADER_SIZE + self.slots * self.slot_stride

    def slot_offset(self, index: int) -> int:
        return HEADER_SIZE + index * self.slot_stride

    def check(self) -> None:
        """Raise :class:`RingFormatError` when a field is out of range."""
        if not 1 <= self.slots <= MAX_SLOTS:
            raise RingFormatError(f"ring slot count {self.slots} not in 1..{MAX_SLOTS}")
        if not (1 <= self.width <= MAX_DIMENSION and 1 <= self.height <= MAX_DIMENSION):
            raise RingFormatError(f"ring frame size {self.width}x{self.height} out of range")
        if not 0 <= self.meta_bytes <= MAX_META_BYTES:
            raise RingFormatError(f"ring meta_bytes {self.meta_bytes} not in 0..{MAX_META_BYTES}")
        if self.stride < self.width * CHANNELS:
            raise RingFormatError(f"ring stride {self.stride} < width * 3 ({self.width * 3})")
        if self.pixel_format != FORMAT_RGB24:
            raise RingFormatError(f"unsupported ring pixel format 0x{self.pixel_format:08x}")

    def pack_header(self) -> bytes:
        return HEADER_STRUCT.pack(
            MAGIC, VERSION, HEADER_SIZE, self.slots, self.slot_header_size, self.width,
            self.height, self.stride, self.pixel_format, self.meta_bytes, 0, self.slot_stride,
            self.total_size,
        )

    @classmethod
    def unpack_header(cls, buf: Any, file_size: int) -> RingLayout:
        """Parse and validate a ring header against the size of the file it came from."""
        (magic, version, header_size, slots, slot_header_size, width, height, stride, fmt,
         meta_bytes, _, slot_stride, total_size) = HEADER_STRUCT.unpack_from(buf, 0)
        if magic != MAGIC:
            raise RingFormatError(f"not a camheal frame ring (magic {magic!r})")
        if version != VERSION:
            raise RingFormatError(f"frame ring version {version}, this SDK reads {VERSION}")
        layout = cls(slots, width, height, meta_bytes, stride, fmt)
        layout.check()
        if (header_size, slot_header_size, slot_stride, total_size) != (
            HEADER_SIZE, layout.slot_header_size, layout.slot_stride, layout.total_size
        ):
            raise RingFormatError("frame ring header sizes are inconsistent")
        if total_size > file_size:
            raise RingFormatError(f"frame ring needs {total_size} bytes, the fd has {file_size}")
        return layout


_fence_lock = threading.Lock()


def fence() -> None:
    """Best-effort memory ordering point for the seqlock.

    Python has no explicit barrier; a mutex acquire/release is one in practice (x86 is TSO
    anyway; on ARM the futex/atomic instructions in pthread locks order the stores).
    """
    with _fence_lock:
        pass


class SlotView:
    """Typed views of one slot inside a mapping (shared by the reader and the writer)."""

    def __init__(self, buf: Any, layout: RingLayout, index: int) -> None:
        off = layout.slot_offset(index)
        self.meta_offset = off + SLOT_FIXED_SIZE
        self.u64 = np.frombuffer(buf, np.uint64, SLOT_U64_FIELDS, off)
        self.u32 = np.frombuffer(buf, np.uint32, SLOT_U32_FIELDS, off + SLOT_U32_OFFSET)
        self.meta = np.frombuffer(buf, np.uint8, layout.meta_bytes, self.meta_offset)
        self.image = np.ndarray(
            (layout.height, layout.width, CHANNELS), np.uint8, buf,
            off + layout.slot_header_size, (layout.stride, CHANNELS, 1),
        )


@dataclass(frozen=True, eq=False)
class RingFrame:
    """One frame from a ring.

    ``image`` is an HxWx3 uint8 RGB array. For frames returned by a reader it is a read-only
    zero-copy view into shared memory that the writer reuses: check :meth:`valid` after using
    it, or take :meth:`copy` to keep it.
    """

    image: np.ndarray
    seq: int
    timestamp_ns: int
    meta: bytes
    write_no: int
    stride: int
    pixel_format: int
    _lock_word: np.ndarray | None = field(default=None, repr=False)
    _lock_value: int = field(default=0, repr=False)

    @property
    def width(self) -> int:
        return int(self.image.shape[1])

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    def meta_json(self) -> dict[str, Any]:
        """The metadata blob decoded as a JSON object ({} when empty)."""
        return json.loads(self.meta) if self.meta else {}

    def valid(self) -> bool:
        """True while the slot still holds this frame (the view has not been overwritten)."""
        if self._lock_word is None:
            return True
        fence()
        return int(self._lock_word[0]) == self._lock_value

    def copy(self) -> RingFrame:
        """Copy the pixels out of shared memory, then check that they are one frame.

        Raises:
            TornFrameError: the writer reused the slot before or during the copy.
        """
        image = self.image.copy()
        if not self.valid():
            raise TornFrameError(f"frame seq {self.seq} was overwritten while it was copied")
        return RingFrame(image, self.seq, self.timestamp_ns, self.meta, self.write_no,
                         image.strides[0], self.pixel_format)


@dataclass
class ReaderStats:
    """Counters of one reader: frames returned, frames skipped (drops), torn reads retried."""

    received: int = 0
    dropped: int = 0
    torn: int = 0


class RingReader:
    """Read-only client side of a frame ring.

    Args:
        fd: the ring memfd (read-only is enough). The reader maps it and keeps no reference to
            ``fd`` itself: the caller may close it afterwards.
        notify_fd: optional eventfd the writer signals after each frame; the reader keeps its
            own duplicate (closed by :meth:`close`) and uses it in :meth:`wait`.

    Raises:
        RingFormatError: ``fd`` is not a readable regular file holding a valid ring.
    """

    _RETRIES = 8

    def __init__(self, fd: int, notify_fd: int | None = None) -> None:
        try:
            st = os.fstat(fd)
        except OSError as exc:
            raise RingFormatError(f"frame ring fd {fd} is unusable: {exc.strerror}") from exc
        if not stat.S_ISREG(st.st_mode):
            raise RingFormatError(f"frame ring fd {fd} is not a memfd/regular file")
        if st.st_size < HEADER_SIZE:
            raise RingFormatError(f"frame ring fd {fd} is too small ({st.st_size} bytes)")
        try:
            self._mm = mmap.mmap(fd, st.st_size, mmap.MAP_SHARED, mmap.PROT_READ)
        except OSError as exc:
            raise RingFormatError(f"cannot map frame ring fd {fd}: {exc.strerror}") from exc
        try:
            self.layout = RingLayout.unpack_header(self._mm, st.st_size)
        except BaseException:
            self._mm.close()
            raise
        self._write_count = np.frombuffer(self._mm, np.uint64, 1, WRITE_COUNT_OFFSET)
        self._slots = [SlotView(self._mm, self.layout, i) for i in range(self.layout.slots)]
        self._notify_fd = -1
        if notify_fd is not None:
            self._notify_fd = os.dup(notify_fd)
            os.set_blocking(self._notify_fd, False)
        self._last_write_no = 0
        self.stats = ReaderStats()

    @property
    def notify_fd(self) -> int:
        """The wake-up eventfd (for ``loop.add_reader``; call :meth:`drain` in the callback)."""
        return self._notify_fd

    @property
    def write_count(self) -> int:
        """Number of frames the writer has completed so far."""
        return int(self._write_count[0])

    def _snapshot(self, index: int) -> RingFrame | None:
        """A consistent header+meta snapshot of slot ``index``; None if empty or busy."""
        slot = self._slots[index]
        for _ in range(self._RETRIES):
            lock = int(slot.u64[0])
            if lock == 0:
                return None
            if lock & 1:
                self.stats.torn += 1
                return None
            fence()
            write_no, seq, ts = (int(v) for v in slot.u64[1:4])
            stride, fmt, meta_len = (int(v) for v in slot.u32[2:5])
            end = slot.meta_offset + min(meta_len, self.layout.meta_bytes)
            meta = self._mm[slot.meta_offset:end]
            fence()
            if int(slot.u64[0]) == lock:
                if write_no == 0:  # a write that was abandoned half-way
                    return None
                return RingFrame(slot.image, seq, ts, meta, write_no, stride, fmt, slot.u64, lock)
            self.stats.torn += 1
        return None

    def _all(self) -> list[RingFrame]:
        frames = (self._snapshot(i) for i in range(self.layout.slots))
        return sorted((f for f in frames if f is not None), key=lambda f: f.write_no)

    def latest(self) -> RingFrame | None:
        """The newest complete frame, or None when nothing has been written yet."""
        for _ in range(self._RETRIES):
            count = self.write_count
            if count == 0:
                return None
            frame = self._snapshot((count - 1) % self.layout.slots)
            if frame is not None and frame.write_no == count:
                return frame
            if frame is not None and frame.write_no > count:
                continue  # writer moved on between the two loads
        frames = self._all()
        return frames[-1] if frames else None

    def read(self, after_seq: int) -> RingFrame | None:
        """The oldest frame in the ring with ``seq > after_seq``, or None if there is none."""
        for frame in self._all():
            if frame.seq > after_seq:
                return frame
        return None

    def next_frame(self, newest: bool = True) -> RingFrame | None:
        """The next frame this reader has not returned yet, counting the ones it skipped.

        Args:
            newest: jump to the newest frame (lowest latency) rather than the oldest unread one.

        Returns:
            The frame, or None when no new frame is complete.
        """
        if newest:
            frame = self.latest()
            if frame is None or frame.write_no <= self._last_write_no:
                return None
        else:
            unread = [f for f in self._all() if f.write_no > self._last_write_no]
            if not unread:
                return None
            frame = unread[0]
        if self._last_write_no:
            self.stats.dropped += frame.write_no - self._last_write_no - 1
        self._last_write_no = frame.write_no
        self.stats.received += 1
        return frame

    def drain(self) -> int:
        """Reset the wake-up eventfd; returns how many frames were announced since last drain."""
        if self._notify_fd < 0:
            return 0
        try:
            return os.eventfd_read(self._notify_fd)
        except BlockingIOError:
            return 0

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the writer announces a frame (then drain) or ``timeout`` seconds pass.

        Returns:
            True when a wake-up arrived, False on timeout. Without a notify fd: False.
        """
        if self._notify_fd < 0:
            return False
        poller = select.poll()
        poller.register(self._notify_fd, select.POLLIN)
        ms = None if timeout is None else max(0, int(timeout * 1000))
        if not poller.poll(ms):
            return False
        self.drain()
        return True

    def frames(self, timeout: float | None = None, newest: bool = True) -> Iterator[RingFrame]:
        """Yield new frames as they are announced; stops after ``timeout`` s without one."""
        while True:
            frame = self.next_frame(newest)
            if frame is not None:
                yield frame
                continue
            if not self.wait(timeout):
                return

    def close(self) -> None:
        """Unmap the ring and close the notify fd. Frames still referenced keep the mapping."""
        if self._notify_fd >= 0:
            os.close(self._notify_fd)
            self._notify_fd = -1
        self._slots = []
        self._write_count = np.zeros(1, np.uint64)
        try:
            self._mm.close()
        except BufferError:
            # A caller still holds a frame view; the mapping goes when the last view does.
            logger.debug("frame ring still referenced by views; unmapped later")

    def __enter__(self) -> RingReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
