"""Run the service on a bus: export the objects, own the name, forward health events."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import signal
import socket
import sys

from dbus_fast import BusType, Message, MessageType, RequestNameReply
from dbus_fast.constants import NameFlag

from camheal import constants as C
from camheald.bus.auth import Authorizer
from camheald.bus.edge import CamhealBus
from camheald.bus.interfaces import MAX_BURSTS, CameraInterface, ManagerInterface
from camheald.config import CameraConfig, Config
from camheald.errors import CamhealError
from camheald.service.camera import Camera
from camheald.service.health import HealthEvent
from camheald.service.manager import CameraManager, release_memory
from camheald.service.streams import StreamHub, Subscription

logger = logging.getLogger(__name__)

SHUTDOWN_REASON = "camheald is shutting down"
#: how long the exit waits for work still running in executor threads: a restoring burst
#: takes tens of seconds and cannot be interrupted, so what is left then is abandoned
EXECUTOR_GRACE_S = 2.0
#: threads of the executors for slow work, apart from the default one that quick work (a
#: snapshot, packaging a frame, a defect mask, planning a reload) needs at once: CorrectImage
#: runs one image at a time anyway (one model instance); bursts take seconds each
IMAGE_WORKERS = 1
BURST_WORKERS = 2


def sd_notify(state: str) -> None:
    """Tell systemd about our state when started with Type=notify (no-op otherwise)."""
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return
    if path.startswith("@"):
        path = "\0" + path[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        try:
            sock.connect(path)
            sock.sendall(state.encode())
        except OSError as exc:
            logger.warning("sd_notify failed: %s", exc)


class NameTaken(CamhealError):
    """Another process already owns the bus name."""


class Server:
    """The daemon process: one bus connection, one manager object, one object per camera."""

    def __init__(self, manager: CameraManager, bus_type: str,
                 config_path: str | None = None, cameras_from_file: bool = True) -> None:
        self.manager = manager
        self.config_path = config_path
        self.cameras_from_file = cameras_from_file
        self._auth: Authorizer | None = None
        self._reload_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task] = set()
        self.bus_type = bus_type
        self.bus: CamhealBus | None = None
        self._camera_ifaces: dict[str, CameraInterface] = {}
        self.streams: dict[str, StreamHub] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = asyncio.Event()
        # slow work waits in its own queues: it never holds the default executor's threads
        self.image_pool = _Pool(IMAGE_WORKERS, "camheald-image")
        self.burst_pool = _Pool(BURST_WORKERS, "camheald-burst")
        self.burst_slots = asyncio.Semaphore(MAX_BURSTS)  # (every camera's bursts together)

    def _on_events(self, camera: Camera, events: list[HealthEvent]) -> None:
        """Called from capture/analysis threads: re-post to the loop."""
        if self._loop is not None and not self._loop.is_closed():
            try:
                self._loop.call_soon_threadsafe(self._publish_events, camera.id, events)
            except RuntimeError:  # the loop closed in between: shutting down
                pass

    def _publish_events(self, cam_id: str, events: list[HealthEvent]) -> None:
        iface = self._camera_ifaces.get(cam_id)
        if iface is None:
            return
        camera = self.manager.cameras[cam_id]
        for ev in events:
            if ev.kind == "analysis":  # only the Health dict changed (the camera logged why)
                continue
            logger.info("camera %s: %s %s", cam_id, ev.kind, ev.name)
            if ev.kind == "detected":
                iface.AnomalyDetected(ev.name, float(ev.score))
            elif ev.kind == "cleared":
                iface.AnomalyCleared(ev.name)
            elif ev.kind == "defect_detected":
                iface.DefectDetected(ev.payload or {})
            elif ev.kind == "defect_cleared":
                iface.DefectCleared(ev.payload or {})
            else:
                iface.StateChanged(ev.name)
        health = camera.health_report()
        iface.HealthChanged(health)
        iface.emit_properties_changed({"Health": iface.Health})

    async def run(self) -> int:
        self._loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._loop.add_signal_handler(sig, self._stopping.set)
        self._loop.add_signal_handler(signal.SIGHUP, self._reload)
        bus_type = BusType.SYSTEM if self.bus_type == "system" else BusType.SESSION
        self.bus = await CamhealBus(bus_type=bus_type).connect()
        self._auth = Authorizer(self.bus)
        self.bus.export(C.MANAGER_PATH, ManagerInterface(self.manager, self.bus,
                                                         self.manager.images, self._auth,
                                                         self.image_pool))
        await self._watch_clients()
        # (no Camera left in a variable of this coroutine, which lives as long as the daemon:
        # a camera removed by a reload would stay in memory; see _tick)
        for cam_id in list(self.manager.cameras):
            self._export_camera(cam_id, self.manager.cameras[cam_id])
        await self._loop.run_in_executor(None, self.manager.load_state)
        load = self._loop.run_in_executor(None, self.manager.load_models)
        reply = await self.bus.request_name(C.BUS_NAME, NameFlag.DO_NOT_QUEUE)
        if reply not in (RequestNameReply.PRIMARY_OWNER, RequestNameReply.ALREADY_OWNER):
            self.bus.disconnect()
            raise NameTaken(f"bus name {C.BUS_NAME} is already owned by another process")
        await load
        self.manager.start()
        print("camheald ready", flush=True)
        sd_notify("READY=1\nSTATUS=serving")
        ticker = asyncio.ensure_future(self._tick())
        await self._stopping.wait()
        logger.info("stopping")
        sd_notify("STOPPING=1")
        ticker.cancel()
        await self._end_streams(SHUTDOWN_REASON)
        async with self._reload_lock:  # a reload in progress finishes first; none start
            await self._loop.run_in_executor(None, self.manager.stop)
        for hub in self.streams.values():
            hub.close()
        self.bus.disconnect()
        return 0

    def _export_camera(self, cam_id: str, camera: Camera) -> None:
        assert self.bus is not None and self._auth is not None
        camera.on_events = self._on_events
        hub = StreamHub(camera, max_subscriptions=self.manager.config.daemon.max_clients_per_camera,
                        on_ended=lambda sub, why, c=cam_id: self._stream_ended(c, sub, why))
        self.streams[cam_id] = hub
        iface = CameraInterface(camera, self.bus, hub, self.manager, self._auth,
                                self.burst_pool, self.burst_slots)
        self._camera_ifaces[cam_id] = iface
        self.bus.export(C.camera_path(cam_id), iface)

    async def _apply(self, new: Config, path: str) -> None:
        """Apply a reloaded config, all or nothing: the log level, and the cameras (when they
        come from the file). Every source URI is checked before anything changes."""
        assert self._loop is not None
        async with self._reload_lock:
            if self._stopping.is_set():
                logger.info("SIGHUP: not applied, camheald is stopping")
                return
            plan = None
            if self.cameras_from_file:
                try:  # parsing opens local files to check them: not on the loop
                    plan = await self._loop.run_in_executor(
                        None, self.manager.plan_cameras, new.camera)
                except CamhealError as exc:
                    logger.error("SIGHUP: keeping the running cameras and log level: %s", exc)
                    return
                if self._stopping.is_set():  # (a SIGTERM while the sources were checked)
                    logger.info("SIGHUP: not applied, camheald is stopping")
                    return
            logging.getLogger().setLevel(new.daemon.log_level.upper())
            if plan is not None:
                await self._apply_cameras(new.camera, *plan)
            logger.info("SIGHUP: reloaded %s", path)

    async def _apply_cameras(self, new_cameras: list[CameraConfig], gone: list[str],
                             fresh: dict[str, Camera]) -> None:
        """Stop removed or changed cameras and start new ones (``manager.plan_cameras``);
        other clients keep streaming.

        Runs under the reload lock; a camera that fails to stop or start is logged and the
        rest of the change still applies.
        """
        assert self.bus is not None and self._loop is not None
        for cam_id in gone:
            try:
                await self._remove_camera(cam_id)
            except Exception:  # noqa: BLE001 - a reload must not kill the daemon
                logger.exception("SIGHUP: stopping camera %s failed", cam_id)
        if gone:
            await self._loop.run_in_executor(None, release_memory)
        for cam_id, camera in fresh.items():
            try:
                await self._loop.run_in_executor(None, camera.vision.load)
                camera.model_changed()
                camera.correct_enabled = self.manager.settings.correct_for(
                    cam_id, camera.correct_enabled)
                self.manager.cameras[cam_id] = camera
                self._export_camera(cam_id, camera)
                camera.start()
                logger.info("SIGHUP: camera %s started: %s", cam_id, camera.source.uri)
            except Exception:  # noqa: BLE001
                logger.exception("SIGHUP: starting camera %s failed", cam_id)
        running = set(self.manager.cameras)
        self.manager.config.camera = [c for c in new_cameras if c.id in running]

    async def _remove_camera(self, cam_id: str) -> None:
        assert self.bus is not None and self._loop is not None
        hub = self.streams.pop(cam_id, None)
        iface = self._camera_ifaces.pop(cam_id, None)
        if hub is not None:
            for sub_id in hub.subscription_ids():
                if iface is not None:
                    iface.StreamEnded(sub_id, "camera reconfigured")
            hub.close()  # (no await since the ids were taken: no stream can start between)
        if iface is not None:
            iface.retire()  # calls still waiting on this camera end with UnknownCamera
            self.bus.unexport(C.camera_path(cam_id))
        camera = self.manager.cameras.pop(cam_id, None)
        if camera is not None:
            await self._loop.run_in_executor(None, camera.stop)
        logger.info("SIGHUP: camera %s stopped", cam_id)

    async def _tick(self) -> None:
        """Once a second: camera liveness checks, and the systemd watchdog ping.

        The ping comes from the event loop itself, so a blocked loop stops pinging and
        systemd restarts the service (WatchdogSec= in the unit).
        """
        watchdog = bool(os.environ.get("WATCHDOG_USEC"))
        while True:
            await asyncio.sleep(1.0)
            self.manager.tick()  # (no loop variable here: it would pin a removed camera)
            if watchdog:
                sd_notify("WATCHDOG=1")

    def _reload(self) -> None:
        """SIGHUP: re-read the config file: log level, and cameras added, removed or changed.

        Cameras whose settings did not change keep running and keep their clients.
        Other settings (bus, model, limits) take effect after a restart.
        """
        path = self.config_path
        if path is None:
            logger.info("SIGHUP: no config file to reload")
            return
        from camheald import config as cfg

        try:
            new = cfg.load(path)
        except CamhealError as exc:
            logger.error("SIGHUP: keeping the running configuration: %s", exc)
            return
        if self._loop is not None:
            task = self._loop.create_task(self._apply(new, path))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _end_streams(self, reason: str) -> None:
        """Answer the calls in progress with an error and tell every subscriber its stream
        ends (both saying ``reason``), and wait until the bus has the replies and signals."""
        assert self.bus is not None
        answered = await self.bus.end_calls(reason)
        ended = 0
        for cam_id, hub in self.streams.items():
            iface = self._camera_ifaces.get(cam_id)
            for sub_id in hub.subscription_ids():
                if iface is not None:
                    iface.StreamEnded(sub_id, reason)
                    ended += 1
        if not (ended or answered):
            return
        # messages leave in order: once the bus answers this, it has routed the signals
        try:
            await asyncio.wait_for(self.bus.call(Message(
                destination="org.freedesktop.DBus", path="/org/freedesktop/DBus",
                interface="org.freedesktop.DBus.Peer", member="Ping")), 2.0)
        except (asyncio.TimeoutError, OSError, EOFError) as exc:
            logger.warning("could not confirm that %d StreamEnded signal(s) and %d "
                           "reply(ies) left: %s", ended, answered, exc)

    def _stream_ended(self, cam_id: str, sub: Subscription, reason: str) -> None:
        """From the capture thread: tell the subscriber its stream is gone."""
        def emit() -> None:
            iface = self._camera_ifaces.get(cam_id)
            if iface is not None:
                iface.StreamEnded(sub.id, reason)

        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(emit)

    async def _watch_clients(self) -> None:
        """Release the streams of clients that leave the bus (killed ones included)."""
        assert self.bus is not None
        rule = ("type='signal',sender='org.freedesktop.DBus',interface='org.freedesktop.DBus',"
                "member='NameOwnerChanged'")
        await self.bus.call(Message(
            destination="org.freedesktop.DBus", path="/org/freedesktop/DBus",
            interface="org.freedesktop.DBus", member="AddMatch", signature="s", body=[rule]))

        def on_message(msg: Message) -> None:
            if msg.message_type != MessageType.SIGNAL or msg.member != "NameOwnerChanged" \
                    or msg.sender != "org.freedesktop.DBus":
                return
            name, _old, new = msg.body
            if new or not name.startswith(":"):
                return
            for cam_id, hub in self.streams.items():
                dropped = hub.drop_owner(name)
                if dropped:
                    logger.info("camera %s: client %s left, %d stream(s) released",
                                cam_id, name, dropped)

        self.bus.add_message_handler(on_message)


class _Pool(concurrent.futures.ThreadPoolExecutor):
    """An executor of the daemon; it keeps its unfinished work so that the exit can bound its
    wait for it (asyncio.run would wait for every job, however long)."""

    def __init__(self, max_workers: int | None = None, name: str = "camheald") -> None:
        super().__init__(max_workers, thread_name_prefix=name)
        self.unfinished: set[concurrent.futures.Future] = set()

    def submit(self, fn, /, *args, **kwargs):  # type: ignore[override]
        future = super().submit(fn, *args, **kwargs)
        self.unfinished.add(future)
        future.add_done_callback(self.unfinished.discard)
        return future


def serve(server: Server) -> int:
    """Run ``server`` until SIGTERM or SIGINT; returns the exit status.

    Executor work still running EXECUTOR_GRACE_S after the server stopped (its callers were
    already answered) is abandoned: the process ends at once with os._exit, as Python would
    otherwise wait for those threads at exit.
    """
    pool = _Pool()
    pools = (pool, server.image_pool, server.burst_pool)
    loop = asyncio.new_event_loop()  # (what asyncio.run does, less its unbounded executor wait;
    # asyncio.Runner would do it too, but needs Python 3.11 and JetPack 6 has 3.10)
    asyncio.set_event_loop(loop)
    loop.set_default_executor(pool)
    try:
        rc = loop.run_until_complete(server.run())
        for p in pools:
            p.shutdown(wait=False, cancel_futures=True)
        _, left = concurrent.futures.wait(set().union(*(p.unfinished for p in pools)),
                                          timeout=EXECUTOR_GRACE_S)
        if left:
            logger.info("not waiting for %d unfinished job(s)", len(left))
            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(rc)
        return rc
    finally:
        try:
            tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for t in tasks:
                t.cancel()
            if tasks:
                loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            asyncio.set_event_loop(None)
            loop.close()
