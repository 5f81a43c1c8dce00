"""Sources read through OpenCV's VideoCapture: files, image folders, V4L2 devices, network streams.

Verified on this machine: video files, image files and folders (tests make them), and RTSP
through FFmpeg as built into opencv-python against GStreamer's RTSP server on loopback
(tests/bus/test_rtsp.py: streaming, the server killed, frames again after a restart). HTTP
streams, V4L2 devices and GStreamer pipelines are thin calls into OpenCV and were not exercised
on real hardware here.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import cv2
import numpy as np

from camheald.capture.base import Source, SourceClosed, SourceEnded
from camheald.cvlog import quiet_opencv

logger = logging.getLogger(__name__)

# OpenCV serialises every FFmpeg open() behind one lock unless told that FFmpeg is thread-safe
# (it is since FFmpeg 4; OpenCV >= 4.8 reads this): without it a network camera that does not
# answer holds up the open of every other camera of the daemon for its whole time-out
# (measured: a local file's open waited 3.5 s behind a silent HTTP camera; 0.00 s with it).
os.environ.setdefault("OPENCV_FFMPEG_IS_THREAD_SAFE", "true")

#: FFmpeg time-outs for network cameras: a camera that stops answering makes open() fail after
#: the first and read() after about three times the second (FFmpeg retries; measured against a
#: stopped RTSP server: 3 s gives ~9 s), instead of OpenCV's 30 s defaults.
NETWORK_OPEN_TIMEOUT_MS = 5000
NETWORK_READ_TIMEOUT_MS = 3000

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}


def network_timeouts(open_ms: int = NETWORK_OPEN_TIMEOUT_MS,
                     read_ms: int = NETWORK_READ_TIMEOUT_MS) -> list[int]:
    """VideoCapture open parameters that bound FFmpeg's waits (they only work when passed at
    open time, not through ``set()`` afterwards)."""
    return [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, open_ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, read_ms]


def _to_rgb(bgr: np.ndarray) -> np.ndarray:
    if bgr.ndim == 2:
        return cv2.cvtColor(bgr, cv2.COLOR_GRAY2RGB)
    if bgr.shape[2] == 4:
        return cv2.cvtColor(bgr, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _native(decoded: np.ndarray) -> tuple[np.ndarray, bool]:
    """What ``read_native`` hands out: 3-channel BGR as decoded (no copy), anything else
    (grey, BGRA) converted to RGB."""
    if decoded.ndim == 3 and decoded.shape[2] == 3:
        return decoded, True
    return _to_rgb(decoded), False


class _Pacer:
    """Sleeps so that frames come out at ``fps`` (for files, which decode faster than real time)."""

    def __init__(self, fps: float) -> None:
        self.period = 1.0 / fps if fps > 0 else 0.0
        self.next = time.monotonic()

    def wait(self) -> None:
        if not self.period:
            return
        now = time.monotonic()
        if self.next > now:
            time.sleep(self.next - now)
        self.next = max(self.next + self.period, time.monotonic() - self.period)


def _stamp(path: Path) -> tuple[int, int] | None:
    """(mtime_ns, size) of a file, None when it cannot be stat'ed."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


class ImageFolderSource(Source):
    """A still image or a folder of images, looped (else shown once, then ``SourceEnded``),
    paced at ``fps`` (0: unpaced).

    A file of the folder that cannot be read (corrupt, truncated, removed meanwhile) is
    skipped with one warning (once per file, until it changes or is back); only a folder
    without one readable image fails (``SourceClosed``, so the camera retries it later),
    and so does a folder (or image) that is gone or cannot be listed, named as such.
    """

    def __init__(self, uri: str, path: Path, fps: float = 10.0, loop: bool = True) -> None:
        self.uri = uri
        self._path = path
        self._fps = fps
        self._loop = loop
        self._folder = path.is_dir()  # what it was when given (it may vanish meanwhile)
        self.live = fps > 0  # unpaced: read as fast as it decodes, nothing dropped
        self._files: list[Path] = []
        self._i = 0
        self._size = (0, 0)
        self._pacer = _Pacer(fps)
        # unreadable files (warned about once) -> their (mtime, size) then: tried again
        # only once they change
        self._skipped: dict[Path, tuple[int, int] | None] = {}

    def open(self) -> None:
        files = self._list()
        if not files:
            raise SourceClosed(f"{self._path}: no images")
        self._files = files
        self._i = 0
        self._pacer = _Pacer(self._fps)
        first = self._read_next(len(files))
        self._i = 0
        if first is None:
            raise self._unreadable()
        self._size = (first.shape[1], first.shape[0])

    def read(self) -> np.ndarray:
        return _to_rgb(self._next())

    def read_native(self) -> tuple[np.ndarray, bool]:
        return _native(self._next())

    def _next(self) -> np.ndarray:
        bgr = self._read_next(len(self._files))
        if bgr is None:
            if self._i >= len(self._files) and not self._loop:
                raise SourceEnded("end of images")
            raise self._unreadable()
        self._pacer.wait()
        return bgr

    def _list(self) -> list[Path]:
        """The folder's image files, sorted (or the one image); SourceClosed naming the
        folder (or image) when it is gone or cannot be listed."""
        if not self._folder:
            if not self._path.exists():
                raise SourceClosed(f"{self._path}: image file is missing")
            return [self._path]
        try:
            return sorted(p for p in self._path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        except FileNotFoundError:
            raise SourceClosed(f"{self._path}: folder is missing") from None
        except OSError as exc:  # permission denied, no longer a folder, I/O error
            raise SourceClosed(f"{self._path}: folder cannot be read "
                               f"({exc.strerror or exc})") from None

    def _unreadable(self) -> SourceClosed:
        if len(self._files) == 1:
            return SourceClosed(f"{self._files[0]}: not a readable image")
        return SourceClosed(f"{self._path}: none of its {len(self._files)} images is readable")

    def _read_next(self, tries: int) -> np.ndarray | None:
        """The next readable image (BGR), skipping up to ``tries``
        unreadable ones; None when none was found or (without loop) the files ran out."""
        for _ in range(tries):
            if self._i >= len(self._files):
                if not self._loop:
                    return None
                self._i = 0
            path = self._files[self._i]
            self._i += 1
            stamp = _stamp(path)
            if stamp is None:  # removed meanwhile: not handed to OpenCV (a line each pass)
                if not os.access(self._path, os.R_OK | os.X_OK):
                    self._list()  # the folder (or the image) itself gone or closed: said once
                if path not in self._skipped:
                    logger.warning("%s: missing, skipped", path)
                self._skipped[path] = None
                continue
            if self._skipped.get(path) == stamp:
                continue  # known bad and unchanged: not decoded (and complained about) again
            bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if bgr is not None:
                self._skipped.pop(path, None)
                return bgr
            if path not in self._skipped and len(self._files) > 1:
                logger.warning("%s: not a readable image, skipped", path)
            self._skipped[path] = stamp
        return None

    @property
    def size(self) -> tuple[int, int]:
        return self._size

    @property
    def fps(self) -> float:
        return self._fps


class VideoCaptureSource(Source):
    """Anything cv2.VideoCapture opens: a video file, /dev/videoN, rtsp://, http://.

    ``loop``: what the end of a video file means: True, play it again; False, it ended for
    good (``SourceEnded`` once it gave frames); None (cameras, streams), there is no end: a
    failed read is a dropped connection (``SourceClosed``, the camera reconnects).
    ``pace``: sleep between frames to ``fps``, or without one to the rate the stream
    declares (30 when it declares none): files decode faster than real time.
    """

    def __init__(self, uri: str, target: str | int, api: int = cv2.CAP_ANY, fps: float = 0.0,
                 loop: bool | None = None, pace: bool = False,
                 props: dict[int, float] | None = None,
                 open_params: list[int] | None = None, live: bool = True) -> None:
        self.uri = uri
        self._open_params = open_params or []
        self._target = target
        self._api = api
        self._fps = fps
        self._loop = loop
        self._pace = pace
        self.live = live
        self._props = props or {}
        self._cap: cv2.VideoCapture | None = None
        self._size = (0, 0)
        self._pacer = _Pacer(0)
        self._played = False  # a frame came since open(): a failed read then is the end

    def open(self) -> None:
        self.close()
        if isinstance(self._target, str) and self._target.startswith("/dev/") \
                and not os.path.exists(self._target):
            raise SourceClosed(f"{self._target}: no such device")
        with quiet_opencv():  # (OpenCV's own lines per open; the failure is logged by us)
            if self._open_params:
                cap = cv2.VideoCapture(self._target, self._api, self._open_params)
            else:
                cap = cv2.VideoCapture(self._target, self._api)
        for prop, value in self._props.items():
            cap.set(prop, value)
        if not cap.isOpened():
            cap.release()
            raise SourceClosed(f"{self._target}: cannot open")
        self._cap = cap
        self._played = False
        native = cap.get(cv2.CAP_PROP_FPS)
        if not self._fps and native and 0 < native < 1000:
            self._fps = float(native)
        self._size = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
                      int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
        self._pacer = _Pacer(self.fps if self._pace else 0)  # (unknown rate: self.fps's 30)

    def read(self) -> np.ndarray:
        return _to_rgb(self._next())

    def read_native(self) -> tuple[np.ndarray, bool]:
        return _native(self._next())

    def _next(self) -> np.ndarray:
        if self._cap is None:
            raise SourceClosed("not open")
        ok, bgr = self._cap.read()
        if not ok and self._loop:
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, bgr = self._cap.read()
        if not ok or bgr is None:
            # a file that opens but gives nothing (truncated) may be fixed: retried, not ended
            if self._loop is False and self._played:
                raise SourceEnded(f"{self._target}: end of the video")
            raise SourceClosed(f"{self._target}: no frame")
        self._played = True
        self._pacer.wait()
        return bgr

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    @property
    def size(self) -> tuple[int, int]:
        return self._size

    @property
    def fps(self) -> float:
        return self._fps or 30.0
