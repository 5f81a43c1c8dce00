"""A source that opens but gives nothing is retried at the back-off's pace; a file played
once (``loop=0``) ends for good instead of being reopened."""

from __future__ import annotations

import logging
import time

import cv2
import numpy as np
import pytest

from camheald.capture.base import SourceClosed, SourceEnded
from camheald.capture.opencv import VideoCaptureSource
from camheald.capture.uri import parse_source
from camheald.service.camera import Camera
from camheald.service.vision import VisionEngine
from support import wait_for

N = 6  # frames in the test clip


def make_clip(path, n=N):
    """An MJPG AVI whose frame i is uniformly 30 * (i + 1) (tells the frames apart)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for i in range(n):
        writer.write(np.full((48, 64, 3), 30 * (i + 1), np.uint8))
    writer.release()
    return path


def make_truncated(path):
    """A clip cut right after its ``movi`` tag: OpenCV opens it, but read() gives nothing."""
    data = make_clip(path).read_bytes()
    path.write_bytes(data[:data.index(b"movi") + 4])
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    try:
        assert cap.isOpened() and not cap.read()[0]  # the premise of these tests
    finally:
        cap.release()
    return path


def make_folder(path, n=3):
    path.mkdir()
    for i in range(n):
        cv2.imwrite(str(path / f"{i}.png"), np.full((48, 64, 3), 30 * (i + 1), np.uint8))
    return path


def level(image) -> int:
    return round(float(image.mean()) / 30)


def run_camera(uri, tmp_path):
    """A started camera on ``uri`` and what it saw: (camera, frame levels, state events)."""
    seen: list[int] = []
    states: list[str] = []
    cam = Camera("t", parse_source(uri), VisionEngine(str(tmp_path / "nope.onnx")),
                 on_events=lambda c, evs: states.extend(e.name for e in evs
                                                        if e.kind == "state"))
    cam.add_sink(lambda raw, cor: seen.append(level(raw.image)))
    cam.start()
    return cam, seen, states


def test_a_file_played_once_ends_and_a_stream_never_does(tmp_path):
    clip = make_clip(tmp_path / "clip.avi")
    src = parse_source(f"file:{clip}?fps=0&loop=0")
    src.open()
    assert [level(src.read()) for _ in range(N)] == list(range(1, N + 1))
    with pytest.raises(SourceEnded, match="end of the video"):
        src.read()
    src.close()
    # through inject: too
    wrapped = parse_source(f"inject:file:{clip}?fps=0&loop=0#schedule=clean")
    wrapped.open()
    assert len([wrapped.read() for _ in range(N)]) == N
    with pytest.raises(SourceEnded):
        wrapped.read()
    wrapped.close()
    # looped: no end
    looped = parse_source(f"file:{clip}?fps=0")
    looped.open()
    assert [level(looped.read()) for _ in range(N + 2)][N:] == [1, 2]
    looped.close()
    # a camera or stream (no loop option) has no end: a failed read is a dropped connection
    stream = VideoCaptureSource("rtsp://x", str(clip), cv2.CAP_FFMPEG)
    stream.open()
    for _ in range(N):
        stream.read()
    with pytest.raises(SourceClosed) as err:
        stream.read()
    assert not isinstance(err.value, SourceEnded)
    stream.close()


def test_a_truncated_clip_is_no_end_but_a_failure_even_without_loop(tmp_path):
    """Opened but never a frame: retried later (the file may be fixed), not ended."""
    src = parse_source(f"file:{make_truncated(tmp_path / 'cut.avi')}?loop=0")
    src.open()
    with pytest.raises(SourceClosed, match="no frame") as err:
        src.read()
    assert not isinstance(err.value, SourceEnded)
    src.close()


def test_a_source_that_opens_but_gives_no_frame_is_retried_at_the_backoff_pace(tmp_path,
                                                                                caplog):
    cut = make_truncated(tmp_path / "cut.avi")
    with caplog.at_level(logging.WARNING, logger="camheald.service.camera"):
        cam, seen, states = run_camera(f"file:{cut}", tmp_path)
        try:
            time.sleep(2.0)
            # back-off 0.25, 0.5, 1, 2 s: about four attempts in 2 s (busy loop: thousands)
            assert 2 <= cam.stats.source_errors < 10, cam.stats
            assert cam.stats.reconnects < 10, cam.stats
            assert "no frame" in cam.stats.last_error
            assert seen == [] and states == ["no_signal"]
        finally:
            t0 = time.monotonic()
            cam.stop()
    assert time.monotonic() - t0 < 1.0  # stop() does not wait out a back-off
    warnings = [r for r in caplog.records if "no frame" in r.getMessage()]
    assert 2 <= len(warnings) < 10  # one a failed attempt, not a flood


def test_a_clip_without_loop_plays_once_then_stays_without_signal(tmp_path, caplog):
    clip = make_clip(tmp_path / "clip.avi")
    with caplog.at_level(logging.INFO, logger="camheald.service.camera"):
        # fps=0: not live, nothing dropped: every frame must reach the sink exactly once
        cam, seen, states = run_camera(f"file:{clip}?fps=0&loop=0", tmp_path)
        try:
            assert wait_for(lambda: "no_signal" in states)
            time.sleep(1.0)  # a reopened clip would have played again by now
            assert seen == list(range(1, N + 1))
            assert cam.stats.frames == N and cam.stats.dropped == 0
            assert cam.stats.reconnects == 0 and cam.stats.source_errors == 0
            assert states == ["ok", "no_signal"]
            cam.tick()
            assert cam.health_report()["state"] == "no_signal"
            capture = next(t for t in cam._threads if t.name.startswith("capture"))
            assert not capture.is_alive()  # nothing left to capture
            # the last frame stays available to callers
            assert level(cam.latest(False).image) == N
            assert level(cam.snapshot(True).image) == N
            assert cam.wait_frame(N, 0.1) is not None  # answers (no newer frame comes)
            assert cam.defect_mask().shape == (48, 64)
        finally:
            t0 = time.monotonic()
            cam.stop()
    assert time.monotonic() - t0 < 1.0
    ended = [r for r in caplog.records if "source ended" in r.getMessage()]
    assert len(ended) == 1 and ended[0].levelno == logging.INFO
    assert not any(r.levelno >= logging.WARNING for r in caplog.records)


def test_an_image_folder_without_loop_shows_each_image_once(tmp_path):
    folder = make_folder(tmp_path / "frames")
    cam, seen, states = run_camera(f"file:{folder}?fps=100&loop=0", tmp_path)
    try:
        assert wait_for(lambda: "no_signal" in states)
        time.sleep(0.5)
        # paced, so live: a frame may be dropped when processing falls behind, never repeated
        assert cam.stats.frames + cam.stats.dropped == 3 and seen == sorted(set(seen))
        assert cam.stats.reconnects == 0 and cam.stats.source_errors == 0
        assert states == ["ok", "no_signal"]
    finally:
        cam.stop()
