from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

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


def test_image_folder_skips_an_unreadable_file_and_goes_on(tmp_path, caplog):
    for i in (0, 2, 3):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.full((40, 60, 3), 50 * i, np.uint8))
    (tmp_path / "1.ppm").write_bytes(b"P6\nabc def\n255\n" + b"\0" * 40)  # corrupt header
    src = parse_source(f"file:{tmp_path}?fps=1000")
    src.open()
    with caplog.at_level("WARNING"):
        means = [int(src.read().mean()) for _ in range(7)]
    assert means == [0, 100, 150, 0, 100, 150, 0]  # the files after the bad one too
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 1 and "1.ppm: not a readable image, skipped" in warned[0]
    # a bad first file: the size comes from the first readable one
    (tmp_path / "0.png").write_bytes(b"not an image")
    src.open()
    assert src.size == (60, 40) and int(src.read().mean()) == 100
    # not looping: the end still ends it
    once = parse_source(f"file:{tmp_path}?fps=1000&loop=0")
    once.open()
    assert [int(once.read().mean()) for _ in range(2)] == [100, 150]
    with pytest.raises(SourceClosed, match="end of images"):
        once.read()
    # nothing readable at all: the source fails as before (the camera retries later)
    for name in ("2.png", "3.png"):
        (tmp_path / name).write_bytes(b"")
    with pytest.raises(SourceClosed, match="none of its 4 images is readable"):
        src.read()  # (the folder went bad while it was being read)
    with pytest.raises(SourceClosed, match="none of its 4 images is readable"):
        src.open()


def test_a_deleted_image_folder_is_said_to_be_missing_not_unreadable(tmp_path, caplog,
                                                                     capfd):
    """A file removed from the folder: skipped with one warning (not decoded, so no OpenCV
    line on each pass). The folder deleted: one SourceClosed naming the folder (no warning
    per file, no "not a readable image"), again at each reopen, until it is back."""
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f"{i}.png"), np.full((40, 60, 3), 50 * i, np.uint8))
    src = parse_source(f"file:{folder}?fps=1000")
    src.open()
    assert int(src.read().mean()) == 0
    (folder / "1.png").unlink()
    with caplog.at_level("WARNING"):
        assert [int(src.read().mean()) for _ in range(5)] == [100, 0, 100, 0, 100]
    assert [r.getMessage() for r in caplog.records] == [f"{folder / '1.png'}: missing, skipped"]
    assert capfd.readouterr().err == ""
    caplog.clear()
    shutil.rmtree(folder)
    with caplog.at_level("WARNING"):
        with pytest.raises(SourceClosed) as err:
            src.read()
        assert str(err.value) == f"{folder}: folder is missing"
        with pytest.raises(SourceClosed) as err:
            src.open()
        assert str(err.value) == f"{folder}: folder is missing"
    assert caplog.records == []  # the camera logs the one line; nothing before it
    folder.mkdir()
    cv2.imwrite(str(folder / "7.png"), np.full((40, 60, 3), 70, np.uint8))
    src.open()
    assert int(src.read().mean()) == 70
    # one image, deleted: the same, for the file
    image = folder / "7.png"
    still = parse_source(f"file:{image}?fps=1000")
    still.open()
    image.unlink()
    for step in (still.read, still.open):
        with pytest.raises(SourceClosed) as err:
            step()
        assert str(err.value) == f"{image}: image file is missing"


def test_an_image_folder_that_cannot_be_listed_is_named(tmp_path):
    """A folder without read permission fails to open naming it and why, in one line
    (stderr stays empty: no OpenCV lines), in a separate process that cannot bypass
    permissions (root, with the capabilities that read any folder dropped)."""
    drop = []
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("needs setpriv to run without root's permission override")
        drop = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]
    folder = tmp_path / "frames"
    folder.mkdir()
    cv2.imwrite(str(folder / "0.png"), np.zeros((40, 60, 3), np.uint8))
    code = ("import sys; from pathlib import Path\n"
            "from camheald.capture.base import SourceClosed\n"
            "from camheald.capture.opencv import ImageFolderSource\n"
            "src = ImageFolderSource('file:x', Path(sys.argv[1]))\n"
            "try:\n    src.open()\nexcept SourceClosed as e:\n    print(e)\n")
    folder.chmod(0)
    try:
        r = subprocess.run([*drop, sys.executable, "-c", code, str(folder)],
                           capture_output=True, text=True, timeout=60)
    finally:
        folder.chmod(0o755)
    assert (r.returncode, r.stderr) == (0, "")
    assert r.stdout == f"{folder}: folder cannot be read (Permission denied)\n"


def test_video_file_source_reads_and_loops(tmp_path):
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for i in range(5):
        frame = np.zeros((48, 64, 3), np.uint8)
        frame[:, :, 2] = 40 * i  # red channel in BGR
        writer.write(frame)
    writer.release()
    src = parse_source(f"file:{path}?fps=0")
    assert isinstance(src, VideoCaptureSource)
    src.open()
    assert src.size == (64, 48)
    frames = [src.read() for _ in range(7)]  # loops past the end
    assert all(f.shape == (48, 64, 3) for f in frames)
    assert frames[4][..., 0].mean() > frames[0][..., 0].mean() + 100  # RGB order
    src.close()


def _clip(path, fps: float, n: int = 3):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (32, 32))
    for i in range(n):
        writer.write(np.full((32, 32, 3), 60 * i, np.uint8))
    writer.release()
    return path


def _seconds_for(src, frames: int) -> float:
    src.open()
    try:
        t0 = time.monotonic()
        for _ in range(frames):
            src.read()
        return time.monotonic() - t0
    finally:
        src.close()


def test_video_file_plays_at_its_own_rate_unless_told_otherwise(tmp_path):
    clip = _clip(tmp_path / "clip.avi", 5)
    # by default at the file's rate (5 fps: 4 frames take 3 periods), as a live camera
    src = parse_source(f"file:{clip}")
    assert _seconds_for(src, 4) >= 0.55 and src.fps == 5 and src.live
    # an explicit rate wins
    src = parse_source(f"file:{clip}?fps=20")
    assert 0.14 <= _seconds_for(src, 4) < 0.55 and src.fps == 20 and src.live
    # fps=0: as fast as it decodes, and not live (the pipeline waits, never drops)
    src = parse_source(f"file:{clip}?fps=0")
    assert _seconds_for(src, 4) < 0.3 and not src.live
    # folders too: 10 fps by default, fps=0 unpaced
    cv2.imwrite(str(tmp_path / "0.png"), np.zeros((32, 32, 3), np.uint8))
    assert parse_source(f"file:{tmp_path / '0.png'}").fps == 10
    still = parse_source(f"file:{tmp_path / '0.png'}?fps=0")
    assert _seconds_for(still, 20) < 0.3 and not still.live


def test_a_file_that_is_no_video_or_image_is_refused_up_front(tmp_path):
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 10)
    with pytest.raises(SourceError, match="notes.mp4 is not a readable video"):
        parse_source(f"file:{text}")
    with pytest.raises(SourceError, match="notes.mp4 is not a readable video"):
        parse_source(f"inject:file:{text}")
    fake = tmp_path / "fake.png"
    fake.write_text("not a png")
    with pytest.raises(SourceError, match="fake.png is not a readable image"):
        parse_source(f"file:{fake}")


def test_missing_device_is_source_closed_not_crash():
    src = parse_source("v4l2:/dev/video987")
    with pytest.raises(SourceClosed, match="no such device"):
        src.open()
