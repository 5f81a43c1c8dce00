"""Parse a ``--source`` URI into a Source (validates everything that can be checked up front)."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import parse_qsl

import cv2

from camheald.capture.base import Source
from camheald.errors import SourceError

SCHEMES = ("demo", "file", "v4l2", "rtsp", "rtsps", "http", "https", "gst", "picamera2")
_SIZE = re.compile(r"^(\d{2,5})x(\d{2,5})$")


def _split(uri: str) -> tuple[str, str, dict[str, str]]:
    scheme, sep, rest = uri.partition(":")
    if not sep:
        rest = ""
    path, _, query = rest.partition("?")
    try:
        params = dict(parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query)))
    except ValueError as exc:
        raise SourceError(f"source {uri!r}: malformed query string") from exc
    return scheme.lower(), path, params


def _size(uri: str, params: dict[str, str], default: tuple[int, int]) -> tuple[int, int]:
    value = params.pop("size", None)
    if value is None:
        return default
    m = _SIZE.match(value)
    if not m or not (16 <= int(m[1]) <= 8192 and 16 <= int(m[2]) <= 8192):
        raise SourceError(f"source {uri!r}: size must be WxH between 16 and 8192, got {value!r}")
    return int(m[1]), int(m[2])


def _float(uri: str, params: dict[str, str], key: str, default: float, lo: float,
           hi: float) -> float:
    value = params.pop(key, None)
    if value is None:
        return default
    try:
        number = float(value)
    except ValueError:
        number = float("nan")
    if not lo <= number <= hi:
        raise SourceError(f"source {uri!r}: {key} must be a number in [{lo:g}, {hi:g}], "
                          f"got {value!r}")
    return number


def _no_leftovers(uri: str, params: dict[str, str]) -> None:
    if params:
        raise SourceError(f"source {uri!r}: unknown option(s) {', '.join(sorted(params))}")


def parse_source(uri: str) -> Source:
    """Build the Source named by ``uri``; raise SourceError with a one-line reason otherwise.

    Forms: ``demo[:?size=WxH&fps=F&phase=S&schedule=a,b]``, ``file:PATH[?fps=F&loop=0]``,
    ``v4l2:/dev/videoN[?size=WxH&fps=F&format=MJPG]``, ``rtsp://…``, ``http(s)://…``,
    ``gst:PIPELINE`` (needs OpenCV built with GStreamer), ``picamera2:N``.
    """
    if not uri or len(uri) > 4096:
        raise SourceError("source URI is empty or too long")
    scheme, path, params = _split(uri)
    if scheme not in SCHEMES:
        raise SourceError(f"source {uri!r}: unknown scheme {scheme!r} "
                          f"(use one of {', '.join(SCHEMES)})")
    if scheme == "demo":
        from camheald.capture import inject
        from camheald.capture.demo import DEFAULT_SCHEDULE, DemoSource

        width, height = _size(uri, params, (640, 360))
        fps = _float(uri, params, "fps", 15.0, 0.5, 240.0)
        phase = _float(uri, params, "phase", 8.0, 0.5, 3600.0)
        schedule = tuple(params.pop("schedule", ",".join(DEFAULT_SCHEDULE)).split(","))
        unknown = [s for s in schedule if s not in inject.DEFECT_NAMES]
        if unknown:
            raise SourceError(f"source {uri!r}: unknown defect(s) {', '.join(unknown)} "
                              f"(known: {', '.join(inject.DEFECT_NAMES)})")
        _no_leftovers(uri, params)
        return DemoSource(uri, width, height, fps, phase, schedule)

    from camheald.capture.opencv import ImageFolderSource, VideoCaptureSource

    if scheme == "file":
        target = Path(path)
        fps = _float(uri, params, "fps", 0.0, 0.0, 1000.0)
        loop = params.pop("loop", "1") not in ("0", "false", "no")
        _no_leftovers(uri, params)
        if not target.exists():
            raise SourceError(f"source {uri!r}: {target} does not exist")
        from camheald.capture.opencv import IMAGE_SUFFIXES

        if target.is_dir() or target.suffix.lower() in IMAGE_SUFFIXES:
            return ImageFolderSource(uri, target, fps or 10.0, loop)
        return VideoCaptureSource(uri, str(target), cv2.CAP_FFMPEG, fps, loop=loop,
                                  pace=fps > 0)
    if scheme == "v4l2":
        if not re.fullmatch(r"/dev/video\d{1,3}", path):
            raise SourceError(f"source {uri!r}: expected v4l2:/dev/videoN")
        width, height = _size(uri, params, (0, 0))
        fps = _float(uri, params, "fps", 0.0, 0.0, 1000.0)
        fourcc = params.pop("format", "")
        _no_leftovers(uri, params)
        props: dict[int, float] = {}
        if fourcc:
            if len(fourcc) != 4:
                raise SourceError(f"source {uri!r}: format must be a FourCC like MJPG")
            props[cv2.CAP_PROP_FOURCC] = cv2.VideoWriter_fourcc(*fourcc)
        if width:
            props[cv2.CAP_PROP_FRAME_WIDTH] = width
            props[cv2.CAP_PROP_FRAME_HEIGHT] = height
        if fps:
            props[cv2.CAP_PROP_FPS] = fps
        return VideoCaptureSource(uri, path, cv2.CAP_V4L2, fps, props=props)
    if scheme in ("rtsp", "rtsps", "http", "https"):
        return VideoCaptureSource(uri, uri, cv2.CAP_FFMPEG)
    if scheme == "gst":
        pipeline = uri.partition(":")[2]
        if "appsink" not in pipeline:
            raise SourceError(f"source {uri!r}: a gst: pipeline must end in appsink")
        if "GStreamer:                   YES" not in cv2.getBuildInformation():
            raise SourceError("gst: sources need OpenCV built with GStreamer "
                              "(on Jetson use the system python3-opencv from JetPack)")
        return VideoCaptureSource(uri, pipeline, cv2.CAP_GSTREAMER)
    raise SourceError(f"source {uri!r}: picamera2 sources are not implemented yet")
