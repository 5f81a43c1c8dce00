"""A private session bus (a real dbus-daemon) for the demo, tests and benchmarks."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator


class DevBusError(RuntimeError):
    """dbus-daemon is missing or did not start."""


@contextlib.contextmanager
def private_session_bus() -> Iterator[str]:
    """Start ``dbus-daemon --session`` on a private socket; yield its address; stop it after."""
    exe = shutil.which("dbus-daemon")
    if exe is None:
        raise DevBusError("dbus-daemon not found: install the 'dbus-daemon' package "
                          "(Debian/Ubuntu: apt install dbus-daemon)")
    proc = subprocess.Popen(
        [exe, "--session", "--nofork", "--nopidfile", "--print-address=1"],
        stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        text=True)
    try:
        assert proc.stdout is not None
        address = proc.stdout.readline().strip()
        if not address:
            raise DevBusError(f"dbus-daemon exited with code {proc.wait(5)} before "
                              "printing its address")
        yield address
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def env_with_bus(address: str) -> dict[str, str]:
    """A copy of os.environ pointing session-bus clients at ``address``."""
    env = dict(os.environ)
    env["DBUS_SESSION_BUS_ADDRESS"] = address
    return env
