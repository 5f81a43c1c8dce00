"""Frame streams: zero-copy reads from the daemon's shared-memory ring, woken by an eventfd."""

from __future__ import annotations

import asyncio
import json
import os
import select
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from camheal.errors import StreamEnded
from camheal.frame import Frame
from camheal.ring import RingFrame, RingReader


def parse_meta(blob: bytes) -> dict[str, Any]:
    """A ring frame's metadata blob as a dict ({} when empty or not JSON)."""
    try:
        meta = json.loads(blob) if blob else {}
    except ValueError:
        return {}
    return meta if isinstance(meta, dict) else {}


def to_frame(rf: RingFrame, meta: dict[str, Any] | None = None) -> Frame:
    """A Frame whose image is a read-only view into the ring (valid until overwritten).

    ``meta``: the already parsed ``rf.meta`` (parsed here when None).
    """
    if meta is None:
        meta = parse_meta(rf.meta)
    return Frame(image=rf.image, seq=rf.seq, timestamp_ns=rf.timestamp_ns,
                 corrected=bool(meta.get("corrected", True)),
                 scores=dict(meta.get("scores", {})), actions=tuple(meta.get("actions", ())),
                 _ring=rf)


class StreamReader:
    """One subscription's reader (shared by the blocking and asyncio streams).

    Owns the two fds the daemon passed (ring and wake-up) and closes them. The client ends it
    (:meth:`end`, from any thread) when the daemon signals ``StreamEnded`` or leaves the bus:
    frames published before that are still returned, then :meth:`poll` raises.
    """

    def __init__(self, sub_id: int, ring_fd: int, wake_fd: int, info: dict[str, Any],
                 owner: str = "") -> None:
        self.id = sub_id
        self.info = info
        self.owner = owner  # unique bus name of the daemon that granted the stream
        try:
            self.reader = RingReader(ring_fd, wake_fd)
        finally:
            os.close(ring_fd)
            os.close(wake_fd)
        self.ended: str | None = None  # the reason, once the daemon ended the stream
        self._error: tuple[type[StreamEnded], str] | None = None
        self._end_at = 0  # ring writes published when the end was recorded
        self._lock = threading.Lock()  # end() runs on the client's loop, close() anywhere
        self._meta_blob: bytes | None = None  # the last metadata blob and its parse
        self._meta: dict[str, Any] = {}
        # readable once the stream has ended: wakes a reader blocked on the ring's eventfd
        self._end_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)

    @property
    def stats(self) -> dict[str, int]:
        """received: frames handed out; dropped: frames missed; torn: retried reads."""
        s = self.reader.stats
        return {"received": s.received, "dropped": s.dropped, "torn": s.torn}

    @property
    def end_fd(self) -> int:
        """An fd that becomes readable when the stream ends (for poll/``loop.add_reader``)."""
        return self._end_fd

    def end(self, reason: str, error: type[StreamEnded] = StreamEnded) -> None:
        """Record that the daemon ended this stream and wake its reader (idempotent)."""
        with self._lock:
            if self._error is not None or self._end_fd < 0:
                return
            self._end_at = self.reader.write_count
            self._error = (error, reason)
            self.ended = reason
            os.eventfd_write(self._end_fd, 1)

    def poll(self) -> Frame | None:
        """The newest frame not returned yet, or None.

        Raises:
            StreamEnded: the stream has ended and every frame published before is returned
                (:class:`camheal.errors.ServiceLost` when the daemon left the bus).
        """
        rf = self.reader.next_frame(newest=True)
        if self._error is not None and (rf is None or rf.write_no > self._end_at):
            error, reason = self._error
            raise error(reason, self.id)
        if rf is None:
            return None
        if rf.meta != self._meta_blob:  # the daemon's metadata changes with each analysis
            self._meta_blob, self._meta = rf.meta, parse_meta(rf.meta)
        return to_frame(rf, self._meta)

    def wait(self, timeout: float | None) -> bool:
        """Block until a frame is announced or the stream ends; False after ``timeout`` s."""
        poller = select.poll()
        poller.register(self.reader.notify_fd, select.POLLIN)
        poller.register(self._end_fd, select.POLLIN)
        ms = None if timeout is None else max(0, int(timeout * 1000))
        if not poller.poll(ms):
            return False
        self.reader.drain()
        return True

    def close(self) -> None:
        with self._lock:
            if self._end_fd >= 0:
                os.close(self._end_fd)
                self._end_fd = -1
        self.reader.close()


class _StreamBase:
    """What the blocking and asyncio streams share: the reader, its id and its counters."""

    def __init__(self, reader: StreamReader, unsubscribe: Callable[[], Any],
                 timeout: float = 5.0) -> None:
        self._r = reader
        self._unsubscribe = unsubscribe
        self.timeout = timeout
        self.closed = False

    @property
    def id(self) -> int:
        return self._r.id

    @property
    def stats(self) -> dict[str, int]:
        return self._r.stats


class Stream(_StreamBase):
    """Blocking iterator of Frames; ``close()`` (or ``with``) ends the subscription.

    Each Frame's image is a zero-copy view valid until the next frame; call
    ``frame.copy()`` to keep one. Iteration stops after ``timeout`` s without a frame, and
    raises :class:`camheal.errors.StreamEnded` when the daemon ends the stream.
    """

    def read(self, timeout: float | None = None) -> Frame | None:
        """The next frame, waiting up to ``timeout`` s (default: the stream's); None on timeout.

        Raises:
            StreamEnded: the daemon ended the stream (``err.reason`` says why);
                :class:`camheal.errors.ServiceLost` when camheald left the bus.
        """
        timeout = self.timeout if timeout is None else timeout
        while not self.closed:
            frame = self._r.poll()
            if frame is not None:
                return frame
            if not self._r.wait(timeout):
                return None
        return None

    def __iter__(self) -> Iterator[Frame]:
        while True:
            frame = self.read()
            if frame is None:
                return
            yield frame

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            self._unsubscribe()
        finally:
            self._r.close()

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class AsyncStream(_StreamBase):
    """Async iterator of Frames (``async for frame in stream``), woken via loop.add_reader.

    Same ending rules as :class:`Stream`: iteration stops after ``timeout`` s without a frame
    and raises :class:`camheal.errors.StreamEnded` when the daemon ends the stream.
    """

    async def read(self, timeout: float | None = None) -> Frame | None:
        """The next frame, waiting up to ``timeout`` s (default: the stream's); None on timeout.

        Raises:
            StreamEnded: as :meth:`Stream.read`.
        """
        timeout = self.timeout if timeout is None else timeout
        loop = asyncio.get_running_loop()
        while not self.closed:
            frame = self._r.poll()
            if frame is not None:
                return frame
            woke = loop.create_future()
            fds = (self._r.reader.notify_fd, self._r.end_fd)
            for fd in fds:
                loop.add_reader(fd, _wake, woke)
            try:
                await asyncio.wait_for(woke, timeout)
            except asyncio.TimeoutError:
                return None
            finally:
                for fd in fds:
                    loop.remove_reader(fd)
            self._r.reader.drain()
        return None

    def __aiter__(self) -> AsyncIterator[Frame]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Frame]:
        while True:
            frame = await self.read()
            if frame is None:
                return
            yield frame

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            await self._unsubscribe()
        finally:
            self._r.close()

    async def __aenter__(self) -> AsyncStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
