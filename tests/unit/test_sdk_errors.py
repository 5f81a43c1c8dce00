"""The SDK's translation of D-Bus error replies (``camheal.errors.from_dbus``)."""

from __future__ import annotations

from camheal.errors import UnknownCamera, from_dbus


def test_a_missing_camera_object_is_unknown_camera():
    e = from_dbus("org.freedesktop.DBus.Error.UnknownObject",
                  'no interfaces at path: "/io/camheal/Camheal1/cameras/cam1"')
    assert isinstance(e, UnknownCamera) and "cameras/cam1" in str(e)
