"""Frame delivery cost: shared-memory ring vs. frames sent as bytes (socket, D-Bus ``ay``).

The "daemon" (this process) publishes 1080p RGB frames at a fixed rate to K client processes;
each method is measured in the same run. Reported per method: CPU per frame of the publisher,
of all clients together, and (D-Bus) of the dbus-daemon; capture-to-client latency; frames
received and dropped.

    .venv/bin/python benchmarks/bench_ipc.py --frames 150 --clients 4 --json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import resource
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field

import numpy as np

logger = logging.getLogger(__name__)

W, H = 1920, 1080
FRAME_BYTES = W * H * 3
HDR = struct.Struct("<QQQ")  # seq, timestamp_ns, length
DBUS_PATH, DBUS_IFACE = "/io/camheal/Bench", "io.camheal.Bench"


def cpu_self() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def cpu_of(pid: int) -> float:
    """User+system CPU seconds of another process, from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Result:
    method: str
    clients: int
    frames: int
    publisher_cpu_ms_per_frame: float
    clients_cpu_ms_per_frame: float
    broker_cpu_ms_per_frame: float
    total_cpu_ms_per_frame: float
    latency_ms_p50: float
    latency_ms_p99: float
    received_min: int
    dropped_total: int
    fps_min: float
    extra: dict = field(default_factory=dict)


# ---------------------------------------------------------------- clients (subprocess role)
def client_report(latencies: list[int], received: int, dropped: int, first: float,
                  last: float, cpu0: float) -> None:
    fps = (received - 1) / (last - first) if received > 1 and last > first else 0.0
    print(json.dumps({"lat_ns": latencies, "received": received, "dropped": dropped,
                      "fps": fps, "cpu_s": cpu_self() - cpu0}), flush=True)


def ring_client(ring_fd: int, notify_fd: int, frames: int) -> None:
    from camheal.ring import RingReader

    reader = RingReader(ring_fd, notify_fd)
    lat: list[int] = []
    print("ready", flush=True)
    cpu0, first, last = cpu_self(), 0.0, 0.0
    while True:
        if not reader.wait(3.0):
            break
        now = time.monotonic_ns()
        frame = reader.next_frame()
        if frame is None:
            continue
        lat.append(now - frame.timestamp_ns)
        last = time.monotonic()
        first = first or last
        if frame.seq >= frames - 1:
            break
    client_report(lat, reader.stats.received, reader.stats.dropped, first, last, cpu0)


def socket_client(sock_fd: int, frames: int) -> None:
    sock = socket.socket(fileno=sock_fd)
    buf = bytearray(FRAME_BYTES)
    view = memoryview(buf)
    hdr = bytearray(HDR.size)
    lat: list[int] = []
    print("ready", flush=True)
    cpu0, first, last, received, expect = cpu_self(), 0.0, 0.0, 0, 0
    while True:
        if sock.recv_into(hdr, HDR.size, socket.MSG_WAITALL) < HDR.size:
            break
        seq, ts, length = HDR.unpack(hdr)
        got = 0
        while got < length:
            got += sock.recv_into(view[got:length])
        lat.append(time.monotonic_ns() - ts)
        received += 1
        last = time.monotonic()
        first = first or last
        expect = seq + 1
        if seq >= frames - 1:
            break
    client_report(lat, received, expect - received, first, last, cpu0)


def dbus_client(address: str, frames: int) -> None:
    from dbus_fast import Message, MessageType
    from dbus_fast.aio import MessageBus

    async def main() -> None:
        bus = await MessageBus(bus_address=address).connect()
        lat: list[int] = []
        state = {"first": 0.0, "last": 0.0, "seq": -1}
        done = asyncio.get_running_loop().create_future()

        def handler(msg: Message) -> None:
            if msg.message_type != MessageType.SIGNAL or msg.member != "Frame":
                return
            seq, ts, data = msg.body
            arr = np.frombuffer(data, np.uint8).reshape(H, W, 3)
            lat.append(time.monotonic_ns() - ts)
            state["last"] = time.monotonic()
            state["first"] = state["first"] or state["last"]
            state["seq"] = seq
            del arr
            if seq >= frames - 1 and not done.done():
                done.set_result(None)

        bus.add_message_handler(handler)
        await bus.call(Message(
            destination="org.freedesktop.DBus", path="/org/freedesktop/DBus",
            interface="org.freedesktop.DBus", member="AddMatch", signature="s",
            body=[f"type='signal',interface='{DBUS_IFACE}'"]))
        print("ready", flush=True)
        cpu0 = cpu_self()
        try:
            await asyncio.wait_for(done, timeout=frames / 10 + 30)
        except asyncio.TimeoutError:
            pass
        client_report(lat, len(lat), state["seq"] + 1 - len(lat), state["first"],
                      state["last"], cpu0)
        bus.disconnect()

    asyncio.run(main())


# ---------------------------------------------------------------- publisher side
def spawn(role_args: list[str], pass_fds: tuple[int, ...] = ()) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, __file__, "--role", *role_args],
                            pass_fds=pass_fds, stdout=subprocess.PIPE, text=True)
    return proc


def wait_ready(procs: list[subprocess.Popen[str]]) -> None:
    for proc in procs:
        line = proc.stdout.readline().strip()
        if line != "ready":
            raise RuntimeError(f"client failed to start: {line!r}")


def paced(frames: int, fps: float):
    """Yield frame indices at ``fps`` (sleeping between them)."""
    start = time.monotonic()
    for i in range(frames):
        delay = start + i / fps - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        yield i


def summarize(method: str, args: argparse.Namespace, procs: list[subprocess.Popen[str]],
              pub_cpu: float, broker_cpu: float = 0.0, extra: dict | None = None) -> Result:
    reports = []
    for proc in procs:
        out, _ = proc.communicate(timeout=120)
        reports.append(json.loads(out.strip().splitlines()[-1]))
    lat = np.array([x for r in reports for x in r["lat_ns"]], np.float64) / 1e6
    n = args.frames
    clients_cpu = sum(r["cpu_s"] for r in reports)
    return Result(
        method, args.clients, n,
        publisher_cpu_ms_per_frame=pub_cpu / n * 1e3,
        clients_cpu_ms_per_frame=clients_cpu / n * 1e3,
        broker_cpu_ms_per_frame=broker_cpu / n * 1e3,
        total_cpu_ms_per_frame=(pub_cpu + clients_cpu + broker_cpu) / n * 1e3,
        latency_ms_p50=float(np.percentile(lat, 50)) if lat.size else float("nan"),
        latency_ms_p99=float(np.percentile(lat, 99)) if lat.size else float("nan"),
        received_min=min((r["received"] for r in reports), default=0),
        dropped_total=sum(r["dropped"] for r in reports),
        fps_min=min((r["fps"] for r in reports), default=0.0),
        extra=extra or {},
    )


def bench_ring(args: argparse.Namespace, images: list[np.ndarray]) -> Result:
    from camheald.service.ring import FrameRing

    with FrameRing(W, H, slots=4) as ring:
        procs = []
        for _ in range(args.clients):
            waiter, ro = ring.add_waiter(), ring.readonly_fd()
            procs.append(spawn(["ring", str(args.frames), str(ro), str(waiter.fd)],
                               (ro, waiter.fd)))
            os.close(ro)
        wait_ready(procs)
        meta = json.dumps({"scores": {"blur": 0.1}, "actions": []}).encode()
        cpu0 = cpu_self()
        for i in paced(args.frames, args.fps):
            ring.write(images[i % len(images)], i, time.monotonic_ns(), meta)
        pub = cpu_self() - cpu0
        return summarize("shm_ring", args, procs, pub,
                         extra={"future_write_sealed": ring.future_write_sealed})


def bench_socket(args: argparse.Namespace, images: list[np.ndarray]) -> Result:
    socks, procs = [], []
    for _ in range(args.clients):
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        procs.append(spawn(["socket", str(args.frames), str(theirs.fileno())],
                           (theirs.fileno(),)))
        theirs.close()
        socks.append(mine)
    wait_ready(procs)
    cpu0 = cpu_self()
    for i in paced(args.frames, args.fps):
        img = images[i % len(images)]
        hdr = HDR.pack(i, time.monotonic_ns(), FRAME_BYTES)
        for s in socks:  # a blocking send: a slow client stalls the publisher
            s.sendall(hdr)
            s.sendall(memoryview(img).cast("B"))
    pub = cpu_self() - cpu0
    result = summarize("unix_socket_bytes", args, procs, pub)
    for s in socks:
        s.close()
    return result


def bench_dbus(args: argparse.Namespace, images: list[np.ndarray]) -> Result:
    from dbus_fast import Message
    from dbus_fast.aio import MessageBus

    tmp = tempfile.mkdtemp(prefix="camheal-bench-")
    broker = subprocess.Popen(
        ["dbus-daemon", "--session", "--nofork", "--print-address=1", "--nopidfile",
         f"--address=unix:path={tmp}/bus"], stdout=subprocess.PIPE, text=True)
    try:
        address = broker.stdout.readline().strip()
        procs = [spawn(["dbus", str(args.frames), address]) for _ in range(args.clients)]
        wait_ready(procs)

        async def publish() -> tuple[float, float]:
            bus = await MessageBus(bus_address=address).connect()
            cpu0, b0 = cpu_self(), cpu_of(broker.pid)
            loop, pending = asyncio.get_running_loop(), None
            start = time.monotonic()
            for i in range(args.frames):
                delay = start + i / args.fps - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                data = images[i % len(images)].tobytes()  # dbus-fast marshals bytes for 'ay'
                # dbus-fast 5.2 drops the connection when a send hits EAGAIN (broker behind):
                # wait for the previous frame to be written and the socket to have room.
                if pending is not None:
                    await pending
                    room = loop.create_future()
                    loop.add_writer(bus._fd, room.set_result, None)
                    try:
                        await room
                    finally:
                        loop.remove_writer(bus._fd)
                pending = bus.send(Message.new_signal(DBUS_PATH, DBUS_IFACE, "Frame", "ttay",
                                                      [i, time.monotonic_ns(), data]))
            await pending
            # A round trip after the last signal: everything before it has left our socket.
            await bus.call(Message(destination="org.freedesktop.DBus",
                                   path="/org/freedesktop/DBus",
                                   interface="org.freedesktop.DBus", member="GetId"))
            pub = cpu_self() - cpu0
            bus.disconnect()
            return pub, b0

        loop = asyncio.new_event_loop()
        pub, b0 = loop.run_until_complete(publish())
        result = summarize("dbus_fast_signal_ay", args, procs, pub, 0.0)
        result.broker_cpu_ms_per_frame = (cpu_of(broker.pid) - b0) / args.frames * 1e3
        result.total_cpu_ms_per_frame += result.broker_cpu_ms_per_frame
        loop.close()
        return result
    finally:
        broker.terminate()
        broker.wait()
        broker.stdout.close()
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--clients", type=int, default=1)
    parser.add_argument("--methods", default="ring,socket,dbus")
    parser.add_argument("--json", action="store_true", help="print results as JSON")
    parser.add_argument("--role", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role:
        kind, frames, *rest = args.role
        if kind == "ring":
            ring_client(int(rest[0]), int(rest[1]), int(frames))
        elif kind == "socket":
            socket_client(int(rest[0]), int(frames))
        else:
            dbus_client(rest[0], int(frames))
        return
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (H, W, 3), dtype=np.uint8) for _ in range(2)]
    benches = {"ring": bench_ring, "socket": bench_socket, "dbus": bench_dbus}
    results = []
    for name in args.methods.split(","):
        if name == "dbus" and shutil.which("dbus-daemon") is None:
            logger.warning("dbus-daemon not found; skipping the D-Bus baseline")
            continue
        results.append(benches[name](args, images))
    base = {r.method: r for r in results}
    ring = base.get("shm_ring")
    for r in results:
        if ring is not None and ring.total_cpu_ms_per_frame > 0:
            r.extra["cpu_x_vs_ring"] = round(r.total_cpu_ms_per_frame
                                             / ring.total_cpu_ms_per_frame, 2)
    if args.json:
        json.dump({"width": W, "height": H, "fps": args.fps, "cpus": os.cpu_count(),
                   "results": [asdict(r) for r in results]}, sys.stdout, indent=2)
        print()
        return
    for r in results:
        print(f"{r.method:22s} clients={r.clients} cpu/frame total={r.total_cpu_ms_per_frame:7.2f} "
              f"ms (pub {r.publisher_cpu_ms_per_frame:.2f}, clients "
              f"{r.clients_cpu_ms_per_frame:.2f}, broker {r.broker_cpu_ms_per_frame:.2f}) "
              f"latency p50={r.latency_ms_p50:.2f} p99={r.latency_ms_p99:.2f} ms "
              f"fps_min={r.fps_min:.1f} dropped={r.dropped_total} {r.extra}")


if __name__ == "__main__":
    main()
