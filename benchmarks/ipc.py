"""IPC section: runs benchmarks/bench_ipc.py (ring vs unix socket vs D-Bus ``ay``) as is."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from benchmarks.common import PY

SCRIPT = Path(__file__).with_name("bench_ipc.py")


def run(frames: int, clients: int, fps: float = 30.0, timeout: float = 600.0) -> dict:
    """bench_ipc's JSON result for one client count."""
    out = subprocess.run([PY, str(SCRIPT), "--frames", str(frames), "--clients", str(clients),
                          "--fps", f"{fps:g}", "--json"], capture_output=True, text=True,
                         timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"bench_ipc failed: {out.stderr.strip()[-1500:]}")
    start = out.stdout.index("{")
    return json.loads(out.stdout[start:])
