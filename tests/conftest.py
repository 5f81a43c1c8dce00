"""Shared fixtures: a private dbus-daemon per test session and camheald as a real subprocess."""

from __future__ import annotations

import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from camheald.devbus import env_with_bus, private_session_bus

BIN = Path(sys.executable).parent


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--device", action="store_true", default=False,
                     help="run tests that need real camera/GPU hardware")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--device"):
        return
    skip = pytest.mark.skip(reason="needs real hardware: run with --device")
    for item in items:
        if "device" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def bus_address() -> Iterator[str]:
    if shutil.which("dbus-daemon") is None:
        pytest.fail("dbus-daemon is not installed (make test installs it: apt install dbus-daemon)")
    with private_session_bus() as address:
        yield address


@pytest.fixture()
def bus_env(bus_address: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    env = env_with_bus(bus_address)
    # persisted settings and samples of session-bus daemons go to a private folder
    env["XDG_STATE_HOME"] = str(tmp_path_factory.mktemp("state"))
    env["CAMHEAL_BUS"] = "session"
    env.pop("NOTIFY_SOCKET", None)
    return env


class Daemon:
    """A camheald subprocess; its stderr is kept and printed when a test fails."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.args = args
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.started = time.monotonic()
        self.proc = subprocess.Popen([str(BIN / "camheald"), *args], env=env,
                                     stdout=subprocess.PIPE, stderr=self._log)
        self.ready_after: float | None = None

    def wait_ready(self, timeout: float = 30.0) -> float:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        line = b""
        while time.monotonic() < deadline:
            r, _, _ = select.select([self.proc.stdout], [], [], 0.1)
            if r:
                line = self.proc.stdout.readline()
                if line.strip() == b"camheald ready":
                    self.ready_after = time.monotonic() - self.started
                    return self.ready_after
                if not line:
                    break
            if self.proc.poll() is not None:
                break
        raise AssertionError(f"camheald not ready (exit {self.proc.poll()}, last stdout "
                             f"{line!r}); log:\n{self.log()}")

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        if self._log.closed:
            return self.proc.returncode
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._log.close()
        return self.proc.returncode


@pytest.fixture()
def start_daemon(bus_env: dict[str, str], tmp_path: Path, request: pytest.FixtureRequest):
    """Factory: start_daemon('--demo', ...) -> ready Daemon on the private session bus."""
    daemons: list[Daemon] = []

    def start(*args: str, env: dict[str, str] | None = None, ready: bool = True) -> Daemon:
        d = Daemon(["--bus", "session", *args], env or bus_env,
                   tmp_path / f"camheald-{len(daemons)}.log")
        daemons.append(d)
        if ready:
            d.wait_ready()
        return d

    yield start
    failed = getattr(request.node, "rep_call", None)
    for d in daemons:
        d.stop()
        if failed is not None and failed.failed:
            print(f"--- camheald log ({' '.join(d.args)}) ---\n{d.log()}")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    rep = yield
    setattr(item, "rep_" + rep.when, rep)
    return rep
