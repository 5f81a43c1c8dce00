from __future__ import annotations

import cv2
import numpy as np
import pytest

from camheald.capture import inject
from camheald.capture.base import SourceClosed
from camheald.capture.demo import DemoSource
from camheald.capture.opencv import ImageFolderSource, VideoCaptureSource
from camheald.capture.uri import parse_source
from camheald.errors import SourceError


def test_demo_scene_moves_and_has_texture():
    src = parse_source("demo:?size=320x180&fps=100&phase=1000")
    assert isinstance(src, DemoSource) and src.size == (320, 180)
    src.open()
    a, b = src.render(0.0), src.render(2.0)
    assert a.shape == (180, 320, 3) and a.dtype == np.uint8
    assert np.abs(a.astype(int) - b).mean() > 5  # motion
    lap = cv2.Laplacian(cv2.cvtColor(a, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var()
    assert lap > 50  # edges and texture a detector can work with
    assert len(np.unique(a.reshape(-1, 3), axis=0)) > 500  # colour


def test_demo_schedule_and_injected_defects():
    src = DemoSource(width=200, height=120, phase_s=1.0,
                     schedule=("clean", "dirt", "blur", "underexposed", "crack"))
    src.open()
    assert [src.phase_at(t + 0.5) for t in range(6)] == [
        "clean", "dirt", "blur", "underexposed", "crack", "clean"]
    clean = src.render(1.0)
    dark = inject.make("underexposed", 200, 120).apply(clean)
    assert dark.mean() < clean.mean() * 0.4
    blurred = inject.make("blur", 200, 120).apply(clean)
    lap = lambda im: cv2.Laplacian(cv2.cvtColor(im, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var()  # noqa: E731
    assert lap(blurred) < lap(clean) * 0.3
    dirt = inject.make("dirt", 200, 120)
    assert dirt.mask is not None and 0.005 < (dirt.mask > 0).mean() < 0.5
    # a lens defect stays in place while the scene changes
    d1, d2 = dirt.apply(src.render(1.0)), dirt.apply(src.render(3.0))
    m = dirt.mask > 0
    assert np.abs(d1[m].astype(int) - d2[m]).mean() < np.abs(d1[~m].astype(int) - d2[~m]).mean()
    with pytest.raises(ValueError, match="unknown defect"):
        inject.make("sparkles", 10, 10)


@pytest.mark.parametrize("uri, needle", [
    ("", "empty"),
    ("ftp://cam", "unknown scheme"),
    ("demo:?size=10x10", "size must be"),
    ("demo:?fps=0", "fps must be"),
    ("demo:?schedule=clean,sparkles", "unknown defect"),
    ("demo:?colour=red", "unknown option"),
    ("file:/does/not/exist.mp4", "does not exist"),
    ("v4l2:video0", "v4l2:/dev/videoN"),
    ("v4l2:/dev/video0?format=MJPEG", "FourCC"),
    ("gst:videotestsrc ! fakesink", "appsink"),
    ("picamera2:0", "needs the Python package .picamera2."),
])
def test_bad_uris(uri, needle):
    with pytest.raises(SourceError, match=needle):
        parse_source(uri)


def test_image_folder_source_loops(tmp_path):
    for i in range(3):
        img = np.full((40, 60, 3), 50 * i, np.uint8)
        cv2.imwrite(str(tmp_path / f"{i}.png"), img)
    (tmp_path / "notes.txt").write_text("not an image")
    src = parse_source(f"file:{tmp_path}?fps=1000")
    assert isinstance(src, ImageFolderSource)
    src.open()
    means = [int(src.read().mean()) for _ in range(4)]
    assert means == [0, 50, 100, 0]


def test_video_file_source_reads_and_loops(tmp_path):
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for i in range(5):
        frame = np.zeros((48, 64, 3), np.uint8)
        frame[:, :, 2] = 40 * i  # red channel in BGR
        writer.write(frame)
    writer.release()
    src = parse_source(f"file:{path}")
    assert isinstance(src, VideoCaptureSource)
    src.open()
    assert src.size == (64, 48)
    frames = [src.read() for _ in range(7)]  # loops past the end
    assert all(f.shape == (48, 64, 3) for f in frames)
    assert frames[4][..., 0].mean() > frames[0][..., 0].mean() + 100  # RGB order
    src.close()


def test_missing_device_is_source_closed_not_crash():
    src = parse_source("v4l2:/dev/video987")
    with pytest.raises(SourceClosed, match="no such device"):
        src.open()
