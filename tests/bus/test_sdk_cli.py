"""The `camheal` client command line: argument checks and the files it writes."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from camheal import AsyncClient, Client
from camheal.errors import BusUnavailable, ServiceUnavailable
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


def test_stream_stats_without_frames_print_no_nan(start_daemon, bus_env, tmp_path: Path):
    # one image played once: the camera has sent its frame before the stream starts, so
    # every statistics window is empty and has no latency to show
    import cv2

    from support import make_photo

    image = tmp_path / "once.png"
    cv2.imwrite(str(image), make_photo(0, 120, 160))
    start_daemon("--source", f"file:{image}?loop=0")
    r = subprocess.run([str(CAMHEAL), "stream", "--stats", "--duration", "2",
                        "--interval", "0.3"], env=bus_env, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert "nan" not in r.stdout.lower(), r.stdout
    empty = [ln for ln in r.stdout.splitlines() if " 0.0 fps" in ln]
    assert len(empty) >= 2, r.stdout
    assert all("latency p50     - ms p99     - ms" in ln for ln in empty), r.stdout


def _without_bus(env: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in env.items() if not k.startswith(("DBUS_", "CAMHEAL_BUS"))}
    env.pop("HOME", None)  # (dbus_fast looks it up for a session bus without an address)
    return env


BUS_COMMANDS = {"status": ["status"], "capture": ["capture", "-o", "{tmp}/x.png"],
                "watch": ["watch", "--duration", "1"],
                "stream": ["stream", "--duration", "1"],
                "hil": ["hil", "--duration", "1", "--report-dir", "{tmp}/hil"]}
NO_BUS = {  # how the bus is missing: (extra environment, --bus, the line's problem)
    "session, DBUS_SESSION_BUS_ADDRESS unset": (
        {}, "session", "the D-Bus session bus: DBUS_SESSION_BUS_ADDRESS is not set"),
    "system by default, no socket": (
        {"DBUS_SYSTEM_BUS_ADDRESS": "unix:path={tmp}/system_bus_socket"}, None,
        "the D-Bus system bus (DBUS_SYSTEM_BUS_ADDRESS=unix:path={tmp}/system_bus_socket): "
        "No such file or directory"),
    "CAMHEAL_BUS naming nothing": (
        {"CAMHEAL_BUS": "unix:path={tmp}/nothing"}, None,
        "the D-Bus bus at 'unix:path={tmp}/nothing': No such file or directory"),
    "--bus not an address": ({}, "nowhere", "the D-Bus bus at 'nowhere': not a D-Bus address"),
}


@pytest.mark.parametrize("how", list(NO_BUS))
@pytest.mark.parametrize("command", list(BUS_COMMANDS))
def test_no_bus_is_one_line_that_says_what_to_do(command: str, how: str, tmp_path: Path):
    extra, bus, problem = NO_BUS[how]
    env = _without_bus(dict(os.environ))
    env.update({k: v.format(tmp=tmp_path) for k, v in extra.items()})
    args = [a.format(tmp=tmp_path) for a in BUS_COMMANDS[command]]
    r = subprocess.run([str(CAMHEAL), *(["--bus", bus] if bus else []), *args], env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and r.stdout == "", (r.stdout, r.stderr)
    assert r.stderr.count("\n") == 1, r.stderr  # one line, no traceback
    assert r.stderr.startswith(f"camheal: error: cannot connect to {problem.format(tmp=tmp_path)}")
    assert r.stderr.endswith("; choose the bus with --bus system|session|ADDRESS or "
                             "$CAMHEAL_BUS\n")


async def test_sdk_bus_unavailable_is_service_unavailable(tmp_path: Path) -> None:
    with pytest.raises(BusUnavailable) as err:
        await AsyncClient(f"unix:path={tmp_path}/nothing").connect()
    assert isinstance(err.value, ServiceUnavailable)
    assert str(err.value) == (f"cannot connect to the D-Bus bus at 'unix:path={tmp_path}/nothing'"
                              ": No such file or directory")
    with pytest.raises(BusUnavailable, match="'': not a D-Bus address"):
        Client("")  # (not quietly the session bus)


def test_stream_stats_line_shows_a_dash_for_a_window_without_frames() -> None:
    from camheal.stats import StreamStats

    stats = StreamStats()
    stats.add(2_000_000)
    stats.reset_window()
    assert stats.line(3).endswith("fps, latency p50     - ms p99     - ms, 1 frames, 3 dropped")
    stats.add(4_000_000)
    assert "latency p50   4.0 ms p99   4.0 ms, 2 frames, 0 dropped" in stats.line(0)
