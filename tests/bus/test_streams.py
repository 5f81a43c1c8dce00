"""Frame streams through the shared-memory ring: many clients, slow and killed clients, fds."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from dbus_fast import Variant

from camheal import AsyncClient, Client
from camheal import constants as C
from camheal.errors import Busy, InvalidArgument

DEMO = "demo:?size=320x180&fps=30"


def daemon_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def test_stream_frames_are_zero_copy_views_with_metadata(start_daemon, bus_address):
    start_daemon("--source", DEMO)
    async with AsyncClient(bus_address) as client:
        cam = await client.camera()
        async with await cam.stream(corrected=False) as stream:
            frames = []
            async for frame in stream:
                assert frame.image.shape == (180, 320, 3)
                assert not frame.image.flags.writeable  # read-only shared memory
                assert frame.image.base is not None  # a view, not a copy
                frames.append(frame.copy())
                if len(frames) == 10:
                    break
            seqs = [f.seq for f in frames]
            assert seqs == sorted(seqs) and len(set(seqs)) == 10
            assert all(f.timestamp_ns <= time.monotonic_ns() for f in frames)
            assert all(not f.corrected for f in frames)
            assert stream.stats["received"] == 10
        # a still of the same camera agrees with the stream format
        still = await cam.capture(corrected=False)
        assert still.image.shape == frames[0].image.shape


def test_blocking_stream_and_corrected_kind(start_daemon, bus_address):
    start_daemon("--source", DEMO)
    with Client(bus_address) as client:
        cam = client.camera()
        with cam.stream() as frames:
            got = []
            for frame in frames:
                got.append(frame.seq)
                if len(got) == 5:
                    break
            assert frame.corrected and frame.valid()
        assert len(got) == 5


async def test_slow_client_misses_frames_without_slowing_others(start_daemon, bus_address):
    d = start_daemon("--source", DEMO)
    async with AsyncClient(bus_address) as client:
        cam = await client.camera()
        slow = await cam.stream()
        fast = await cam.stream()
        assert await slow.read() is not None
        before = (await cam.stats())["frames"]
        t0 = time.monotonic()
        fast_frames = 0
        while time.monotonic() - t0 < 1.5:
            if await fast.read(timeout=1.0) is not None:
                fast_frames += 1
        produced = (await cam.stats())["frames"] - before
        await slow.read()  # wakes up after 1.5 s of not reading
        await slow.read(timeout=1.0)
        # the stuck reader costs the fast one nothing: it got (nearly) every frame captured
        assert produced >= 15 and fast_frames >= 0.85 * produced, (fast_frames, produced)
        assert fast.stats["dropped"] <= 0.15 * produced
        assert slow.stats["dropped"] >= 0.8 * produced and slow.stats["received"] <= 4
        await slow.close()
        await fast.close()
    assert "Traceback" not in d.log()


async def test_subscription_errors(start_daemon, bus_address):
    start_daemon("--source", DEMO)
    async with AsyncClient(bus_address) as client:
        cam = await client.camera()
        with pytest.raises(InvalidArgument, match="no subscription"):
            await cam.unsubscribe(424242)
        with pytest.raises(InvalidArgument, match="unknown option"):
            await client.call(cam.path, C.CAMERA_IFACE, "Subscribe", "a{sv}",
                              [{"raw": Variant("b", True)}])
        readers = [await cam.subscribe() for _ in range(8)]
        with pytest.raises(Busy, match="per client"):
            await cam.subscribe()
        for r in readers:
            await cam.unsubscribe(r.id)
            r.close()


async def test_subscribe_cycles_and_killed_clients_release_everything(start_daemon, bus_address,
                                                                     bus_env):
    d = start_daemon("--source", DEMO)
    async with AsyncClient(bus_address) as client:
        cam = await client.camera()
        (await cam.capture())  # warm up lazily created state
        baseline = daemon_fds(d.proc.pid)
        for _ in range(200):
            reader = await cam.subscribe()
            await cam.unsubscribe(reader.id)
            reader.close()
        after_cycles = daemon_fds(d.proc.pid)
    assert after_cycles <= baseline + 1, (baseline, after_cycles)
    # clients killed mid-stream: their streams go when they leave the bus
    script = textwrap.dedent("""
        import sys
        from camheal import Client
        c = Client(sys.argv[1])
        s = c.camera().stream()
        s.read()
        print("streaming", flush=True)
        sys.stdin.read()
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script, bus_address],
                              stdout=subprocess.PIPE, stdin=subprocess.PIPE, text=True)
             for _ in range(10)]
    for p in procs:
        assert p.stdout.readline().strip() == "streaming"
    assert daemon_fds(d.proc.pid) > baseline + 10
    for p in procs:
        p.send_signal(signal.SIGKILL)
        p.wait()
        p.stdout.close()
        p.stdin.close()
    deadline = time.monotonic() + 10
    while daemon_fds(d.proc.pid) > baseline + 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert daemon_fds(d.proc.pid) <= baseline + 1
    assert "client" in d.log() and "released" in d.log()


def test_ring_fd_is_read_only_for_clients(start_daemon, bus_address):
    import mmap

    start_daemon("--source", DEMO)
    with Client(bus_address) as client:
        cam = client.camera()
        ring_fd, wake_fd, info = client._run(client._aio.call(
            cam.path, C.CAMERA_IFACE, "Subscribe", "a{sv}", [{}]))
        try:
            with pytest.raises(OSError):
                os.write(ring_fd, b"x")
            with pytest.raises((OSError, PermissionError)):
                mmap.mmap(ring_fd, 4096, mmap.MAP_SHARED, mmap.PROT_WRITE)
            # even a writable reopen through /proc cannot write: the memfd is sealed
            rw = os.open(f"/proc/self/fd/{ring_fd}", os.O_RDWR)
            try:
                with pytest.raises(OSError):
                    os.pwrite(rw, b"x", 0)
                with pytest.raises(OSError):
                    mmap.mmap(rw, 4096, mmap.MAP_SHARED, mmap.PROT_WRITE)
                with pytest.raises(OSError):
                    os.ftruncate(rw, 0)
            finally:
                os.close(rw)
            ro = np.frombuffer(mmap.mmap(ring_fd, 4096, prot=mmap.PROT_READ), np.uint8)
            assert bytes(ro[:8]) == b"CAMRING\x01"
        finally:
            os.close(ring_fd)
            os.close(wake_fd)


def test_cli_stream_stats_and_watch(start_daemon, bus_env):
    from support import run_cli

    start_daemon("--source", DEMO)
    res = run_cli("stream", "--stats", "--duration", "2.5", env=bus_env)
    assert res.returncode == 0, res.stderr
    lines = [ln for ln in res.stdout.splitlines() if "fps" in ln]
    assert len(lines) >= 2 and "latency p50" in lines[0]
    fps = float(lines[-1].split()[1])
    assert fps > 20
    assert "total" in res.stdout.splitlines()[-1]
    res = run_cli("watch", "--duration", "1", env=bus_env)
    assert res.returncode == 0, res.stderr
    assert "cam0: state ok" in res.stdout
