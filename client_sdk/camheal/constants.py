"""Names shared by the daemon and its clients: bus names, paths, interfaces, errors, vocabulary.

Defined once here; the daemon imports them (it never redefines a name).
"""

from __future__ import annotations

VERSION = "0.1.0"

BUS_NAME = "io.camheal.Camheal1"
MANAGER_PATH = "/io/camheal/Camheal1"
CAMERAS_PATH = MANAGER_PATH + "/cameras"

MANAGER_IFACE = "io.camheal.Camheal1.Manager"
CAMERA_IFACE = "io.camheal.Camheal1.Camera"

ERROR_PREFIX = "io.camheal.Camheal1.Error."
ERROR_UNKNOWN_CAMERA = ERROR_PREFIX + "UnknownCamera"
ERROR_INVALID_ARGUMENT = ERROR_PREFIX + "InvalidArgument"
ERROR_INVALID_IMAGE = ERROR_PREFIX + "InvalidImage"
ERROR_TOO_LARGE = ERROR_PREFIX + "TooLarge"
ERROR_NOT_ALLOWED = ERROR_PREFIX + "NotAllowed"
ERROR_BUSY = ERROR_PREFIX + "Busy"
ERROR_NOT_READY = ERROR_PREFIX + "NotReady"
ERROR_NOT_IMPLEMENTED = ERROR_PREFIX + "NotImplemented"
ERROR_FAILED = ERROR_PREFIX + "Failed"

# The anomaly vocabulary: one list everywhere (models, reports, D-Bus, CLI).
ANOMALIES: tuple[str, ...] = (
    "blur",
    "obstruction",
    "underexposed",
    "overexposed",
    "low_contrast",
    "color_cast",
    "noise",
)

# Camera-health states that are not image anomalies.
HEALTH_STATES: tuple[str, ...] = ("ok", "starting", "no_signal", "frozen", "covered", "moved")
DEFECT_KINDS: tuple[str, ...] = ("dirt", "crack", "covered")


def camera_path(camera_id: str) -> str:
    """Object path of the camera with this id (ids are restricted to [A-Za-z0-9_])."""
    return f"{CAMERAS_PATH}/{camera_id}"


# D-Bus types of the keys in the Health and Stats dictionaries (a{sv}); documented in
# docs/dbus-api.md. Keys not listed are packed by their Python type.
HEALTH_TYPES: dict[str, str] = {
    "state": "s", "state_since": "d", "detected": "as", "since": "a{sd}", "scores": "a{sd}",
    "model": "s", "model_error": "s", "analysis_error": "s", "defects": "aa{sv}",
}
DEFECT_TYPES: dict[str, str] = {
    "id": "u", "kind": "s", "confidence": "d", "bbox": "ai", "since": "d", "first_frame": "u",
}
FRAME_META_TYPES: dict[str, str] = {
    "width": "u", "height": "u", "stride": "u", "format": "s", "pixel_format": "s", "size": "t",
    "seq": "t", "timestamp_ns": "t", "corrected": "b", "scores": "a{sd}", "actions": "as",
}
STREAM_INFO_TYPES: dict[str, str] = {
    "id": "u", "width": "u", "height": "u", "slots": "u", "corrected": "b",
}
IMAGE_REPORT_TYPES: dict[str, str] = {
    "width": "u", "height": "u", "stride": "u", "format": "s", "pixel_format": "s", "size": "t",
    "input_format": "s", "scores": "a{sd}", "detected": "as", "actions": "as", "model": "s",
    "elapsed_ms": "d", "restored": "b",
}
