"""inject: wrapper, picamera2 source (against a stand-in module), URI errors, profiles."""

from __future__ import annotations

import sys
import types

import cv2
import numpy as np
import pytest

from camheald import cli
from camheald.capture import profiles
from camheald.capture.base import Source, SourceClosed
from camheald.capture.injector import DEFAULT_SCHEDULE, InjectSource
from camheald.capture.opencv import VideoCaptureSource
from camheald.capture.picam import Picamera2Source
from camheald.capture.uri import parse_source
from camheald.errors import ConfigError, SourceError


class FlatSource(Source):
    """A mid-grey camera with a texture, counting opens."""

    def __init__(self, w: int = 96, h: int = 64) -> None:
        self._w, self._h = w, h
        self.opens = 0
        yy, xx = np.mgrid[0:h, 0:w]
        self.image = np.dstack([(128 + 60 * np.sin(xx / 3.0) * np.cos(yy / 4.0))] * 3) \
            .astype(np.uint8)

    def open(self) -> None:
        self.opens += 1

    def read(self) -> np.ndarray:
        return self.image.copy()

    @property
    def size(self) -> tuple[int, int]:
        return self._w, self._h

    @property
    def fps(self) -> float:
        return 25.0


def test_inject_follows_its_schedule_and_reports_ground_truth(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr("camheald.capture.injector.time.monotonic", lambda: clock[0])
    inner = FlatSource()
    src = InjectSource("inject:x", inner, ("clean", "underexposed", "dirt", "blur"), phase_s=2.0)
    assert src.injected() == "" and src.size == (96, 64) and src.fps == 25.0
    src.open()
    seen = {}
    for t in (0.5, 2.5, 4.5, 6.5, 8.5):
        clock[0] = 100.0 + t
        seen[src.injected()] = src.read()
    assert list(seen) == ["clean", "underexposed", "dirt", "blur"]  # 8.5 s loops to clean
    clean = inner.image
    assert np.array_equal(seen["clean"], clean)
    assert seen["underexposed"].mean() < clean.mean() * 0.4
    lap = lambda im: cv2.Laplacian(cv2.cvtColor(im, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var()  # noqa: E731
    assert lap(seen["blur"]) < lap(clean) * 0.5
    mask = src.defect("dirt", 96, 64).mask
    assert mask is not None and mask.any()
    assert np.abs(seen["dirt"].astype(int) - clean)[mask > 0].mean() > 20  # only under the mask
    assert np.abs(seen["dirt"].astype(int) - clean)[mask == 0].mean() < 10
    # a reconnect does not restart the schedule; the masks stay where they were
    src.close()
    src.open()
    assert src.injected() == "clean" and inner.opens == 2
    assert src.defect("dirt", 96, 64) is src.defect("dirt", 96, 64)


def test_inject_without_loop_ends_clean_and_masks_follow_the_seed():
    src = InjectSource("inject:x", FlatSource(), ("blur",), phase_s=1.0, loop=False)
    assert src.phase_at(0.5) == "blur" and src.phase_at(1.5) == "clean"
    a = InjectSource("a", FlatSource(), seed=1).defect("crack", 96, 64).mask
    b = InjectSource("b", FlatSource(), seed=5).defect("crack", 96, 64).mask
    assert a is not None and b is not None and not np.array_equal(a, b)


def test_inject_uri_forms():
    src = parse_source("inject:demo:?size=160x90&fps=30#schedule=clean,blur,obstruction"
                       "&phase=1.5&seed=4&loop=0")
    assert isinstance(src, InjectSource)
    assert src.schedule == ("clean", "blur", "obstruction") and src.phase_s == 1.5
    assert src.seed == 4 and src.loop is False
    assert src.inner.schedule == ("clean",) and src.size == (160, 90)  # inner demo is clean
    default = parse_source("inject:demo")
    assert default.schedule == DEFAULT_SCHEDULE
    anomalies = {"blur", "dirt", "crack", "underexposed", "overexposed", "low_contrast",
                 "color_cast", "noise"}
    assert anomalies <= set(DEFAULT_SCHEDULE)
    net = parse_source("inject:rtsp://10.0.0.5:554/stream?channel=1#phase=10")
    assert isinstance(net.inner, VideoCaptureSource) and net.inner.uri == \
        "rtsp://10.0.0.5:554/stream?channel=1"
    src.open()
    frame = src.read()
    assert frame.shape == (90, 160, 3) and src.injected() == "clean"


@pytest.mark.parametrize("uri, needle", [
    ("inject:", "expected inject:INNER-URI"),
    ("inject:#phase=2", "expected inject:INNER-URI"),
    ("inject:inject:demo", "cannot wrap another inject:"),
    ("inject:demo#schedule=clean,sparkles", "unknown defect"),
    ("inject:demo#phase=0.1", "phase must be"),
    ("inject:demo#seed=-1", "seed must be"),
    ("inject:demo#colour=red", "unknown option"),
    ("inject:demo#phase", "malformed options"),
    ("inject:demo?schedule=clean,blur", "put the schedule after '#'"),
    ("inject:ftp://x", "unknown scheme"),
    ("inject:file:/does/not/exist.mp4", "does not exist"),
    ("rtsp:camera", "expected rtsp://HOST"),
    ("http://", "expected http://HOST"),
    ("picamera2:", "expected picamera2:N"),
    ("picamera2:cam", "expected picamera2:N"),
    ("picamera2:0?size=641x480", "must be even"),
    ("picamera2:0?fps=0", "fps must be"),
])
def test_bad_uris_more(uri, needle):
    with pytest.raises(SourceError, match=needle):
        parse_source(uri)


def test_picamera2_missing_package_names_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "picamera2", None)  # import fails as when not installed
    with pytest.raises(SourceError) as err:
        parse_source("picamera2:0")
    msg = str(err.value)
    assert "picamera2" in msg and "python3-picamera2" in msg and "\n" not in msg


class FakeCamera:
    """Stand-in for picamera2.Picamera2 with the calls camheal makes (as documented)."""

    instances: list[FakeCamera] = []

    def __init__(self, camera_num: int = 0) -> None:
        if camera_num > 0:
            raise IndexError("list index out of range")
        self.calls: list[str] = []
        self.camera_config: dict = {}
        FakeCamera.instances.append(self)

    def create_video_configuration(self, main: dict, controls: dict) -> dict:
        self.calls.append("create_video_configuration")
        return {"main": dict(main), "controls": controls}

    def configure(self, config: dict) -> None:
        self.calls.append("configure")
        self.camera_config = {"main": {**config["main"], "size": (1280, 720)}}
        self.config = config

    def start(self) -> None:
        self.calls.append("start")

    def capture_array(self, name: str = "main") -> np.ndarray:
        w, h = self.camera_config["main"]["size"]
        bgr = np.zeros((h, w, 3), np.uint8)
        bgr[..., 0] = 200  # RGB888 stores [B, G, R]: a blue picture
        return bgr

    def stop(self) -> None:
        self.calls.append("stop")

    def close(self) -> None:
        self.calls.append("close")


def test_picamera2_source_against_a_stand_in(monkeypatch):
    fake = types.ModuleType("picamera2")
    fake.Picamera2 = FakeCamera  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "picamera2", fake)
    FakeCamera.instances.clear()
    src = parse_source("picamera2:0?size=1280x720&fps=25")
    assert isinstance(src, Picamera2Source) and src.size == (1280, 720) and src.fps == 25.0
    src.open()
    cam = FakeCamera.instances[-1]
    assert cam.config["main"] == {"size": (1280, 720), "format": "RGB888"}
    assert cam.config["controls"] == {"FrameDurationLimits": (40000, 40000)}
    frame = src.read()
    assert frame.shape == (720, 1280, 3) and tuple(frame[0, 0]) == (0, 0, 200)  # now RGB
    src.close()
    src.close()
    assert cam.calls == ["create_video_configuration", "configure", "start", "stop", "close"]
    with pytest.raises(SourceClosed, match="not open"):
        src.read()
    absent = Picamera2Source("picamera2:1", 1, module=fake)
    with pytest.raises(SourceClosed, match="cannot open camera"):
        absent.open()


def test_network_sources_get_ffmpeg_timeouts():
    src = parse_source("rtsp://127.0.0.1:9/none")
    assert isinstance(src, VideoCaptureSource)
    params = src._open_params
    assert params[0::2] == [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, cv2.CAP_PROP_READ_TIMEOUT_MSEC]
    assert all(0 < v <= 10000 for v in params[1::2])


def test_profiles_load_and_cli_flags(monkeypatch, tmp_path):
    names = profiles.available()
    assert {"generic-usb", "rpi5", "jetson-orin-nano", "demo"} <= set(names)
    for name in names:
        config = cli.resolve(cli.build_parser().parse_args(["--profile", name]))
        assert config.camera, name
    demo = cli.resolve(cli.build_parser().parse_args(["--profile", "demo"]))
    assert isinstance(parse_source(demo.camera[0].source), InjectSource)
    usb = cli.resolve(cli.build_parser().parse_args(
        ["--profile", "generic-usb", "--inject", "phase=4"]))
    assert usb.camera[0].source == \
        "inject:v4l2:/dev/video0?size=1280x720&fps=30&format=MJPG#phase=4"
    with pytest.raises(ConfigError, match="not found"):
        profiles.find("no-such-board")
    with pytest.raises(ConfigError, match="a name is"):
        profiles.find("../etc/passwd")
    (tmp_path / "mine.toml").write_text('[[camera]]\nid = "c"\nsource = "demo"\n')
    monkeypatch.setenv("CAMHEAL_PROFILE_DIR", str(tmp_path))
    assert profiles.find("mine") == tmp_path / "mine.toml"
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["--profile", "demo", "--config", "x.toml"])


def test_a_silent_network_camera_does_not_hold_up_another_cameras_open(tmp_path) -> None:
    # OpenCV serialises FFmpeg opens behind one lock unless told FFmpeg is thread-safe
    # (capture/opencv.py sets OPENCV_FFMPEG_IS_THREAD_SAFE): a camera that accepts the
    # connection and never answers then held a local file's open for its whole time-out.
    import socket
    import threading
    import time

    clip = tmp_path / "c.avi"
    out = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for i in range(5):
        out.write(np.full((48, 64, 3), 40 * i, np.uint8))
    out.release()
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(4)
        port = srv.getsockname()[1]
        silent = parse_source(f"http://127.0.0.1:{port}/a.mjpg")
        failed = threading.Event()

        def open_silent() -> None:
            try:
                silent.open()
            except SourceClosed:
                failed.set()

        t = threading.Thread(target=open_silent, daemon=True)
        t.start()
        conn, _ = srv.accept()  # it is connected, and waits for an answer that never comes
        with conn:
            time.sleep(0.5)  # (well into its open)
            start = time.monotonic()
            local = parse_source(f"file:{clip}?fps=0")  # (which opens the file to check it)
            local.open()
            took = time.monotonic() - start
            local.close()
            t.join(15)
    assert took < 1.0, f"the file's open waited {took:.1f} s behind the silent camera"
    assert failed.is_set()  # (it did time out in the end: the open really was waiting)
