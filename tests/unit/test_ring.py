"""Shared-memory frame ring: real memfds, real eventfds, a reader in a real subprocess."""

from __future__ import annotations

import asyncio
import fcntl
import gc
import hashlib
import json
import mmap
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from camheal.ring import (
    F_ADD_SEALS,
    F_GET_SEALS,
    F_SEAL_FUTURE_WRITE,
    F_SEAL_GROW,
    F_SEAL_SEAL,
    F_SEAL_SHRINK,
    F_SEAL_WRITE,
    MAGIC,
    RingFormatError,
    RingLayout,
    RingReader,
    TornFrameError,
)
from camheald.service.ring import FrameRing, Waiter

W, H = 64, 48

READER_SCRIPT = r"""
import hashlib, json, mmap, os, sys
from camheal.ring import RingReader

ring_fd, notify_fd, count = (int(a) for a in sys.argv[1:4])
try:
    mmap.mmap(ring_fd, 0, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    writable = True
except OSError:
    writable = False
reader = RingReader(ring_fd, notify_fd)
os.close(ring_fd)
os.close(notify_fd)
print(json.dumps({"ready": True, "writable": writable}), flush=True)
got = 0
while got < count:
    frame = reader.next_frame(newest=False)
    if frame is None:
        if not reader.wait(20):
            sys.exit("timed out waiting for a frame")
        continue
    kept = frame.copy()
    got += 1
    print(json.dumps({
        "seq": kept.seq, "ts": kept.timestamp_ns, "meta": kept.meta.decode(),
        "sha": hashlib.sha256(kept.image.tobytes()).hexdigest(), "shape": kept.image.shape,
    }), flush=True)
s = reader.stats
print(json.dumps({"received": s.received, "dropped": s.dropped}), flush=True)
reader.close()
"""


def frame_for(seq: int, w: int = W, h: int = H) -> np.ndarray:
    """Deterministic HxWx3 uint8 test image for ``seq``."""
    return np.random.default_rng(seq).integers(0, 256, (h, w, 3), dtype=np.uint8)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture
def ring():
    r = FrameRing(W, H, slots=4, meta_bytes=256)
    yield r
    r.close()


@pytest.fixture
def reader(ring):
    fd = ring.readonly_fd()
    rd = RingReader(fd)
    os.close(fd)
    yield rd
    rd.close()


def test_reader_in_subprocess_gets_every_frame_bit_exact():
    count = 12
    with FrameRing(320, 240, slots=3, meta_bytes=128) as ring:
        waiter = ring.add_waiter()
        ro = ring.readonly_fd()
        proc = subprocess.Popen(
            [sys.executable, "-c", READER_SCRIPT, str(ro), str(waiter.fd), str(count)],
            pass_fds=(ro, waiter.fd), stdout=subprocess.PIPE, text=True,
        )
        os.close(ro)
        try:
            hello = json.loads(proc.stdout.readline())
            assert hello == {"ready": True, "writable": False}
            for i in range(count):
                seq, meta = 100 + 3 * i, json.dumps({"scores": {"blur": i / 10}}).encode()
                ring.write(frame_for(seq, 320, 240), seq, 10**9 + i, meta)
                line = proc.stdout.readline()
                assert line, "reader process died"
                got = json.loads(line)  # lockstep: the reader acks each frame
                assert got["seq"] == seq and got["ts"] == 10**9 + i
                assert got["meta"] == meta.decode() and got["shape"] == [240, 320, 3]
                expected = hashlib.sha256(frame_for(seq, 320, 240).tobytes()).hexdigest()
                assert got["sha"] == expected
            assert json.loads(proc.stdout.readline()) == {"received": count, "dropped": 0}
            assert proc.wait(timeout=10) == 0
        finally:
            proc.kill()
            proc.wait()
            proc.stdout.close()


def test_views_are_zero_copy_and_read_only(ring, reader):
    assert reader.latest() is None and reader.next_frame() is None
    img = frame_for(1)
    ring.write(img, 1, 123, b'{"actions": ["denoise"]}')
    frame = reader.latest()
    assert frame is not None and frame.valid()
    assert frame.image.shape == (H, W, 3) and frame.image.dtype == np.uint8
    assert not frame.image.flags.writeable and not frame.image.flags.owndata
    np.testing.assert_array_equal(frame.image, img)
    assert (frame.seq, frame.timestamp_ns, frame.write_no) == (1, 123, 1)
    assert frame.meta_json() == {"actions": ["denoise"]}
    with pytest.raises(ValueError):
        frame.image[0, 0, 0] = 1


def test_readonly_fd_cannot_write_resize_or_reseal(ring, reader):
    ring.write(frame_for(1), 1, 1)
    seals = ring.seals
    assert seals & (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) == (
        F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL
    )
    assert bool(seals & F_SEAL_FUTURE_WRITE) == ring.future_write_sealed
    ro = ring.readonly_fd()
    try:
        assert fcntl.fcntl(ro, fcntl.F_GETFD) & fcntl.FD_CLOEXEC
        with pytest.raises(PermissionError):
            mmap.mmap(ro, 0, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        with pytest.raises(OSError):
            os.ftruncate(ro, 0)
        with pytest.raises(OSError):
            os.write(ro, b"x")
        with pytest.raises(OSError):
            fcntl.fcntl(ro, F_ADD_SEALS, F_SEAL_WRITE)
        # A private copy-on-write mapping is allowed but cannot reach other readers.
        private = mmap.mmap(ro, 0, mmap.MAP_PRIVATE, mmap.PROT_READ | mmap.PROT_WRITE)
        offset = ring.layout.slot_offset(0) + ring.layout.slot_header_size
        private[offset] = (private[offset] + 1) % 256
        private.close()
        assert reader.latest().image[0, 0, 0] == frame_for(1)[0, 0, 0]
        assert fcntl.fcntl(ro, F_GET_SEALS) == seals
    finally:
        os.close(ro)


def test_reopening_readonly_fd_read_write_is_still_sealed(ring):
    if not ring.future_write_sealed:
        pytest.skip("kernel without F_SEAL_FUTURE_WRITE")
    ro = ring.readonly_fd()
    try:
        rw = os.open(f"/proc/self/fd/{ro}", os.O_RDWR)
    except PermissionError:
        os.close(ro)
        return  # kernel refuses the reopen outright: even better
    try:
        with pytest.raises(PermissionError):
            mmap.mmap(rw, 0, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        with pytest.raises(PermissionError):
            os.write(rw, b"x")
        with pytest.raises(PermissionError):
            os.ftruncate(rw, 0)
        with pytest.raises(PermissionError):
            fcntl.fcntl(rw, F_ADD_SEALS, F_SEAL_WRITE)
        ring.write(frame_for(1), 1, 1)  # the writer's own mapping still works
    finally:
        os.close(rw)
        os.close(ro)


def test_overwritten_view_is_detected(ring, reader):
    ring.write(frame_for(1), 1, 1, b"one")
    held = reader.latest()
    for seq in range(2, 2 + ring.layout.slots - 1):
        ring.write(frame_for(seq), seq, seq)
    assert held.valid(), "slot not reused yet"
    np.testing.assert_array_equal(held.copy().image, frame_for(1))
    ring.write(frame_for(99), 99, 99, b"later")  # wraps onto the held slot
    assert not held.valid()
    with pytest.raises(TornFrameError):
        held.copy()
    assert held.meta == b"one"  # metadata was snapshotted under the seqlock


def test_slot_being_written_is_not_returned(ring, reader):
    ring.write(frame_for(1), 1, 1)
    ring.write(frame_for(2), 2, 2)
    held = reader.latest()
    slot = ring._slots[1]  # write 2 lives in slot 1
    slot.u64[0] += 1  # simulate the writer stopped half-way through the slot
    try:
        assert not held.valid()
        assert reader.read(after_seq=1) is None
        assert reader.latest().seq == 1  # falls back to the newest complete slot
        assert reader.stats.torn >= 1
    finally:
        slot.u64[0] += 1


def test_next_frame_counts_drops_and_read_after_seq(ring, reader):
    for seq in (10, 11, 12):
        ring.write(frame_for(seq), seq, seq)
    assert reader.next_frame(newest=False).seq == 10
    assert reader.read(after_seq=10).seq == 11
    assert reader.next_frame(newest=True).seq == 12
    assert reader.stats.dropped == 1 and reader.stats.received == 2
    for seq in range(13, 23):  # 10 frames, only the last 4 stay in the ring
        ring.write(frame_for(seq), seq, seq)
    assert reader.next_frame(newest=False).seq == 19
    assert reader.stats.dropped == 1 + 6
    assert reader.next_frame(newest=True).seq == 22
    assert reader.stats.dropped == 1 + 6 + 2
    assert reader.next_frame() is None


def test_writer_never_blocks_on_stuck_waiters(ring):
    fd = ring.readonly_fd()
    reader = RingReader(fd, (waiter := ring.add_waiter()).fd)
    os.close(fd)
    stuck = ring.add_waiter()
    os.eventfd_write(stuck.fd, 0xFFFFFFFFFFFFFFFE - 1)  # one more wake-up saturates it
    img = frame_for(0)
    ring.write(img, 0, 0)
    assert reader.next_frame().write_no == 1
    start = time.monotonic()
    for seq in range(1, 1000):
        ring.write(img, seq, seq)
    assert time.monotonic() - start < 10
    assert ring.notify_errors >= 998
    assert reader.drain() == 1000
    assert reader.next_frame().seq == 999 and reader.stats.dropped == 998
    reader.close()
    ring.remove_waiter(waiter)
    ring.remove_waiter(waiter)  # idempotent
    assert waiter.closed and ring.waiters == 1


def test_wait_and_async_reader(ring):
    fd = ring.readonly_fd()
    reader = RingReader(fd, ring.add_waiter().fd)
    os.close(fd)
    assert reader.wait(0.01) is False
    ring.write(frame_for(1), 1, 1)
    assert reader.wait(0) is True and reader.wait(0) is False

    async def one_frame():
        loop = asyncio.get_running_loop()
        got: asyncio.Future[int] = loop.create_future()

        def ready() -> None:
            reader.drain()
            frame = reader.next_frame()
            if frame is not None and not got.done():
                got.set_result(frame.seq)

        loop.add_reader(reader.notify_fd, ready)
        try:
            loop.call_later(0.01, ring.write, frame_for(2), 2, 2)
            return await asyncio.wait_for(got, 5)
        finally:
            loop.remove_reader(reader.notify_fd)

    assert asyncio.run(one_frame()) == 2
    assert [f.seq for f in reader.frames(timeout=0)] == []
    reader.close()


def test_write_rejects_bad_input(ring):
    with pytest.raises(ValueError, match="at most 256"):
        ring.write(frame_for(1), 1, 1, b"x" * 257)
    with pytest.raises(ValueError, match="new FrameRing"):
        ring.write(frame_for(1, W + 1, H), 1, 1)
    with pytest.raises(ValueError):
        ring.write(frame_for(1).astype(np.uint16), 1, 1)
    ring.write(frame_for(1), 5, 1, b"x" * 256)
    with pytest.raises(ValueError, match="seq"):
        ring.write(frame_for(1), 5, 1)
    ring.write(np.asfortranarray(frame_for(6)), 6, 1)  # any strides are fine


def test_fd_count_returns_to_baseline():
    baseline = open_fds()
    img = frame_for(0)
    for i in range(200):
        ring = FrameRing(W, H, slots=2, meta_bytes=64)
        waiter = ring.add_waiter()
        ring.add_waiter()  # closed by ring.close()
        ro = ring.readonly_fd()
        reader = RingReader(ro, waiter.fd)
        os.close(ro)
        ring.write(img, i, i)
        frame = reader.latest()
        assert frame is not None and frame.valid()
        del frame
        reader.close()
        ring.remove_waiter(waiter)
        ring.close()
    assert open_fds() == baseline


def test_a_ring_dropped_without_close_closes_its_fds():
    # a path that forgets close() (a stream hub dropped by a reload) must not leak the memfd
    # and the waiters' eventfds for the life of the daemon
    baseline = open_fds()
    for i in range(20):
        ring = FrameRing(W, H, slots=2, meta_bytes=64)
        waiter = ring.add_waiter()
        ring.add_waiter()
        ring.write(frame_for(0), i, i)
        ring.remove_waiter(waiter)  # closed here; the finalizer must not close it again
        cycle = [ring]
        cycle.append(cycle)  # dropped only by the cycle collector
        del ring, waiter, cycle
    gc.collect()
    assert open_fds() == baseline
    # a waiter dropped unclosed (its ring closed without it) closes its eventfd too
    waiter = Waiter(os.eventfd(0))
    assert open_fds() == baseline + 1
    del waiter
    assert open_fds() == baseline


def test_bad_fds_give_clear_errors(tmp_path):
    r, w = os.pipe()
    small = tmp_path / "small"
    small.write_bytes(b"\0" * 100)
    wrong = tmp_path / "wrong"
    wrong.write_bytes(b"NOTARING" + b"\0" * 8192)
    short = tmp_path / "short"  # a valid header that claims more bytes than the file has
    short.write_bytes(RingLayout.for_frame(W, H, 4, 64).pack_header().ljust(8192, b"\0"))
    dir_fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    fds = {"pipe": r, "directory": dir_fd}
    for path in (small, wrong, short):
        fds[path.name] = os.open(path, os.O_RDONLY)
    expected = {"pipe": "not a memfd", "directory": "not a memfd", "small": "too small",
                "wrong": "magic", "short": "needs"}
    try:
        for name, fd in fds.items():
            with pytest.raises(RingFormatError, match=expected[name]) as info:
                RingReader(fd)
            assert isinstance(info.value, ValueError)
        closed = os.dup(r)
        os.close(closed)
        with pytest.raises(RingFormatError, match="unusable"):
            RingReader(closed)
    finally:
        for fd in (*fds.values(), w):
            os.close(fd)


def test_layout_constants_are_stable():
    layout = RingLayout.for_frame(1920, 1080, 4, 4096)
    assert MAGIC == b"CAMRING\x01"
    assert layout.slot_stride % 4096 == 0 and layout.slot_header_size == 8192
    assert layout.total_size == 4096 + 4 * layout.slot_stride
    with pytest.raises(ValueError):
        RingLayout.for_frame(0, 1080, 4, 64)


STRESS_SCRIPT = r"""
import json, os, sys, time
from camheal.ring import RingReader, TornFrameError

reader = RingReader(int(sys.argv[1]), int(sys.argv[2]))
ok = torn = bad = 0
print("ready", flush=True)
deadline = time.monotonic() + 20
while time.monotonic() < deadline:
    frame = reader.next_frame()
    if frame is None:
        if reader.write_count >= int(sys.argv[3]):
            break
        reader.wait(0.05)
        continue
    try:
        kept = frame.copy()
    except TornFrameError:
        torn += 1
        continue
    expected = kept.seq % 251
    if (kept.image == expected).all() and kept.meta == str(kept.seq).encode():
        ok += 1
    else:
        bad += 1
print(json.dumps({"ok": ok, "torn": torn, "bad": bad, "dropped": reader.stats.dropped}))
"""


def test_concurrent_reader_never_accepts_a_mixed_frame():
    total = 400
    with FrameRing(320, 240, slots=2, meta_bytes=32) as ring:
        waiter = ring.add_waiter()
        ro = ring.readonly_fd()
        proc = subprocess.Popen(
            [sys.executable, "-c", STRESS_SCRIPT, str(ro), str(waiter.fd), str(total)],
            pass_fds=(ro, waiter.fd), stdout=subprocess.PIPE, text=True,
        )
        os.close(ro)
        try:
            assert proc.stdout.readline().strip() == "ready"
            img = np.empty((240, 320, 3), np.uint8)
            for seq in range(total):
                img.fill(seq % 251)
                ring.write(img, seq, seq, str(seq).encode())
            out, _ = proc.communicate(timeout=30)
        finally:
            proc.kill()
            proc.wait()
    result = json.loads(out)
    assert result["bad"] == 0, result
    assert result["ok"] >= 1, result


def test_writing_in_place_and_abandoned_write(ring, reader):
    with ring.writing(1, 11) as slot:
        assert slot.image.flags.writeable and slot.image.shape == (H, W, 3)
        slot.image[:] = 7
        slot.set_meta(b'{"k": 1}')
        assert reader.latest() is None  # not published before the block ends
    frame = reader.latest()
    assert frame.seq == 1 and frame.meta_json() == {"k": 1} and (frame.image == 7).all()
    with pytest.raises(RuntimeError), ring.writing(2, 12) as slot:
        slot.image[:] = 9
        raise RuntimeError("pipeline failed mid-frame")
    assert reader.latest().seq == 1 and ring.writes == 1
    assert reader.read(after_seq=-1).seq == 1
    with pytest.raises(ValueError, match="at most"), ring.writing(3, 13) as slot:
        slot.set_meta(b"x" * 1000)
    ring.write(frame_for(4), 4, 14)
    assert [reader.next_frame(newest=False).seq for _ in range(2)] == [1, 4]
