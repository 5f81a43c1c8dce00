"""Writer side of the shared-memory frame ring: a sealed memfd that clients map read-only.

One ring per camera and stream kind. A ring has a fixed frame size: when the capture size
changes, the daemon creates a new :class:`FrameRing`, hands the new fd to subscribers and
closes the old one (clients keep their old mapping until they drop it). The layout lives in
:mod:`camheal.ring`; this module only writes it.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import mmap
import os
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from camheal.ring import (
    CHANNELS,
    DEFAULT_META_BYTES,
    DEFAULT_SLOTS,
    F_ADD_SEALS,
    F_GET_SEALS,
    F_SEAL_FUTURE_WRITE,
    F_SEAL_GROW,
    F_SEAL_SEAL,
    F_SEAL_SHRINK,
    WRITE_COUNT_OFFSET,
    RingLayout,
    SlotView,
    fence,
)

logger = logging.getLogger(__name__)

_MFD_FLAGS = os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING
_EVENTFD_FLAGS = os.EFD_NONBLOCK | os.EFD_CLOEXEC


class SlotWriter:
    """The slot being filled inside :meth:`FrameRing.writing`."""

    def __init__(self, view: SlotView, mm: mmap.mmap, capacity: int, write_no: int) -> None:
        self.image = view.image  # HxWx3 uint8 RGB, writable, in shared memory
        self.write_no = write_no
        self._view, self._mm, self._capacity = view, mm, capacity

    def set_meta(self, meta: bytes) -> None:
        """Store the metadata blob (e.g. UTF-8 JSON).

        Raises:
            ValueError: ``meta`` is longer than the ring's ``meta_bytes``.
        """
        if len(meta) > self._capacity:
            raise ValueError(f"frame metadata is {len(meta)} bytes, the ring holds at most "
                             f"{self._capacity}")
        if meta:
            self._mm[self._view.meta_offset:self._view.meta_offset + len(meta)] = meta
        self._view.u32[4] = len(meta)


@dataclass(eq=False)
class Waiter:
    """A subscriber's wake-up: an eventfd the writer bumps after every frame.

    Pass ``fd`` to the client (over D-Bus, as ``h``); the ring keeps ownership and closes it in
    :meth:`FrameRing.remove_waiter` / :meth:`FrameRing.close`, or when the waiter is dropped
    unclosed (a path that forgot it must not leak the fd).
    """

    fd: int

    def __post_init__(self) -> None:
        self._release = weakref.finalize(self, os.close, self.fd)

    @property
    def closed(self) -> bool:
        return self.fd < 0

    def _close(self) -> None:
        if self.fd >= 0:
            self.fd = -1
            self._release()  # closes the fd, once


class FrameRing:
    """Pre-allocated ring of RGB frame slots in a sealed memfd.

    Args:
        width: frame width in pixels.
        height: frame height in pixels.
        slots: number of slots; a reader sees at most ``slots - 1`` frames of history.
        meta_bytes: capacity of the per-frame metadata blob (e.g. JSON scores and actions).
        name: memfd name (shows in /proc/PID/fd links, for debugging).

    Raises:
        ValueError: a size is out of range.
        OSError: the memfd could not be created or sized.
    """

    def __init__(
        self,
        width: int,
        height: int,
        slots: int = DEFAULT_SLOTS,
        meta_bytes: int = DEFAULT_META_BYTES,
        name: str = "camheal-ring",
    ) -> None:
        self.layout = RingLayout.for_frame(width, height, slots, meta_bytes)
        self._fd = os.memfd_create(name, _MFD_FLAGS)
        # closes the memfd when the ring is dropped without close() (the mapping goes with
        # the mmap object itself): a forgotten ring must not keep its memory for good
        self._release = weakref.finalize(self, os.close, self._fd)
        self._mm: mmap.mmap | None = None
        try:
            os.ftruncate(self._fd, self.layout.total_size)
            self._mm = mmap.mmap(self._fd, self.layout.total_size, mmap.MAP_SHARED,
                                 mmap.PROT_READ | mmap.PROT_WRITE)
            header = self.layout.pack_header()
            self._mm[: len(header)] = header
            self.future_write_sealed = self._seal()
        except BaseException:
            if self._mm is not None:
                self._mm.close()
            self._release()
            raise
        self._write_count = np.frombuffer(self._mm, np.uint64, 1, WRITE_COUNT_OFFSET)
        self._slots = [SlotView(self._mm, self.layout, i) for i in range(slots)]
        self._shape = (height, width, CHANNELS)
        self._slot_u32 = np.array([width, height, self.layout.stride, self.layout.pixel_format,
                                   0, 0], np.uint32)
        self._writes = 0
        self._last_seq = -1
        self._waiters: list[Waiter] = []
        self.notify_errors = 0

    def _seal(self) -> bool:
        """Seal size and seals; seal future writes when the kernel knows F_SEAL_FUTURE_WRITE.

        The writer's own shared mapping stays writable (that is what FUTURE_WRITE allows).

        Returns:
            True if F_SEAL_FUTURE_WRITE was applied (Linux >= 5.1).
        """
        future = True
        try:
            fcntl.fcntl(self._fd, F_ADD_SEALS, F_SEAL_FUTURE_WRITE)
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
            future = False
            logger.warning("kernel lacks F_SEAL_FUTURE_WRITE: clients that reopen the ring fd "
                           "read-write could modify frames")
        fcntl.fcntl(self._fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL)
        return future

    @property
    def fd(self) -> int:
        """The writer's own memfd (owned by the ring; never hand this one out)."""
        return self._fd

    @property
    def seals(self) -> int:
        """The seals currently set on the memfd (F_SEAL_* bits)."""
        return fcntl.fcntl(self._fd, F_GET_SEALS)

    @property
    def width(self) -> int:
        return self.layout.width

    @property
    def height(self) -> int:
        return self.layout.height

    @property
    def writes(self) -> int:
        """Number of frames written so far."""
        return self._writes

    def readonly_fd(self) -> int:
        """A NEW read-only, close-on-exec fd to the ring, for one client; the caller owns it.

        The memfd is sealed, so a client can neither map it writable (even after reopening it
        through /proc), nor resize it, nor change its seals.
        """
        return os.open(f"/proc/self/fd/{self._fd}", os.O_RDONLY | os.O_CLOEXEC)

    def write(self, rgb: np.ndarray, seq: int, timestamp_ns: int, meta: bytes = b"") -> int:
        """Copy one frame into the next slot and wake every waiter.

        Args:
            rgb: HxWx3 uint8 RGB image of exactly the ring's size (any strides).
            seq: capture sequence number, strictly increasing.
            timestamp_ns: capture time, CLOCK_MONOTONIC nanoseconds.
            meta: metadata blob (e.g. UTF-8 JSON), at most ``layout.meta_bytes`` bytes.

        Returns:
            The ring write number of this frame (1 for the first frame).

        Raises:
            ValueError: wrong image shape/dtype, metadata too long, or ``seq`` not increasing.
        """
        if rgb.shape != self._shape or rgb.dtype != np.uint8:
            raise ValueError(f"frame must be {self._shape} uint8, got {rgb.shape} {rgb.dtype}; "
                             "a new frame size needs a new FrameRing")
        if len(meta) > self.layout.meta_bytes:  # checked before the slot is touched
            raise ValueError(f"frame metadata is {len(meta)} bytes, the ring holds at most "
                             f"{self.layout.meta_bytes}")
        with self.writing(seq, timestamp_ns) as slot:
            slot.set_meta(meta)
            np.copyto(slot.image, rgb)
        return slot.write_no

    @contextmanager
    def writing(self, seq: int, timestamp_ns: int) -> Iterator[SlotWriter]:
        """Fill the next slot in place (e.g. ``cv2.cvtColor(src, code, dst=slot.image)``).

        Saves the copy that :meth:`write` makes. The slot is published (and waiters woken)
        when the block exits normally; if it raises, the slot is left empty and nothing is
        published. ``slot.image`` is writable shared memory: do not keep it past the block.

        Raises:
            ValueError: ``seq`` not increasing, negative timestamp, or the ring is closed.
        """
        if self._mm is None:
            raise ValueError("frame ring is closed")
        if seq <= self._last_seq or seq < 0 or timestamp_ns < 0:
            raise ValueError(f"frame seq {seq} must be > {self._last_seq} and timestamp >= 0")
        write_no = self._writes + 1
        view = self._slots[(write_no - 1) % self.layout.slots]
        lock = int(view.u64[0])
        view.u64[0] = lock + 1  # odd: slot being written
        fence()
        view.u64[1] = 0  # 0 = no frame, until the block completes
        view.u64[2] = seq
        view.u64[3] = timestamp_ns
        view.u32[:] = self._slot_u32
        slot = SlotWriter(view, self._mm, self.layout.meta_bytes, write_no)
        try:
            yield slot
            view.u64[1] = write_no
        finally:
            fence()
            view.u64[0] = lock + 2  # even: complete (or empty, when the block raised)
            fence()
        self._write_count[0] = write_no
        self._writes = write_no
        self._last_seq = seq
        self._notify()

    def _notify(self) -> None:
        for waiter in self._waiters:
            try:
                os.eventfd_write(waiter.fd, 1)
            except OSError:
                # Counter saturated (a client that never drains): it is awake anyway.
                self.notify_errors += 1

    def add_waiter(self) -> Waiter:
        """Create a per-client wake-up eventfd (non-blocking, close-on-exec)."""
        if self._mm is None:
            raise ValueError("frame ring is closed")
        waiter = Waiter(os.eventfd(0, _EVENTFD_FLAGS))
        self._waiters.append(waiter)
        return waiter

    def remove_waiter(self, waiter: Waiter) -> None:
        """Stop waking ``waiter`` and close its eventfd (idempotent)."""
        if waiter in self._waiters:
            self._waiters.remove(waiter)
        waiter._close()

    @property
    def waiters(self) -> int:
        return len(self._waiters)

    def close(self) -> None:
        """Close waiters, the mapping and the memfd (clients keep their own mappings)."""
        for waiter in self._waiters:
            waiter._close()
        self._waiters.clear()
        self._slots = []
        self._write_count = np.zeros(1, np.uint64)
        if self._mm is not None:
            self._mm.close()
            self._mm = None
        if self._fd >= 0:
            self._fd = -1
            self._release()

    def __enter__(self) -> FrameRing:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

