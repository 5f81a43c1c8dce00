"""`camheal watch` ends, with one line and exit status 1, when camheald leaves the bus."""

from __future__ import annotations

import select
import signal
import subprocess
import time

import pytest

from support import BIN

DEMO = "demo:?size=320x180&fps=20"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_watch_notices_the_daemon_leaving(start_daemon, bus_env, sig):
    d = start_daemon("--source", DEMO)
    with subprocess.Popen([str(BIN / "camheal"), "watch"], env=bus_env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE) as watch:
        try:
            assert watch.stdout is not None and watch.stderr is not None
            r, _, _ = select.select([watch.stdout], [], [], 15)
            assert r and "cam0: state" in watch.stdout.readline()  # watching now
            d.stop(sig)
            t0 = time.monotonic()
            rc = watch.wait(10)
            took = time.monotonic() - t0
            err = watch.stderr.read()
        finally:
            if watch.poll() is None:
                watch.kill()
    assert rc == 1 and took < 3, (rc, took, err)
    assert err == "camheal: error: camheald left the bus\n"
