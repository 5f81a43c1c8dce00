"""`camheal diagnose` / `camheal correct` and the files they read and write (real processes)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest
from test_offline import camheal, save

from camheald.vision import imageio
from support import make_photo

BIN = Path(sys.executable).parent


def jpeg(rgb: np.ndarray, quality: int = 90) -> bytes:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return buf.tobytes()


def with_thumbnail(main: bytes, thumb: bytes) -> bytes:
    """``main`` with an APP1 segment holding a whole JPEG (an EXIF thumbnail's layout)."""
    payload = b"Exif\x00\x00" + thumb
    return main[:2] + b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload + main[2:]


def one_error(r: subprocess.CompletedProcess[str], path: Path | str, text: str) -> None:
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith(f"camheal: error: {path}: ") and text in lines[0], lines[0]


# ------------------------------------------------------------------ reading
def test_corrupt_pnm_header_is_one_error_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.ppm"
    bad.write_bytes(b"P6\nabc def\n255\n" + bytes(300))
    good = save(tmp_path / "good.png", make_photo(1))
    r = camheal("diagnose", str(bad), str(good))
    assert r.returncode == 1
    one_error(r, bad, "corrupt PNM header")
    assert r.stdout.startswith(f"{good}: ")
    r = camheal("correct", str(bad), "-o", str(tmp_path / "out.png"))
    assert r.returncode == 1 and not (tmp_path / "out.png").exists()
    one_error(r, bad, "corrupt PNM header")


def test_data_after_the_end_marker_is_accepted(tmp_path: Path) -> None:
    # a Motion Photo: a JPEG, then a video; a PNG with bytes after IEND
    rgb = make_photo(2)
    video = b"\x00\x00\x00\x18ftypmp42" + np.random.default_rng(0).bytes(5000)
    (tmp_path / "motion.jpg").write_bytes(jpeg(rgb) + video)
    ok, png = cv2.imencode(".png", rgb)
    (tmp_path / "trail.png").write_bytes(png.tobytes() + video)
    for name in ("motion.jpg", "trail.png"):
        got, _ = imageio.read_rgb(tmp_path / name)
        assert got.shape == rgb.shape
    r = camheal("diagnose", str(tmp_path / "motion.jpg"), str(tmp_path / "trail.png"))
    assert r.returncode == 0, r.stderr


def test_truncated_files_are_still_refused(tmp_path: Path) -> None:
    rgb = make_photo(3)
    full = with_thumbnail(jpeg(rgb), jpeg(rgb[::8, ::8]))
    (tmp_path / "whole.jpg").write_bytes(full)
    assert imageio.read_rgb(tmp_path / "whole.jpg")[0].shape == rgb.shape
    # cut in the main image's scan: the thumbnail's end marker must not pass for its end
    (tmp_path / "cut.jpg").write_bytes(full[: len(full) * 3 // 4])
    ok, png = cv2.imencode(".png", rgb)
    (tmp_path / "cut.png").write_bytes(png.tobytes()[:-12])  # without its IEND chunk
    for name in ("cut.jpg", "cut.png"):
        with pytest.raises(imageio.ImageError, match="truncated"):
            imageio.read_rgb(tmp_path / name)


def test_a_device_is_refused_not_read(tmp_path: Path) -> None:
    good = save(tmp_path / "good.png", make_photo(1))
    r = camheal("diagnose", "/dev/zero", str(good), timeout=60)
    assert r.returncode == 1
    one_error(r, "/dev/zero", "not a regular file")
    assert r.stdout.startswith(f"{good}: ")


def test_a_closed_pipe_stops_diagnose_quietly(tmp_path: Path) -> None:
    # many files: the reader must close the pipe while diagnose still has lines to write
    # (with a few, a loaded machine could let it finish first)
    files = [str(save(tmp_path / f"p{i}.png", make_photo(i % 4))) for i in range(24)]
    exe = BIN / "camheal"
    with subprocess.Popen([str(exe), "diagnose", *files], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        assert proc.stdout.readline().startswith(files[0])  # `| head -1`
        proc.stdout.close()
        err = proc.stderr.read()
        assert proc.wait(60) == 1
    assert err == ""


def test_correct_reads_each_input_once(tmp_path: Path) -> None:
    # a clean photo is copied bit-exact and a dark one corrected, each from one read
    from test_offline import clean_photo

    clean = save(tmp_path / "clean.png", clean_photo())
    dark = save(tmp_path / "dark.jpg", (make_photo(7) * 0.07).astype(np.uint8))
    script = textwrap.dedent("""
        import argparse, collections, os, sys
        from camheald import offline
        inputs = sys.argv[1:3]
        opened = collections.Counter()

        def count_opens(event, args):
            if event == "open" and not isinstance(args[0], int):
                opened[os.fspath(args[0])] += 1

        sys.addaudithook(count_opens)
        rc = offline.correct(argparse.Namespace(inputs=inputs, output=sys.argv[3], json=True))
        print(rc, *(opened[f] for f in inputs))
    """)
    env = {k: v for k, v in os.environ.items() if k != "CAMHEAL_MODEL"}
    r = subprocess.run([sys.executable, "-c", script, str(clean), str(dark),
                        f"{tmp_path}/out/"], capture_output=True, text=True, timeout=120,
                       env=env)
    assert r.returncode == 0, r.stderr
    *reports, counts = r.stdout.splitlines()
    assert counts == "0 1 1", r.stdout
    assert [json.loads(x)["actions"] == [] for x in reports] == [True, False], reports
    assert (tmp_path / "out" / "clean.png").read_bytes() == clean.read_bytes()


# ------------------------------------------------------------------ writing
def test_correct_never_overwrites_an_input(tmp_path: Path) -> None:
    a, b = save(tmp_path / "a.png", make_photo(4)), save(tmp_path / "b.jpg", make_photo(5))
    other = tmp_path / "elsewhere"
    other.mkdir()
    c = save(other / "c.png", make_photo(6))
    before = {p: p.read_bytes() for p in (a, b, c)}
    r = camheal("correct", str(a), "-o", str(a))
    assert r.returncode == 1
    one_error(r, a, "would overwrite the input")
    # several inputs into their own folder: one line per such file, the others written
    r = subprocess.run([str(BIN / "camheal"), "correct", "a.png", "b.jpg", str(c), "-o", "./"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 1
    errs = r.stderr.strip().splitlines()
    assert errs == [f"camheal: error: a.png: output {Path('a.png')} would overwrite the input",
                    f"camheal: error: b.jpg: output {Path('b.jpg')} would overwrite the input"]
    assert (tmp_path / "c.png").is_file()
    assert {p: p.read_bytes() for p in (a, b, c)} == before


@pytest.mark.parametrize("name", ["a.gif", "a.xyz", "a.pbm", "noext"])
def test_unsupported_output_type_refused_before_any_work(name: str, tmp_path: Path) -> None:
    src = save(tmp_path / "in.png", make_photo(7))
    out = tmp_path / "new" / name
    r = camheal("correct", str(src), "-o", str(out))
    assert r.returncode == 1 and r.stdout == ""
    one_error(r, out, "unsupported output type")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.png"]


def test_pgm_output_is_grey(tmp_path: Path) -> None:
    src = save(tmp_path / "in.png", make_photo(8))
    r = camheal("correct", str(src), "-o", str(tmp_path / "out.pgm"))
    assert r.returncode == 0, r.stderr
    data = (tmp_path / "out.pgm").read_bytes()
    assert data.startswith(b"P5")
    assert cv2.imread(str(tmp_path / "out.pgm"), cv2.IMREAD_UNCHANGED).shape == (240, 320)


def test_an_image_too_wide_for_webp_is_one_error_line(tmp_path: Path) -> None:
    src = save(tmp_path / "wide.png", np.tile(make_photo(9, 20, 400), (1, 42, 1)))  # 16800
    out = tmp_path / "wide.webp"
    r = camheal("correct", str(src), "-o", str(out))
    assert r.returncode == 1
    one_error(r, src, "too large for WEBP")
    assert not out.exists()


def test_written_files_get_the_umask_modes(tmp_path: Path) -> None:
    dark = save(tmp_path / "dark.png", (make_photo(10) * 0.1).astype(np.uint8))
    exe = BIN / "camheal"
    env = {k: v for k, v in os.environ.items() if k != "CAMHEAL_MODEL"}
    for umask, mode in ((0o022, 0o644), (0o027, 0o640)):
        out = tmp_path / f"out{umask:o}.png"
        r = subprocess.run([str(exe), "correct", str(dark), "-o", str(out)], umask=umask,
                           env=env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        assert stat.S_IMODE(out.stat().st_mode) == mode
