"""Decode-only baseline: how fast the clip comes out of cv2.VideoCapture alone (a subprocess).

    python -m benchmarks.decode CLIP SECONDS     # prints one JSON line

Two phases of SECONDS each: ``read`` (cap.read() only) and ``read+rgb`` (plus the BGR->RGB
conversion the daemon's file source also does). Looping rewinds like the daemon's source.
"""

from __future__ import annotations

import json
import sys
import time

import cv2

from benchmarks.common import cpu_self


def measure(path: str, seconds: float, rgb: bool) -> dict[str, float]:
    """Frames per second and CPU ms per frame of one decode loop."""
    cap = cv2.VideoCapture(path, cv2.CAP_FFMPEG)
    if not cap.isOpened():
        raise SystemExit(f"cannot open {path}")
    for _ in range(5):  # warm-up
        cap.read()
    frames, t0, c0 = 0, time.monotonic(), cpu_self()
    while time.monotonic() - t0 < seconds:
        ok, bgr = cap.read()
        if not ok:
            cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, bgr = cap.read()
        if rgb:
            cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        frames += 1
    wall, cpu = time.monotonic() - t0, cpu_self() - c0
    cap.release()
    return {"fps": frames / wall, "cpu_ms_per_frame": cpu / frames * 1e3, "frames": frames}


def main() -> None:
    path, seconds = sys.argv[1], float(sys.argv[2])
    print(json.dumps({"read": measure(path, seconds, False),
                      "read+rgb": measure(path, seconds, True)}), flush=True)


if __name__ == "__main__":
    main()
