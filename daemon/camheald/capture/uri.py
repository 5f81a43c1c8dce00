"""Parse a ``--source`` URI into a Source (validates everything that can be checked up front)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import parse_qsl

import cv2

from camheald.capture.base import Source
from camheald.capture.opencv import network_timeouts
from camheald.cvlog import quiet_opencv
from camheald.errors import SourceError

SCHEMES = ("demo", "file", "v4l2", "rtsp", "rtsps", "http", "https", "gst", "picamera2", "inject")
_SIZE = re.compile(r"^(\d{2,5})x(\d{2,5})$")


def _split(uri: str) -> tuple[str, str, dict[str, str]]:
    scheme, sep, rest = uri.partition(":")
    if not sep:  # "demo?fps=5" is read as "demo:?fps=5"
        scheme, sep, rest = uri.partition("?")
        rest = sep + rest
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

    Forms:

    - ``demo[:?size=WxH&fps=F&phase=S&schedule=a,b]`` - the procedural demo scene;
    - ``file:PATH[?fps=F&loop=0]`` - a video, an image or a folder of images (loops, unless
      ``loop=0``: played once, then the camera stays ``no_signal``), played at ``fps`` frames
      a second: by default a video at its own frame rate (30 when the file does not say) and
      images at 10; ``fps=0`` as fast as it decodes (benchmarks: nothing paced, nothing
      dropped). A file that cannot be opened as a video or image is refused here; an
      unreadable image in a folder is skipped;
    - ``v4l2:/dev/videoN[?size=WxH&fps=F&format=MJPG]`` - USB/UVC cameras (or the stable
      names udev makes: ``v4l2:/dev/v4l/by-id/NAME``, ``/dev/v4l/by-path/NAME``);
    - ``rtsp://…``, ``rtsps://…``, ``http(s)://…`` - network cameras through FFmpeg, with open
      and read time-outs so that a dead camera cannot hold the capture thread;
    - ``gst:PIPELINE`` - a GStreamer pipeline ending in appsink (OpenCV built with GStreamer);
    - ``picamera2:N[?size=WxH&fps=F]`` - Raspberry Pi CSI camera N (needs python3-picamera2);
    - ``inject:INNER[#OPTIONS]`` - any of the above (not another inject:) with known defects
      added on a schedule; ``Stats["injected"]`` names the defect shown now (ground truth).
      OPTIONS go in the URI fragment, after ``#``, so that they never mix with the inner
      URI's own query: ``schedule=a,b,…`` (defect per phase, looped; names: clean, blur,
      dirt or obstruction, crack, underexposed, overexposed, low_contrast, color_cast, noise;
      default: every anomaly once, each followed by clean), ``phase=S`` (seconds per phase,
      default 8), ``seed=N`` (where the dirt and crack masks fall, default 1), ``loop=0``
      (stay clean after one pass). An inner ``demo`` is clean unless it names its own
      schedule. Examples: ``inject:demo#schedule=clean,blur,noise&phase=5``,
      ``inject:v4l2:/dev/video0?size=1280x720#phase=10``,
      ``inject:rtsp://cam.local/stream1?channel=1#schedule=clean,dirt``.
    """
    if not uri or len(uri) > 4096:
        raise SourceError("source URI is empty or too long")
    if uri.partition(":")[0].lower() == "inject":
        return _inject(uri)
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
        given = "fps" in params
        fps = _float(uri, params, "fps", 0.0, 0.0, 1000.0)
        unpaced = given and fps == 0
        loop = params.pop("loop", "1") not in ("0", "false", "no")
        _no_leftovers(uri, params)
        if not target.exists():
            raise SourceError(f"source {uri!r}: {target} does not exist")
        from camheald.capture.opencv import IMAGE_SUFFIXES

        if target.is_dir() or target.suffix.lower() in IMAGE_SUFFIXES:
            if not target.is_dir() and not cv2.haveImageReader(str(target)):
                raise SourceError(f"source {uri!r}: {target} is not a readable image")
            return ImageFolderSource(uri, target, 0.0 if unpaced else fps or 10.0, loop)
        _check_video(uri, target)
        # paced at fps, else at the file's own rate (VideoCaptureSource.open); fps=0: as
        # fast as it decodes, and then not live: the pipeline waits instead of dropping
        return VideoCaptureSource(uri, str(target), cv2.CAP_FFMPEG, fps, loop=loop,
                                  pace=not unpaced, live=not unpaced)
    if scheme == "v4l2":
        if not re.fullmatch(r"/dev/video\d{1,3}|/dev/v4l/by-(id|path)/[\w.:+-]+", path):
            raise SourceError(f"source {uri!r}: expected v4l2:/dev/videoN or "
                              "v4l2:/dev/v4l/by-id/NAME")
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
        if not path.startswith("//") or len(path) < 3:
            raise SourceError(f"source {uri!r}: expected {scheme}://HOST[:PORT]/PATH")
        return VideoCaptureSource(uri, uri, cv2.CAP_FFMPEG, open_params=network_timeouts())
    if scheme == "gst":
        pipeline = uri.partition(":")[2]
        if "appsink" not in pipeline:
            raise SourceError(f"source {uri!r}: a gst: pipeline must end in appsink")
        if "GStreamer:                   YES" not in cv2.getBuildInformation():
            raise SourceError("gst: sources need OpenCV built with GStreamer "
                              "(on Jetson use the system python3-opencv from JetPack)")
        return VideoCaptureSource(uri, pipeline, cv2.CAP_GSTREAMER)
    return _picamera2(uri, path, params)


def _check_video(uri: str, target: Path) -> None:
    """Refuse a file FFmpeg cannot open as a video (a text file, a truncated header): a
    local file does not get better by retrying, unlike a camera (a few ms to check)."""
    if not target.is_file():  # a FIFO or a device: opening it may wait for a writer, so
        return  # it is left to the camera thread, which retries
    if not os.access(target, os.R_OK):
        raise SourceError(f"source {uri!r}: {target} cannot be read (permission denied)")
    with quiet_opencv():  # its own "can't be used to capture" line would come first
        cap = cv2.VideoCapture(str(target), cv2.CAP_FFMPEG)
    try:
        if not cap.isOpened():
            raise SourceError(f"source {uri!r}: {target} is not a readable video")
    finally:
        cap.release()


def _picamera2(uri: str, path: str, params: dict[str, str]) -> Source:
    from camheald.capture.picam import Picamera2Source, load_module

    if not re.fullmatch(r"\d{1,2}", path):
        raise SourceError(f"source {uri!r}: expected picamera2:N (camera number, 0 = first)")
    size = _size(uri, params, (1280, 720))
    if size[0] % 2 or size[1] % 2:
        raise SourceError(f"source {uri!r}: picamera2 width and height must be even")
    fps = _float(uri, params, "fps", 30.0, 1.0, 240.0)
    _no_leftovers(uri, params)
    load_module(int(path))  # the missing-package error belongs at start-up, not in a thread
    return Picamera2Source(uri, int(path), size, fps)


def _inject(uri: str) -> Source:
    from camheald.capture import inject
    from camheald.capture.injector import DEFAULT_SCHEDULE, InjectSource

    inner_uri, _, fragment = uri.partition(":")[2].partition("#")
    if not inner_uri:
        raise SourceError(f"source {uri!r}: expected inject:INNER-URI[#OPTIONS]")
    if inner_uri.partition(":")[0].lower() == "inject":
        raise SourceError(f"source {uri!r}: inject: cannot wrap another inject:")
    try:
        params = dict(parse_qsl(fragment, keep_blank_values=True, strict_parsing=bool(fragment)))
    except ValueError as exc:
        raise SourceError(f"source {uri!r}: malformed options after '#'") from exc
    schedule = tuple(s.strip() for s in params.pop("schedule", "").split(",") if s.strip()) \
        or DEFAULT_SCHEDULE
    unknown = [s for s in schedule if s not in (*inject.DEFECT_NAMES, "obstruction")]
    if unknown:
        raise SourceError(f"source {uri!r}: unknown defect(s) {', '.join(unknown)} "
                          f"(known: {', '.join(inject.DEFECT_NAMES)})")
    phase = _float(uri, params, "phase", 8.0, 0.5, 3600.0)
    seed = int(_float(uri, params, "seed", 1, 0, 2**31 - 1))
    loop = params.pop("loop", "1") not in ("0", "false", "no")
    _no_leftovers(uri, params)
    scheme, _, params_inner = _split(inner_uri)
    if scheme == "demo":
        if params_inner.get("schedule", "clean") != "clean":
            raise SourceError(f"source {uri!r}: put the schedule after '#' "
                              "(inject:demo#schedule=...); the inner demo stays clean")
        if "schedule" not in params_inner:
            inner_uri += ("&" if "?" in inner_uri else ":?" if ":" not in inner_uri else "?") \
                + "schedule=clean"
    inner = parse_source(inner_uri)
    return InjectSource(uri, inner, schedule, phase, seed, loop)
