"""The set of cameras the daemon runs, built from the configuration."""

from __future__ import annotations

import ctypes
import gc
import logging
import os
from collections.abc import Callable

import cv2

from camheal.constants import VERSION
from camheald.capture.uri import parse_source
from camheald.config import CameraConfig, Config
from camheald.errors import UnknownCamera
from camheald.service.camera import Camera
from camheald.service.health import HealthEvent
from camheald.service.images import ImageCorrector
from camheald.service.settings import SettingsStore
from camheald.service.store import SampleStore
from camheald.service.vision import VisionEngine

logger = logging.getLogger(__name__)


def set_opencv_threads(cameras: int, cpus: int | None = None) -> int:
    """Size OpenCV's worker pool for the capture path; returns the thread count set.

    Each camera keeps a core busy decoding. OpenCV's parallel loops (the correction's LUT)
    split work across its pool and wait for the slowest part, so on a small board a part that
    lands on a decoding core makes the correction as slow as running it alone, only later and
    less predictably, and slows the decoder (measured on 2 cores: see docs/BENCHMARKS.md).
    Workers are given only to cores left after decoding and the processing threads.
    """
    cpus = cpus or os.cpu_count() or 1
    threads = max(1, cpus - 2 * max(1, cameras))
    cv2.setNumThreads(threads)
    logger.info("OpenCV uses %d thread(s) (%d cores, %d camera(s))", threads, cpus, cameras)
    return threads


def release_memory() -> None:
    """Give back the memory of removed cameras at once (blocking: up to a second).

    Their objects sit in reference cycles (dbus-fast's method handlers refer back to the
    exported object) that the cycle collector would reach only at its next full pass, and
    glibc keeps the pages they freed: without this, RSS grew by ~150 MB at every reload
    cycle that added and removed 20 demo cameras (measured on the 2-core host; flat with
    it). Without glibc's malloc_trim (musl) only the collection runs.
    """
    gc.collect()
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return
    trim.argtypes = [ctypes.c_size_t]
    trim(0)


class CameraManager:
    """Owns every Camera; plain Python, no D-Bus."""

    version = VERSION

    def __init__(self, config: Config,
                 on_events: Callable[[Camera, list[HealthEvent]], None] | None = None) -> None:
        self.config = config
        self.cameras: dict[str, Camera] = {}
        state = config.state_path()
        self.settings = SettingsStore(state / "settings.json")
        sm = config.samples
        self.store = SampleStore(state / "samples", max_bytes=sm.max_bytes,
                                 max_age_s=sm.max_age_days * 86400, max_count=sm.max_count,
                                 min_interval_s=sm.min_interval_s)
        # Apps' own images get a model instance of their own: never queued behind a camera.
        self.images = ImageCorrector(self._vision())
        self.on_events = on_events
        for cam in config.camera:
            self.cameras[cam.id] = self._camera(cam)

    def _camera(self, cam: CameraConfig) -> Camera:
        return Camera(cam.id, parse_source(cam.source), self._vision(),
                      analyze_fps=cam.analyze_fps or self.config.daemon.analyze_fps,
                      correct=cam.correct, on_events=self.on_events, store=self.store,
                      restore=cam.restore)

    def plan_cameras(self, new: list[CameraConfig]) -> tuple[list[str], dict[str, Camera]]:
        """What a new camera list changes: (ids to stop, new Camera objects, not started).

        Source URIs are parsed here, so a bad one raises before anything is touched.
        """
        old = {c.id: c for c in self.config.camera}
        gone = [cid for cid in old if cid not in {c.id for c in new} or old[cid] != next(
            c for c in new if c.id == cid)]
        fresh = {c.id: self._camera(c) for c in new if c.id not in old or c.id in gone}
        return gone, fresh

    def _vision(self) -> VisionEngine:
        m = self.config.model
        return VisionEngine(m.path or None, m.threads, m.backend, m.engine_cache,
                            estimators=m.estimators, lens=m.lens)

    def load_state(self) -> None:
        """Restore runtime settings changed over D-Bus; tidy the sample store (blocking)."""
        settings = self.settings.load()
        self.store.enabled = settings.collect_samples
        for cam_id, camera in self.cameras.items():
            camera.correct_enabled = self.settings.correct_for(cam_id, camera.correct_enabled)
        if self.store.root.exists():
            self.store.prune()

    def set_correction(self, cam_id: str, enabled: bool) -> None:
        """Persist, then apply (blocking file I/O: run in an executor)."""
        camera = self.get(cam_id)
        self.settings.set_correct(cam_id, enabled)
        camera.correct_enabled = enabled

    def set_data_collection(self, enabled: bool) -> None:
        self.settings.set_collect_samples(enabled)
        self.store.enabled = enabled

    def load_models(self) -> None:
        """Load every camera's model (blocking: run in an executor)."""
        self.images.vision.load()
        for camera in self.cameras.values():
            camera.vision.load()
            camera.model_changed()

    def start(self) -> None:
        set_opencv_threads(len(self.cameras))
        for camera in self.cameras.values():
            camera.start()
            logger.info("camera %s started: %s", camera.id, camera.source.uri)

    def tick(self) -> None:
        """About once a second (the owner's timer): every camera's liveness check."""
        for camera in list(self.cameras.values()):
            camera.tick()

    def stop(self) -> None:
        for camera in list(self.cameras.values()):
            camera.stop()

    def get(self, cam_id: str) -> Camera:
        try:
            return self.cameras[cam_id]
        except KeyError:
            raise UnknownCamera(f"no camera {cam_id!r}") from None
