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


BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:dir={dir}</listen>
  <servicedir>{dir}</servicedir>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""


def test_watch_starts_an_activatable_daemon_like_any_command(tmp_path, bus_env):
    # An installed camheald is started by the bus on the first call to it (D-Bus activation:
    # systemd/io.camheal.Camheal1.service). `watch` first asked the bus for the name's owner,
    # which activates nothing: it said "not running" where `status` started the daemon.
    pidfile = tmp_path / "camheald.pid"
    starter = tmp_path / "start-camheald"
    starter.write_text(f"#!/bin/sh\necho $$ > {pidfile}\n"
                       f"exec {BIN / 'camheald'} --bus session --source '{DEMO}'\n")
    starter.chmod(0o755)
    (tmp_path / "io.camheal.Camheal1.service").write_text(
        f"[D-BUS Service]\nName=io.camheal.Camheal1\nExec={starter}\n")
    (tmp_path / "bus.conf").write_text(BUS_CONFIG.format(dir=tmp_path))
    env = {k: v for k, v in bus_env.items() if k != "DBUS_SESSION_BUS_ADDRESS"}
    with subprocess.Popen(["dbus-daemon", f"--config-file={tmp_path / 'bus.conf'}",
                           "--nofork", "--print-address=1"], stdout=subprocess.PIPE, text=True,
                          env=env) as bus:
        try:
            assert bus.stdout is not None
            env["DBUS_SESSION_BUS_ADDRESS"] = bus.stdout.readline().strip()
            r = subprocess.run([str(BIN / "camheal"), "watch", "--duration", "2"], env=env,
                               capture_output=True, text=True, timeout=60)
            assert r.returncode == 0, r.stderr
            assert "cam0: state" in r.stdout and pidfile.exists()
        finally:
            if pidfile.exists():
                subprocess.run(["kill", pidfile.read_text().strip()], check=False)
            bus.terminate()
