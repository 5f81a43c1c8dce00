"""Streams that the daemon ends: shutdown, camera removal, and a daemon that dies.

The SDK's stream iterators raise ``StreamEnded`` (with the daemon's reason) instead of stopping
silently or hanging until their timeout; ``ServiceLost`` when camheald leaves the bus.
"""

from __future__ import annotations

import signal
import threading
import time

import pytest

from camheal import AsyncClient, Client
from camheal.errors import ServiceLost, ServiceUnavailable, StreamEnded

DEMO = "demo:?size=160x120&fps=30"
LONG = 60.0  # stream timeout: an end must never wait for it


def drain_until_end(stream, box: dict) -> None:
    """Iterate a blocking stream in a thread; record the frames and how it ended."""
    box["frames"] = 0
    try:
        for _ in stream:
            box["frames"] += 1
        box["end"] = "stopped"
    except StreamEnded as exc:
        box["end"] = exc
    box["at"] = time.monotonic()


def test_blocking_stream_raises_stream_ended_on_daemon_shutdown(start_daemon, bus_address):
    d = start_daemon("--source", DEMO)
    with Client(bus_address) as client:
        with client.camera().stream(timeout=LONG) as frames, \
                client.camera().stream(corrected=False, timeout=LONG) as raw:
            assert frames.read() is not None and raw.read() is not None
            boxes = [{}, {}]
            threads = [threading.Thread(target=drain_until_end, args=(s, b))
                       for s, b in zip((frames, raw), boxes, strict=True)]
            for t in threads:
                t.start()
            time.sleep(0.3)
            t0 = time.monotonic()
            d.proc.send_signal(signal.SIGTERM)
            for t in threads:
                t.join(10)
            assert not any(t.is_alive() for t in threads)
            for box in boxes:
                err = box["end"]
                assert isinstance(err, StreamEnded) and not isinstance(err, ServiceLost), err
                assert err.reason == "camheald is shutting down"
                assert box["frames"] > 0 and box["at"] - t0 < 5.0
            assert frames._r.ended == "camheald is shutting down"
            # reading again keeps saying so (a fresh exception each time)
            with pytest.raises(StreamEnded, match="shutting down"):
                frames.read()
        # closing an ended stream neither raises nor waits for a reply that cannot come
    assert d.stop() == 0


async def test_async_stream_raises_stream_ended_on_daemon_shutdown(start_daemon, bus_address):
    d = start_daemon("--source", DEMO)
    async with AsyncClient(bus_address) as client:
        cam = await client.camera()
        async with await cam.stream(timeout=LONG) as stream:
            got = 0
            t0 = None
            with pytest.raises(StreamEnded) as info:
                async for _ in stream:
                    got += 1
                    if got == 3:
                        t0 = time.monotonic()
                        d.proc.send_signal(signal.SIGTERM)
            assert not isinstance(info.value, ServiceLost)
            assert info.value.reason == "camheald is shutting down"
            assert info.value.subscription == stream.id
            assert time.monotonic() - t0 < 5.0


@pytest.mark.parametrize("api", ["blocking", "async"])
async def test_killed_daemon_ends_streams_with_service_lost(start_daemon, bus_address, api):
    d = start_daemon("--source", DEMO)
    if api == "blocking":
        with Client(bus_address) as client:
            with client.camera().stream(timeout=LONG) as frames:
                assert frames.read() is not None
                t0 = time.monotonic()
                d.proc.send_signal(signal.SIGKILL)
                with pytest.raises(ServiceLost) as info:
                    for _ in frames:
                        pass
    else:
        async with AsyncClient(bus_address) as client:
            cam = await client.camera()
            async with await cam.stream(timeout=LONG) as stream:
                assert await stream.read() is not None
                t0 = time.monotonic()
                d.proc.send_signal(signal.SIGKILL)
                with pytest.raises(ServiceLost) as info:
                    async for _ in stream:
                        pass
    assert time.monotonic() - t0 < 5.0
    assert isinstance(info.value, ServiceUnavailable)  # typed like "daemon not running"
    assert "left the bus" in info.value.reason


def test_removed_camera_ends_its_streams_only(start_daemon, bus_address, tmp_path):
    conf = tmp_path / "c.toml"
    head = '[daemon]\nbus = "session"\n'
    cams = [f'[[camera]]\nid = "cam{i}"\nsource = "{DEMO}"\n' for i in range(2)]
    conf.write_text(head + "".join(cams))
    d = start_daemon("--config", str(conf))
    with Client(bus_address) as client:
        with client.camera("cam0").stream(timeout=LONG) as keep, \
                client.camera("cam1").stream(timeout=LONG) as gone:
            assert keep.read() is not None and gone.read() is not None
            conf.write_text(head + cams[0])
            d.proc.send_signal(signal.SIGHUP)
            with pytest.raises(StreamEnded, match="camera reconfigured") as info:
                for _ in gone:
                    pass
            assert not isinstance(info.value, ServiceLost)
            seq = keep.read().seq
            for _ in range(5):
                frame = keep.read(timeout=5.0)
                assert frame is not None and frame.seq > seq
                seq = frame.seq
    assert "Traceback" not in d.log()


async def test_stream_ended_for_another_subscription_does_not_end_mine(start_daemon,
                                                                       bus_address):
    d = start_daemon("--source", DEMO)
    async with AsyncClient(bus_address) as a, AsyncClient(bus_address) as b:
        sa = await (await a.camera()).stream(timeout=LONG)
        sb = await (await b.camera()).stream(timeout=LONG)
        await sb.close()  # b's stream goes; a's must not notice
        await b.close()
        for _ in range(5):
            assert await sa.read(timeout=5.0) is not None
        assert sa._r.ended is None
        await sa.close()
    assert d.proc.poll() is None


async def test_closing_the_client_ends_its_open_streams(start_daemon, bus_address):
    start_daemon("--source", DEMO)
    client = await AsyncClient(bus_address).connect()
    stream = await (await client.camera()).stream(timeout=LONG)
    assert await stream.read() is not None
    await client.close()
    with pytest.raises(StreamEnded, match="client was closed"):
        while await stream.read(timeout=LONG) is not None:
            pass
    await stream.close()
