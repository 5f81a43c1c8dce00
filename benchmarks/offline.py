"""Offline section: what ``camheal correct-video`` costs a user, per clip size and content.

Each run is the real command line in a fresh process (``python -m camheal correct-video IN
-o OUT --json --mask-out MASK``), timed from outside: wall time, the process's own CPU time
(``os.wait4``) and peak RSS (VmHWM, read every 50 ms). Clips: the bench's panning texture
without its screen-space discs (a clean clip: nothing in it stays put on the lens; its
burned-in frame counter stays), and the same frames under a synthetic
lens-dirt overlay (``camheald.capture.inject.dirt``), which makes the tool find, track and
fill a defect: the mask IoU against the true overlay is reported next to the cost.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from benchmarks.clip import render
from benchmarks.common import OUT, PY


def make_clips(width: int, height: int, frames: int, fps: float = 30.0,
               out_dir: Path = OUT) -> dict[str, tuple[Path, np.ndarray | None]]:
    """{"clean": (clip, None), "dirt": (clip, true mask)} as MJPG AVIs (rewritten each call,
    so their content always matches this code)."""
    from camheald.capture import inject

    out_dir.mkdir(parents=True, exist_ok=True)
    dirt = inject.dirt(width, height, 1)
    paths = {k: out_dir / f"offline-{k}-{width}x{height}-{frames}f.avi" for k in ("clean", "dirt")}
    writers = {k: cv2.VideoWriter(str(p), cv2.CAP_FFMPEG, cv2.VideoWriter_fourcc(*"MJPG"), fps,
                                  (width, height)) for k, p in paths.items()}
    try:
        if not all(w.isOpened() for w in writers.values()):
            raise RuntimeError("OpenCV cannot write MJPG video here")
        for bgr in render(width, height, frames, objects=False):
            writers["clean"].write(bgr)
            writers["dirt"].write(dirt.apply(bgr))
    finally:
        for w in writers.values():
            w.release()
    return {"clean": (paths["clean"], None), "dirt": (paths["dirt"], dirt.mask)}


def _hwm_kb(pid: int) -> int:
    """The process's peak RSS so far (VmHWM, kB; 0 once it is gone). Not ``ru_maxrss``: a
    child's starts at its parent's RSS when forked, which here is the benchmark's own."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def run_one(clip: Path, true_mask: np.ndarray | None, frames: int, lens: bool = False,
            timeout: float = 900.0) -> dict:
    """One ``correct-video`` run: cost, what it reported, and (with a true mask) the IoU."""
    out = clip.with_name(clip.stem + "-out.avi")
    mask_out = clip.with_name(clip.stem + "-mask.png")
    for p in (out, mask_out):
        p.unlink(missing_ok=True)
    cmd = [PY, "-m", "camheal", "correct-video", str(clip), "-o", str(out), "--json",
           "--mask-out", str(mask_out)] + (["--lens"] if lens else [])
    with tempfile.TemporaryFile("w+") as so, tempfile.TemporaryFile("w+") as se:
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=so, stderr=se, text=True)
        deadline = t0 + timeout
        peak_kb = 0
        while (done := os.wait4(proc.pid, os.WNOHANG))[0] == 0:
            peak_kb = max(peak_kb, _hwm_kb(proc.pid))
            if time.monotonic() > deadline:
                proc.kill()
                proc.returncode = os.waitstatus_to_exitcode(os.wait4(proc.pid, 0)[1])
                raise RuntimeError(f"correct-video timed out after {timeout:.0f} s on "
                                   f"{clip.name}")
            time.sleep(0.05)
        wall = time.monotonic() - t0
        _, status, usage = done
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        so.seek(0)
        se.seek(0)
        stdout, stderr = so.read(), se.read()
    if proc.returncode != 0:
        raise RuntimeError(f"correct-video failed on {clip.name}: {stderr.strip()[-800:]}")
    report = json.loads(stdout)
    cpu = usage.ru_utime + usage.ru_stime
    row = {"clip": clip.name, "frames": frames, "lens": lens, "wall_s": round(wall, 2),
           "fps": round(frames / wall, 2), "cpu_ms_per_frame": round(1e3 * cpu / frames, 1),
           "peak_rss_mb": round(peak_kb / 1024, 1),
           "defects": len(report.get("defects", [])),
           "kinds": sorted({d["kind"] for d in report.get("defects", [])})}
    if true_mask is not None:
        got = cv2.imread(str(mask_out), cv2.IMREAD_GRAYSCALE)
        t, g = true_mask > 0, (got > 127) if got is not None else np.zeros_like(true_mask, bool)
        union = np.logical_or(t, g).sum()
        row["iou_end"] = round(float(np.logical_and(t, g).sum() / union), 3) if union else None
    for p in (out, mask_out):
        p.unlink(missing_ok=True)
    return row


SIZES = {"720p": (1280, 720), "1080p": (1920, 1080)}


def run(quick: bool, progress, results: dict) -> None:
    """The section's rows into ``results["offline"]``: per size, the clean and the dirty clip
    (quick: 720p only, 30 frames; else 60 frames, 2 s of 30 fps video)."""
    frames = 30 if quick else 60
    rows = []
    for res, (w, h) in SIZES.items():
        if quick and res != "720p":
            continue
        progress.step(f"offline: correct-video {res}")
        for kind, (clip, mask) in make_clips(w, h, frames).items():
            try:
                rows.append({"res": res, "content": kind, **run_one(clip, mask, frames)})
            except (RuntimeError, OSError, ValueError) as exc:
                results["notes"].append(f"correct-video {res} {kind} failed: {exc}")
        progress.advance()
    results["offline"] = rows
