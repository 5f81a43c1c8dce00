"""The `camheal` client command line: argument checks and the files it writes."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from camheal.files import write_atomic

CAMHEAL = Path(sys.executable).parent / "camheal"
DEMO = "demo:?size=160x120&fps=10"


@pytest.mark.parametrize("args", [
    ("watch", "--duration", "-1"), ("watch", "--duration", "nan"),
    ("stream", "--duration", "inf"), ("stream", "--interval", "0"),
    ("stream", "--interval", "-0.5"), ("stream", "--interval", "NaN"),
    ("hil", "--duration", "-5"), ("stream", "--duration", "soon")])
def test_bad_durations_are_usage_errors(args: tuple[str, ...]) -> None:
    # refused by the parser: no bus is even looked for
    r = subprocess.run([str(CAMHEAL), "--bus", "unix:path=/nonexistent", *args],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.splitlines()[-1].startswith(f"camheal {args[0]}: error: argument {args[1]}")
    assert "Traceback" not in r.stderr


def test_write_atomic_gives_the_umask_modes(tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        write_atomic(tmp_path / "a.bin", b"data")
    finally:
        os.umask(old)
    assert (tmp_path / "a.bin").read_bytes() == b"data"
    assert stat.S_IMODE((tmp_path / "a.bin").stat().st_mode) == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["a.bin"]


def test_capture_writes_a_file_with_the_umask_modes(start_daemon, bus_env, tmp_path: Path):
    start_daemon("--source", DEMO)
    for umask, mode in ((0o022, 0o644), (0o077, 0o600)):
        out = tmp_path / "shots" / f"frame{umask:o}.png"
        r = subprocess.run([str(CAMHEAL), "capture", "-o", str(out)], env=bus_env,
                           umask=umask, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert out.read_bytes().startswith(b"\x89PNG")
        assert stat.S_IMODE(out.stat().st_mode) == mode
