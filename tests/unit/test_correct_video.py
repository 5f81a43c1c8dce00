"""`camheal correct-video` end to end, through the installed console script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from test_defects import H, W, iou, panning, still_demo

from camheald.capture import inject

CAMHEAL = Path(sys.executable).parent / "camheal"
N = 36


def run(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, CAMHEAL_MODEL="/nonexistent/model.onnx")  # temporal evidence only
    # as a user's shell has it: this test process imported the daemon's capture sources,
    # which tell OpenCV (through this variable) that FFmpeg is thread-safe
    env.pop("OPENCV_FFMPEG_IS_THREAD_SAFE", None)
    return subprocess.run([str(CAMHEAL), "correct-video", *args], env=env, capture_output=True,
                          text=True, timeout=120)


def write_avi(path: Path, frames: list[np.ndarray], fps: float = 10.0) -> None:
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (W, H))
    for f in frames:
        out.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    out.release()


def read_video(path: Path) -> tuple[list[np.ndarray], float]:
    cap = cv2.VideoCapture(str(path))
    fps = cap.get(cv2.CAP_PROP_FPS)
    frames = []
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    cap.release()
    return frames, fps


def psnr_in(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    m = mask > 0
    err = ((a[m].astype(np.float64) - b[m]) ** 2).mean()
    return float(10 * np.log10(255.0 ** 2 / max(err, 1e-9)))


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> tuple[Path, list[np.ndarray], inject.Defect]:
    d = tmp_path_factory.mktemp("clip")
    clean = panning(N)
    defect = inject.crack(W, H, 1)
    write_avi(d / "cracked.avi", [defect.apply(f) for f in clean])
    return d / "cracked.avi", clean, defect


def test_video_in_video_out_with_report_and_mask(clip, tmp_path: Path) -> None:
    src, clean, defect = clip
    out, mask_png = tmp_path / "fixed.mp4", tmp_path / "mask.png"
    r = run(str(src), "-o", str(out), "--json", "--mask-out", str(mask_png))
    assert r.returncode == 0, r.stderr
    # OpenCV says at every FFmpeg open that the daemon made it drop its locks: not to users
    assert "WARN" not in r.stderr and "OPENCV_FFMPEG" not in r.stderr, r.stderr
    rep = json.loads(r.stdout)
    assert set(rep) == {"input", "output", "frames", "fps", "defects", "deblurred_frames",
                        "deblur_kernels", "merged_frames", "elapsed_s"}
    assert rep["frames"] == N and rep["fps"] == 10.0 and rep["output"] == str(out)
    assert rep["deblurred_frames"] == 0  # (no detector in these runs)
    assert rep["deblur_kernels"] == {"disk": 0, "streak": 0} and rep["merged_frames"] == 0
    assert rep["defects"] and {d["kind"] for d in rep["defects"]} == {"crack"}
    for d in rep["defects"]:
        x, y, w, h = d["bbox"]
        assert defect.mask[y:y + h, x:x + w].any() and 0 <= d["first_frame"] < 30
        assert 0 < d["confidence"] <= 1
    mask = cv2.imread(str(mask_png), cv2.IMREAD_GRAYSCALE)
    assert mask.shape == (H, W) and set(np.unique(mask)) <= {0, 255}
    assert iou(mask, defect.mask) >= 0.6
    frames, fps = read_video(out)
    assert len(frames) == N and frames[0].shape == (H, W, 3) and fps == pytest.approx(10.0)
    raw, _ = read_video(src)
    # the early frames are corrected too (second pass with the final mask)
    for i in (0, N // 2, N - 1):
        assert psnr_in(frames[i], clean[i], defect.mask) > psnr_in(raw[i], clean[i],
                                                                    defect.mask) + 6.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fixed.mp4", "mask.png"]


def test_clean_clip_reports_nothing_and_avi_output(tmp_path: Path) -> None:
    src, out = tmp_path / "clean.avi", tmp_path / "out.avi"
    write_avi(src, panning(24, seed=4))
    r = run(str(src), "-o", str(out), "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["defects"] == []
    frames, _ = read_video(out)
    assert len(frames) == 24
    r = run(str(src), "-o", str(tmp_path / "again.avi"))  # human-readable line
    assert r.returncode == 0 and "no persistent defect" in r.stdout


def test_folder_in_folder_out_same_names(tmp_path: Path) -> None:
    w, h = 320, 180
    clean = panning(N, w, h, speed=3)
    defect = inject.dirt(w, h, 1)
    src = tmp_path / "frames"
    src.mkdir()
    names = [f"f{i:03d}.bmp" for i in range(N)]  # BMP: quick to write and read
    for name, f in zip(names, clean, strict=True):
        cv2.imwrite(str(src / name), cv2.cvtColor(defect.apply(f), cv2.COLOR_RGB2BGR))
    (src / "notes.txt").write_text("not a frame")
    out = tmp_path / "fixed"
    r = run(str(src), "-o", str(out), "--json")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["frames"] == N and {d["kind"] for d in rep["defects"]} == {"dirt"}
    assert sorted(p.name for p in out.iterdir()) == names
    first = cv2.cvtColor(cv2.imread(str(out / names[0])), cv2.COLOR_BGR2RGB)
    assert psnr_in(first, clean[0], defect.mask) > psnr_in(defect.apply(clean[0]), clean[0],
                                                            defect.mask) + 6.0


@pytest.mark.parametrize("case", ["missing", "not_video", "image", "empty_folder",
                                  "no_out_dir", "readonly_out_dir", "bad_ext", "out_not_empty"])
def test_bad_input_one_error_line_and_no_output(case: str, clip, tmp_path: Path) -> None:
    src, out = clip[0], tmp_path / "out.mp4"
    if case == "missing":
        src = tmp_path / "nope.avi"
    elif case == "not_video":
        src = tmp_path / "fake.avi"
        src.write_bytes(b"this is not a video" * 100)
    elif case == "image":
        src = tmp_path / "still.png"
        cv2.imwrite(str(src), np.zeros((20, 20, 3), np.uint8))
    elif case == "empty_folder":
        src = tmp_path / "empty"
        src.mkdir()
        out = tmp_path / "out"
    elif case == "no_out_dir":
        out = tmp_path / "missing" / "out.mp4"
    elif case == "readonly_out_dir":
        if os.geteuid() == 0:  # root writes into any mode-0500 folder, but not into /proc
            out = Path("/proc/camheal-test-out.mp4")
        else:
            ro = tmp_path / "ro"
            ro.mkdir()
            ro.chmod(0o500)
            out = ro / "out.mp4"
    elif case == "bad_ext":
        out = tmp_path / "out.xyz"
    else:
        frames = tmp_path / "frames"
        frames.mkdir()
        cv2.imwrite(str(frames / "a.png"), np.zeros((20, 20, 3), np.uint8))
        src, out = frames, tmp_path / "busy"
        out.mkdir()
        (out / "keep.txt").write_text("mine")
    before = sorted(p.name for p in tmp_path.rglob("*"))
    r = run(str(src), "-o", str(out), "--json")
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("camheal: error: "), r.stderr
    assert r.stdout == ""
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # nothing half-written


def test_callable_without_the_cli(tmp_path: Path, capsys, monkeypatch) -> None:
    import argparse

    from camheald.video import correct_video

    monkeypatch.setenv("CAMHEAL_MODEL", "/nonexistent/model.onnx")
    src, out = tmp_path / "tiny.avi", tmp_path / "x.mp4"
    write_avi(src, panning(8))
    ns = argparse.Namespace(input=str(src), output=str(out), json=True, mask_out=None)
    assert correct_video(ns) == 0
    assert json.loads(capsys.readouterr().out)["frames"] == 8 and out.is_file()
    ns.input = str(tmp_path / "gone.avi")
    assert correct_video(ns) == 1
    assert capsys.readouterr().err.startswith("camheal: error: ")


def _with_detector(tmp_path: Path, frames: list[np.ndarray]
                   ) -> tuple[dict, list[np.ndarray]]:
    """``camheal correct-video`` with the shipped detector on a folder of these frames:
    (its JSON report, the frames it wrote)."""
    src, out = tmp_path / "frames", tmp_path / "fixed"
    src.mkdir()
    for i, f in enumerate(frames):
        cv2.imwrite(str(src / f"f{i:02d}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    env = {k: v for k, v in os.environ.items() if k != "CAMHEAL_MODEL"}  # shipped detector
    r = subprocess.run([str(CAMHEAL), "correct-video", str(src), "-o", str(out), "--json"],
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout), [
        cv2.cvtColor(cv2.imread(str(out / f"f{i:02d}.png")), cv2.COLOR_BGR2RGB)
        for i in range(len(frames))]


def _grey_pan(n: int) -> list[np.ndarray]:
    """n 480x360 frames panning 4 px per frame over a detailed grey scene (grey: no colour
    correction for the detector to make and the test to undo)."""
    from support import detailed_photo

    scene = detailed_photo(4, 360, 480 + 4 * n).mean(axis=2, keepdims=True)
    scene = np.repeat(scene.astype(np.uint8), 3, axis=2)
    return [np.ascontiguousarray(scene[:, 4 * i:4 * i + 480]) for i in range(n)]


def test_a_defocused_clip_is_deconvolved(tmp_path: Path) -> None:
    # With the detector: a lens out of focus (a disk blur on every frame) is read off the
    # spectrum and divided out; the clean clip of the other tests gets nothing of the kind.
    from camheald.vision import deblur
    from support import make_photo

    n = 12
    rng = np.random.default_rng(5)  # a detailed scene (shapes, fine texture), panned over
    scene = make_photo(5, 360, 480 + 4 * n).astype(np.float32)
    scene += 20 * cv2.resize(rng.normal(0, 1, (90, 130, 3)).astype(np.float32),
                             (480 + 4 * n, 360), interpolation=cv2.INTER_CUBIC)
    scene = np.clip(30 + 0.76 * scene.mean(axis=2, keepdims=True), 0, 255).astype(np.uint8)
    scene = np.repeat(scene, 3, axis=2)  # neutral grey: no global colour correction to undo
    clean = [np.ascontiguousarray(scene[:, 4 * i:4 * i + 480]) for i in range(n)]
    blurred = [cv2.filter2D(f, -1, deblur.disk_psf(3.0), borderType=cv2.BORDER_REFLECT_101)
               for f in clean]
    rep, fixed = _with_detector(tmp_path, blurred)
    assert rep["deblurred_frames"] == n and rep["deblur_kernels"] == {"disk": n, "streak": 0}
    gain = [cv2.PSNR(a, c) - cv2.PSNR(b, c) for a, b, c in zip(fixed, blurred, clean,
                                                              strict=True)]
    # (an unsharp mask gives ~0.5 dB on defocus; this hard-edged scene rings a little)
    assert min(gain) >= 1.0 and float(np.mean(gain)) >= 1.5, gain


def test_a_clip_with_motion_blur_is_deconvolved_where_the_streak_fits(tmp_path: Path) -> None:
    # With the detector: the streak read off an analysed frame is divided out of the frames
    # it still fits (a steady motion), not out of those whose blur runs another way (a
    # camera's shake changed) nor out of sharp ones
    from camheald.vision import deblur

    n = 12  # at 10 fps: analyses at frames 0 (the streak) and 10 (sharp: no kernel)
    clean = _grey_pan(n)
    kernel = {"same": deblur.motion_psf(15, 30.0), "other": deblur.motion_psf(15, 120.0)}
    plan = ["same"] * 6 + ["other"] * 3 + ["sharp"] * 3
    blurred = [f if k == "sharp" else
               cv2.filter2D(f, -1, kernel[k], borderType=cv2.BORDER_REFLECT_101)
               for f, k in zip(clean, plan, strict=True)]
    rep, fixed = _with_detector(tmp_path, blurred)
    assert rep["deblur_kernels"] == {"disk": 0, "streak": 6}, rep
    gain = [cv2.PSNR(a, c) - cv2.PSNR(b, c) for a, b, c in zip(fixed, blurred, clean,
                                                              strict=True)]
    # the streak's frames gain (an unsharp mask cannot: it rings along the streak); the
    # others come out as the global correction leaves them (this grey-balanced scene: ~0)
    assert min(gain[:6]) >= 2.0, gain
    assert max(abs(g) for g in gain[6:]) <= 0.5, gain


def test_a_noisy_clip_is_denoised_by_merging_neighbouring_frames(tmp_path: Path) -> None:
    # With the detector: a noisy pan; every frame is averaged with its aligned neighbours
    n = 10
    clean = _grey_pan(n)
    rng = np.random.default_rng(3)
    noisy = [np.clip(f + rng.normal(0, 12, f.shape), 0, 255).astype(np.uint8) for f in clean]
    rep, fixed = _with_detector(tmp_path, noisy)
    assert rep["merged_frames"] == n
    gain = [cv2.PSNR(a, c) - cv2.PSNR(b, c) for a, b, c in zip(fixed, noisy, clean,
                                                              strict=True)]
    assert min(gain) >= 3.0, gain


def test_lens_finds_dirt_on_a_still_clip_only_when_asked(tmp_path: Path) -> None:
    defect = inject.dirt(W, H, 1)
    src = tmp_path / "frames"
    src.mkdir()
    for i, f in enumerate(still_demo(30, 8.0)):
        cv2.imwrite(str(src / f"f{i:03d}.png"), cv2.cvtColor(defect.apply(f), cv2.COLOR_RGB2BGR))
    alone = run(str(src), "-o", str(tmp_path / "a"), "--json")
    assert alone.returncode == 0, alone.stderr
    assert json.loads(alone.stdout)["defects"] == []  # nothing moves: time has no evidence
    res = run(str(src), "-o", str(tmp_path / "b"), "--json", "--lens", "--mask-out",
              str(tmp_path / "m.png"))
    assert res.returncode == 0, res.stderr
    found = json.loads(res.stdout)["defects"]
    assert found and {d["kind"] for d in found} == {"dirt"}
    assert iou(cv2.imread(str(tmp_path / "m.png"), cv2.IMREAD_GRAYSCALE), defect.mask) >= 0.5


def test_lens_without_the_segmenters_weights_is_a_one_line_error(tmp_path: Path) -> None:
    from camheald.vision.restore import shipped

    # a weights package like the installed one, but without camheal_lens.onnx
    pkg = tmp_path / "shadow" / "camheal_weights"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    assert shipped("camheal_lens.onnx").is_file()
    src = tmp_path / "frames"
    src.mkdir()
    for i, f in enumerate(still_demo(4, 8.0)):
        cv2.imwrite(str(src / f"f{i:03d}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    env = dict(os.environ, CAMHEAL_MODEL="/nonexistent/model.onnx",
               PYTHONPATH=str(tmp_path / "shadow"))
    res = subprocess.run([str(CAMHEAL), "correct-video", str(src), "-o", str(tmp_path / "o"),
                          "--lens"], env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "--lens" in lines[0] and "camheal_lens.onnx" in lines[0], \
        res.stderr
    assert not (tmp_path / "o").exists()  # nothing half-written


def test_correct_video_loads_no_estimator_whose_score_it_does_not_read(monkeypatch) -> None:
    from camheald import video
    from camheald.vision import lens

    monkeypatch.delenv("CAMHEAL_MODEL", raising=False)
    det = video._detector()
    assert det is not None and "obstruction" not in det.estimators
    assert {"color_cast", "low_contrast", "noise"} <= set(det.estimators)
    # so a missing segmenter costs correct-video nothing: the detector still loads
    monkeypatch.setattr(lens, "_shared", [None])
    assert video._detector() is not None


def _frames(folder: Path, frames: list[np.ndarray], ext: str = ".png") -> Path:
    folder.mkdir()
    for i, f in enumerate(frames):
        assert cv2.imwrite(str(folder / f"f{i:02d}{ext}"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    return folder


@pytest.mark.parametrize("case", ["tiny_frames", "tiny_video", "corrupt_pnm"])
def test_unreadable_frames_one_error_line_and_no_output(case: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    if case == "tiny_frames":
        src = _frames(tmp_path / "frames", panning(3, 8, 8))
        bad, text = src / "f00.png", "frame must be at least 16x16 to be analysed, got 8x8"
    elif case == "tiny_video":
        src, out = tmp_path / "tiny.avi", tmp_path / "out.avi"
        w = cv2.VideoWriter(str(src), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (8, 8))
        for f in panning(3, 8, 8):
            w.write(f)
        w.release()
        bad, text = src, "frame must be at least 16x16 to be analysed, got 8x8"
    else:
        src = _frames(tmp_path / "frames", panning(4, 64, 48), ".ppm")
        bad = src / "f02.ppm"
        bad.write_bytes(b"P6\nabc def\n255\n" + bytes(64 * 48 * 3))
        text = "corrupt PNM header (size 'abc def')"
    before = sorted(p.name for p in tmp_path.rglob("*"))
    r = run(str(src), "-o", str(out))
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.splitlines() == [f"camheal: error: {bad}: {text}"]
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


@pytest.mark.parametrize("case", ["input_clip", "input_frame", "output_video", "in_output_folder",
                                  "unsupported_type"])
def test_mask_out_never_replaces_the_input_or_the_output(case: str, clip, tmp_path: Path
                                                         ) -> None:
    src, out = tmp_path / "clip.avi", tmp_path / "out.avi"
    src.write_bytes(clip[0].read_bytes())
    if case == "input_clip":
        mask, text = src, "--mask-out would overwrite the input"
    elif case == "input_frame":
        src = _frames(tmp_path / "frames", panning(4, 64, 48))
        out, mask = tmp_path / "fixed", src / "f01.png"
        text = "--mask-out would overwrite the input"
    elif case == "output_video":
        mask, text = out, "--mask-out would overwrite the output"
    elif case == "in_output_folder":
        src = _frames(tmp_path / "frames", panning(4, 64, 48))
        out = tmp_path / "fixed"
        out.mkdir()
        mask, text = out / "mask.png", "--mask-out is inside the output folder"
    else:
        mask, text = tmp_path / "mask.gif", "--mask-out: unsupported output type .gif"
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    names = sorted(p.name for p in tmp_path.rglob("*"))
    r = run(str(src), "-o", str(out), "--mask-out", str(mask))
    assert r.returncode == 1 and r.stdout == ""
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"camheal: error: {mask}: {text}"), r.stderr
    assert sorted(p.name for p in tmp_path.rglob("*")) == names
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_pgm_frames_are_written_grey_and_outputs_get_the_umask_modes(tmp_path: Path) -> None:
    src = tmp_path / "frames"
    src.mkdir()
    for i, f in enumerate(panning(6, 64, 48)):
        assert cv2.imwrite(str(src / f"f{i}.pgm"), cv2.cvtColor(f, cv2.COLOR_RGB2GRAY))
    out, mask = tmp_path / "fixed", tmp_path / "mask.pgm"
    env = dict(os.environ, CAMHEAL_MODEL="/nonexistent/model.onnx")
    r = subprocess.run([str(CAMHEAL), "correct-video", str(src), "-o", str(out),
                        "--mask-out", str(mask)], env=env, capture_output=True, text=True,
                       timeout=120, umask=0o027)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in out.iterdir()) == [f"f{i}.pgm" for i in range(6)]
    for p in out.iterdir():
        assert p.read_bytes().startswith(b"P5") and (p.stat().st_mode & 0o777) == 0o640
    assert (out.stat().st_mode & 0o777) == 0o750
    assert mask.read_bytes().startswith(b"P5") and (mask.stat().st_mode & 0o777) == 0o640
