"""Correct an application's own image (the Manager's CorrectImage): bounded, validated, off-loop."""

from __future__ import annotations

import os
import stat
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import cv2
import numpy as np

from camheald.errors import Busy, InvalidArgument, InvalidImage, NotReady, TooLarge
from camheald.service import frames
from camheald.service.vision import VisionEngine
from camheald.vision.spec import too_small

MAX_INPUT_BYTES = 64 * 1024 * 1024
MAX_PIXELS = 40_000_000
# Larger images get the global correction only, even when restoration is asked for: the
# deconvolution holds a few float copies of the frame (~0.6 GB at 16 MP by that count, not
# measured; a 12 MP photo through ``camheal correct`` peaked at ~0.5 GB with the models),
# too much for a daemon on a small board.
MAX_RESTORE_PIXELS = 16_000_000


def read_image_fd(fd: int, max_bytes: int = MAX_INPUT_BYTES) -> bytes:
    """The bytes of an image an app passed by fd: a regular file or memfd, bounded in size.

    Sockets, pipes, directories and devices are refused (they could block or never end);
    the size comes from fstat, so a huge sparse file is refused before anything is read.
    """
    try:
        st = os.fstat(fd)
    except OSError as exc:
        raise InvalidArgument(f"unusable image fd: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise InvalidArgument("the image fd must be a memfd or regular file "
                              "(not a pipe, socket, directory or device)")
    if st.st_size == 0:
        raise InvalidImage("the image is empty (0 bytes)")
    if st.st_size > max_bytes:
        raise TooLarge(f"the image is {st.st_size} bytes; the limit is {max_bytes}")
    chunks, got = [], 0
    while got < st.st_size:
        chunk = os.pread(fd, min(st.st_size - got, 1 << 22), got)
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def decode(data: bytes, max_pixels: int = MAX_PIXELS) -> tuple[np.ndarray, str]:
    """Decode encoded image bytes to HxWx3 uint8 RGB after checking the header's pixel count."""
    from camheald.vision.imageio import ImageError, check_complete, sniff

    try:
        family, w, h = sniff(data)
        check_complete(family, data)  # decoders fill a truncated JPEG with grey silently
    except ImageError as exc:
        raise InvalidImage(str(exc)) from None
    except (ValueError, IndexError, struct.error):  # a header too broken to parse
        raise InvalidImage("corrupt image header") from None
    if w <= 0 or h <= 0:
        raise InvalidImage(f"invalid image size {w}x{h}")
    if w * h > max_pixels:
        raise TooLarge(f"the image declares {w}x{h} pixels; the limit is {max_pixels}")
    check_min_size(w, h)
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise InvalidImage(f"cannot decode the {family.upper()} data (corrupt or truncated)")
    check_min_size(bgr.shape[1], bgr.shape[0])  # in case a decoder disagrees with the header
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), family


def check_min_size(width: int, height: int) -> None:
    """Refuse an image smaller than the detector's input (``spec.MIN_SIDE`` a side)."""
    why = too_small(width, height, "image")
    if why:
        raise InvalidImage(why)


class ImageCorrector:
    """Runs CorrectImage requests on a private model instance, one at a time, with a few
    more admitted to wait (``admitted``)."""

    def __init__(self, vision: VisionEngine, max_pending: int = 8) -> None:
        self.vision = vision
        self._lock = threading.Lock()  # one analysis at a time on this model instance
        self._pending = 0
        self._pending_lock = threading.Lock()
        self.max_pending = max_pending

    @contextmanager
    def admitted(self) -> Iterator[None]:
        """Count one request from its arrival to its end, queued ones included (Busy past
        ``max_pending``): hold it around the queueing for a thread and ``correct``."""
        with self._pending_lock:
            if self._pending >= self.max_pending:
                raise Busy(f"{self.max_pending} images are already being corrected")
            self._pending += 1
        try:
            yield
        finally:
            with self._pending_lock:
                self._pending -= 1

    def correct(self, fd: int, fmt: str = "png", quality: int = 90,
                max_pixels: int = MAX_PIXELS, restore: bool = True) -> tuple[int, dict]:
        """Blocking (run in an executor, inside ``admitted``): fd of encoded image -> (result
        fd, report).

        With ``restore`` the image gets what ``camheal correct`` does (``offline.
        correct_image``: denoising, deblurring, then the global correction, as detected) up
        to MAX_RESTORE_PIXELS (the report's ``restored`` says whether it did); without it
        only the global tone/colour correction (fast, as the stream's).
        """
        if not self.vision.ready:
            raise NotReady(self.vision.error or "the model is not loaded")
        data = read_image_fd(fd)
        rgb, family = decode(data, max_pixels)
        t0 = time.perf_counter()
        restore = restore and rgb.shape[0] * rgb.shape[1] <= MAX_RESTORE_PIXELS \
            and self.vision.detector is not None
        with self._lock:
            if restore:
                # imported here: it pulls in the detector's runtime, which the service
                # loads only in VisionEngine.load (frames pass through without it)
                from camheald.offline import correct_image

                out, analysis, actions = correct_image(self.vision.detector, rgb)
            else:
                analysis = self.vision.analyze(rgb)
                out, actions = self.vision.correct(rgb, analysis)
        elapsed = (time.perf_counter() - t0) * 1e3
        encoded, layout = frames.encode(out, fmt, quality)
        result = frames.sealed_memfd(encoded, "camheal-corrected")
        report = dict(layout)
        report.update(size=len(encoded), input_format=family,
                      scores=dict(analysis.scores) if analysis else {},
                      detected=list(analysis.detected) if analysis else [],
                      actions=list(actions), restored=restore, model=self.vision.name,
                      elapsed_ms=round(elapsed, 2))
        return result, report
