"""The shipped D-Bus policy, loaded into a real dbus-daemon: fds only where a method takes one."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from dbus_fast import Message, MessageType, Variant
from dbus_fast.aio import MessageBus

from camheal import constants as C

ROOT = Path(__file__).resolve().parents[2]
POLICY = ROOT / "systemd" / "io.camheal.Camheal1.conf"
BASE = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>custom</type>
  <listen>unix:path={sock}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow send_destination="org.freedesktop.DBus"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
  </policy>
  <include>{policy}</include>
</busconfig>
"""

pytestmark = pytest.mark.skipif(os.geteuid() != 0,
                                reason="the policy grants root and the camheal user: run as root")


@pytest.fixture()
def policy_bus(tmp_path):
    conf = tmp_path / "bus.conf"
    sock = tmp_path / "bus.sock"
    conf.write_text(BASE.format(sock=sock, policy=POLICY))
    proc = subprocess.Popen(["dbus-daemon", f"--config-file={conf}", "--nofork",
                             "--print-address=1"], stdout=subprocess.PIPE, text=True,
                            stderr=subprocess.DEVNULL)
    address = proc.stdout.readline().strip()
    assert address, "dbus-daemon did not start with the shipped policy"
    yield address
    proc.terminate()
    proc.wait(5)
    proc.stdout.close()


async def test_policy_allows_calls_and_refuses_stray_fds(policy_bus, start_daemon, bus_env):
    env = {**bus_env, "DBUS_SESSION_BUS_ADDRESS": policy_bus}
    start_daemon("--source", "demo:?size=64x48&fps=5", env=env)
    bus = await MessageBus(bus_address=policy_bus, negotiate_unix_fd=True).connect()
    try:
        reply = await bus.call(Message(destination=C.BUS_NAME, path=C.MANAGER_PATH,
                                       interface=C.MANAGER_IFACE, member="Version"))
        assert reply.message_type == MessageType.METHOD_RETURN
        r, w = os.pipe()
        try:
            reply = await bus.call(Message(destination=C.BUS_NAME, path=C.MANAGER_PATH,
                                           interface=C.MANAGER_IFACE, member="Version",
                                           signature="h", body=[0], unix_fds=[r]))
            # refused by the bus itself, before the daemon sees it
            assert reply.error_name == "org.freedesktop.DBus.Error.AccessDenied"
            reply = await bus.call(Message(
                destination=C.BUS_NAME, path=C.MANAGER_PATH, interface=C.MANAGER_IFACE,
                member="CorrectImage", signature="ha{sv}", body=[0, {}], unix_fds=[r, w]))
            assert reply.error_name == "org.freedesktop.DBus.Error.AccessDenied"
            reply = await bus.call(Message(
                destination=C.BUS_NAME, path=C.MANAGER_PATH, interface=C.MANAGER_IFACE,
                member="CorrectImage", signature="ha{sv}",
                body=[0, {"format": Variant("s", "png")}], unix_fds=[r]))
            # passed the bus: the daemon answers (a pipe is not an image)
            assert reply.error_name in (C.ERROR_INVALID_ARGUMENT, C.ERROR_NOT_READY)
        finally:
            os.close(r)
            os.close(w)
    finally:
        bus.disconnect()
