"""Typed exceptions raised by the SDK, one per io.camheal.Camheal1.Error.* name."""

from __future__ import annotations

from camheal import constants as C


class CamhealError(Exception):
    """Base of every SDK error; ``str(err)`` is a one-line human message."""

    dbus_name = C.ERROR_FAILED


class ServiceUnavailable(CamhealError):
    """camheald is not running on this bus (or the bus itself is not reachable)."""


class BusUnavailable(ServiceUnavailable):
    """The D-Bus bus itself cannot be reached: no address set, nothing listening there, or
    the bus refused the connection. Also a :class:`ServiceUnavailable`."""


class UnknownCamera(CamhealError):
    dbus_name = C.ERROR_UNKNOWN_CAMERA


class InvalidArgument(CamhealError):
    dbus_name = C.ERROR_INVALID_ARGUMENT


class InvalidImage(CamhealError):
    dbus_name = C.ERROR_INVALID_IMAGE


class TooLarge(CamhealError):
    dbus_name = C.ERROR_TOO_LARGE


class NotAllowed(CamhealError):
    dbus_name = C.ERROR_NOT_ALLOWED


class Busy(CamhealError):
    dbus_name = C.ERROR_BUSY


class NotReady(CamhealError):
    dbus_name = C.ERROR_NOT_READY


class NotImplementedByService(CamhealError):
    dbus_name = C.ERROR_NOT_IMPLEMENTED


class StreamEnded(CamhealError):
    """The daemon ended a stream; ``reason`` says why (camera removed or reconfigured, frame
    size changed, daemon shutting down). Subscribe again to go on (when it makes sense).

    Attributes:
        reason: the daemon's one-line reason (the ``StreamEnded`` signal's ``s`` argument).
        subscription: the subscription id the daemon ended.
    """

    def __init__(self, reason: str, subscription: int = 0) -> None:
        super().__init__(f"stream {subscription} ended: {reason}")
        self.reason = reason
        self.subscription = subscription


class ServiceLost(StreamEnded, ServiceUnavailable):
    """camheald left the bus (crashed, killed or replaced) while a stream was open, or the bus
    connection itself was lost. Also a :class:`ServiceUnavailable`."""


_BY_NAME = {cls.dbus_name: cls for cls in (UnknownCamera, InvalidArgument, InvalidImage,
                                           TooLarge, NotAllowed, Busy, NotReady,
                                           NotImplementedByService)}
_UNAVAILABLE = {"org.freedesktop.DBus.Error.ServiceUnknown",
                "org.freedesktop.DBus.Error.NameHasNoOwner",
                "org.freedesktop.DBus.Error.NoReply",
                "org.freedesktop.DBus.Error.Disconnected"}


def from_dbus(name: str, message: str) -> CamhealError:
    """The SDK exception for a D-Bus error reply."""
    if name in _UNAVAILABLE:
        return ServiceUnavailable(f"camheald is not running on this bus ({message})")
    if name == "org.freedesktop.DBus.Error.AccessDenied":
        return NotAllowed(message)
    if name == "org.freedesktop.DBus.Error.UnknownObject":
        # the manager object is always there while camheald runs: a missing object is a
        # camera that was removed, or is being restarted by a reload
        return UnknownCamera(f"no such camera: {message}")
    return _BY_NAME.get(name, CamhealError)(message)
