"""Sampling profile of the running daemon with py-spy, summarised per thread and call site."""

from __future__ import annotations

import linecache
import re
import shutil
import subprocess
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.common import PY, ROOT

RATE = 100  # samples per second
_FRAME = re.compile(r"^(?P<func>.+) \((?P<file>[^():]+):(?P<line>\d+)\)$")
_THREAD = re.compile(r"^thread \((?P<tid>\d+)\): ?(?P<name>.*)$")
# Leaves that mean "blocked waiting" (py-spy's idle detection misses some on a busy machine).
IDLE_LEAVES = {"Condition.wait", "Condition.wait_for", "Event.wait", "EpollSelector.select",
               "select", "sleep", "Lock.acquire", "_wait_for_tstate_lock",
               "_worker"}  # an idle executor thread blocked in its queue's get()


def py_spy() -> str | None:
    """The py-spy executable (next to this interpreter or on PATH), or None."""
    local = Path(PY).parent / "py-spy"
    return str(local) if local.is_file() else shutil.which("py-spy")


@dataclass
class Recorder:
    """Records one profile of a pid for a given time into ``out``; ``error`` says why not."""

    out: Path
    error: str = ""
    samples_path: Path | None = None

    def __call__(self, pid: int, seconds: float) -> None:
        exe = py_spy()
        if exe is None:
            self.error = "py-spy not installed (`.venv/bin/pip install py-spy`)"
            return
        cmd = [exe, "record", "--pid", str(pid), "--duration", str(max(1, round(seconds))),
               "--rate", str(RATE), "--format", "raw", "--threads", "-o", str(self.out)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
        if proc.returncode != 0 or not self.out.is_file():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            self.error = "py-spy failed (ptrace not permitted?): " + " | ".join(tail)
            return
        self.samples_path = self.out


def _source_line(file: str, line: int) -> str:
    for base in (ROOT / "daemon", ROOT / "client_sdk"):
        path = base / file
        if path.is_file():
            return linecache.getline(str(path), line).strip()
    return ""


@dataclass
class Site:
    """Samples whose deepest camheald frame is one source line."""

    where: str
    code: str
    samples: int
    leaf: Counter = field(default_factory=Counter)


def summarize(raw: Path, cpu_ms_per_frame: float, frames: float, top: int = 14) -> dict:
    """Per-thread sample counts and the busiest call sites, attributed to camheald lines.

    Samples whose leaf is a blocking wait (IDLE_LEAVES) count as idle. ``active_ms`` is busy
    samples / rate / frames in the profile; ``est_cpu_ms`` spreads the measured daemon CPU
    per frame over the busy samples (py-spy counts a runnable-but-preempted thread as
    active, so on a loaded machine the shares are more reliable than the sample times).
    """
    threads: Counter = Counter()
    idle: Counter = Counter()
    sites: dict[tuple[str, str], Site] = {}
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames_ = stack.split(";")
        m = _THREAD.match(frames_[0])
        thread = (m["name"] or m["tid"]) if m else "?"
        thread = re.sub(r"-cam\d+$", "", thread)
        leaf = _FRAME.sub(r"\g<func>", frames_[-1])
        if leaf in IDLE_LEAVES:
            idle[thread] += n
            continue
        threads[thread] += n
        own = None
        for fr in frames_[1:]:
            fm = _FRAME.match(fr)
            if fm and fm["file"].startswith(("camheald/", "camheal/")):
                own = fm
        where = f"{own['file']}:{own['line']} {own['func']}" if own else leaf
        key = (thread, where)
        if key not in sites:
            code = _source_line(own["file"], int(own["line"])) if own else ""
            sites[key] = Site(where, code, 0)
        sites[key].samples += n
        sites[key].leaf[leaf] += n
    busy = sum(threads.values()) or 1
    rows = []
    for (thread, _), site in sorted(sites.items(), key=lambda kv: -kv[1].samples)[:top]:
        share = site.samples / busy
        rows.append({"thread": thread, "where": site.where, "code": site.code,
                     "samples": site.samples, "share": round(share, 4),
                     "active_ms": round(site.samples / RATE / frames * 1e3, 3),
                     "est_cpu_ms": round(share * cpu_ms_per_frame, 3),
                     "leaf": site.leaf.most_common(1)[0][0]})
    return {"rate": RATE, "busy_samples": busy, "idle_samples": sum(idle.values()),
            "threads": dict(threads.most_common()), "sites": rows,
            "cpu_ms_per_frame": cpu_ms_per_frame, "frames": frames}
