"""No client starves the others: calls that wait (for frames that never come) or work for
seconds (CorrectImage, bursts) never take the threads a healthy camera's CaptureFrame needs."""

from __future__ import annotations

import asyncio
import os
import time

import cv2
import numpy as np
from dbus_fast import Message, MessageType, Variant
from dbus_fast.aio import MessageBus

from camheal import constants as C

HEALTHY = '[[camera]]\nid = "cam0"\nsource = "demo:?size=160x120&fps=15"\n'
# nothing listens on the discard port: these cameras never deliver a frame
DEAD = '[[camera]]\nid = "dead{i}"\nsource = "rtsp://127.0.0.1:9/x{i}"\n'


def capture(cam: str, **opts: int) -> Message:
    return Message(destination=C.BUS_NAME, path=C.camera_path(cam), interface=C.CAMERA_IFACE,
                   member="CaptureFrame", signature="a{sv}",
                   body=[{k: Variant("i", v) for k, v in opts.items()}])


def burst(cam: str, count: int) -> Message:
    return Message(destination=C.BUS_NAME, path=C.camera_path(cam), interface=C.CAMERA_IFACE,
                   member="CaptureBurst", signature="ua{sv}", body=[count, {}])


async def connect(address: str) -> MessageBus:
    return await MessageBus(bus_address=address, negotiate_unix_fd=True).connect()


async def timed_capture(bus: MessageBus, cam: str = "cam0") -> tuple[float, str]:
    """(seconds, error name or "") of one plain CaptureFrame; 10 s at most."""
    t0 = time.monotonic()
    try:
        reply = await asyncio.wait_for(bus.call(capture(cam)), 10.0)
    except asyncio.TimeoutError:
        return time.monotonic() - t0, "timeout"
    for fd in reply.unix_fds or ():
        os.close(fd)
    return time.monotonic() - t0, reply.error_name or ""


def close_fds(replies: list) -> None:
    for r in replies:
        for fd in getattr(r, "unix_fds", None) or ():
            os.close(fd)


async def test_waits_on_dead_cameras_do_not_starve_a_healthy_one(start_daemon, bus_address,
                                                                 tmp_path):
    conf = tmp_path / "c.toml"
    conf.write_text('[daemon]\nbus = "session"\n' + HEALTHY
                    + "".join(DEAD.format(i=i) for i in range(2)))
    d = start_daemon("--config", str(conf))
    blocking, other = await connect(bus_address), await connect(bus_address)
    blockers: list[asyncio.Future] = []
    try:
        assert (await timed_capture(other))[1] == ""
        # as many waits as each dead camera allows: frames on one, bursts on the other
        blockers += [asyncio.ensure_future(blocking.call(capture("dead0", timeout_ms=20000)))
                     for _ in range(4)]
        blockers += [asyncio.ensure_future(blocking.call(burst("dead1", 4))) for _ in range(4)]
        await asyncio.sleep(0.5)
        assert not any(b.done() for b in blockers)
        for _ in range(3):
            took, error = await timed_capture(other)
            assert error == "" and took < 2.0, (took, error)
        # the per-camera cap still holds
        more = await other.call(capture("dead0", timeout_ms=20000))
        assert more.error_name == C.ERROR_BUSY
        more = await other.call(burst("dead1", 2))
        assert more.error_name == C.ERROR_BUSY
        # ... and so does the daemon's: 4 bursts hold their places (and their frames)
        more = await other.call(burst("cam0", 2))
        assert more.error_name == C.ERROR_BUSY and "bursts" in more.body[0], more.body
        # a burst that gets no frame says so when its wait ends
        t0 = time.monotonic()
        ends = await asyncio.wait_for(asyncio.gather(*blockers[4:]), 15.0)
        assert {r.error_name for r in ends} == {C.ERROR_NOT_READY}
        assert time.monotonic() - t0 < 11.0
    finally:
        for b in blockers:
            b.cancel()
        blocking.disconnect()
        other.disconnect()
    assert "Traceback" not in d.log()


async def test_correct_image_calls_do_not_starve_captures(start_daemon, bus_address):
    start_daemon("--source", "demo:?size=160x120&fps=15")
    rng = np.random.default_rng(0)
    img = cv2.resize((rng.random((150, 200, 3)) * 255).astype(np.uint8), (1600, 1200),
                     interpolation=cv2.INTER_CUBIC)
    img = np.clip(img + rng.normal(0, 20, img.shape), 0, 255).astype(np.uint8)
    png = cv2.imencode(".png", img)[1].tobytes()
    blocking, other = await connect(bus_address), await connect(bus_address)

    async def correct() -> Message:
        fd = os.memfd_create("img", os.MFD_CLOEXEC)
        os.write(fd, png)
        try:
            return await blocking.call(Message(
                destination=C.BUS_NAME, path=C.MANAGER_PATH, interface=C.MANAGER_IFACE,
                member="CorrectImage", signature="ha{sv}", body=[0, {}], unix_fds=[fd]))
        finally:
            os.close(fd)

    jobs = []
    try:
        assert (await timed_capture(other))[1] == ""
        # the daemon's limit (each takes ~1.2 s here, one at a time), then one more at once
        jobs = [asyncio.ensure_future(correct()) for _ in range(9)]
        # the ninth is refused, queued ones included: its reply comes after the eight were
        # admitted (one connection's calls are served in order)
        busy = await jobs.pop()
        assert busy.error_name == C.ERROR_BUSY
        running = not all(j.done() for j in jobs)
        took, error = await timed_capture(other)
        assert error == "" and took < 2.0, (took, error)
        assert running  # (the capture was timed while corrections were still queued)
    finally:
        for j in jobs:
            j.cancel()
        done = [j.result() for j in jobs if j.done() and not j.cancelled()]
        close_fds(done)
        assert all(r.message_type == MessageType.METHOD_RETURN for r in done)
        blocking.disconnect()
        other.disconnect()
