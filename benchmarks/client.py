"""One SDK stream client (a subprocess of the end-to-end benchmark).

    python -m benchmarks.client ADDRESS [corrected|raw] [idle]

Subscribes with ``camheal.Client`` and prints ``ready`` after its first frame; then reads
``T0 T1`` (CLOCK_MONOTONIC ns, system-wide) from stdin and keeps the newest frames until T1.
For frames received in [T0, T1] it records the capture-to-client latency
(``time.monotonic_ns() - frame.timestamp_ns``) and counts the frames it skipped (the SDK
hands out the newest frame). Touches one pixel per frame, like a minimal app. Prints one JSON
line at the end. ``idle``: subscribes and reads its first frame, then never reads again until
T1 (the daemon keeps writing the ring and bumping its eventfd; the report says ``idle``).
"""

from __future__ import annotations

import json
import sys
import time

from benchmarks.common import cpu_self


def main() -> None:
    from camheal import Client

    address = sys.argv[1]
    corrected = (sys.argv[2] if len(sys.argv) > 2 else "corrected") == "corrected"
    lat: list[int] = []
    actions: set[str] = set()
    skipped, checksum, cpu = 0, 0, 0.0
    with Client(bus=address) as client:
        cam = client.camera()
        with cam.stream(corrected=corrected, timeout=5.0) as stream:
            first = stream.read()
            print("ready" if first is not None else "no-frame", flush=True)
            t0, t1 = (int(x) for x in sys.stdin.readline().split())
            if len(sys.argv) > 3 and sys.argv[3] == "idle":
                time.sleep(max(0.0, (t1 - time.monotonic_ns()) / 1e9))
                print(json.dumps({"idle": True}), flush=True)
                return
            last_seq = -1
            cpu0 = cpu_self()
            for frame in stream:
                now = time.monotonic_ns()
                checksum += int(frame.image[0, 0, 0])
                if now >= t0:
                    lat.append(now - frame.timestamp_ns)
                    if last_seq >= 0:
                        skipped += max(0, frame.seq - last_seq - 1)
                    last_seq = frame.seq
                    actions.update(frame.actions)
                else:
                    cpu0 = cpu_self()
                if now >= t1:
                    break
            cpu = cpu_self() - cpu0
    print(json.dumps({"lat_ns": lat, "skipped": skipped, "cpu_s": cpu,
                      "actions": sorted(actions), "checksum": checksum}), flush=True)


if __name__ == "__main__":
    main()
