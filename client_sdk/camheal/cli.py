"""`camheal`: the client command line (talks to camheald; offline tools need the daemon package)."""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import select
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from camheal.constants import VERSION
from camheal.errors import BusUnavailable, CamhealError
from camheal.files import write_atomic


def _bus_default() -> str:
    return os.environ.get("CAMHEAL_BUS") or "system"


#: what to do when the bus cannot be reached (after BusUnavailable's one-line reason)
BUS_HINT = "choose the bus with --bus system|session|ADDRESS or $CAMHEAL_BUS"


def _seconds(text: str, positive: bool = False) -> float:
    """argparse type: a finite number of seconds, 0 or more (above 0 with ``positive``)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise argparse.ArgumentTypeError(
            f"must be a number of seconds {'above' if positive else 'of at least'} 0, "
            f"got {text!r}")
    return value


def _positive_seconds(text: str) -> float:
    """argparse type: a finite number of seconds above 0."""
    return _seconds(text, positive=True)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="camheal", description="camheal client and offline tools")
    p.add_argument("--version", action="version", version=f"camheal {VERSION}")
    p.add_argument("--bus", default=_bus_default(),
                   help="system, session or a D-Bus address (default: $CAMHEAL_BUS or system)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("status", help="cameras, resolution, fps and current health")
    s.add_argument("--json", action="store_true", help="print one JSON object")

    c = sub.add_parser("capture", help="save one frame (PNG or JPEG by file extension)")
    c.add_argument("-o", "--output", required=True, metavar="FILE")
    c.add_argument("--raw", action="store_true", help="the uncorrected frame")
    c.add_argument("--camera", metavar="ID", help="camera id (default: the first)")

    w = sub.add_parser("watch", help="print health events as they happen")
    w.add_argument("--duration", type=_seconds, default=0.0, metavar="S",
                   help="stop after S seconds (default: run until interrupted)")

    st = sub.add_parser("stream", help="receive a frame stream and show fps, latency, drops")
    st.add_argument("--stats", action="store_true", help="print live statistics (default)")
    st.add_argument("--raw", action="store_true", help="the uncorrected stream")
    st.add_argument("--camera", metavar="ID", help="camera id (default: the first)")
    st.add_argument("--duration", type=_seconds, default=0.0, metavar="S",
                    help="stop after S seconds (default: run until interrupted)")
    st.add_argument("--interval", type=_positive_seconds, default=1.0, metavar="S",
                    help="seconds between statistics lines (default 1)")

    d = sub.add_parser("diagnose", help="detect anomalies in image files (offline)")
    d.add_argument("files", nargs="+", metavar="FILE")
    d.add_argument("--json", action="store_true", help="one JSON object per line")

    r = sub.add_parser("correct", help="correct image files (offline)")
    r.add_argument("inputs", nargs="+", metavar="IN")
    r.add_argument("-o", "--output", required=True, metavar="OUT",
                   help="output file, or a directory (ending in /) for several inputs")
    r.add_argument("--json", action="store_true", help="print the report per file as JSON")

    v = sub.add_parser("correct-video", help="find persistent lens defects in a clip and "
                       "correct every frame (offline)")
    v.add_argument("input", metavar="IN", help="video file or folder of frames")
    v.add_argument("-o", "--output", required=True, metavar="OUT",
                   help="video file, or folder for a folder of frames")
    v.add_argument("--json", action="store_true", help="print one JSON report")
    v.add_argument("--mask-out", metavar="MASK.png", help="write the persistent defect mask")
    v.add_argument("--lens", action="store_true",
                   help="also let the lens-defect segmenter find dirt where nothing moves "
                   "(fixed camera; can mistake dark, smooth scene patches for dirt: "
                   "models/LENS_CARD.md)")

    b = sub.add_parser("build-engine", help="build the TensorRT engine of the detector ahead "
                       "of the first start (Jetson; minutes)")
    b.add_argument("--model", metavar="ONNX", help="model file (default: the shipped one)")
    b.add_argument("--cache-dir", default="/var/cache/camheal/engines", metavar="DIR")
    b.add_argument("--fp32", action="store_true", help="do not build in FP16")

    h = sub.add_parser("hil", help="hardware-in-the-loop run: inject anomalies into a live "
                       "camera path and measure detection")
    h.add_argument("--profile", default="generic-usb", help="board profile name")
    h.add_argument("--duration", type=_positive_seconds, default=60.0, metavar="S",
                   help="seconds to run, above 0 (default 60)")
    h.add_argument("--report-dir", default="hil-report", metavar="DIR",
                   help="folder for report.json and report.md")
    h.add_argument("--physical", action="store_true",
                   help="also ask the operator to cover and smudge the lens")
    return p


def _fmt_health(h: dict[str, Any]) -> str:
    detected = ", ".join(h.get("detected", [])) or "none"
    text = f"state {h.get('state', '?')}, anomalies: {detected}"
    defects = h.get("defects", [])
    if defects:
        text += ", lens defects: " + ", ".join(
            f"{d['kind']} at {tuple(d['bbox'])} ({d['confidence']:.2f})" for d in defects)
    for key in ("model_error", "analysis_error"):
        if h.get(key):
            text += f" ({h[key]})"
    return text


def cmd_status(args: argparse.Namespace) -> int:
    import json

    from camheal.client import Client

    with Client(args.bus) as client:
        cams = [(c.id, c.properties()) for c in client.cameras()]
        if args.json:
            print(json.dumps({"version": client.version(),
                              "cameras": {cid: props for cid, props in cams}}, default=str))
            return 0
        print(f"camheald {client.version()}: {len(cams)} camera(s)")
        for cid, pr in cams:
            print(f"  {cid}: {pr['Width']}x{pr['Height']} @ {pr['Fps']:.1f} fps, "
                  f"source {pr['Source']}")
            print(f"    health: {_fmt_health(pr['Health'])}")
            scores = pr["Health"].get("scores", {})
            if scores:
                print("    scores: " + " ".join(f"{k}={v:.2f}" for k, v in scores.items()))
    return 0


def cmd_capture(args: argparse.Namespace) -> int:
    from camheal.client import Client

    out = Path(args.output)
    fmt = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg"}.get(out.suffix.lower())
    if fmt is None:
        raise CamhealError(f"{out}: use a .png, .jpg or .jpeg file name")
    with Client(args.bus) as client:
        cam = client.camera(args.camera)
        data, meta = cam.capture_encoded(fmt, corrected=not args.raw)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, data)
    if not meta.get("corrected"):
        kind = "raw"
    elif meta.get("actions"):
        kind = "corrected (" + ", ".join(meta["actions"]) + ")"
    else:
        kind = "corrected-stream (no correction applied)"
    print(f"{out}: {meta['width']}x{meta['height']} {kind} frame #{meta['seq']} "
          f"from camera {cam.id}")
    return 0


def cmd_watch(args: argparse.Namespace) -> int:
    return asyncio.run(_watch(args))


async def _watch(args: argparse.Namespace) -> int:
    """Print health events until the duration ends, a signal, or camheald leaves the bus."""
    from camheal.aio import AsyncClient
    from camheal.errors import ServiceUnavailable

    def on_event(cam_id: str, kind: str, payload: dict[str, Any]) -> None:
        stamp = time.strftime("%H:%M:%S")
        if kind == "anomaly_detected":
            print(f"{stamp} {cam_id}: detected {payload['name']} "
                  f"(score {payload['score']:.2f})", flush=True)
        elif kind == "anomaly_cleared":
            print(f"{stamp} {cam_id}: cleared {payload['name']}", flush=True)
        elif kind == "state":
            print(f"{stamp} {cam_id}: state {payload['state']}", flush=True)
        elif kind in ("defect_detected", "defect_cleared"):
            verb = "lens defect" if kind == "defect_detected" else "lens defect cleared:"
            print(f"{stamp} {cam_id}: {verb} {payload.get('kind')} at "
                  f"{tuple(payload.get('bbox', ()))}", flush=True)

    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, done.set)
    lost: asyncio.Future[str] = loop.create_future()

    def on_lost(why: str) -> None:
        if not lost.done():
            lost.set_result(why)

    async with AsyncClient(args.bus) as client:
        # (health signals would simply stop coming when it goes: crash, SIGKILL, restart)
        await client.on_service_lost(on_lost)
        await client.on_health(on_event)
        for cam in await client.cameras():
            print(f"{time.strftime('%H:%M:%S')} {cam.id}: {_fmt_health(await cam.health())}",
                  flush=True)
        stopped = asyncio.ensure_future(done.wait())
        try:
            await asyncio.wait({stopped, lost}, timeout=args.duration or None,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
        if lost.done() and not done.is_set():
            raise ServiceUnavailable(lost.result())
    return 0


def cmd_stream(args: argparse.Namespace) -> int:
    from camheal.client import Client
    from camheal.stats import StreamStats

    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with Client(args.bus) as client:
        cam = client.camera(args.camera)
        t_end = time.monotonic() + args.duration if args.duration else float("inf")
        with cam.stream(corrected=not args.raw, timeout=1.0) as stream:
            stats = StreamStats()
            next_print = time.monotonic() + args.interval
            while not stop.is_set() and time.monotonic() < t_end:
                frame = stream.read(timeout=0.5)
                now = time.monotonic_ns()
                if frame is not None:
                    stats.add(now - frame.timestamp_ns)
                if time.monotonic() >= next_print:
                    print(f"{cam.id}: {stats.line(stream.stats['dropped'])}", flush=True)
                    stats.reset_window()
                    next_print += args.interval
            totals = stream.stats
    print(f"{cam.id}: total {totals['received']} frames, {totals['dropped']} dropped")
    return 0


def cmd_offline(args: argparse.Namespace) -> int:
    """Commands that run the models here, without the daemon (need the full package)."""
    import importlib

    module, func = {"diagnose": ("camheald.offline", "diagnose"),
                    "correct": ("camheald.offline", "correct"),
                    "correct-video": ("camheald.video", "correct_video"),
                    "hil": ("camheald.hil", "run_hil"),
                    "build-engine": ("camheald.inference.tensorrt", "build_engine_main"),
                    }[args.command]
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        raise CamhealError(f"'{args.command}' needs the full camheal package "
                           f"(daemon side): {exc}") from None
    return getattr(mod, func)(args)


COMMANDS = {"status": cmd_status, "capture": cmd_capture, "watch": cmd_watch,
            "stream": cmd_stream,
            "diagnose": cmd_offline, "correct": cmd_offline, "correct-video": cmd_offline,
            "hil": cmd_offline, "build-engine": cmd_offline}


def _stdout_gone() -> bool:
    """Whether stdout is a pipe or socket whose reader has gone."""
    try:
        poll = select.poll()
        poll.register(sys.stdout.fileno(), select.POLLOUT)
        return any(ev & (select.POLLERR | select.POLLHUP) for _, ev in poll.poll(0))
    except (OSError, ValueError, AttributeError):
        return False


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        rc = COMMANDS[args.command](args)
        sys.stdout.flush()  # (here, so that a closed pipe is seen below, not at exit)
        return rc
    except BrokenPipeError as exc:
        if not _stdout_gone():  # another pipe or socket: an error like any other
            print(f"camheal: error: {exc.strerror or exc}", file=sys.stderr)
            return 1
        # the reader went away (`camheal diagnose *.jpg | head -1`): stop quietly; stdout is
        # pointed at /dev/null so that Python's own flush at exit fails no more (Python docs,
        # "Note on SIGPIPE")
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except BusUnavailable as exc:  # every command that connects comes here (Client connects)
        print(f"camheal: error: {exc}; {BUS_HINT}", file=sys.stderr)
        return 1
    except CamhealError as exc:
        print(f"camheal: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"camheal: error: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
