"""Raspberry Pi CSI cameras through picamera2 (libcamera): the ``picamera2:N`` source.

What was verified here, and what was not: this machine has no Raspberry Pi and no CSI camera,
and picamera2 is not installed. ``tests/unit/test_sources_more.py`` checks this module against a
stand-in ``picamera2`` module (the calls made, the colour order, the error when the package is
missing); nothing here has run on real hardware. The calls follow picamera2's own source and
manual: ``Picamera2(camera_num)``, ``create_video_configuration(main={"size": (w, h),
"format": "RGB888"}, controls={"FrameDurationLimits": (us, us)})``, ``configure()``,
``start()``, ``capture_array("main")`` (blocks until the next frame), ``stop()``, ``close()``.
picamera2's ``RGB888`` is named after libcamera/DRM fourcc order, so each pixel is stored as
[B, G, R] in memory (the manual's pixel-format table says so): frames are converted to RGB.
Not verified: frame timing, the sizes a given sensor accepts (libcamera may adjust them), and
recovery when a ribbon cable is pulled (``capture_array`` has no timeout; the capture thread's
health tick reports the camera as silent meanwhile).
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

import cv2
import numpy as np

from camheald.capture.base import Source, SourceClosed
from camheald.errors import SourceError

logger = logging.getLogger(__name__)

MISSING = ("picamera2:{n} needs the Python package 'picamera2' (libcamera), which is not "
           "installed: on Raspberry Pi OS run 'sudo apt install python3-picamera2' and create "
           "camheal's venv with --system-site-packages")


def load_module(camera_num: int) -> Any:
    """Import picamera2 now (never at import time); SourceError naming the package if absent."""
    try:
        return importlib.import_module("picamera2")
    except ImportError as exc:
        raise SourceError(MISSING.format(n=camera_num)) from exc


class Picamera2Source(Source):
    """CSI camera ``camera_num`` at ``size`` and ``fps``; frames are HxWx3 uint8 RGB."""

    def __init__(self, uri: str, camera_num: int, size: tuple[int, int] = (1280, 720),
                 fps: float = 30.0, module: Any = None) -> None:
        self.uri = uri
        self.camera_num = camera_num
        self._size = size
        self._fps = fps
        self._module = module
        self._cam: Any = None

    def open(self) -> None:
        self.close()
        module = self._module or load_module(self.camera_num)
        try:
            cam = module.Picamera2(self.camera_num)
        except (RuntimeError, IndexError, OSError) as exc:
            raise SourceClosed(f"picamera2:{self.camera_num}: cannot open camera: {exc}") \
                from exc
        try:
            period_us = int(round(1e6 / self._fps))
            config = cam.create_video_configuration(
                main={"size": self._size, "format": "RGB888"},
                controls={"FrameDurationLimits": (period_us, period_us)})
            cam.configure(config)
            cam.start()
        except Exception as exc:
            cam.close()
            raise SourceClosed(f"picamera2:{self.camera_num}: cannot start: {exc}") from exc
        self._cam = cam
        main = (getattr(cam, "camera_config", None) or {}).get("main") or {}
        if "size" in main:  # libcamera may have adjusted the size
            self._size = tuple(main["size"])

    def read(self) -> np.ndarray:
        if self._cam is None:
            raise SourceClosed("not open")
        try:
            bgr = self._cam.capture_array("main")
        except Exception as exc:  # noqa: BLE001 - libcamera errors have no common base class
            raise SourceClosed(f"picamera2:{self.camera_num}: capture failed: {exc}") from exc
        if bgr is None or bgr.ndim != 3:
            raise SourceClosed(f"picamera2:{self.camera_num}: no frame")
        # RGB888 is [B, G, R] in memory; XRGB8888 would add a fourth channel.
        code = cv2.COLOR_BGRA2RGB if bgr.shape[2] == 4 else cv2.COLOR_BGR2RGB
        return cv2.cvtColor(bgr, code)

    def close(self) -> None:
        cam, self._cam = self._cam, None
        if cam is None:
            return
        for step in (cam.stop, cam.close):
            try:
                step()
            except Exception:  # noqa: BLE001 - closing must not raise
                logger.debug("picamera2:%d: %s failed", self.camera_num, step.__name__,
                             exc_info=True)

    @property
    def size(self) -> tuple[int, int]:
        return self._size

    @property
    def fps(self) -> float:
        return self._fps
