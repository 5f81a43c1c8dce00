"""Helpers shared by test modules (import as ``support``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent


def run_cli(*args: str, env: dict[str, str], timeout: float = 60.0,
            exe: str = "camheal") -> subprocess.CompletedProcess[str]:
    """Run a console script of this environment and capture its output."""
    return subprocess.run([str(BIN / exe), *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))
