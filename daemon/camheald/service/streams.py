"""Frame streams to subscribed clients: one shared-memory ring per camera and stream kind."""

from __future__ import annotations

import itertools
import json
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass

from camheald.errors import Busy, InvalidArgument, NotReady, UnknownCamera
from camheald.service.camera import Camera, PublishedFrame
from camheald.service.ring import FrameRing, Waiter

logger = logging.getLogger(__name__)

_ids = itertools.count(1)


@dataclass(eq=False)
class Subscription:
    """One client's stream: which ring it reads and the eventfd that wakes it."""

    id: int
    owner: str
    corrected: bool
    ring: FrameRing
    waiter: Waiter


@dataclass(frozen=True)
class Grant:
    """What a client receives: fds it now owns (ring read-only, wake-up) and ring facts."""

    sub_id: int
    ring_fd: int
    wake_fd: int
    info: dict[str, object]


EndedCallback = Callable[[Subscription, str], None]


class StreamHub:
    """Streams of one camera. Rings exist only while someone subscribes to them.

    The processing thread writes frames (``_sink``); the event loop subscribes and
    unsubscribes. One lock orders both, so a waiter's eventfd is never closed while it is
    being signalled. A slow client cannot slow capture: writing is a copy (raw) or the
    correction (corrected) into the ring and a non-blocking eventfd bump per subscriber,
    whatever the subscribers do. Once closed (its camera removed), it grants no stream.
    """

    def __init__(self, camera: Camera, slots: int = 4, max_subscriptions: int = 32,
                 max_per_owner: int = 8, on_ended: EndedCallback | None = None) -> None:
        self.camera = camera
        self.slots = slots
        self.max_subscriptions = max_subscriptions
        self.max_per_owner = max_per_owner
        self.on_ended = on_ended
        self._lock = threading.Lock()
        self._rings: dict[bool, FrameRing] = {}
        self._subs: dict[int, Subscription] = {}
        self._attached = False
        self._closed = False
        self.frames_written = 0
        self._meta_cache: dict[bool, tuple[tuple[int, tuple[str, ...], bool],
                                           dict[str, float], bytes]] = {}

    # -- loop side ---------------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._closed

    def subscribe(self, owner: str, corrected: bool) -> Grant:
        """A new stream for ``owner``; UnknownCamera once the hub is closed (a stream granted
        then would get neither frames nor an end)."""
        if self._closed:
            raise UnknownCamera(f"camera {self.camera.id} was removed")
        frame = self.camera.latest(corrected)
        if frame is None:
            raise NotReady(f"camera {self.camera.id} has no frame yet")
        with self._lock:
            if self._closed:
                raise UnknownCamera(f"camera {self.camera.id} was removed")
            if len(self._subs) >= self.max_subscriptions:
                raise Busy(f"camera {self.camera.id} already serves "
                           f"{self.max_subscriptions} streams")
            if sum(s.owner == owner for s in self._subs.values()) >= self.max_per_owner:
                raise Busy(f"at most {self.max_per_owner} streams per client")
            h, w = frame.height, frame.width
            ring = self._rings.get(corrected)
            if ring is None or (ring.width, ring.height) != (w, h):
                ring = self._replace_ring(corrected, w, h)
            waiter = ring.add_waiter()
            ring_fd = wake_fd = -1
            try:
                ring_fd = ring.readonly_fd()
                wake_fd = os.dup(waiter.fd)
            except OSError:
                ring.remove_waiter(waiter)
                if ring_fd >= 0:
                    os.close(ring_fd)
                raise
            sub = Subscription(next(_ids), owner, corrected, ring, waiter)
            self._subs[sub.id] = sub
            if not self._attached:
                self.camera.add_sink(self._sink)
                self._attached = True
        info = {"id": sub.id, "width": w, "height": h, "slots": ring.layout.slots,
                "corrected": corrected}
        return Grant(sub.id, ring_fd, wake_fd, info)

    def unsubscribe(self, owner: str, sub_id: int) -> None:
        with self._lock:
            sub = self._subs.get(sub_id)
            if sub is None or sub.owner != owner:
                raise InvalidArgument(f"no subscription {sub_id} of this client")
            self._drop(sub)

    def drop_owner(self, owner: str) -> int:
        """Forget every stream of a client that left the bus; returns how many."""
        with self._lock:
            subs = [s for s in self._subs.values() if s.owner == owner]
            for sub in subs:
                self._drop(sub)
        return len(subs)

    def subscription_ids(self) -> list[int]:
        with self._lock:
            return list(self._subs)

    def count(self, owner: str | None = None) -> int:
        with self._lock:
            return sum(owner is None or s.owner == owner for s in self._subs.values())

    def close(self) -> None:
        """End every stream and free the rings; later subscribes fail (UnknownCamera)."""
        with self._lock:
            self._closed = True
            for sub in list(self._subs.values()):
                self._drop(sub)
            for ring in self._rings.values():
                ring.close()
            self._rings.clear()
            self.on_ended = None  # (a closure over the owner: nothing left to tell it)

    # -- internals (hold the lock) -------------------------------------------------------------
    def _replace_ring(self, corrected: bool, width: int, height: int) -> FrameRing:
        old = self._rings.pop(corrected, None)
        if old is not None:
            for sub in [s for s in self._subs.values() if s.ring is old]:
                self._drop(sub, close_ring=False)
                if self.on_ended is not None:
                    self.on_ended(sub, "frame size changed: subscribe again")
            old.close()
        kind = "corrected" if corrected else "raw"
        ring = FrameRing(width, height, self.slots, name=f"camheal-{self.camera.id}-{kind}")
        self._rings[corrected] = ring
        logger.info("camera %s: %s stream ring %dx%d, %d slots", self.camera.id, kind, width,
                    height, self.slots)
        return ring

    def _drop(self, sub: Subscription, close_ring: bool = True) -> None:
        self._subs.pop(sub.id, None)
        sub.ring.remove_waiter(sub.waiter)
        if close_ring and sub.ring.waiters == 0:
            sub.ring.close()
            for key, ring in list(self._rings.items()):
                if ring is sub.ring:
                    del self._rings[key]
        if not self._subs and self._attached:
            self.camera.remove_sink(self._sink)
            self._attached = False

    # -- processing thread ---------------------------------------------------------------------
    def _sink(self, raw: PublishedFrame, corrected: PublishedFrame) -> None:
        """Publish one frame to the rings that have subscribers.

        The raw ring gets a copy; the corrected ring gets the correction rendered straight
        into its slot (no intermediate frame, no copy). Each ring wakes its subscribers as
        soon as its slot is sealed.
        """
        with self._lock:
            for is_corrected, frame in ((False, raw), (True, corrected)):
                ring = self._rings.get(is_corrected)
                if ring is None or ring.waiters == 0:
                    continue
                h, w = frame.height, frame.width
                if (ring.width, ring.height) != (w, h):
                    self._replace_ring(is_corrected, w, h)  # ends the old streams
                    continue
                with ring.writing(frame.seq, frame.timestamp_ns) as slot:
                    slot.set_meta(self._meta(frame))
                    self.camera.render(frame, slot.image)
                self.frames_written += 1

    def _meta(self, frame: PublishedFrame) -> bytes:
        """The ring metadata of a frame, encoded once per analysis (scores and actions change
        only when a new analysis arrives)."""
        key = (id(frame.scores), frame.actions, frame.corrected)
        cached = self._meta_cache.get(frame.corrected)
        if cached is not None and cached[0] == key and cached[1] is frame.scores:
            return cached[2]
        meta = json.dumps({"scores": frame.scores, "actions": list(frame.actions),
                           "corrected": frame.corrected}, separators=(",", ":")).encode()
        self._meta_cache[frame.corrected] = (key, frame.scores, meta)
        return meta
