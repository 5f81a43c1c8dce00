"""OpenCV's own stderr lines, silenced for a moment (``quiet_opencv``).

Apart from the capture sources on purpose: importing ``camheald.capture.opencv`` tells OpenCV
that FFmpeg is thread-safe (a daemon concern), and OpenCV then prints a notice at every FFmpeg
open; the offline tools use this without that.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

_quiet_lock = threading.Lock()
_quiet: list[int] = []  # [the level to restore] while any block is open
_quiet_n = 0  # open blocks (threads may overlap them)


@contextlib.contextmanager
def quiet_opencv() -> Iterator[None]:
    """Silence OpenCV's own stderr lines for a moment (a probe whose failure we report in
    one line of our own). Process-wide: keep the block short. Blocks may overlap (threads):
    the level is restored when the last one ends."""
    global _quiet_n
    try:
        from cv2.utils import logging as cvlog
    except ImportError:  # an OpenCV build without it: just noisier
        yield
        return
    with _quiet_lock:
        if _quiet_n == 0:
            _quiet[:] = [cvlog.getLogLevel()]
            cvlog.setLogLevel(cvlog.LOG_LEVEL_SILENT)
        _quiet_n += 1
    try:
        yield
    finally:
        with _quiet_lock:
            _quiet_n -= 1
            if _quiet_n == 0:
                cvlog.setLogLevel(_quiet[0])
