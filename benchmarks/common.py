"""Shared helpers: paths, process CPU from /proc, percentiles, progress, machine description."""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib.metadata
import os
import platform
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / ".bench-out"
DOCS = ROOT / "docs"
IMG = DOCS / "img"
PY = sys.executable
CLK_TCK = os.sysconf("SC_CLK_TCK")

def cpu_of(pid: int) -> float:
    """User+system CPU seconds of a process (all its threads), from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def thread_cpu(pid: int) -> dict[str, float]:
    """User+system CPU seconds of a process per thread name (threads of one name summed), from
    /proc/PID/task/*/stat; camheald names its camera threads ("capture-cam0", ...)."""
    out: dict[str, float] = {}
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/stat") as f:
                head, tail = f.read().rsplit(")", 1)
        except OSError:  # the thread ended meanwhile
            continue
        name = head.split("(", 1)[1]
        fields = tail.split()
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / CLK_TCK
    return out


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])  # guest time is already inside user
    return (total - idle) / CLK_TCK, total / CLK_TCK


def cpu_self() -> float:
    """CPU seconds of this process so far."""
    t = os.times()
    return t.user + t.system


def pct(values: Iterable[float], q: float) -> float:
    """The q-th percentile, NaN for no values."""
    arr = np.asarray(list(values), np.float64)
    return float(np.percentile(arr, q)) if arr.size else float("nan")


def loadavg() -> tuple[float, float, float]:
    """1, 5 and 15 minute load averages."""
    a, b, c = os.getloadavg()
    return round(a, 2), round(b, 2), round(c, 2)


def other_busy_processes(threshold: float = 20.0) -> list[str]:
    """Processes other than ours using more than ``threshold`` % CPU right now (from ps)."""
    try:
        out = subprocess.run(["ps", "-eo", "pid,ppid,pcpu,comm,args", "--sort=-pcpu"],
                             capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    me = os.getpid()
    busy = []
    for line in out.splitlines()[1:]:
        parts = line.split(None, 4)
        if len(parts) < 5:
            continue
        pid, ppid, cpu = int(parts[0]), int(parts[1]), float(parts[2])
        if cpu < threshold or me in (pid, ppid):
            continue
        busy.append(f"{cpu:.0f}% {parts[4][:90]}")
    return busy


def code_state() -> dict[str, object]:
    """Which daemon/SDK code is measured: commit, uncommitted files, a fingerprint of sources.

    The fingerprint is taken at the start and the end of a run, so a report can say when the
    code changed under it (other people work in the same checkout).
    """
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                                  timeout=10).stdout.rstrip("\n")
        except (OSError, subprocess.SubprocessError):
            return ""

    digest = hashlib.sha256()
    for base in (ROOT / "daemon" / "camheald", ROOT / "client_sdk" / "camheal"):
        for path in sorted(base.rglob("*.py")):
            digest.update(str(path.relative_to(ROOT)).encode())
            digest.update(path.read_bytes())
    dirty = [line[3:] for line in git("status", "--porcelain", "--", "daemon", "client_sdk",
                                      "models/weights").splitlines()]
    return {"commit": git("rev-parse", "--short", "HEAD").strip(), "dirty": dirty,
            "fingerprint": digest.hexdigest()[:12]}


def machine() -> dict[str, object]:
    """What the numbers were measured on: CPU model, cores, memory, OS, library versions."""
    model, flags = "unknown", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and model == "unknown":
                model = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    except OSError:
        pass
    mem_gib = 0.0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gib = int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    versions = {}
    for key, dist in (("numpy", "numpy"), ("cv2", "opencv-python-headless"),
                      ("onnxruntime", "onnxruntime"), ("torch", "torch"),
                      ("dbus_fast", "dbus-fast")):
        try:
            versions[key] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[key] = "absent"
    simd = [f for f in ("avx2", "avx512f", "avx512_vnni", "fma", "neon") if f in flags]
    return {
        "cpu": model, "nproc": os.cpu_count(), "simd": simd, "mem_gib": round(mem_gib, 1),
        "os": f"{platform.system()} {platform.release()}", "python": platform.python_version(),
        "arch": platform.machine(), "versions": versions,
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


class Progress:
    """Step counter shown with tqdm when installed, else one printed line per step."""

    def __init__(self, total: int, desc: str = "bench") -> None:
        self.t0 = time.monotonic()
        try:
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=desc, unit="step", file=sys.stderr,
                             dynamic_ncols=True)
        except ImportError:
            self._bar = None
        self.total, self.done = total, 0

    def step(self, what: str) -> None:
        """Announce the step about to run (counts the previous one as done)."""
        if self._bar is not None:
            self._bar.set_postfix_str(what[:60])
        else:
            print(f"[{self.done + 1}/{self.total} {time.monotonic() - self.t0:5.0f}s] {what}",
                  file=sys.stderr, flush=True)

    def grow(self, n: int) -> None:
        """Add ``n`` steps to the total (once a section knows how many it has)."""
        self.total += n
        if self._bar is not None:
            self._bar.total = self.total
            self._bar.refresh()

    def advance(self) -> None:
        self.done += 1
        if self._bar is not None:
            self._bar.update(1)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def log(msg: str) -> None:
    """A line on stderr (progress bars stay intact when tqdm is active)."""
    try:
        from tqdm import tqdm

        tqdm.write(msg, file=sys.stderr)
    except ImportError:
        print(msg, file=sys.stderr, flush=True)
