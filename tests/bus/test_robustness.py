"""The daemon under abuse: broken models, call storms, clients killed mid-call."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from camheal import Client
from camheal.errors import CamhealError
from support import make_photo, wait_for

DEMO = "demo:?size=320x180&fps=20"


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(ln.split()[1]) for ln in f if ln.startswith("VmRSS"))


@pytest.mark.parametrize("content, needle", [
    (b"", "implausible size"),
    (b"\x08\x07garbage that is not a protobuf" * 10, "not a loadable ONNX model"),
])
def test_broken_model_file_means_raw_passthrough_not_a_crash(start_daemon, bus_address,
                                                             tmp_path, content, needle):
    model = tmp_path / "broken.onnx"
    model.write_bytes(content)
    conf = tmp_path / "c.toml"
    conf.write_text(f'[daemon]\nbus = "session"\n[model]\npath = "{model}"\n'
                    f'[[camera]]\nid = "cam0"\nsource = "{DEMO}"\n')
    d = start_daemon("--config", str(conf))
    with Client(bus_address) as client:
        cam = client.camera()
        health = cam.health()
        assert needle in health["model_error"] and "\n" not in health["model_error"]
        frame = cam.capture()
        assert frame.actions == () and frame.image.shape == (180, 320, 3)
    assert d.proc.poll() is None


def test_a_camera_of_tiny_frames_says_so_once_and_keeps_serving(start_daemon, bus_address,
                                                                tmp_path):
    """8x8 frames cannot be analysed: one log line, the reason in Health, no tracebacks
    (the detector and the defect tracker used to fail on every analysis)."""
    import cv2
    import numpy as np

    tiny = tmp_path / "tiny8.png"
    cv2.imwrite(str(tiny), np.random.default_rng(1).integers(0, 255, (8, 8, 3), np.uint8))
    d = start_daemon("--source", f"file:{tiny}?fps=30")
    with Client(bus_address) as client:
        cam = client.camera()
        deadline = time.monotonic() + 15
        while "analysis_error" not in cam.health() and time.monotonic() < deadline:
            time.sleep(0.1)
        health = cam.health()
        assert health["analysis_error"].startswith("frames must be at least 16x16 to be "
                                                   "analysed, got 8x8: ")
        time.sleep(2.0)  # ~10 analysis periods
        assert cam.capture(corrected=True).image.shape == (8, 8, 3)
        assert cam.defect_mask().shape == (8, 8)
        assert cam.stats()["analyses"] == 0
    log = d.log()
    assert "Traceback" not in log and " ERROR " not in log, log[-3000:]
    assert log.count("frames must be at least 16x16") == 1, log[-3000:]


def test_a_deleted_image_folder_is_no_signal_named_once_an_attempt_then_back(
        start_daemon, bus_address, tmp_path):
    """A camera's image folder deleted: no crash, no_signal, the reason in Stats naming the
    folder, one log line per attempt at the back-off's pace (no OpenCV lines, no "not a
    readable image"); frames again once the folder is back."""
    import cv2

    folder = tmp_path / "frames"

    def make() -> None:
        folder.mkdir()
        for i in range(3):
            cv2.imwrite(str(folder / f"{i}.png"), make_photo(i, 120, 160))

    make()
    d = start_daemon("--source", f"file:{folder}?fps=20")
    missing = f"{folder}: folder is missing"
    with Client(bus_address) as client:
        cam = client.camera()
        assert wait_for(lambda: cam.stats()["frames"] > 0)
        gone = folder.rename(tmp_path / "gone")  # at once (rmtree empties it file by file)
        shutil.rmtree(gone)
        assert wait_for(lambda: cam.health()["state"] == "no_signal")
        assert wait_for(lambda: cam.stats()["last_error"] == missing), cam.stats()
        time.sleep(2.0)  # back-off 0.25, 0.5, 1 s...: a few attempts, not a flood
        errors = cam.stats()["source_errors"]
        assert 2 <= errors < 10 and cam.health()["state"] == "no_signal"
        make()
        frames = cam.stats()["frames"]
        assert wait_for(lambda: cam.stats()["frames"] > frames + 5)
        assert cam.health()["state"] != "no_signal"
    assert d.proc.poll() is None
    log = d.log()
    lines = [ln for ln in log.splitlines() if "WARNING" in ln]
    # (an attempt may still fail between reading the count and the folder coming back)
    assert 2 <= len(lines) <= errors + 1 and all(ln.endswith(f"camera cam0: {missing}")
                                             for ln in lines), log[-3000:]
    assert "Traceback" not in log and "[ WARN" not in log, log[-3000:]


def test_external_data_model_is_refused(start_daemon, bus_address, tmp_path):
    onnx = pytest.importorskip("onnx")
    import numpy as np
    from onnx import TensorProto, helper

    weight = helper.make_tensor("w", TensorProto.FLOAT, [1],
                                np.array([1.0], np.float32).tobytes(), raw=True)
    graph = helper.make_graph([helper.make_node("Mul", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
                              [weight])
    model = helper.make_model(graph)
    path = tmp_path / "ext.onnx"
    onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="ext.bin", size_threshold=0)
    assert (tmp_path / "ext.bin").exists()
    conf = tmp_path / "c.toml"
    conf.write_text(f'[daemon]\nbus = "session"\n[model]\npath = "{path}"\n'
                    f'[[camera]]\nid = "cam0"\nsource = "{DEMO}"\n')
    start_daemon("--config", str(conf))
    with Client(bus_address) as client:
        err = client.camera().health()["model_error"]
        assert "external data are not supported" in err


def test_1000_rapid_calls_from_8_clients(start_daemon, bus_address):
    d = start_daemon("--source", DEMO)
    with Client(bus_address) as warm:
        warm.camera().capture()
    fds0, rss0 = len(os.listdir(f"/proc/{d.proc.pid}/fd")), rss_kib(d.proc.pid)
    failures: list[str] = []

    def worker(i: int) -> None:
        try:
            with Client(bus_address) as client:
                cam = client.camera()
                for n in range(125):
                    if n % 5 == 0:
                        assert cam.capture(corrected=bool(i % 2)).image.shape == (180, 320, 3)
                    else:
                        assert client.version()
        except (CamhealError, AssertionError) as exc:
            failures.append(repr(exc))

    t0 = time.monotonic()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    print(f"1000 calls from 8 clients in {time.monotonic() - t0:.1f} s")
    assert not failures, failures[:3]
    time.sleep(0.5)
    fds1, rss1 = len(os.listdir(f"/proc/{d.proc.pid}/fd")), rss_kib(d.proc.pid)
    assert fds1 <= fds0 + 1, (fds0, fds1)
    assert rss1 < rss0 * 1.25 + 20_000, (rss0, rss1)


def test_clients_killed_mid_call(start_daemon, bus_address):
    d = start_daemon("--source", DEMO)
    script = textwrap.dedent("""
        import sys
        from camheal import Client
        c = Client(sys.argv[1])
        cam = c.camera()
        print("go", flush=True)
        cam.capture_burst(16)
    """)
    for _ in range(6):
        p = subprocess.Popen([sys.executable, "-c", script, bus_address],
                             stdout=subprocess.PIPE, text=True)
        assert p.stdout.readline().strip() == "go"
        time.sleep(0.15)  # the burst is being collected
        p.send_signal(signal.SIGKILL)
        p.wait()
        p.stdout.close()
    with Client(bus_address) as client:
        assert client.camera().capture().image.shape == (180, 320, 3)
    time.sleep(1.5)  # bursts already running finish and are dropped
    assert d.proc.poll() is None
    assert "Traceback" not in d.log()


async def test_fds_never_leak_through_odd_messages(start_daemon, bus_address):
    """No-reply calls to fd-returning members, fds on signals, fds at the wrong path."""
    from dbus_fast import Message, MessageFlag, MessageType
    from dbus_fast.aio import MessageBus

    from camheal import constants as C

    d = start_daemon("--source", DEMO)
    bus = await MessageBus(bus_address=bus_address, negotiate_unix_fd=True).connect()
    try:
        cam_path = C.camera_path("cam0")
        await bus.call(Message(destination=C.BUS_NAME, path=cam_path, interface=C.CAMERA_IFACE,
                               member="CaptureFrame", signature="a{sv}", body=[{}]))
        owner = (await bus.call(Message(
            destination="org.freedesktop.DBus", path="/org/freedesktop/DBus",
            interface="org.freedesktop.DBus", member="GetNameOwner", signature="s",
            body=[C.BUS_NAME]))).body[0]
        before = len(os.listdir(f"/proc/{d.proc.pid}/fd"))
        r, w = os.pipe()
        try:
            for _ in range(50):
                await bus.send(Message(destination=C.BUS_NAME, path=cam_path,
                                       interface=C.CAMERA_IFACE, member="CaptureFrame",
                                       signature="a{sv}", body=[{}],
                                       flags=MessageFlag.NO_REPLY_EXPECTED))
                await bus.send(Message(destination=owner, path=cam_path,
                                       interface="org.example.Spam", member="Fds",
                                       signature="h", body=[0], unix_fds=[r],
                                       message_type=MessageType.SIGNAL))
                reply = await bus.call(Message(destination=C.BUS_NAME, path="/",
                                               interface=C.MANAGER_IFACE, member="CorrectImage",
                                               signature="ha{sv}", body=[0, {}], unix_fds=[r]))
                assert reply.message_type == MessageType.ERROR
            # still serving
            reply = await bus.call(Message(destination=C.BUS_NAME, path=C.MANAGER_PATH,
                                           interface=C.MANAGER_IFACE, member="Version"))
            assert reply.message_type == MessageType.METHOD_RETURN
        finally:
            os.close(r)
            os.close(w)
        time.sleep(0.5)
        after = len(os.listdir(f"/proc/{d.proc.pid}/fd"))
        assert after <= before + 2, (before, after)
    finally:
        bus.disconnect()
