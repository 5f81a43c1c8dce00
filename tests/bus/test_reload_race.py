"""Calls racing a SIGHUP that removes their camera: an answer that says so, and no fd left."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable

from dbus_fast import Message, MessageType, Variant
from dbus_fast.aio import MessageBus

from camheal import constants as C

HEAD = '[daemon]\nbus = "session"\n'
CAM0 = '[[camera]]\nid = "cam0"\nsource = "demo:?size=160x120&fps=15"\n'
CAM2 = '[[camera]]\nid = "cam2"\nsource = "demo:?size=160x120&fps=20"\n'
ROUNDS = 6
SUBSCRIBES = 80  # per round, 1 ms apart


def ring_fds(pid: int) -> list[str]:
    """The daemon's memfd and eventfd entries (stream rings and their wake-ups)."""
    links = []
    for name in os.listdir(f"/proc/{pid}/fd"):
        try:
            links.append(os.readlink(f"/proc/{pid}/fd/{name}"))
        except FileNotFoundError:
            pass
    return sorted(link for link in links if "memfd:" in link or "eventfd" in link)


def call(cam: str, member: str, signature: str = "", body: list | None = None) -> Message:
    return Message(destination=C.BUS_NAME, path=C.camera_path(cam), interface=C.CAMERA_IFACE,
                   member=member, signature=signature, body=body or [])


async def until(bus: MessageBus, make: Callable[[], Message], done: Callable[[Message], bool],
                timeout: float) -> None:
    """Repeat the call ``make()`` (a new message each time; the reply's fds closed) until
    ``done(reply)``."""
    deadline = time.monotonic() + timeout
    while True:
        reply = await bus.call(make())
        for fd in reply.unix_fds or ():
            os.close(fd)
        if done(reply):
            return
        assert time.monotonic() < deadline, reply.error_name
        await asyncio.sleep(0.05)


async def _one_round(d, conf, bus_address: str) -> tuple[list[tuple[int, int]], list[str]]:
    """Add cam2, then remove it with Subscribes in flight; (streams granted but never ended
    as (id, wake-ups), error names)."""
    bus = await MessageBus(bus_address=bus_address, negotiate_unix_fd=True).connect()
    ended: list[int] = []

    def on_signal(msg: Message) -> None:
        if msg.message_type == MessageType.SIGNAL and msg.member == "StreamEnded":
            ended.append(msg.body[0])

    bus.add_message_handler(on_signal)
    await bus.call(Message(
        destination="org.freedesktop.DBus", path="/org/freedesktop/DBus",
        interface="org.freedesktop.DBus", member="AddMatch", signature="s",
        body=[f"type='signal',interface='{C.CAMERA_IFACE}',member='StreamEnded'"]))
    conf.write_text(HEAD + CAM0 + CAM2)
    d.proc.send_signal(signal.SIGHUP)
    await until(bus, lambda: call("cam2", "CaptureFrame", "a{sv}",
                                  [{"timeout_ms": Variant("i", 0)}]),
                lambda r: r.message_type == MessageType.METHOD_RETURN, 15)  # cam2 serves
    conf.write_text(HEAD + CAM0)
    d.proc.send_signal(signal.SIGHUP)
    calls = []
    for i in range(SUBSCRIBES):  # spread over the removal
        calls.append(asyncio.ensure_future(bus.call(call(
            "cam2", "Subscribe", "a{sv}", [{"corrected": Variant("b", bool(i % 2))}]))))
        await asyncio.sleep(0.001)
    granted, errors = [], []
    for reply in await asyncio.gather(*calls):
        if reply.message_type == MessageType.METHOD_RETURN:
            granted.append((reply.body[2]["id"].value, *reply.unix_fds))
        else:
            errors.append(reply.error_name)
    # a stream granted on the removed camera ended: its StreamEnded left before the camera's
    # path was unexported, and one connection's messages stay in order, so once cam2 answers
    # UnknownCamera every such signal has arrived
    await until(bus, lambda: call("cam2", "GetDefectMask", "a{sv}", [{}]),
                lambda r: r.error_name == C.ERROR_UNKNOWN_CAMERA, 20)
    streams = []
    for sub_id, ring, wake in granted:
        try:
            bumps = os.eventfd_read(wake)
        except BlockingIOError:
            bumps = 0
        streams.append((sub_id, bumps))
        os.close(ring)
        os.close(wake)
    bus.disconnect()
    return [(s, n) for s, n in streams if s not in ended], errors


async def test_subscribe_racing_camera_removal_ends_or_fails_and_leaks_nothing(
        start_daemon, bus_address, tmp_path):
    conf = tmp_path / "c.toml"
    conf.write_text(HEAD + CAM0)
    d = start_daemon("--config", str(conf))
    before = ring_fds(d.proc.pid)
    orphans, errors = [], set()
    for _ in range(ROUNDS):
        left, errs = await _one_round(d, conf, bus_address)
        orphans += left
        errors.update(errs)
    # every stream granted on the camera being removed got StreamEnded; the others failed
    # with UnknownCamera (or Busy: 8 streams per client at most)
    assert not orphans, f"granted streams that never ended: {orphans}"
    assert errors <= {C.ERROR_UNKNOWN_CAMERA, C.ERROR_BUSY}, errors
    deadline = time.monotonic() + 5
    while ring_fds(d.proc.pid) != before and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert ring_fds(d.proc.pid) == before
    assert "Traceback" not in d.log()


async def test_calls_waiting_on_a_removed_camera_end_at_once(start_daemon, bus_address,
                                                             tmp_path):
    # a camera that never delivers: CaptureFrame and CaptureBurst wait for its frames
    dead = '[[camera]]\nid = "dead"\nsource = "rtsp://127.0.0.1:9/x"\n'
    conf = tmp_path / "c.toml"
    conf.write_text(HEAD + CAM0 + dead)
    d = start_daemon("--config", str(conf))
    bus = await MessageBus(bus_address=bus_address, negotiate_unix_fd=True).connect()
    try:
        waiting = [
            asyncio.ensure_future(bus.call(call("dead", "CaptureFrame", "a{sv}",
                                                [{"timeout_ms": Variant("i", 20000)}]))),
            asyncio.ensure_future(bus.call(call("dead", "CaptureBurst", "ua{sv}", [2, {}]))),
            asyncio.ensure_future(bus.call(call("dead", "Subscribe", "a{sv}", [{}]))),
        ]
        await asyncio.sleep(0.5)
        assert not any(w.done() for w in waiting)
        conf.write_text(HEAD + CAM0)
        t0 = time.monotonic()
        d.proc.send_signal(signal.SIGHUP)
        replies = await asyncio.wait_for(asyncio.gather(*waiting), 8.0)
        assert time.monotonic() - t0 < 5.0
        assert [r.error_name for r in replies] == [C.ERROR_UNKNOWN_CAMERA] * 3, \
            [(r.error_name, r.body) for r in replies]
        assert all("removed" in r.body[0] for r in replies)
    finally:
        bus.disconnect()
    assert "Traceback" not in d.log()
