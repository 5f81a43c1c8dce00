"""The offline CLI (`camheal diagnose` / `camheal correct`) as a real subprocess."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from camheal.constants import ANOMALIES
from support import make_photo

BIN = Path(sys.executable).parent


def camheal(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    exe = BIN / "camheal"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "camheal"]
    env = {k: v for k, v in os.environ.items() if k != "CAMHEAL_MODEL"}
    return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=timeout,
                          env=env)


def save(path: Path, rgb: np.ndarray) -> Path:
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return path


def png_header(w: int, h: int) -> bytes:
    """A PNG that only declares its size (IHDR + empty IDAT + IEND), valid CRCs."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b""))
            + chunk(b"IEND", b""))


def clean_photo() -> np.ndarray:
    """A generated photo that the shipped model finds clean: nothing detected, no correction.

    Synthetic images are out of distribution, so some of them get corrected; which ones
    depends on the weights. The tests below are about what happens to a clean image.
    """
    from camheald.vision.detector import Detector

    det = Detector.load()
    for seed in range(40):
        img = make_photo(seed)
        a = det.analyze(img)
        if not a.detected and not a.actions:
            return img
    raise AssertionError("the shipped model finds none of 40 generated photos clean")


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("imgs")
    photo = make_photo(7)
    out = {"clean": save(d / "clean.png", clean_photo()),
           "dark": save(d / "dark.jpg", (photo * 0.07).astype(np.uint8))}
    (d / "text.png").write_text("hello, not an image\n")
    (d / "empty.jpg").write_bytes(b"")
    full = out["clean"].read_bytes()
    (d / "cut.png").write_bytes(full[: len(full) // 2])
    (d / "huge.png").write_bytes(png_header(50000, 50000))
    for k in ("text", "empty", "cut", "huge"):
        out[k] = d / f"{k}.{'jpg' if k == 'empty' else 'png'}"
    out["missing"] = d / "missing.png"
    return out


def test_diagnose_json(images):
    r = camheal("diagnose", "--json", str(images["clean"]), str(images["dark"]))
    assert r.returncode == 0, r.stderr
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    assert [x["file"] for x in lines] == [str(images["clean"]), str(images["dark"])]
    for x in lines:
        assert set(x) == {"file", "scores", "detected", "actions"}
        assert list(x["scores"]) == list(ANOMALIES)
    assert "underexposed" in lines[1]["detected"]
    assert "tone_curve" in lines[1]["actions"]


def test_diagnose_human(images):
    r = camheal("diagnose", str(images["dark"]))
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"{images['dark']}: ") and "underexposed" in r.stdout


def test_bad_inputs_reported_and_others_processed(images):
    bad = ["missing", "text", "empty", "cut", "huge"]
    r = camheal("diagnose", "--json", *(str(images[k]) for k in bad), str(images["clean"]))
    assert r.returncode != 0
    errs = r.stderr.strip().splitlines()
    assert len(errs) == len(bad), r.stderr
    for k, line in zip(bad, errs, strict=True):
        assert line.startswith(f"camheal: error: {images[k]}: "), line
    assert "too large" in errs[-1]
    assert len(r.stdout.splitlines()) == 1
    assert json.loads(r.stdout)["file"] == str(images["clean"])


def test_correct_single_file(images, tmp_path):
    out = tmp_path / "fixed.jpg"
    r = camheal("correct", "--json", str(images["dark"]), "-o", str(out))
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert "underexposed" in rep["detected"]
    src = cv2.imread(str(images["dark"]))
    got = cv2.imread(str(out))
    assert got.shape == src.shape
    assert got.mean() > 2 * src.mean()
    assert not list(tmp_path.glob("*.tmp"))


def test_correct_many_into_folder_and_clean_unchanged(images, tmp_path):
    outdir = tmp_path / "out"
    r = camheal("correct", str(images["clean"]), str(images["dark"]), str(images["text"]),
                "-o", str(outdir) + "/")
    assert r.returncode != 0
    assert r.stderr.count("camheal: error:") == 1
    assert sorted(p.name for p in outdir.iterdir()) == ["clean.png", "dark.jpg"]
    clean_in = cv2.imread(str(images["clean"])).astype(float)
    clean_out = cv2.imread(str(outdir / "clean.png")).astype(float)
    mse = np.mean((clean_in - clean_out) ** 2)
    assert mse == 0 or 10 * np.log10(255**2 / mse) >= 40
