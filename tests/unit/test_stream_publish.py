"""Publishing to the stream rings: corrected frames rendered straight into ring slots.

The corrected stream must carry exactly ``apply_global(raw, correction)`` (bit for bit), the
raw stream the captured pixels, both read-only for clients; the correction runs only when
something consumes corrected pixels.
"""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from camheal.ring import RingReader, TornFrameError
from camheald.capture.uri import parse_source
from camheald.errors import UnknownCamera
from camheald.service.camera import Camera
from camheald.service.streams import StreamHub
from camheald.service.vision import VisionEngine
from camheald.vision import spec
from camheald.vision.correct import Correction, apply_global
from camheald.vision.types import Analysis
from support import wait_for

DEMO = "demo:?size=160x120&fps=60"


class FixedVision(VisionEngine):
    """A 'model' that always asks for the same correction (no ONNX needed)."""

    def __init__(self, correction: Correction | None) -> None:
        super().__init__(None)
        self.detector = object()  # ready
        self.name = "fixed"
        self._apply = apply_global
        self.correction = correction
        self.calls = 0

    def analyze(self, rgb: np.ndarray, skip=()) -> Analysis:
        self.calls += 1
        actions = ("tone_curve", "color_matrix") if self.correction is not None else ()
        return Analysis({"color_cast": 0.9}, ("color_cast",), self.correction, None, actions)


def strong_correction() -> Correction:
    x = spec.CURVE_X
    curves = np.stack([x ** 0.8, x ** 0.95, x ** 1.2]).astype(np.float32)
    matrix = np.array([[1.1, -0.06, -0.04], [-0.03, 1.05, -0.02], [-0.05, -0.07, 1.12]],
                      np.float32)
    return Correction(curves, matrix)


@pytest.fixture()
def camera():
    cams: list[Camera] = []

    def make(correction: Correction | None) -> Camera:
        cam = Camera("t", parse_source(DEMO), FixedVision(correction), analyze_fps=50)
        cams.append(cam)
        return cam

    yield make
    for cam in cams:
        cam.stop()


def reader(hub: StreamHub, corrected: bool) -> RingReader:
    grant = hub.subscribe("client", corrected)
    try:
        return RingReader(grant.ring_fd, grant.wake_fd)
    finally:
        os.close(grant.ring_fd)
        os.close(grant.wake_fd)


def collect(r: RingReader, into: dict[int, tuple[np.ndarray, dict]]) -> None:
    for _ in range(r.layout.slots):
        rf = r.next_frame(newest=False)
        if rf is None:
            return
        assert not rf.image.flags.writeable  # clients map the ring read-only
        try:
            into[rf.seq] = (rf.copy().image, rf.meta_json())
        except TornFrameError:  # the writer lapped us: skip it
            continue


def test_corrected_ring_is_bit_identical_to_apply_global(camera):
    corr = strong_correction()
    cam = camera(corr)
    hub = StreamHub(cam)
    cam.start()
    try:
        assert wait_for(lambda: cam.current_analysis() is not None and cam.latest() is not None)
        raw_r, cor_r = reader(hub, False), reader(hub, True)
        raws: dict[int, tuple[np.ndarray, dict]] = {}
        cors: dict[int, tuple[np.ndarray, dict]] = {}
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(raws.keys() & cors.keys()) < 8:
            raw_r.wait(0.5)
            collect(raw_r, raws)
            collect(cor_r, cors)
        common = sorted(raws.keys() & cors.keys())
        assert len(common) >= 8
        changed = 0
        for seq in common:
            raw, raw_meta = raws[seq]
            cor, cor_meta = cors[seq]
            assert raw_meta["corrected"] is False and cor_meta["corrected"] is True
            assert cor_meta["actions"] == ["tone_curve", "color_matrix"]
            assert raw_meta["scores"] == cor_meta["scores"] == {"color_cast": 0.9}
            assert np.array_equal(cor, apply_global(raw, corr))
            changed += not np.array_equal(cor, raw)
        assert changed == len(common)  # the correction really ran on every frame
        # a still of the corrected kind is the same maths
        for _ in range(20):
            a, b = cam.snapshot(False), cam.snapshot(True)
            if a.seq == b.seq:
                break
        assert a.seq == b.seq and b.corrected and b.correction is None
        assert np.array_equal(b.image, apply_global(a.image, corr))
        assert cam.stats.corrections >= len(common) and cam.stats.correct_ms > 0
        raw_r.close()
        cor_r.close()
    finally:
        hub.close()


def test_correction_runs_only_for_corrected_consumers(camera):
    cam = camera(strong_correction())
    hub = StreamHub(cam)
    cam.start()
    try:
        assert wait_for(lambda: cam.current_analysis() is not None and cam.stats.frames > 20)
        assert cam.stats.corrections == 0  # nobody wants corrected pixels: none computed
        raw_r = reader(hub, False)
        frames = cam.stats.frames
        assert wait_for(lambda: cam.stats.frames > frames + 10)
        assert cam.stats.corrections == 0  # the raw stream does not need the correction
        cor_r = reader(hub, True)
        assert wait_for(lambda: cam.stats.corrections > 0)
        raw_r.close()
        cor_r.close()
    finally:
        hub.close()


def test_a_closed_hub_grants_no_stream_and_a_stopped_camera_lets_go(camera):
    # a reload closes the hub of a removed camera while a Subscribe may still be on its way:
    # that one must fail, not get a ring nobody writes nor ends
    cam = camera(None)
    hub = StreamHub(cam)
    cam.start()
    assert wait_for(lambda: cam.latest() is not None)
    before = len(os.listdir("/proc/self/fd"))
    r = reader(hub, True)
    assert hub.count() == 1 and cam._sinks
    hub.close()
    assert hub.closed and hub.count() == 0 and not cam._sinks
    with pytest.raises(UnknownCamera, match="removed"):
        hub.subscribe("client", False)
    r.close()
    assert len(os.listdir("/proc/self/fd")) == before
    # a stopped camera drops what refers back to it (sinks, the owner's callback)
    cam.add_sink(lambda raw, corrected: None)
    cam.on_events = lambda c, events: None
    cam.stop()
    assert not cam._sinks and cam.on_events is None


def test_without_a_correction_the_corrected_ring_carries_the_raw_pixels(camera):
    cam = camera(None)
    hub = StreamHub(cam)
    cam.start()
    try:
        assert wait_for(lambda: cam.current_analysis() is not None)
        raw_r, cor_r = reader(hub, False), reader(hub, True)
        raws: dict[int, tuple[np.ndarray, dict]] = {}
        cors: dict[int, tuple[np.ndarray, dict]] = {}
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(raws.keys() & cors.keys()) < 4:
            raw_r.wait(0.5)
            collect(raw_r, raws)
            collect(cor_r, cors)
        common = raws.keys() & cors.keys()
        assert len(common) >= 4
        for seq in common:
            assert np.array_equal(raws[seq][0], cors[seq][0])
            assert cors[seq][1]["actions"] == []
        assert cam.stats.corrections == 0
        raw_r.close()
        cor_r.close()
    finally:
        hub.close()


def test_opencv_pool_leaves_the_decoding_cores_alone():
    import cv2

    from camheald.service.manager import set_opencv_threads

    before = cv2.getNumThreads()
    try:
        assert set_opencv_threads(1, cpus=2) == 1  # 2 cores: one decodes, one processes
        assert cv2.getNumThreads() == 1
        assert set_opencv_threads(1, cpus=4) == 2
        assert set_opencv_threads(3, cpus=4) == 1
        assert set_opencv_threads(0, cpus=8) == 6
    finally:
        cv2.setNumThreads(before)
