"""The bus edge: caller identity, error translation, variant packing, unexpected-fd hygiene.

Everything D-Bus specific that the interfaces share lives here, so that the service layer
only ever sees plain Python values and domain exceptions.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from dbus_fast import Message, MessageFlag, MessageType, Variant
from dbus_fast.aio import MessageBus
from dbus_fast.errors import DBusError

from camheal import constants as C
from camheald.errors import CamhealError

logger = logging.getLogger(__name__)

#: unique bus name of the caller of the method being served (set by the message handler)
caller: contextvars.ContextVar[str] = contextvars.ContextVar("caller", default="")
#: whether that call allows interactive authorization (polkit may ask for a password)
interactive: contextvars.ContextVar[bool] = contextvars.ContextVar("interactive",
                                                                  default=False)
#: the connection the call came in on (set by the message handler): at shutdown it answers
#: the calls still in progress (CamhealBus.end_calls)
serving: contextvars.ContextVar[CamhealBus | None] = contextvars.ContextVar("serving",
                                                                          default=None)

#: members allowed to carry unix fds: (interface, member) -> (path, signature, how many);
#: fds on any other message are closed at once
FD_MEMBERS = {(C.MANAGER_IFACE, "CorrectImage"): (C.MANAGER_PATH, "ha{sv}", 1)}
#: members whose reply carries fds: a call to them that asks for no reply is refused, since
#: fds handed out are closed only when the reply carrying them is sent
FD_REPLIES = frozenset({"CorrectImage", "ExportSamples", "CaptureFrame", "Subscribe",
                        "CaptureBurst", "GetDefectMask"})
OUR_INTERFACES = frozenset({C.MANAGER_IFACE, C.CAMERA_IFACE})

T = TypeVar("T")


def translate_errors(fn: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    """Turn domain exceptions into named D-Bus errors; never leak a traceback to a caller."""

    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> T:
        bus = serving.get()
        task = asyncio.current_task()
        if bus is not None:
            if bus.closing:
                raise DBusError(C.ERROR_NOT_READY, bus.closing)
            if task is not None:
                bus.calls.add(task)
        try:
            return await fn(*args, **kwargs)
        except DBusError:
            raise
        except asyncio.CancelledError:
            if bus is not None and bus.closing:  # end_calls: answered, not dropped
                raise DBusError(C.ERROR_NOT_READY, bus.closing) from None
            raise
        except CamhealError as exc:
            raise DBusError(exc.dbus_name, str(exc).splitlines()[0] if str(exc) else
                            type(exc).__name__) from None
        except Exception:
            logger.exception("unexpected error in %s (caller %s)", fn.__name__, caller.get())
            raise DBusError(C.ERROR_FAILED, "internal error; see the daemon log") from None
        finally:
            if bus is not None and task is not None:
                bus.calls.discard(task)

    return wrapper


def to_variant(value: Any) -> Variant:
    """Pack a plain Python value (bool, int, float, str, list[str], dict) as a Variant."""
    if isinstance(value, Variant):
        return value
    if isinstance(value, bool):
        return Variant("b", value)
    if isinstance(value, int):
        return Variant("x", value)
    if isinstance(value, float):
        return Variant("d", value)
    if isinstance(value, str):
        return Variant("s", value)
    if isinstance(value, (list, tuple)):
        if all(isinstance(v, str) for v in value):
            return Variant("as", list(value))
        return Variant("av", [to_variant(v) for v in value])
    if isinstance(value, dict):
        if value and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                         for v in value.values()):
            return Variant("a{sd}", {str(k): float(v) for k, v in value.items()})
        return Variant("a{sv}", to_vardict(value))
    raise TypeError(f"cannot pack {type(value).__name__} into a D-Bus variant")


def to_vardict(mapping: dict[str, Any], types: dict[str, str] | None = None
               ) -> dict[str, Variant]:
    """Pack a dict as a{sv}; ``types`` pins the D-Bus type of known keys."""
    types = types or {}
    out = {}
    for key, value in mapping.items():
        sig = types.get(key)
        if sig is None:
            out[str(key)] = to_variant(value)
        else:
            out[str(key)] = Variant(sig, _coerce(sig, value))
    return out


def _coerce(sig: str, value: Any) -> Any:
    if sig == "d":
        return float(value)
    if sig in ("u", "t", "x", "i"):
        return int(value)
    if sig == "a{sd}":
        return {str(k): float(v) for k, v in value.items()}
    if sig == "as":
        return [str(v) for v in value]
    if sig == "ai":
        return [int(v) for v in value]
    if sig == "aa{sv}":
        return [to_vardict(v, C.DEFECT_TYPES) for v in value]
    return value


def from_vardict(options: dict[str, Variant]) -> dict[str, Any]:
    return {k: (v.value if isinstance(v, Variant) else v) for k, v in options.items()}


class CamhealBus(MessageBus):
    """A MessageBus that closes fds the daemon hands out once the reply carrying them is sent.

    dbus-fast neither closes the fds of outgoing messages nor those of incoming calls that
    did not expect any; both leak without this (see issue 7 for the measured leak).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, negotiate_unix_fd=True, **kwargs)
        self._owned_fds: set[int] = set()
        self._exported: dict[str, set[str]] = {}  # object path -> interface names
        #: method calls in progress (translate_errors keeps it)
        self.calls: set[asyncio.Task] = set()
        #: once set (end_calls), why calls are refused; replies after disconnect() are dropped
        self.closing = ""
        self._closed = False
        self.add_message_handler(self._on_message)

    async def end_calls(self, reason: str, timeout: float = 2.0) -> int:
        """Refuse new calls and answer those in progress with NotReady(``reason``).

        Work they started in executor threads is left to finish on its own (its result is
        dropped). Returns how many calls were answered; their replies are queued, not yet
        confirmed sent.
        """
        self.closing = reason
        pending = {task for task in self.calls if not task.done()}
        for task in pending:
            task.cancel()
        if pending:
            _, late = await asyncio.wait(pending, timeout=timeout)
            if late:
                logger.warning("%d call(s) did not end within %g s", len(late), timeout)
        return len(pending)

    def disconnect(self) -> None:
        self._closed = True
        super().disconnect()

    def export(self, path: str, interface: Any) -> None:
        super().export(path, interface)
        self._exported.setdefault(path, set()).add(interface.name)

    def unexport(self, path: str, interface: Any = None) -> None:
        super().unexport(path, interface)
        name = interface if interface is None or isinstance(interface, str) else interface.name
        names = self._exported.get(path, set())
        names.difference_update(names if name is None else {name})
        if not names:
            self._exported.pop(path, None)

    def hand_out(self, fd: int) -> int:
        """Mark ``fd`` as owned by the next message that carries it: closed once sent."""
        self._owned_fds.add(fd)
        return fd

    def reply_with_fds(self, fds: list[int], build: Any, *args: Any) -> list[Any]:
        """A method's reply ``[*fds, build(*args)]``, the fds closed once it is sent.

        The body is built first: if that fails the fds are closed here, never leaked.
        """
        try:
            body = build(*args)
        except BaseException:
            for fd in fds:
                _close(fd)
            raise
        return [*(self.hand_out(fd) for fd in fds), body]

    async def has_owner(self, name: str) -> bool:
        """Whether a unique bus name is still connected."""
        reply = await self.call(Message(
            destination="org.freedesktop.DBus", path="/org/freedesktop/DBus",
            interface="org.freedesktop.DBus", member="NameHasOwner", signature="s",
            body=[name]))
        return bool(reply and reply.message_type == MessageType.METHOD_RETURN and reply.body[0])

    def send(self, msg: Message):  # type: ignore[override]
        if self._closed and msg.message_type != MessageType.METHOD_CALL:
            # a reply or signal after disconnect(): nobody to give it to
            logger.debug("dropped %s after disconnect", msg.member or msg.message_type.name)
            for fd in msg.unix_fds or ():
                if fd in self._owned_fds:
                    self._owned_fds.discard(fd)
                    _close(fd)
            future = asyncio.get_running_loop().create_future()
            future.set_result(None)
            return future
        future = super().send(msg)
        owned = [fd for fd in (msg.unix_fds or ()) if fd in self._owned_fds]
        if owned:
            self._owned_fds.difference_update(owned)

            def _close_sent(_fut: Any, fds: list[int] = owned) -> None:
                for fd in fds:
                    _close(fd)

            future.add_done_callback(_close_sent)
        return future

    def _on_message(self, msg: Message) -> Message | bool | None:
        if msg.message_type != MessageType.METHOD_CALL:
            for fd in msg.unix_fds or ():  # signals and stray replies carry none for us
                _close(fd)
            return None
        caller.set(msg.sender or "")
        serving.set(self)
        interactive.set(bool(msg.flags & MessageFlag.ALLOW_INTERACTIVE_AUTHORIZATION))
        if msg.flags & MessageFlag.NO_REPLY_EXPECTED and msg.interface in OUR_INTERFACES \
                and msg.member in FD_REPLIES:
            for fd in msg.unix_fds or ():
                _close(fd)
            return True  # nothing to send the result to: do not make it
        if _camera_call(msg) and msg.path not in self._exported:
            # (dbus-fast would answer UnknownMethod: the path names the camera that is missing)
            for fd in msg.unix_fds or ():
                _close(fd)
            if msg.flags & MessageFlag.NO_REPLY_EXPECTED:
                return True
            return Message.new_error(msg, C.ERROR_UNKNOWN_CAMERA,
                                     f"no camera {msg.path.rsplit('/', 1)[-1]!r}")
        fds = msg.unix_fds or ()
        if not fds:
            return None
        path, signature, allowed = FD_MEMBERS.get((msg.interface, msg.member), ("", "", 0))
        ok = (allowed and len(fds) <= allowed and msg.path == path
              and msg.signature == signature and msg.body and msg.body[0] == 0)
        if ok:
            return None
        for fd in fds:
            _close(fd)
        what = "file descriptors" if not allowed else f"more than {allowed} file descriptor"
        if allowed and len(fds) <= allowed:
            what = "file descriptors in this form"
        return Message.new_error(msg, C.ERROR_INVALID_ARGUMENT,
                                 f"{msg.member} does not take {what}")


def _camera_call(msg: Message) -> bool:
    """Whether a method call is meant for a camera object (its interface or properties)."""
    if not (msg.path or "").startswith(C.CAMERAS_PATH + "/"):
        return False
    if msg.interface in (C.CAMERA_IFACE, None):
        return True
    return msg.interface == "org.freedesktop.DBus.Properties" and bool(msg.body) \
        and msg.body[0] == C.CAMERA_IFACE


def _close(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass
