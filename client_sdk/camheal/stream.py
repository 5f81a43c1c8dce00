"""Frame streams: zero-copy reads from the daemon's shared-memory ring, woken by an eventfd."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from camheal.frame import Frame
from camheal.ring import RingFrame, RingReader


def to_frame(rf: RingFrame) -> Frame:
    """A Frame whose image is a read-only view into the ring (valid until overwritten)."""
    try:
        meta = json.loads(rf.meta) if rf.meta else {}
    except ValueError:
        meta = {}
    return Frame(image=rf.image, seq=rf.seq, timestamp_ns=rf.timestamp_ns,
                 corrected=bool(meta.get("corrected", True)),
                 scores=dict(meta.get("scores", {})), actions=tuple(meta.get("actions", ())),
                 _ring=rf)


class StreamReader:
    """One subscription's reader (shared by the blocking and asyncio streams).

    Owns the two fds the daemon passed (ring and wake-up) and closes them.
    """

    def __init__(self, sub_id: int, ring_fd: int, wake_fd: int, info: dict[str, Any]) -> None:
        self.id = sub_id
        self.info = info
        try:
            self.reader = RingReader(ring_fd, wake_fd)
        finally:
            os.close(ring_fd)
            os.close(wake_fd)
        self.ended: str | None = None

    @property
    def stats(self) -> dict[str, int]:
        """received: frames handed out; dropped: frames missed; torn: retried reads."""
        s = self.reader.stats
        return {"received": s.received, "dropped": s.dropped, "torn": s.torn}

    def poll(self) -> Frame | None:
        """The newest frame not returned yet, or None."""
        rf = self.reader.next_frame(newest=True)
        return None if rf is None else to_frame(rf)

    def close(self) -> None:
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
    ``frame.copy()`` to keep one.
    """

    def read(self, timeout: float | None = None) -> Frame | None:
        """The next frame, waiting up to ``timeout`` s (default: the stream's); None on timeout."""
        timeout = self.timeout if timeout is None else timeout
        while not self.closed:
            frame = self._r.poll()
            if frame is not None:
                return frame
            if not self._r.reader.wait(timeout):
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
    """Async iterator of Frames (``async for frame in stream``), woken via loop.add_reader."""

    async def read(self, timeout: float | None = None) -> Frame | None:
        timeout = self.timeout if timeout is None else timeout
        loop = asyncio.get_running_loop()
        while not self.closed:
            frame = self._r.poll()
            if frame is not None:
                return frame
            woke = loop.create_future()
            fd = self._r.reader.notify_fd
            loop.add_reader(fd, _wake, woke)
            try:
                await asyncio.wait_for(woke, timeout)
            except asyncio.TimeoutError:
                return None
            finally:
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
