"""`make demo`: a private bus, camheald with the demo camera, and a client that shows its work.

Prints health changes as they happen, saves raw | corrected side-by-side PNGs to demo-out/,
and ends with a summary. ``--forever`` keeps it running until Ctrl-C.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np

from camheal.client import Client
from camheald.capture.demo import DEFAULT_SCHEDULE
from camheald.devbus import DevBusError, env_with_bus, private_session_bus


def side_by_side(raw: np.ndarray, corrected: np.ndarray, caption: str) -> np.ndarray:
    """raw | corrected with a caption bar, as BGR for cv2.imwrite."""
    h, w = raw.shape[:2]
    bar = np.full((28, w * 2 + 8, 3), 30, np.uint8)
    cv2.putText(bar, caption, (8, 19), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (240, 240, 240), 1,
                cv2.LINE_AA)
    gap = np.full((h, 8, 3), 30, np.uint8)
    body = np.hstack([raw, gap, corrected])
    return cv2.cvtColor(np.vstack([bar, body]), cv2.COLOR_RGB2BGR)


def run(duration: float, out_dir: Path, phase_s: float, every_s: float) -> int:
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("*.png"):
        old.unlink()
    try:
        bus_cm = private_session_bus()
        address = bus_cm.__enter__()
    except DevBusError as exc:
        print(f"demo: error: {exc}", file=sys.stderr)
        return 1
    source = f"demo:?size=640x360&fps=15&phase={phase_s:g}"
    daemon = subprocess.Popen(
        [sys.executable, "-m", "camheald", "--bus", "session", "--source", source],
        env=env_with_bus(address), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    events: list[str] = []
    saved = 0
    try:
        assert daemon.stdout is not None
        line = daemon.stdout.readline().strip()
        if line != "camheald ready":
            print(f"demo: error: camheald did not start (exit {daemon.wait(5)})", file=sys.stderr)
            return 1
        print(f"camheald is up on a private session bus ({address.split(',')[0]})")
        print(f"demo camera schedule: {' -> '.join(DEFAULT_SCHEDULE)}, {phase_s:g} s each")
        with Client(address) as client:
            cam = client.camera()
            health = cam.health()
            if health.get("model_error"):
                print(f"NOTE: {health['model_error']}: the 'corrected' frames equal the raw "
                      "ones until a model is available.")
            lock = threading.Lock()

            def on_event(cam_id: str, kind: str, payload: dict) -> None:
                if kind == "health":
                    return
                if kind.startswith("defect"):
                    what = f"{payload.get('kind')} at {tuple(payload.get('bbox', ()))}"
                    kind = "lens defect found" if kind == "defect_detected" else \
                        "lens defect gone"
                else:
                    what = payload.get("name") or payload.get("state")
                text = f"{time.strftime('%H:%M:%S')} {cam_id}: {kind.replace('_', ' ')} {what}"
                if "score" in payload:
                    text += f" (score {payload['score']:.2f})"
                with lock:
                    events.append(text)
                print(text, flush=True)

            client.on_health(on_event)
            t0 = time.monotonic()
            next_shot = t0
            while duration <= 0 or time.monotonic() - t0 < duration:
                if time.monotonic() >= next_shot:
                    raw = cam.capture(corrected=False)
                    cor = cam.capture(corrected=True)
                    phase = cam.stats().get("injected", "?")
                    health = cam.health()
                    found = health.get("detected", []) + [
                        f"lens {d['kind']}" for d in health.get("defects", [])]
                    detected = ", ".join(found) or "nothing"
                    actions = ", ".join(cor.actions) or "no correction"
                    caption = (f"#{cor.seq} injected: {phase} | detected: {detected} | "
                               f"right: {actions}")
                    path = out_dir / f"{saved:03d}-{phase}.png"
                    cv2.imwrite(str(path), side_by_side(raw.image, cor.image, caption))
                    saved += 1
                    next_shot += every_s
                time.sleep(0.1)
            stats = cam.stats()
            final = cam.health()
    except KeyboardInterrupt:
        print()
        stats, final = {}, {}
    finally:
        daemon.terminate()
        try:
            daemon.wait(10)
        except subprocess.TimeoutExpired:
            daemon.kill()
        bus_cm.__exit__(None, None, None)
    print("\nsummary")
    print(f"  frames captured by the daemon: {stats.get('frames', '?')} "
          f"at {stats.get('fps', 0):.1f} fps; analyses: {stats.get('analyses', '?')}")
    print(f"  health events: {len(events)}; final state: {final.get('state', '?')}, "
          f"detected: {', '.join(final.get('detected', [])) or 'none'}")
    if final.get("model_error"):
        print(f"  model: {final['model_error']} (corrected == raw)")
    print(f"  {saved} raw|corrected PNGs in {out_dir}/")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="camheal-demo", description=__doc__)
    p.add_argument("--duration", type=float, default=60.0, help="seconds (default 60)")
    p.add_argument("--forever", action="store_true", help="run until Ctrl-C")
    p.add_argument("--out", default="demo-out", help="folder for the PNGs")
    p.add_argument("--phase", type=float, default=10.0, help="seconds per injected defect")
    p.add_argument("--every", type=float, default=2.5, help="seconds between saved PNGs")
    args = p.parse_args(argv)
    return run(0 if args.forever else args.duration, Path(args.out), args.phase, args.every)


if __name__ == "__main__":
    sys.exit(main())
