"""D-Bus objects of camheald; the contract is io.camheal.Camheal1.xml beside this file."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from dbus_fast import Variant
from dbus_fast.service import PropertyAccess, ServiceInterface, dbus_property, dbus_signal, method

from camheal import constants as C
from camheald.bus.auth import Authorizer
from camheald.bus.edge import (
    CamhealBus,
    caller,
    from_vardict,
    interactive,
    to_vardict,
    translate_errors,
)
from camheald.errors import Busy, InvalidArgument, NotReady, UnknownCamera
from camheald.service import burst, frames
from camheald.service.camera import Camera, PublishedFrame
from camheald.service.images import ImageCorrector
from camheald.service.manager import CameraManager
from camheald.service.streams import StreamHub

MAX_OPTIONS = 16
#: calls of one camera that may wait for its frames at once (CaptureFrame, Subscribe,
#: CaptureBurst); more get Busy
MAX_WAITS = 4
#: bursts in progress at once in the whole daemon (each holds up to 16 frames); more get Busy
MAX_BURSTS = 4
T = TypeVar("T")


def guarded(key: str) -> Callable[[Callable[..., Awaitable[T]]], Callable[..., Awaitable[T]]]:
    """Check the caller against the authorization table (bus/auth.py) before serving."""

    def deco(fn: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
        @functools.wraps(fn)
        async def wrapper(self: Any, *args: Any) -> T:
            await self._auth.check(caller.get(), key, interactive.get())
            self._present()  # (a camera may have been removed while the caller was checked)
            return await fn(self, *args)

        return wrapper

    return deco


def _options(options: dict[str, Variant], known: dict[str, type]) -> dict[str, Any]:
    """Validate an a{sv} options dict: known keys only, right types."""
    if len(options) > MAX_OPTIONS:
        raise InvalidArgument(f"too many options ({len(options)} > {MAX_OPTIONS})")
    values = from_vardict(options)
    for key, value in values.items():
        if key not in known:
            raise InvalidArgument(f"unknown option {key!r} (known: {', '.join(known)})")
        expected = known[key]
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise InvalidArgument(f"option {key!r} must be {expected.__name__}")
    return values


class ManagerInterface(ServiceInterface):
    """io.camheal.Camheal1.Manager at /io/camheal/Camheal1."""

    def __init__(self, manager: CameraManager, bus: CamhealBus, images: ImageCorrector,
                 auth: Authorizer, image_pool: concurrent.futures.Executor | None = None
                 ) -> None:
        super().__init__(C.MANAGER_IFACE)
        self._manager = manager
        self._bus = bus
        self._images = images
        self._auth = auth
        self._image_pool = image_pool  # (None: the default executor)

    def _present(self) -> None:
        """The manager object is always there."""

    @method()
    @translate_errors
    @guarded("Manager.ListCameras")
    async def ListCameras(self) -> "ao":
        return [C.camera_path(cid) for cid in self._manager.cameras]

    @method()
    @translate_errors
    @guarded("Manager.Version")
    async def Version(self) -> "s":
        return self._manager.version

    @method()
    @translate_errors
    @guarded("Manager.CorrectImage")
    async def CorrectImage(self, image: "h", options: "a{sv}") -> "ha{sv}":
        try:
            opts = _options(options, {"format": str, "quality": int, "restore": bool})
            fmt = opts.get("format", "png")
            if fmt not in frames.FORMATS:
                raise InvalidArgument(f"format must be one of {', '.join(frames.FORMATS)}")
            quality = opts.get("quality", 90)
            if not 1 <= quality <= 100:
                raise InvalidArgument("quality must be between 1 and 100")
            with self._images.admitted():  # queued ones count: Busy past max_pending
                fd, report = await asyncio.get_running_loop().run_in_executor(
                    self._image_pool, functools.partial(self._images.correct, image, fmt,
                                                        quality,
                                                        restore=opts.get("restore", True)))
        finally:
            os.close(image)  # the received fd is ours; never keep it
        return self._bus.reply_with_fds([fd], to_vardict, report, C.IMAGE_REPORT_TYPES)

    @dbus_property(access=PropertyAccess.READ)
    def DataCollection(self) -> "b":
        return bool(self._manager.store.enabled)

    @method()
    @translate_errors
    @guarded("Manager.SetDataCollection")
    async def SetDataCollection(self, enabled: "b") -> "":
        await asyncio.get_running_loop().run_in_executor(
            None, self._manager.set_data_collection, bool(enabled))
        self.emit_properties_changed({"DataCollection": bool(enabled)})

    @method()
    @translate_errors
    @guarded("Manager.ExportSamples")
    async def ExportSamples(self) -> "ha{sv}":
        fd, info = await asyncio.get_running_loop().run_in_executor(
            None, self._manager.store.export_memfd)
        return self._bus.reply_with_fds([fd], to_vardict, info, {"count": "u", "bytes": "t"})

    @method()
    @translate_errors
    @guarded("Manager.PurgeSamples")
    async def PurgeSamples(self) -> "u":
        return await asyncio.get_running_loop().run_in_executor(
            None, self._manager.store.purge)


class CameraInterface(ServiceInterface):
    """io.camheal.Camheal1.Camera at /io/camheal/Camheal1/cameras/<id>."""

    def __init__(self, camera: Camera, bus: CamhealBus, streams: StreamHub,
                 manager: CameraManager, auth: Authorizer,
                 burst_pool: concurrent.futures.Executor | None = None,
                 burst_slots: asyncio.Semaphore | None = None) -> None:
        super().__init__(C.CAMERA_IFACE)
        self._camera = camera
        self._bus = bus
        self._streams = streams
        self._manager = manager
        self._auth = auth
        self._burst_pool = burst_pool  # (None: the default executor)
        # bursts in progress in the whole daemon (shared by every camera's interface)
        self._burst_slots = burst_slots or asyncio.Semaphore(MAX_BURSTS)
        # waits for frames hold no thread (the processing thread resolves a future), but a
        # waiting burst holds its frames: a few calls at a time per camera
        self._waits = asyncio.Semaphore(MAX_WAITS)
        self._waiting: set[asyncio.Future[None]] = set()
        self._gone = False

    def retire(self) -> None:
        """The camera is being removed (a reload): calls waiting for its frames end now, and
        every call that looks at it again gets UnknownCamera."""
        self._gone = True
        for waiting in self._waiting:
            _settle(waiting)

    def _present(self) -> None:
        """UnknownCamera once the camera was removed: called after every await of a call
        that then uses the camera (its objects outlive it: a stream granted on it would get
        neither frames nor StreamEnded)."""
        if self._gone:
            raise UnknownCamera(f"camera {self._camera.id} was removed")

    @contextlib.asynccontextmanager
    async def _waiter(self) -> AsyncIterator[None]:
        """One of the MAX_WAITS places of calls that wait for frames (Busy when none)."""
        if self._waits.locked():
            raise Busy(f"camera {self._camera.id}: too many calls are waiting for frames")
        async with self._waits:
            yield

    async def _frames(self, count: int, timeout: float,
                      have: Callable[[], bool] | None = None) -> list[PublishedFrame]:
        """The next ``count`` raw frames the camera publishes; fewer when ``timeout`` s pass
        first, none when ``have()`` is already true once the camera is watched.

        No thread waits: the camera's processing thread resolves a future on the loop. Call
        it inside ``_waiter``.
        """
        loop = asyncio.get_running_loop()
        arrived: asyncio.Future[None] = loop.create_future()
        got: list[PublishedFrame] = []

        def sink(raw: PublishedFrame, _corrected: PublishedFrame) -> None:  # processing thread
            if len(got) < count:
                got.append(raw)  # a source hands out a new array per frame: no copy needed
                if len(got) == count:
                    _call_soon(loop, _settle, arrived)

        self._present()
        self._waiting.add(arrived)
        self._camera.add_sink(sink)
        try:
            if have is None or not have():
                await asyncio.wait_for(arrived, timeout)
        except asyncio.TimeoutError:
            pass
        finally:
            self._camera.remove_sink(sink)
            self._waiting.discard(arrived)
        self._present()
        return got[:count]

    # -- properties ------------------------------------------------------------------------
    @dbus_property(access=PropertyAccess.READ)
    def Id(self) -> "s":
        return self._camera.id

    @dbus_property(access=PropertyAccess.READ)
    def Source(self) -> "s":
        return self._camera.source.uri

    @dbus_property(access=PropertyAccess.READ)
    def Width(self) -> "u":
        frame = self._camera.latest(False)
        return frame.width if frame else int(self._camera.source.size[0])

    @dbus_property(access=PropertyAccess.READ)
    def Height(self) -> "u":
        frame = self._camera.latest(False)
        return frame.height if frame else int(self._camera.source.size[1])

    @dbus_property(access=PropertyAccess.READ)
    def Fps(self) -> "d":
        return float(self._camera.stats.fps)

    @dbus_property(access=PropertyAccess.READ)
    def Health(self) -> "a{sv}":
        return to_vardict(self._camera.health_report(), C.HEALTH_TYPES)

    @dbus_property(access=PropertyAccess.READ)
    def Stats(self) -> "a{sv}":
        return to_vardict(self._camera.stats_report())

    @dbus_property(access=PropertyAccess.READ)
    def Corrections(self) -> "as":
        return ["global"] if self._camera.correct_enabled else []

    @dbus_property(access=PropertyAccess.READ)
    def CorrectionEnabled(self) -> "b":
        return bool(self._camera.correct_enabled)

    @method()
    @translate_errors
    @guarded("Camera.SetCorrectionEnabled")
    async def SetCorrectionEnabled(self, enabled: "b") -> "":
        """Turn correction of this camera's corrected stream on or off (persisted)."""
        await asyncio.get_running_loop().run_in_executor(
            None, self._manager.set_correction, self._camera.id, bool(enabled))
        self.emit_properties_changed({"CorrectionEnabled": bool(enabled),
                                      "Corrections": self.Corrections})

    # -- methods ---------------------------------------------------------------------------
    @method()
    @translate_errors
    @guarded("Camera.CaptureFrame")
    async def CaptureFrame(self, options: "a{sv}") -> "ha{sv}":
        opts = _options(options, {"corrected": bool, "format": str, "quality": int,
                                  "timeout_ms": int})
        fmt = opts.get("format", "rgb")
        if fmt not in frames.FORMATS:
            raise InvalidArgument(f"format must be one of {', '.join(frames.FORMATS)}")
        quality = opts.get("quality", 90)
        if not 1 <= quality <= 100:
            raise InvalidArgument("quality must be between 1 and 100")
        timeout_ms = opts.get("timeout_ms", 3000)
        if not 0 <= timeout_ms <= 30000:
            raise InvalidArgument("timeout_ms must be between 0 and 30000")
        corrected = opts.get("corrected", True)
        loop = asyncio.get_running_loop()
        if self._camera.latest(corrected) is None and timeout_ms:
            async with self._waiter():
                await self._frames(1, timeout_ms / 1000,
                                   lambda: self._camera.latest(corrected) is not None)
        frame = await loop.run_in_executor(None, self._camera.snapshot, corrected)
        if frame is None:
            raise NotReady(f"camera {self._camera.id} has no frame yet "
                           f"(state: {self._camera.health.state})")
        fd, meta = await asyncio.get_running_loop().run_in_executor(
            None, frames.package, frame, fmt, quality)
        return self._bus.reply_with_fds([fd], to_vardict, meta, C.FRAME_META_TYPES)

    @method()
    @translate_errors
    @guarded("Camera.Subscribe")
    async def Subscribe(self, options: "a{sv}") -> "hha{sv}":
        opts = _options(options, {"corrected": bool})
        if self._camera.latest() is None:  # just started: give the camera a moment
            async with self._waiter():
                await self._frames(1, 3.0, lambda: self._camera.latest() is not None)
        owner = caller.get()
        grant = self._streams.subscribe(owner, opts.get("corrected", True))
        # The caller may have left while we waited: its NameOwnerChanged came before the
        # subscription existed, so nothing would ever release it. The camera may have been
        # removed too: its StreamEnded went out, but before this reply.
        caller_here = await self._bus.has_owner(owner)
        if not caller_here or self._gone:
            os.close(grant.ring_fd)
            os.close(grant.wake_fd)
            if not self._streams.closed:
                # (already gone when its owner's NameOwnerChanged came first: drop_owner)
                with contextlib.suppress(InvalidArgument):
                    self._streams.unsubscribe(owner, grant.sub_id)
            self._present()
            raise InvalidArgument("the caller left the bus")
        return self._bus.reply_with_fds([grant.ring_fd, grant.wake_fd], to_vardict,
                                        grant.info, C.STREAM_INFO_TYPES)

    @method()
    @translate_errors
    @guarded("Camera.Unsubscribe")
    async def Unsubscribe(self, subscription: "u") -> "":
        self._streams.unsubscribe(caller.get(), subscription)

    @method()
    @translate_errors
    @guarded("Camera.CaptureBurst")
    async def CaptureBurst(self, count: "u", options: "a{sv}") -> "aha{sv}":
        opts = _options(options, {"corrected": bool, "format": str, "quality": int,
                                  "restore": bool})
        if not 1 <= opts.get("quality", 90) <= 100:
            raise InvalidArgument("quality must be between 1 and 100")
        fmt = opts.get("format", "rgb")
        if fmt not in frames.FORMATS:
            raise InvalidArgument(f"format must be one of {', '.join(frames.FORMATS)}")
        burst.check_count(count)
        corrected, restore = opts.get("corrected", True), opts.get("restore", False)
        loop = asyncio.get_running_loop()
        # frames are awaited on the loop; the correction and the packaging (seconds) run in
        # the burst executor, in one job, never in the one quick calls need. A burst holds
        # its frames (~100 MB at 1080p) until it replies: a few in the whole daemon.
        if self._burst_slots.locked():
            raise Busy("too many bursts are in progress in camheald")
        async with self._burst_slots, self._waiter():
            with burst.restoring(corrected and restore):
                got = await self._frames(count, burst.FRAMES_TIMEOUT_S)
                if len(got) < count:
                    raise NotReady(f"camera {self._camera.id} delivered {len(got)} of "
                                   f"{count} frames in {burst.FRAMES_TIMEOUT_S:g} s")
                fds, metas, report = await loop.run_in_executor(
                    self._burst_pool, _corrected_burst, self._camera, got, corrected, restore,
                    fmt, opts.get("quality", 90))
        report["frames"] = [to_vardict(m, C.FRAME_META_TYPES) for m in metas]
        types = {**C.HEALTH_TYPES, "count": "u", "seqs": "at", "actions": "as",
                 "elapsed_s": "d", "frames": "aa{sv}", "restored": "b"}
        reply = self._bus.reply_with_fds(fds, _burst_report, report, types)
        return [reply[:-1], reply[-1]]

    @method()
    @translate_errors
    @guarded("Camera.GetDefectMask")
    async def GetDefectMask(self, options: "a{sv}") -> "ha{sv}":
        opts = _options(options, {"format": str})
        fmt = opts.get("format", "png")
        if fmt not in ("png", "gray"):
            raise InvalidArgument("format must be png or gray")
        loop = asyncio.get_running_loop()
        mask = await loop.run_in_executor(None, self._camera.defect_mask)
        fd, meta = await loop.run_in_executor(None, frames.package_mask, mask, fmt)
        return self._bus.reply_with_fds([fd], to_vardict, meta, {
            "width": "u", "height": "u", "size": "t", "format": "s", "coverage": "d"})

    # -- signals ---------------------------------------------------------------------------
    @dbus_signal()
    def HealthChanged(self, health: dict[str, Any]) -> "a{sv}":
        return to_vardict(health, C.HEALTH_TYPES)

    @dbus_signal()
    def AnomalyDetected(self, name: str, score: float) -> "sd":
        return [name, score]

    @dbus_signal()
    def AnomalyCleared(self, name: str) -> "s":
        return name

    @dbus_signal()
    def DefectDetected(self, defect: dict[str, Any]) -> "a{sv}":
        return to_vardict(defect, C.DEFECT_TYPES)

    @dbus_signal()
    def DefectCleared(self, defect: dict[str, Any]) -> "a{sv}":
        return to_vardict(defect, C.DEFECT_TYPES)

    @dbus_signal()
    def StreamEnded(self, subscription: int, reason: str) -> "us":
        return [subscription, reason]

    @dbus_signal()
    def StateChanged(self, state: str) -> "s":
        return state


def _corrected_burst(camera: Camera, got: list[PublishedFrame], corrected: bool,
                     restore: bool, fmt: str, quality: int
                     ) -> tuple[list[int], list[dict[str, Any]], dict[str, Any]]:
    """A burst's correction and packaging, one executor job: (fds, frame metas, report);
    the fds made so far are closed when packaging one frame fails."""
    shots, report = burst.correct_burst(camera, got, corrected, restore)
    fds, metas = [], []
    try:
        for shot in shots:
            fd, meta = frames.package(shot, fmt, quality)
            fds.append(fd)
            metas.append(meta)
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    return fds, metas, report


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _call_soon(loop: asyncio.AbstractEventLoop, fn: Callable[..., object], *args: Any) -> None:
    """``fn(*args)`` on ``loop``, from another thread; nothing once the loop is closed (the
    daemon is exiting and nobody waits any more)."""
    try:
        loop.call_soon_threadsafe(fn, *args)
    except RuntimeError:
        pass


def _burst_report(report: dict[str, Any], types: dict[str, str]) -> dict[str, Variant]:
    frames_meta = report.pop("frames")
    packed = to_vardict(report, types)
    packed["frames"] = Variant("aa{sv}", frames_meta)
    return packed
