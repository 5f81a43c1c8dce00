"""AsyncClient: the asyncio SDK for camheald (D-Bus control, frames by file descriptor)."""

from __future__ import annotations

import asyncio
import logging
import os
import weakref
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np
from dbus_fast import BusType, Message, MessageType, Variant
from dbus_fast.aio import MessageBus
from dbus_fast.errors import (
    AuthError,
    InvalidAddressError,
    InvalidSignatureError,
    SignatureBodyMismatchError,
)
from dbus_fast.signature import get_signature_tree

from camheal import constants as C
from camheal.errors import (
    BusUnavailable,
    CamhealError,
    InvalidArgument,
    ServiceLost,
    StreamEnded,
    from_dbus,
)
from camheal.frame import Frame, encode_ppm, frame_from_fd, read_fd
from camheal.stream import AsyncStream, StreamReader

logger = logging.getLogger(__name__)

_BUS = "org.freedesktop.DBus"
_EARLY_ENDS = 64  # ends remembered for streams whose Subscribe reply is still on its way
RESTORE_TIMEOUT_S = 120.0  # CorrectImage with restoration: seconds for a large blurred photo
BURST_TIMEOUT_S = 180.0  # CaptureBurst: up to 16 frames, each restored when it needs it

HealthCallback = Callable[[str, str, dict[str, Any]], None]
"""Called as ``callback(camera_id, event, payload)``; event is one of 'health',
'anomaly_detected', 'anomaly_cleared', 'state'."""
ServiceLostCallback = Callable[[str], None]
"""Called as ``callback(reason)``: see :meth:`AsyncClient.on_service_lost`."""


def _flag(name: str, value: Any) -> bool:
    """``value`` as a D-Bus boolean; InvalidArgument unless it is one (a "no" is truthy)."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise InvalidArgument(f"{name} must be True or False, got {value!r}")


def _integer(name: str, value: Any, low: int, high: int) -> int:
    """``value`` as an int from ``low`` to ``high`` (the D-Bus type's range; the daemon checks
    its own, narrower limits); InvalidArgument otherwise."""
    if not isinstance(value, (int, np.integer)) or isinstance(value, (bool, np.bool_)) \
            or value < low:
        raise InvalidArgument(f"{name} must be an integer of at least {low}, got {value!r}")
    if value > high:
        raise InvalidArgument(f"{name} is too large: {value}")
    return int(value)


def _text(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidArgument(f"{name} must be a string, got {value!r}")
    return value


_INT32_MAX = 2**31 - 1
_UINT32_MAX = 2**32 - 1


def unpack(value: Any) -> Any:
    """Variants (and containers of them) to plain Python values."""
    if isinstance(value, Variant):
        return unpack(value.value)
    if isinstance(value, dict):
        return {k: unpack(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unpack(v) for v in value]
    return value


def _unreachable(spec: str, exc: Exception) -> str:
    """One line on why the bus ``spec`` ("system", "session" or an address) is out of reach."""
    if spec in ("system", "session"):
        variable = f"DBUS_{spec.upper()}_BUS_ADDRESS"
        address = os.environ.get(variable)
        if spec == "session" and not address and not isinstance(exc, OSError):
            return f"cannot connect to the D-Bus session bus: {variable} is not set"
        default = " (unix:path=/var/run/dbus/system_bus_socket)" if spec == "system" else ""
        name = f"the D-Bus {spec} bus" + (f" ({variable}={address})" if address else default)
    else:
        name = f"the D-Bus bus at {spec!r}"
    if isinstance(exc, InvalidAddressError):
        return f"cannot connect to {name}: not a D-Bus address ({exc})"
    if isinstance(exc, AuthError):
        return f"cannot connect to {name}: the bus refused this client ({exc})"
    return f"cannot connect to {name}: {getattr(exc, 'strerror', None) or exc}"


class AsyncClient:
    """Connection to camheald. Use ``async with AsyncClient(bus="session") as client:``.

    Args:
        bus: "system" (the installed service), "session", or a D-Bus address string.
    """

    def __init__(self, bus: str = "system") -> None:
        self._bus_spec = bus
        self._bus: MessageBus | None = None
        self._callbacks: list[HealthCallback] = []
        self._matched = False
        # open streams by (camera path, subscription id), ended by StreamEnded signals and by
        # the daemon leaving the bus
        self._streams: weakref.WeakValueDictionary[tuple[str, int], StreamReader] = \
            weakref.WeakValueDictionary()
        self._early_ends: OrderedDict[tuple[str, int], str] = OrderedDict()
        self._gone: OrderedDict[str, str] = OrderedDict()  # daemon unique names that left: why
        # on_service_lost callbacks, with the unique name of the daemon each one watches
        self._lost: list[tuple[str, ServiceLostCallback]] = []
        self._watching = False  # match rules and handler installed on this connection
        self._watch_lock = asyncio.Lock()

    async def connect(self) -> AsyncClient:
        """Connect to the bus (``async with`` does it).

        Raises:
            BusUnavailable: the bus cannot be reached; its message says why in one line.
        """
        spec = self._bus_spec
        try:
            if spec == "system":
                bus = MessageBus(bus_type=BusType.SYSTEM, negotiate_unix_fd=True)
            elif spec == "session":
                bus = MessageBus(bus_type=BusType.SESSION, negotiate_unix_fd=True)
            elif not spec:  # (dbus_fast would take the session bus for it)
                raise InvalidAddressError("the address is empty")
            else:
                bus = MessageBus(bus_address=spec, negotiate_unix_fd=True)
            self._bus = await bus.connect()
        except (OSError, InvalidAddressError, AuthError, KeyError) as exc:
            # (KeyError: dbus_fast reads $HOME when DBUS_SESSION_BUS_ADDRESS is not set)
            raise BusUnavailable(_unreachable(spec, exc)) from None
        task = asyncio.ensure_future(self._watch_disconnect(self._bus))
        task.add_done_callback(lambda t: None if t.cancelled() else t.exception())
        return self

    async def close(self) -> None:
        if self._bus is not None:
            bus, self._bus, self._watching = self._bus, None, False
            self._lost.clear()  # closed, not lost
            bus.disconnect()
            self._end_streams(StreamEnded, "the client was closed")

    async def __aenter__(self) -> AsyncClient:
        return await self.connect()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- low level -----------------------------------------------------------------------------
    async def call(self, path: str, interface: str, member: str, signature: str = "",
                   body: list[Any] | None = None, unix_fds: list[int] | None = None,
                   timeout: float = 30.0) -> list[Any]:
        """Call a method of camheald; raises the typed SDK error on an error reply."""
        return (await self._call(path, interface, member, signature, body, unix_fds,
                                 timeout))[0]

    async def _call(self, path: str, interface: str, member: str, signature: str = "",
                    body: list[Any] | None = None, unix_fds: list[int] | None = None,
                    timeout: float = 30.0) -> tuple[list[Any], str]:
        """:meth:`call`, also returning the unique bus name of the daemon that replied."""
        try:  # checked before anything is sent: a body that fails to marshal while being
            # sent leaves dbus_fast waiting for a reply that never comes
            get_signature_tree(signature).verify(body or [])
            msg = Message(destination=C.BUS_NAME, path=path, interface=interface,
                          member=member, signature=signature, body=body or [],
                          unix_fds=unix_fds or [])
        except (SignatureBodyMismatchError, InvalidSignatureError) as exc:
            raise InvalidArgument(f"{member}: {exc}") from None
        if self._bus is None:
            await self.connect()
        assert self._bus is not None
        pending = asyncio.ensure_future(self._bus.call(msg))
        try:
            reply = await asyncio.wait_for(asyncio.shield(pending), timeout)
        except asyncio.TimeoutError:
            # a reply that still comes may carry fds (a frame, a burst): close them then
            pending.add_done_callback(_close_reply_fds)
            raise CamhealError(f"{member}: no reply from camheald within {timeout:g} s") from None
        if reply is None:
            raise CamhealError(f"{member}: no reply")
        if reply.message_type == MessageType.ERROR:
            _close_fds(reply.unix_fds)
            text = reply.body[0] if reply.body else reply.error_name
            raise from_dbus(reply.error_name or "", str(text))
        if reply.unix_fds:
            return _replace_fds(reply.signature, reply.body, reply.unix_fds), reply.sender or ""
        return reply.body, reply.sender or ""

    async def get_property(self, path: str, interface: str, name: str) -> Any:
        (value,) = await self.call(path, "org.freedesktop.DBus.Properties", "Get", "ss",
                                   [interface, name])
        return unpack(value)

    async def get_properties(self, path: str, interface: str) -> dict[str, Any]:
        (values,) = await self.call(path, "org.freedesktop.DBus.Properties", "GetAll", "s",
                                    [interface])
        return unpack(values)

    # -- API -----------------------------------------------------------------------------------
    async def version(self) -> str:
        (v,) = await self.call(C.MANAGER_PATH, C.MANAGER_IFACE, "Version")
        return v

    async def correct_image(self, image: np.ndarray | str | os.PathLike, restore: bool = True
                            ) -> tuple[np.ndarray, dict[str, Any]]:
        """Detect and correct an app's own image.

        Args:
            image: HxWx3 uint8 RGB array, or the path of an image file (PNG, JPEG, ...).
            restore: also denoise and deblur as ``camheal correct`` does (seconds for a
                large blurred or noisy photo); False: the global tone/colour correction
                only (milliseconds).

        Returns:
            (corrected HxWx3 uint8 RGB array, report with scores, detected, actions).

        Raises:
            InvalidImage, TooLarge, Busy, NotReady, ServiceUnavailable (camheal.errors).
        """
        restore = _flag("restore", restore)
        if isinstance(image, np.ndarray):
            data = encode_ppm(image)
        else:
            with open(image, "rb") as f:
                data = f.read()
        fd = os.memfd_create("camheal-image", os.MFD_CLOEXEC)
        try:
            os.write(fd, data)
            result_fd, report = await self.call(
                C.MANAGER_PATH, C.MANAGER_IFACE, "CorrectImage", "ha{sv}",
                [0, {"format": Variant("s", "rgb"), "restore": Variant("b", restore)}],
                unix_fds=[fd], timeout=RESTORE_TIMEOUT_S if restore else 30.0)
        finally:
            os.close(fd)
        report = unpack(report)
        frame = frame_from_fd(result_fd, report)
        return frame.image, report

    async def cameras(self) -> list[AsyncCamera]:
        """All cameras the daemon runs."""
        (paths,) = await self.call(C.MANAGER_PATH, C.MANAGER_IFACE, "ListCameras")
        return [AsyncCamera(self, p.rsplit("/", 1)[-1]) for p in paths]

    async def camera(self, cam_id: str | None = None) -> AsyncCamera:
        """The camera with this id (the first one when None)."""
        if cam_id is not None:
            _text("cam_id", cam_id)
        cams = await self.cameras()
        if not cams:
            raise from_dbus(C.ERROR_UNKNOWN_CAMERA, "camheald runs no camera")
        if cam_id is None:
            return cams[0]
        for cam in cams:
            if cam.id == cam_id:
                return cam
        raise from_dbus(C.ERROR_UNKNOWN_CAMERA,
                        f"no camera {cam_id!r} (have: {', '.join(c.id for c in cams)})")

    async def on_health(self, callback: HealthCallback) -> None:
        """Call ``callback`` for every health signal of every camera."""
        self._callbacks.append(callback)
        if self._matched:
            return
        assert self._bus is not None
        rule = f"type='signal',interface='{C.CAMERA_IFACE}'"
        await self.call_bus("AddMatch", "s", [rule])
        self._bus.add_message_handler(self._on_signal)
        self._matched = True

    async def on_service_lost(self, callback: ServiceLostCallback) -> None:
        """Call ``callback(reason)`` once when the camheald running now goes away.

        ``reason`` is one line: "camheald left the bus" (stopped, crashed, killed),
        "camheald was replaced on the bus" (another camheald took the name) or "the D-Bus
        connection was lost". The same watch on the bus ends open streams with
        :class:`camheal.errors.ServiceLost`; health signals alone would just stop coming.
        Closing the client calls nothing. The callback runs on the client's event loop: keep
        it short.

        Like any call to camheald, it starts an activatable camheald that is not running
        (D-Bus activation: the system bus's service file starts the unit).

        Raises:
            ServiceUnavailable: camheald is not on the bus and could not be started.
        """
        await self.version()  # a method call: the bus starts camheald (GetNameOwner would not)
        await self._watch_streams()  # the match rule first: no leaving after it is missed
        (owner,) = await self.call_bus("GetNameOwner", "s", [C.BUS_NAME])
        why = self._gone.get(owner)
        if why is not None:  # left while its name was being looked up
            callback(why)
        else:
            self._lost.append((owner, callback))

    # -- stream ends and the daemon leaving ---------------------------------------------------
    async def _watch_streams(self) -> None:
        """Listen (once per connection) for StreamEnded and for the daemon leaving the bus.

        Done before the first Subscribe or ``on_service_lost``, so that no end can come before
        its match rule.
        """
        async with self._watch_lock:
            if self._bus is None:
                await self.connect()
            if not self._watching:
                await self.call_bus("AddMatch", "s", [
                    f"type='signal',sender='{C.BUS_NAME}',interface='{C.CAMERA_IFACE}',"
                    "member='StreamEnded'"])
                await self.call_bus("AddMatch", "s", [
                    f"type='signal',sender='{_BUS}',interface='{_BUS}',"
                    f"member='NameOwnerChanged',arg0='{C.BUS_NAME}'"])
                assert self._bus is not None
                self._bus.add_message_handler(self._on_stream_signal)
                self._watching = True

    def _register(self, path: str, reader: StreamReader) -> None:
        key = (path, reader.id)
        self._streams[key] = reader
        reason = self._early_ends.pop(key, None)
        if reason is not None:
            reader.end(reason)
        elif reader.owner in self._gone:
            reader.end("camheald left the bus", ServiceLost)

    def _forget(self, path: str, sub_id: int) -> None:
        self._streams.pop((path, sub_id), None)

    def _on_stream_signal(self, msg: Message) -> None:
        if msg.message_type != MessageType.SIGNAL:
            return
        if msg.member == "StreamEnded" and msg.interface == C.CAMERA_IFACE:
            sub_id, reason = msg.body
            key = (msg.path or "", int(sub_id))
            reader = self._streams.get(key)
            if reader is None:  # our Subscribe reply may not be handled yet
                self._early_ends[key] = str(reason)
                while len(self._early_ends) > _EARLY_ENDS:
                    self._early_ends.popitem(last=False)
            elif not reader.owner or reader.owner == msg.sender:
                reader.end(str(reason))
        elif msg.member == "NameOwnerChanged" and msg.sender == _BUS and msg.body \
                and msg.body[0] == C.BUS_NAME:
            _name, old, new = msg.body
            if not old:
                return
            why = "camheald was replaced on the bus" if new else "camheald left the bus"
            self._gone[old] = why
            while len(self._gone) > _EARLY_ENDS:
                self._gone.popitem(last=False)
            for reader in list(self._streams.values()):
                if reader.owner == old:
                    reader.end(why, ServiceLost)
            self._service_lost(why, old)

    async def _watch_disconnect(self, bus: MessageBus) -> None:
        try:
            await bus.wait_for_disconnect()
        except Exception:  # noqa: BLE001,S110 - how it ended does not matter, that it did does
            pass
        if self._bus is bus:  # lost, not closed by us: a later call connects again
            self._bus, self._watching = None, False
            self._end_streams(ServiceLost, "the D-Bus connection was lost")
            self._service_lost("the D-Bus connection was lost")

    def _service_lost(self, why: str, owner: str | None = None) -> None:
        """Call (once) the on_service_lost callbacks watching ``owner`` (None: all); one that
        raises is logged and does not keep the others from being called."""
        hit = [cb for o, cb in self._lost if owner is None or o == owner]
        self._lost = [(o, cb) for o, cb in self._lost if owner is not None and o != owner]
        for cb in hit:
            try:
                cb(why)
            except Exception:  # noqa: BLE001 - a user's callback; the others still run
                logger.exception("on_service_lost callback %r failed", cb)

    def _end_streams(self, error: type[StreamEnded], reason: str) -> None:
        for reader in list(self._streams.values()):
            reader.end(reason, error)
        self._streams.clear()

    async def call_bus(self, member: str, signature: str, body: list[Any]) -> list[Any]:
        """Call a method of the bus itself; raises the typed SDK error on an error reply."""
        assert self._bus is not None
        reply = await self._bus.call(Message(
            destination="org.freedesktop.DBus", path="/org/freedesktop/DBus",
            interface="org.freedesktop.DBus", member=member, signature=signature, body=body))
        if reply is not None and reply.message_type == MessageType.ERROR:
            text = reply.body[0] if reply.body else reply.error_name
            raise from_dbus(reply.error_name or "", str(text))
        return reply.body if reply else []

    def _on_signal(self, msg: Message) -> None:
        if msg.message_type != MessageType.SIGNAL or msg.interface != C.CAMERA_IFACE:
            return
        cam_id = (msg.path or "").rsplit("/", 1)[-1]
        kinds = {"HealthChanged": "health", "AnomalyDetected": "anomaly_detected",
                 "AnomalyCleared": "anomaly_cleared", "StateChanged": "state",
                 "DefectDetected": "defect_detected", "DefectCleared": "defect_cleared"}
        kind = kinds.get(msg.member or "")
        if kind is None:
            return
        if kind in ("health", "defect_detected", "defect_cleared"):
            payload = unpack(msg.body[0])
        elif kind == "anomaly_detected":
            payload = {"name": msg.body[0], "score": msg.body[1]}
        elif kind == "anomaly_cleared":
            payload = {"name": msg.body[0]}
        else:
            payload = {"state": msg.body[0]}
        for cb in list(self._callbacks):
            cb(cam_id, kind, payload)


class AsyncCamera:
    """A handle on one camera of the daemon."""

    def __init__(self, client: AsyncClient, cam_id: str) -> None:
        self.client = client
        self.id = cam_id
        self.path = C.camera_path(cam_id)

    def __repr__(self) -> str:
        return f"<AsyncCamera {self.id}>"

    async def properties(self) -> dict[str, Any]:
        """Id, Source, Width, Height, Fps, Health, Stats, Corrections."""
        return await self.client.get_properties(self.path, C.CAMERA_IFACE)

    async def health(self) -> dict[str, Any]:
        return await self.client.get_property(self.path, C.CAMERA_IFACE, "Health")

    async def stats(self) -> dict[str, Any]:
        return await self.client.get_property(self.path, C.CAMERA_IFACE, "Stats")

    async def capture(self, corrected: bool = True, timeout_ms: int = 3000) -> Frame:
        """One still: the newest frame, corrected or raw, as a Frame that owns its pixels."""
        options = {"corrected": Variant("b", _flag("corrected", corrected)),
                   "timeout_ms": Variant("i", _integer("timeout_ms", timeout_ms, 0, _INT32_MAX))}
        fd, meta = await self.client.call(self.path, C.CAMERA_IFACE, "CaptureFrame", "a{sv}",
                                          [options])
        return frame_from_fd(fd, unpack(meta))

    async def subscribe(self, corrected: bool = True) -> StreamReader:
        """Start a stream; most callers want :meth:`stream` instead.

        The reader is ended (:meth:`StreamReader.end`) when the daemon ends the stream or
        leaves the bus; close it and :meth:`unsubscribe` when done.
        """
        options = {"corrected": Variant("b", _flag("corrected", corrected))}
        await self.client._watch_streams()
        (ring_fd, wake_fd, info), owner = await self.client._call(
            self.path, C.CAMERA_IFACE, "Subscribe", "a{sv}", [options])
        info = unpack(info)
        reader = StreamReader(int(info["id"]), ring_fd, wake_fd, info, owner)
        self.client._register(self.path, reader)
        return reader

    async def unsubscribe(self, sub_id: int) -> None:
        self.client._forget(self.path, sub_id)
        await self.client.call(self.path, C.CAMERA_IFACE, "Unsubscribe", "u", [sub_id])

    async def stream(self, corrected: bool = True, timeout: float = 5.0) -> AsyncStream:
        """A stream of Frames (zero-copy views): ``async with await cam.stream() as s:``."""
        reader = await self.subscribe(corrected)
        return AsyncStream(reader, lambda: self._unsubscribe_quietly(reader), timeout)

    async def _unsubscribe_quietly(self, reader: StreamReader) -> None:
        self.client._forget(self.path, reader.id)
        if self.client._bus is None or reader.ended is not None:
            return  # disconnected, or the daemon ended the stream: nothing to release
        try:
            await self.unsubscribe(reader.id)
        except CamhealError:
            pass

    async def capture_burst(self, count: int, corrected: bool = True, restore: bool = True
                            ) -> tuple[list[Frame], dict[str, Any]]:
        """``count`` (1-16) consecutive frames corrected together (lens defects filled in).

        With ``restore`` the frames of a noisy burst are first averaged with their aligned
        neighbours (action "merge"), and each frame where noise or blur is still detected
        is denoised and deblurred as ``correct_image`` does (seconds per such frame);
        ``restore=False`` keeps the burst to the global correction and the defect filling.

        Returns:
            (frames, report) — report: seqs, defects, actions, restored.

        Raises:
            InvalidArgument: ``count`` not an integer from 1 to 16, a flag not a bool.
        """
        count = _integer("count", count, 1, _UINT32_MAX)
        options = {"corrected": Variant("b", _flag("corrected", corrected)),
                   "format": Variant("s", "rgb")}
        if _flag("restore", restore):  # (the daemon's default is false; a daemon from
            # before it knows no key)
            options["restore"] = Variant("b", True)
        fds, report = await self.client.call(
            self.path, C.CAMERA_IFACE, "CaptureBurst", "ua{sv}", [count, options],
            timeout=BURST_TIMEOUT_S if restore else 60.0)
        report = unpack(report)
        metas = report.pop("frames", [])
        frames = []
        try:
            while fds:
                fd = fds.pop(0)  # frame_from_fd closes it
                if len(frames) < len(metas):
                    frames.append(frame_from_fd(fd, metas[len(frames)]))
                else:
                    os.close(fd)
        finally:
            _close_fds(fds)
        return frames, report

    async def defect_mask(self) -> np.ndarray:
        """The persistent lens-defect mask at frame size: HxW uint8, 255 = defect."""
        fd, meta = await self.client.call(self.path, C.CAMERA_IFACE, "GetDefectMask",
                                          "a{sv}", [{"format": Variant("s", "gray")}])
        meta = unpack(meta)
        data = read_fd(fd, int(meta["size"]))
        return np.frombuffer(data, np.uint8).reshape(int(meta["height"]), int(meta["width"]))

    async def capture_encoded(self, fmt: str = "png", corrected: bool = True,
                              quality: int = 90, timeout_ms: int = 3000
                              ) -> tuple[bytes, dict[str, Any]]:
        """One still encoded by the daemon as "png" or "jpeg": (file bytes, metadata)."""
        options = {"corrected": Variant("b", _flag("corrected", corrected)),
                   "format": Variant("s", _text("fmt", fmt)),
                   "quality": Variant("i", _integer("quality", quality, 1, _INT32_MAX)),
                   "timeout_ms": Variant("i", _integer("timeout_ms", timeout_ms, 0, _INT32_MAX))}
        fd, meta = await self.client.call(self.path, C.CAMERA_IFACE, "CaptureFrame", "a{sv}",
                                          [options])
        meta = unpack(meta)
        return read_fd(fd, int(meta["size"])), meta


def _replace_fds(signature: str, body: list[Any], fds: list[int]) -> list[Any]:
    """Swap fd indexes in a reply body for the received fds (top-level 'h' and 'ah' args)."""
    from dbus_fast.signature import get_signature_tree

    out = list(body)
    for i, t in enumerate(get_signature_tree(signature).types):
        if t.signature == "h":
            out[i] = fds[out[i]]
        elif t.signature == "ah":
            out[i] = [fds[j] for j in out[i]]
    return out


def _close_fds(fds: list[int] | None) -> None:
    for fd in fds or ():
        try:
            os.close(fd)
        except OSError:
            pass


def _close_reply_fds(fut: asyncio.Future) -> None:
    if not fut.cancelled() and fut.exception() is None and fut.result() is not None:
        _close_fds(fut.result().unix_fds)
