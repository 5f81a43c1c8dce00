"""The daemon's domain exceptions; the bus edge translates each into a named D-Bus error."""

from __future__ import annotations

from camheal import constants as C


class CamhealError(Exception):
    """Base of every error the daemon reports to a caller; the message is shown to users."""

    dbus_name = C.ERROR_FAILED


class ConfigError(CamhealError):
    """The configuration file or a command-line option is invalid."""

    dbus_name = C.ERROR_INVALID_ARGUMENT


class SourceError(CamhealError):
    """A source URI is malformed or names something that cannot be a camera."""

    dbus_name = C.ERROR_INVALID_ARGUMENT


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
    """No frame is available yet (camera starting or without signal)."""

    dbus_name = C.ERROR_NOT_READY


class NotImplementedYet(CamhealError):
    dbus_name = C.ERROR_NOT_IMPLEMENTED
