"""The set of cameras the daemon runs, built from the configuration."""

from __future__ import annotations

import logging
from collections.abc import Callable

from camheal.constants import VERSION
from camheald.capture.uri import parse_source
from camheald.config import Config
from camheald.errors import UnknownCamera
from camheald.service.camera import Camera
from camheald.service.health import HealthEvent
from camheald.service.images import ImageCorrector
from camheald.service.vision import VisionEngine

logger = logging.getLogger(__name__)


class CameraManager:
    """Owns every Camera; plain Python, no D-Bus."""

    version = VERSION

    def __init__(self, config: Config,
                 on_events: Callable[[Camera, list[HealthEvent]], None] | None = None) -> None:
        self.config = config
        self.cameras: dict[str, Camera] = {}
        # Apps' own images get a model instance of their own: never queued behind a camera.
        self.images = ImageCorrector(VisionEngine(config.model.path or None,
                                                  config.model.threads))
        for cam in config.camera:
            vision = VisionEngine(config.model.path or None, config.model.threads)
            self.cameras[cam.id] = Camera(
                cam.id, parse_source(cam.source), vision,
                analyze_fps=cam.analyze_fps or config.daemon.analyze_fps,
                correct=cam.correct, on_events=on_events)

    def load_models(self) -> None:
        """Load every camera's model (blocking: run in an executor)."""
        self.images.vision.load()
        for camera in self.cameras.values():
            camera.vision.load()
            camera.health.model = camera.vision.name or camera.vision.error

    def start(self) -> None:
        for camera in self.cameras.values():
            camera.start()
            logger.info("camera %s started: %s", camera.id, camera.source.uri)

    def stop(self) -> None:
        for camera in self.cameras.values():
            camera.stop()

    def get(self, cam_id: str) -> Camera:
        try:
            return self.cameras[cam_id]
        except KeyError:
            raise UnknownCamera(f"no camera {cam_id!r}") from None
