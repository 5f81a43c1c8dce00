"""The daemon's domain exceptions; the bus edge translates each into a named D-Bus error.

The hierarchy is the SDK's (camheal.errors): one set of classes, each carrying its
io.camheal.Camheal1.Error.* name, raised by the daemon and re-raised by clients.
"""

from __future__ import annotations

from camheal import constants as C
from camheal.errors import (
    Busy,
    CamhealError,
    InvalidArgument,
    InvalidImage,
    NotAllowed,
    NotReady,
    TooLarge,
    UnknownCamera,
)
from camheal.errors import NotImplementedByService as NotImplementedYet

__all__ = ["Busy", "CamhealError", "ConfigError", "InvalidArgument", "InvalidImage",
           "NotAllowed", "NotImplementedYet", "NotReady", "SourceError", "TooLarge",
           "UnknownCamera"]


class ConfigError(CamhealError):
    """The configuration file or a command-line option is invalid."""

    dbus_name = C.ERROR_INVALID_ARGUMENT


class SourceError(CamhealError):
    """A source URI is malformed or names something that cannot be a camera."""

    dbus_name = C.ERROR_INVALID_ARGUMENT
