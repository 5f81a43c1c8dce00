"""camheald as a real subprocess on a private dbus-daemon: lifecycle, API contract, errors."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from dbus_fast import Message, Variant
from dbus_fast.aio import MessageBus

import camheald
from camheal import AsyncClient
from camheal import constants as C
from camheal.errors import InvalidArgument, NotReady, ServiceUnavailable, UnknownCamera
from support import BIN, run_cli

XML = Path(camheald.__file__).parent / "bus" / "io.camheal.Camheal1.xml"
DEMO = "demo:?size=320x180&fps=20"


def _members(root: ET.Element, iface_name: str) -> dict[str, tuple]:
    """name -> normalised signature of every method, property and signal of an interface."""
    iface = next(i for i in root.iter("interface") if i.get("name") == iface_name)
    out: dict[str, tuple] = {}
    for m in iface.findall("method"):
        args = tuple((a.get("type"), a.get("direction", "in")) for a in m.findall("arg"))
        out["method " + m.get("name")] = args
    for s in iface.findall("signal"):
        out["signal " + s.get("name")] = tuple(a.get("type") for a in s.findall("arg"))
    for p in iface.findall("property"):
        out["property " + p.get("name")] = (p.get("type"), p.get("access"))
    return out


async def _introspect(address: str, path: str) -> ET.Element:
    bus = await MessageBus(bus_address=address).connect()
    try:
        reply = await bus.call(Message(destination=C.BUS_NAME, path=path,
                                       interface="org.freedesktop.DBus.Introspectable",
                                       member="Introspect"))
        return ET.fromstring(reply.body[0])
    finally:
        bus.disconnect()


async def test_introspection_matches_checked_in_xml(start_daemon, bus_address):
    start_daemon("--source", DEMO)
    contract = ET.parse(XML).getroot()
    manager = await _introspect(bus_address, C.MANAGER_PATH)
    camera = await _introspect(bus_address, C.camera_path("cam0"))
    assert _members(manager, C.MANAGER_IFACE) == _members(contract, C.MANAGER_IFACE)
    assert _members(camera, C.CAMERA_IFACE) == _members(contract, C.CAMERA_IFACE)


async def test_ready_quickly_and_clean_exit_on_sigterm(start_daemon):
    d = start_daemon("--demo")
    assert d.ready_after is not None and d.ready_after < 20, d.ready_after
    print(f"camheald --demo ready after {d.ready_after:.2f} s")
    assert d.stop() == 0
    assert "Traceback" not in d.log()


def test_sigint_exits_cleanly(start_daemon):
    import signal

    d = start_daemon("--demo")
    assert d.stop(signal.SIGINT) == 0
    assert "Traceback" not in d.log()


def test_notify_socket_gets_ready(start_daemon, bus_env, tmp_path):
    sock_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.settimeout(20)
    try:
        start_daemon("--demo", env={**bus_env, "NOTIFY_SOCKET": str(sock_path)})
        assert b"READY=1" in sock.recv(4096)
    finally:
        sock.close()


async def test_frames_health_and_properties(start_daemon, bus_address):
    start_daemon("--source", DEMO, "--source", "demo:?size=160x120&fps=10")
    async with AsyncClient(bus_address) as client:
        assert await client.version() == camheald.__version__
        cams = await client.cameras()
        assert [c.id for c in cams] == ["cam0", "cam1"]
        props = await cams[0].properties()
        assert (props["Width"], props["Height"]) == (320, 180)
        assert props["Source"] == DEMO
        raw = await cams[0].capture(corrected=False)
        assert raw.image.shape == (180, 320, 3) and raw.image.dtype == np.uint8
        assert raw.image.std() > 10  # a real scene, not a blank buffer
        assert raw.timestamp_ns <= time.monotonic_ns()
        await asyncio.sleep(0.3)  # the camera runs at 20 fps: several frames later
        later = await cams[0].capture()
        assert later.seq > raw.seq and later.timestamp_ns > raw.timestamp_ns
        small = await cams[1].capture()
        assert small.image.shape == (120, 160, 3)
        health = await cams[0].health()
        assert health["state"] == "ok"
        assert set(health["scores"]) == set(C.ANOMALIES)
        stats = await cams[0].stats()
        assert stats["frames"] >= 2


async def test_bad_calls_get_named_errors_and_the_daemon_survives(start_daemon, bus_address):
    d = start_daemon("--source", DEMO)
    async with AsyncClient(bus_address) as client:
        cam = await client.camera("cam0")
        with pytest.raises(InvalidArgument, match="unknown option"):
            await client.call(cam.path, C.CAMERA_IFACE, "CaptureFrame", "a{sv}",
                              [{"bogus": Variant("b", True)}])
        with pytest.raises(InvalidArgument, match="format"):
            await client.call(cam.path, C.CAMERA_IFACE, "CaptureFrame", "a{sv}",
                              [{"format": Variant("s", "gif")}])
        with pytest.raises(InvalidArgument, match="must be bool"):
            await client.call(cam.path, C.CAMERA_IFACE, "CaptureFrame", "a{sv}",
                              [{"corrected": Variant("s", "yes")}])
        # File descriptors sent to a method that takes none are refused and closed.
        r, w = os.pipe()
        try:
            with pytest.raises(InvalidArgument, match="file descriptors"):
                await client.call(C.MANAGER_PATH, C.MANAGER_IFACE, "Version", "h", [0],
                                  unix_fds=[r])
        finally:
            os.close(r)
            os.close(w)
        assert (await cam.capture()).image.shape == (180, 320, 3)
    assert "Traceback" not in d.log()


async def test_fds_handed_out_are_closed_and_sealed(start_daemon, bus_address):
    d = start_daemon("--source", DEMO)
    before = len(os.listdir(f"/proc/{d.proc.pid}/fd"))
    async with AsyncClient(bus_address) as client:
        cam = await client.camera()
        for _ in range(40):
            fd, _meta = await client.call(cam.path, C.CAMERA_IFACE, "CaptureFrame", "a{sv}",
                                          [{}])
            with pytest.raises(OSError):
                os.write(fd, b"x")  # read-only fd
            os.close(fd)
    after = len(os.listdir(f"/proc/{d.proc.pid}/fd"))
    assert after <= before + 2, (before, after)


def test_cli_status_and_capture(start_daemon, bus_env, tmp_path):
    start_daemon("--source", DEMO)
    st = run_cli("status", env=bus_env)
    assert st.returncode == 0, st.stderr
    assert "cam0: 320x180" in st.stdout and "health: state ok" in st.stdout
    out = tmp_path / "shot.png"
    cap = run_cli("capture", "-o", str(out), env=bus_env)
    assert cap.returncode == 0, cap.stderr
    import cv2

    img = cv2.imread(str(out))
    assert img.shape == (180, 320, 3)
    raw = run_cli("capture", "-o", str(tmp_path / "raw.jpg"), "--raw", env=bus_env)
    assert raw.returncode == 0 and "raw frame" in raw.stdout
    bad = run_cli("capture", "-o", str(tmp_path / "x.gif"), env=bus_env)
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr


def test_cli_without_daemon_says_so(bus_env):
    st = run_cli("status", env=bus_env)
    assert st.returncode == 1
    assert "not running" in st.stderr and "Traceback" not in st.stderr


async def test_client_error_when_daemon_absent(bus_address):
    async with AsyncClient(bus_address) as client:
        with pytest.raises(ServiceUnavailable):
            await client.version()


@pytest.mark.parametrize("args, needle", [
    (["--source", "bogus:thing"], "unknown scheme"),
    (["--source", "file:/nonexistent/clip.mp4"], "does not exist"),
    (["--source", "demo:?size=12x9000"], "size must be"),
    (["--source", "demo:?fps=fast"], "fps must be"),
    (["--source", "v4l2:/dev/sda"], "v4l2:/dev/videoN"),
    (["--config", "/nonexistent/camheald.toml"], "no such file"),
    (["--config", "/dev/zero", "--check-config"], "larger than 1 MiB"),  # once hung
])
def test_bad_arguments_exit_2_with_one_line(args, needle, bus_env):
    res = run_cli("--bus", "session", *args, env=bus_env, exe="camheald", timeout=30)
    assert res.returncode == 2, res
    assert needle in res.stderr
    assert res.stderr.count("\n") == 1 and "Traceback" not in res.stderr


def test_unreadable_and_invalid_config(bus_env, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[daemon]\nbus = 'session'\nlog_levle = 'info'\n")
    res = run_cli("--config", str(bad), env=bus_env, exe="camheald")
    assert res.returncode == 2 and "unknown key 'log_levle'" in res.stderr
    bad.write_text("[daemon\n")
    res = run_cli("--config", str(bad), env=bus_env, exe="camheald")
    assert res.returncode == 2 and "invalid TOML" in res.stderr
    res = run_cli("--config", str(tmp_path), env=bus_env, exe="camheald")
    assert res.returncode == 2 and "is a directory" in res.stderr
    if os.geteuid() != 0:  # root reads anything
        bad.write_text("")
        bad.chmod(0)
        res = run_cli("--config", str(bad), env=bus_env, exe="camheald")
        assert res.returncode == 2 and "permission denied" in res.stderr


def test_config_file_cameras(start_daemon, bus_env, tmp_path):
    conf = tmp_path / "c.toml"
    conf.write_text('[daemon]\nbus = "session"\n[[camera]]\nid = "front"\n'
                    f'source = "{DEMO}"\ncorrect = false\n')
    start_daemon("--config", str(conf))
    st = run_cli("status", "--json", env=bus_env)
    assert st.returncode == 0, st.stderr
    import json

    data = json.loads(st.stdout)
    assert list(data["cameras"]) == ["front"]
    assert data["cameras"]["front"]["Corrections"] == []


def test_second_instance_refuses_the_name(start_daemon, bus_env):
    start_daemon("--demo")
    res = subprocess.run([str(BIN / "camheald"), "--bus", "session", "--demo"], env=bus_env,
                         capture_output=True, text=True, timeout=30)
    assert res.returncode == 2 and "already owned" in res.stderr


def test_check_config_refuses_a_file_source_that_is_no_video(bus_env, tmp_path):
    text = tmp_path / "notes.avi"
    text.write_text("not a video\n" * 20)
    conf = tmp_path / "c.toml"
    conf.write_text(f'[daemon]\nbus = "session"\n[[camera]]\nid = "c"\nsource = "file:{text}"\n')
    res = run_cli("--config", str(conf), "--check-config", env=bus_env, exe="camheald")
    assert res.returncode == 2 and "notes.avi is not a readable video" in res.stderr
    assert res.stderr.count("\n") == 1 and "Traceback" not in res.stderr
    conf.write_text('\ufeff[daemon]\nbus = "session"\n')  # a byte-order mark is fine
    res = run_cli("--config", str(conf), "--check-config", env=bus_env, exe="camheald")
    assert res.returncode == 0 and "configuration OK" in res.stdout, res.stderr


@pytest.mark.parametrize("backend", ["tensorrt", "torch"])
def test_check_config_refuses_a_backend_that_start_refuses(backend, bus_env):
    if backend == "tensorrt":
        from camheald.inference import tensorrt

        try:
            tensorrt.import_trt()
        except tensorrt.TensorRTUnavailable:
            pass
        else:
            pytest.skip("TensorRT runs here")
    args = ["--bus", "session", "--source", DEMO, "--backend", backend]
    start = run_cli(*args, env=bus_env, exe="camheald", timeout=60)
    check = run_cli(*args, "--check-config", env=bus_env, exe="camheald", timeout=60)
    assert start.returncode == 2 and f"backend {backend}:" in start.stderr, start.stderr
    assert check.returncode == 2, check.stdout
    assert check.stderr.splitlines()[-1] == start.stderr.splitlines()[-1]
    assert "configuration OK" not in check.stdout


async def test_no_frame_yet_and_unknown_cameras_get_the_documented_errors(start_daemon,
                                                                          bus_address):
    d = start_daemon("--source", "v4l2:/dev/video987")  # never delivers a frame
    async with AsyncClient(bus_address) as client:
        cam = await client.camera("cam0")
        with pytest.raises(NotReady, match="no frame yet"):
            await client.call(cam.path, C.CAMERA_IFACE, "GetDefectMask", "a{sv}", [{}])
        with pytest.raises(NotReady, match="no frame yet"):
            await client.call(cam.path, C.CAMERA_IFACE, "CaptureFrame", "a{sv}",
                              [{"timeout_ms": Variant("i", 0)}])
        gone = C.camera_path("nope")
        with pytest.raises(UnknownCamera, match="no camera 'nope'"):
            await client.call(gone, C.CAMERA_IFACE, "CaptureFrame", "a{sv}", [{}])
        with pytest.raises(UnknownCamera, match="no camera 'nope'"):
            await client.call(gone, "org.freedesktop.DBus.Properties", "Get", "ss",
                              [C.CAMERA_IFACE, "Health"])
        r, w = os.pipe()
        try:  # fds sent to a camera that is not there are closed as well
            fds_before = len(os.listdir(f"/proc/{d.proc.pid}/fd"))
            with pytest.raises(UnknownCamera):
                await client.call(gone, C.CAMERA_IFACE, "CaptureFrame", "a{sv}", [{}],
                                  unix_fds=[r])
            assert len(os.listdir(f"/proc/{d.proc.pid}/fd")) <= fds_before
        finally:
            os.close(r)
            os.close(w)
        # the manager and the existing camera still answer as before
        assert (await client.call(cam.path, "org.freedesktop.DBus.Properties", "Get", "ss",
                                  [C.CAMERA_IFACE, "Id"]))[0].value == "cam0"
    assert "Traceback" not in d.log()
