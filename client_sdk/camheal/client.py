"""Client: the blocking SDK (an asyncio loop on a private thread runs AsyncClient)."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

import numpy as np

from camheal.aio import (
    BURST_TIMEOUT_S,
    RESTORE_TIMEOUT_S,
    AsyncCamera,
    AsyncClient,
    HealthCallback,
    ServiceLostCallback,
)
from camheal.errors import CamhealError
from camheal.frame import Frame
from camheal.stream import Stream

T = TypeVar("T")


class Client:
    """Blocking connection to camheald.

    Example::

        with Client(bus="session") as client:
            cam = client.cameras()[0]
            frame = cam.capture()          # Frame, .image is HxWx3 uint8 RGB
            print(cam.health()["detected"])

    Args:
        bus: "system" (the installed service), "session", or a D-Bus address.
        timeout: seconds to wait for any one call; the calls that restore images
            (``correct_image``, ``capture_burst`` with ``restore``) wait as long as their
            own, longer limit when it is above this.
    """

    def __init__(self, bus: str = "system", timeout: float = 30.0) -> None:
        self.timeout = timeout
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="camheal-client",
                                        daemon=True)
        self._thread.start()
        self._aio = AsyncClient(bus)
        try:
            self._run(self._aio.connect())
        except BaseException:
            self._stop_loop()
            raise

    def _run(self, coro: Coroutine[Any, Any, T], longest: float = 0.0) -> T:
        """Run ``coro`` on the client's loop; wait for it as long as the client's timeout or
        the call's own longer limit (``longest``: restoration and bursts take minutes)."""
        wait = max(self.timeout, longest) + 5
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(wait)

    def _stop_loop(self) -> None:
        if self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
        self._loop.close()

    def close(self) -> None:
        if self._loop.is_closed():
            return
        self._run(self._aio.close())
        self._stop_loop()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def version(self) -> str:
        return self._run(self._aio.version())

    def correct_image(self, image: np.ndarray | str | os.PathLike, restore: bool = True
                      ) -> tuple[np.ndarray, dict[str, Any]]:
        """Detect and correct an app's own image: (corrected RGB array, report); see
        ``AsyncClient.correct_image`` for ``restore``."""
        return self._run(self._aio.correct_image(image, restore),
                         RESTORE_TIMEOUT_S if restore else 0.0)

    def cameras(self) -> list[Camera]:
        return [Camera(self, c) for c in self._run(self._aio.cameras())]

    def camera(self, cam_id: str | None = None) -> Camera:
        return Camera(self, self._run(self._aio.camera(cam_id)))

    def on_health(self, callback: HealthCallback) -> None:
        """Call ``callback(camera_id, event, payload)`` on each health signal.

        The callback runs on the client's private thread: keep it short.
        """
        self._run(self._aio.on_health(callback))

    def on_service_lost(self, callback: ServiceLostCallback) -> None:
        """Call ``callback(reason)`` once when the camheald running now goes away.

        It left the bus (stopped, crashed, killed), was replaced, or the bus connection was
        lost; ``reason`` says which in one line (see ``AsyncClient.on_service_lost``). Closing
        the client calls nothing. The callback runs on the client's private thread: keep it
        short. Like any call, it starts an activatable camheald that is not running.

        Raises:
            ServiceUnavailable: camheald is not on the bus and could not be started.
        """
        self._run(self._aio.on_service_lost(callback))


class Camera:
    """Blocking handle on one camera."""

    def __init__(self, client: Client, cam: AsyncCamera) -> None:
        self._client = client
        self._cam = cam
        self.id = cam.id
        self.path = cam.path

    def __repr__(self) -> str:
        return f"<Camera {self.id}>"

    def properties(self) -> dict[str, Any]:
        return self._client._run(self._cam.properties())

    def health(self) -> dict[str, Any]:
        return self._client._run(self._cam.health())

    def stats(self) -> dict[str, Any]:
        return self._client._run(self._cam.stats())

    def capture(self, corrected: bool = True, timeout_ms: int = 3000) -> Frame:
        return self._client._run(self._cam.capture(corrected, timeout_ms))

    def capture_encoded(self, fmt: str = "png", corrected: bool = True, quality: int = 90,
                        timeout_ms: int = 3000) -> tuple[bytes, dict[str, Any]]:
        return self._client._run(self._cam.capture_encoded(fmt, corrected, quality, timeout_ms))

    def stream(self, corrected: bool = True, timeout: float = 5.0) -> Stream:
        """Iterator of Frames (zero-copy views valid until the next frame; ``.copy()`` keeps one).

        Use as ``with cam.stream() as frames: for frame in frames: ...``; iteration stops
        after ``timeout`` seconds without a frame, and raises
        :class:`camheal.errors.StreamEnded` (with ``.reason``) when the daemon ends the stream:
        camera removed or reconfigured, frame size changed, daemon shutting down, or
        :class:`camheal.errors.ServiceLost` when camheald leaves the bus (crash, kill).
        """
        reader = self._client._run(self._cam.subscribe(corrected))

        def unsubscribe() -> None:
            if self._client._loop.is_closed():
                return  # the client is closed: the daemon released the stream already
            try:
                self._client._run(self._cam._unsubscribe_quietly(reader))
            except CamhealError:
                pass

        return Stream(reader, unsubscribe, timeout)

    def capture_burst(self, count: int, corrected: bool = True, restore: bool = True
                      ) -> tuple[list[Frame], dict[str, Any]]:
        """``count`` consecutive frames corrected together; see AsyncCamera.capture_burst."""
        return self._client._run(self._cam.capture_burst(count, corrected, restore),
                                 BURST_TIMEOUT_S if restore else 60.0)

    def defect_mask(self) -> np.ndarray:
        """The persistent lens-defect mask (HxW uint8, 255 = defect)."""
        return self._client._run(self._cam.defect_mask())
