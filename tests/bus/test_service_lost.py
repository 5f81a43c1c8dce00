"""``on_service_lost``: the SDK's hook for camheald going away (what ``camheal watch`` uses)."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import threading

import pytest

from camheal import AsyncClient, Client
from camheal.errors import ServiceUnavailable
from camheald.devbus import env_with_bus
from support import BIN

DEMO = "demo:?size=160x120&fps=10"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
async def test_async_client_hears_the_daemon_leave_once(start_daemon, bus_address, sig):
    d = start_daemon("--source", DEMO)
    heard: list[str] = []
    loop = asyncio.get_running_loop()
    lost: asyncio.Future[str] = loop.create_future()

    def on_lost(why: str) -> None:
        heard.append(why)
        if not lost.done():
            lost.set_result(why)

    async with AsyncClient(bus_address) as client:
        await client.on_service_lost(on_lost)
        assert await client.version()
        d.stop(sig)
        assert await asyncio.wait_for(lost, 5) == "camheald left the bus"
        await asyncio.sleep(0.2)
        assert heard == ["camheald left the bus"]
        with pytest.raises(ServiceUnavailable):  # (and the next call says so)
            await client.version()


def test_blocking_client_calls_back_on_its_thread(start_daemon, bus_address):
    d = start_daemon("--source", DEMO)
    left = threading.Event()
    got: list[tuple[str, str]] = []
    with Client(bus_address) as client:
        client.on_service_lost(
            lambda why: (got.append((why, threading.current_thread().name)), left.set()))
        d.stop()
        assert left.wait(5)
    assert got == [("camheald left the bus", "camheal-client")]


async def test_a_closed_client_is_not_called_and_a_failing_callback_stops_no_other(
        start_daemon, bus_address):
    # closing a client is not losing the service; both clients live on one event loop that
    # keeps running, so the closed one could still be called if it were wrong
    d = start_daemon("--source", DEMO)
    heard: list[str] = []
    closed: list[str] = []
    lost = asyncio.Event()

    def boom(why: str) -> None:
        raise RuntimeError("a user's bug")

    async with AsyncClient(bus_address) as client:
        await client.on_service_lost(boom)
        await client.on_service_lost(lambda why: (heard.append(why), lost.set()))
        other = await AsyncClient(bus_address).connect()
        await other.on_service_lost(closed.append)
        await other.close()
        d.stop()
        await asyncio.wait_for(lost.wait(), 5)
        await asyncio.sleep(0.2)
    assert heard == ["camheald left the bus"] and closed == []


async def test_no_daemon_is_service_unavailable(bus_address):
    async with AsyncClient(bus_address) as client:
        with pytest.raises(ServiceUnavailable, match="not running"):
            await client.on_service_lost(lambda why: None)


async def test_losing_the_bus_connection_is_service_lost(tmp_path):
    # a dbus-daemon of its own, killed under a running camheald and its client: SIGKILL, so
    # that it cannot announce camheald's leaving first
    bus = subprocess.Popen(["dbus-daemon", "--session", "--nofork", "--nopidfile",
                            "--print-address=1"], stdout=subprocess.PIPE,
                           stdin=subprocess.DEVNULL, text=True)
    assert bus.stdout is not None
    address = bus.stdout.readline().strip()
    log = open(tmp_path / "camheald.log", "wb")  # noqa: SIM115 - closed below
    daemon = subprocess.Popen([str(BIN / "camheald"), "--bus", "session", "--source", DEMO],
                              env=env_with_bus(address), stdout=subprocess.PIPE, stderr=log)
    client = AsyncClient(address)
    try:
        assert daemon.stdout is not None
        ready = await asyncio.wait_for(asyncio.to_thread(daemon.stdout.readline), 30)
        assert ready.strip() == b"camheald ready", (tmp_path / "camheald.log").read_text()
        await client.connect()
        heard: list[str] = []
        lost: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        await client.on_service_lost(lambda why: (heard.append(why), lost.set_result(why)))
        bus.kill()
        assert await asyncio.wait_for(lost, 5) == "the D-Bus connection was lost"
        await asyncio.sleep(0.3)
        assert heard == ["the D-Bus connection was lost"]
    finally:
        await client.close()
        for proc in (bus, daemon):
            if proc.poll() is None:
                proc.terminate()
            await asyncio.to_thread(proc.wait, 10)
            if proc.stdout is not None:
                proc.stdout.close()
        log.close()
