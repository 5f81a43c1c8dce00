"""``camheal correct-video IN -o OUT [--json] [--mask-out MASK.png] [--lens]`` (offline).

Two passes over the clip (a video file, or a folder of image frames):

1. the persistent-defect tracker follows the whole clip (about 10 updates per second of
   video) and ends with the final defect mask and report;
2. every frame is corrected with that final mask (so the first frames are corrected too):
   temporal fill + OpenCV inpainting (``camheald.vision.inpaint``), then, when the detector
   model is installed, a merge with the neighbouring frames where it detects noise
   (``camheald.vision.merge``), a deconvolution where it detects blur and the spectrum
   shows the blur's kernel (a defocus disk or a linear motion streak,
   ``camheald.vision.deblur``) and its global tone/colour correction.

The output is written under a temporary name next to OUT and renamed at the end, so a
failed run never leaves a half-written OUT.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from camheal.constants import ANOMALIES
from camheal.files import identity, public
from camheald.cvlog import quiet_opencv
from camheald.service.defects import DefectTracker
from camheald.vision import imageio
from camheald.vision.inpaint import SequenceInpainter
from camheald.vision.spec import too_small

logger = logging.getLogger(__name__)

FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "MJPG"}
TRACK_HZ = 10.0  # tracker updates per second of video
FOLDER_FPS = 10.0  # assumed frame rate of a folder of frames
# scores no pass reads (the correction uses the global correction, blur and noise): their
# estimators are not loaded
_UNUSED = ("obstruction",)


class VideoError(Exception):
    """A clip cannot be read or the output cannot be written (message names the path)."""


# ---------------------------------------------------------------- sources and sinks
class Clip:
    """Frames of a video file or a folder of images, readable more than once."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.files: list[Path] | None = None
        if path.is_dir():
            self.files = sorted(p for p in path.iterdir()
                                if p.is_file() and imageio.family_of(p) is not None)
            if not self.files:
                raise VideoError(f"{path}: no image frames in folder")
            first, _ = self._read_image(self.files[0])
            self.fps, self.count = FOLDER_FPS, len(self.files)
        else:
            if not path.exists():
                raise VideoError(f"{path}: no such file")
            if imageio.family_of(path) is not None:  # OpenCV would read it as a 1-frame clip
                raise VideoError(f"{path}: is an image, not a video (use 'camheal correct')")
            with quiet_opencv():  # (its own lines would come before ours)
                cap = cv2.VideoCapture(str(path))
            ok, bgr = cap.read() if cap.isOpened() else (False, None)
            if not ok or bgr is None:
                cap.release()
                raise VideoError(f"{path}: not a readable video")
            fps = cap.get(cv2.CAP_PROP_FPS)
            self.fps = float(fps) if fps and 0 < fps < 1000 else 25.0
            self.count = max(0, int(cap.get(cv2.CAP_PROP_FRAME_COUNT)))
            cap.release()
            first = bgr
        self.height, self.width = first.shape[:2]
        why = too_small(self.width, self.height)
        if why:
            raise VideoError(f"{self.files[0] if self.files else path}: {why}")

    def _read_image(self, p: Path) -> tuple[np.ndarray, str]:
        try:
            return imageio.read_rgb(p)
        except imageio.ImageError as e:
            raise VideoError(f"{p}: {e}") from None

    def frames(self) -> Iterator[np.ndarray]:
        """HxWx3 uint8 RGB frames, in order."""
        if self.files is not None:
            for p in self.files:
                rgb, _ = self._read_image(p)
                if rgb.shape[:2] != (self.height, self.width):
                    raise VideoError(f"{p}: frame size {rgb.shape[1]}x{rgb.shape[0]} differs "
                                     f"from the first frame's {self.width}x{self.height}")
                yield rgb
            return
        with quiet_opencv():
            cap = cv2.VideoCapture(str(self.path))
        try:
            while True:
                ok, bgr = cap.read()
                if not ok:
                    return
                yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        finally:
            cap.release()


class _Sink:
    """Writes the corrected clip under a temporary name; ``commit`` renames it to OUT."""

    def __init__(self, clip: Clip, out: Path) -> None:
        self.out, self.clip = out, clip
        parent = out.parent if str(out.parent) else Path(".")
        if not parent.is_dir():
            raise VideoError(f"{out}: output folder {parent} does not exist")
        self._writer: cv2.VideoWriter | None = None
        self._names = iter(clip.files or ())
        if clip.files is not None:
            if out.exists() and (not out.is_dir() or any(out.iterdir())):
                raise VideoError(f"{out}: exists and is not an empty folder")
            try:
                self.tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=parent))
            except OSError as e:
                raise VideoError(f"{out}: cannot write ({e.strerror or e})") from None
            return
        ext = out.suffix.lower()
        if ext not in FOURCC:
            raise VideoError(f"{out}: unsupported video type {ext or '(none)'} "
                             f"(use {', '.join(sorted(FOURCC))})")
        if out.is_dir():
            raise VideoError(f"{out}: is a folder (the input is a video file)")
        try:
            fd, name = tempfile.mkstemp(prefix=f".{out.stem}.", suffix=ext, dir=parent)
            os.close(fd)
        except OSError as e:
            raise VideoError(f"{out}: cannot write ({e.strerror or e})") from None
        self.tmp = Path(name)
        self._writer = cv2.VideoWriter(str(self.tmp), cv2.VideoWriter_fourcc(*FOURCC[ext]),
                                       clip.fps, (clip.width, clip.height))
        if not self._writer.isOpened():
            self.abort()
            raise VideoError(f"{out}: cannot open a {FOURCC[ext]} video writer")

    def write(self, rgb: np.ndarray) -> None:
        if self._writer is not None:
            self._writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
            return
        name = next(self._names)
        try:
            imageio.write_rgb(self.tmp / name.name, rgb)
        except (OSError, imageio.ImageError) as e:
            raise VideoError(f"{self.out / name.name}: cannot write ({e})") from None

    def commit(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None
            if not self.tmp.is_file() or self.tmp.stat().st_size == 0:
                raise VideoError(f"{self.out}: the video writer produced no data")
        elif self.out.is_dir():
            self.out.rmdir()  # empty (checked in __init__)
        public(self.tmp)
        os.replace(self.tmp, self.out)

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None
        if self.tmp.is_dir():
            shutil.rmtree(self.tmp, ignore_errors=True)
        else:
            self.tmp.unlink(missing_ok=True)


# ---------------------------------------------------------------- the command
def _detector():
    """The detector when its model is installed, else None (correction is then local only)."""
    try:
        from camheald.vision.detector import Detector, ModelError
    except ImportError:
        return None
    try:  # without the estimators of scores no pass reads (obstruction: a segmenter pass)
        return Detector.load(os.environ.get("CAMHEAL_MODEL") or None, without=_UNUSED)
    except (ModelError, ImportError, OSError) as e:
        logger.info("no detector model (%s): persistent defects from temporal evidence only",
                    e)
        return None


def _progress(total: int, desc: str):
    if not sys.stderr.isatty():
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total or None, desc=desc, unit="frame", file=sys.stderr, leave=False)


def track(clip: Clip, det=None, tracker: DefectTracker | None = None, use_lens: bool = False
          ) -> tuple[DefectTracker, int]:
    """Pass 1: run the tracker over the clip; return it and the number of frames. With
    ``use_lens`` (and no ``tracker`` given, which keeps its own), the lens-defect segmenter
    votes too; VideoError when it cannot be loaded."""
    if tracker is None:
        from camheald.vision import lens

        seg = lens.shared() if use_lens else None
        if use_lens and seg is None:
            raise VideoError("--lens: the lens-defect segmenter (camheal_lens.onnx) is "
                             "missing or cannot be loaded")
        tracker = DefectTracker(lens=seg)
    step = max(1, round(clip.fps / TRACK_HZ))
    if clip.count and clip.count // step < 40:  # short clip: use every frame
        step = 1
    bar = _progress(clip.count, "tracking")
    n = 0
    for i, rgb in enumerate(clip.frames()):
        n += 1
        if bar is not None:
            bar.update(1)
        if i % step:
            continue
        mask = None
        if det is not None:
            mask = det.analyze(rgb, ANOMALIES).mask  # the network's mask: no estimator
        tracker.update(rgb, mask, now=i / clip.fps, frame_index=i)
    if bar is not None:
        bar.close()
    return tracker, n


def correct(clip: Clip, mask: np.ndarray, sink: _Sink, det=None, total: int = 0,
            stats: dict | None = None) -> int:
    """Pass 2: correct every frame with the final mask; return the number written.

    With a detector, once a second of video: its global correction and, when it detects a
    blur, the kernel the frame's spectrum shows (``vision.deblur.find_kernel``: a defocus
    disk, else a linear motion streak). Until the next analysis every frame is deconvolved
    by that kernel (after the inpainting, before the global correction): by a disk always
    (focus holds from frame to frame), by a streak only where it still explains that frame's
    spectrum (``deblur.streak_fits``: a camera's shake changes, and a wrong streak rings).
    ``stats["deblurred"]`` counts the frames deconvolved, ``stats["kernels"]`` them by kind.

    Before all that (after the inpainting), while the detector finds noise (asked once a
    second), each frame is averaged with its two neighbours on each side where they agree
    with it (``vision.merge.SlidingMerge``); ``stats["merged"]`` counts those frames."""
    from camheald.vision import deblur
    from camheald.vision.correct import apply_global
    from camheald.vision.merge import SlidingMerge

    inp = SequenceInpainter(mask) if mask.any() else None
    every = max(1, round(clip.fps))  # global correction re-estimated once a second

    def sigma_for(rgb: np.ndarray) -> float | None:
        return deblur.noise_level(rgb) if "noise" in det.analyze(rgb).detected else None

    merger = SlidingMerge(sigma_for, every) if det is not None else None
    correction, kern = None, None
    bar = _progress(total, "correcting")
    n = 0
    stats = {} if stats is None else stats
    stats["deblurred"] = 0
    stats["kernels"] = {"disk": 0, "streak": 0}
    stats["merged"] = 0

    def emit(frames: list[np.ndarray]) -> None:
        nonlocal n, correction, kern
        for f in frames:
            if det is not None:
                if n % every == 0:
                    a = det.analyze(f)
                    correction = a.correction
                    kern = deblur.find_kernel(f) if "blur" in a.detected else None
                if kern is not None and (kern.kind == "disk"
                                         or deblur.streak_fits(f, kern.streak)):
                    f = deblur.wiener(f, kern.psf, kern.k)
                    stats["deblurred"] += 1
                    stats["kernels"][kern.kind] += 1
                if correction is not None:
                    f = apply_global(f, correction)
            sink.write(f)
            n += 1
            if bar is not None:
                bar.update(1)

    def merged(frames: list[np.ndarray]) -> list[np.ndarray]:
        return frames if merger is None else [g for f in frames for g in merger.push(f)]

    for rgb in clip.frames():
        emit(merged(inp.push(rgb) if inp is not None else [rgb]))
    if inp is not None:
        emit(merged(inp.flush()))
    if merger is not None:
        emit(merger.flush())
        stats["merged"] = merger.merged
    if bar is not None:
        bar.close()
    return n


def _check_mask_path(path: Path, src: Path, out: Path, clip: Clip) -> None:
    """Refuse, before any work, a --mask-out that would replace the input (the clip or one of
    its frames) or the output, or that cannot be written."""
    mask = path.resolve()
    if mask == out.resolve():
        raise VideoError(f"{path}: --mask-out would overwrite the output")
    if out.resolve() in mask.parents:  # (that folder is replaced at the end)
        raise VideoError(f"{path}: --mask-out is inside the output folder {out}")
    inputs = {identity(p) for p in (clip.files if clip.files is not None else [src])}
    if identity(path) in inputs - {None}:
        raise VideoError(f"{path}: --mask-out would overwrite the input")
    if path.is_dir():
        raise VideoError(f"{path}: --mask-out: is a folder")
    try:
        imageio.output_family(path, clip.width, clip.height)
    except imageio.ImageError as e:
        raise VideoError(f"{path}: --mask-out: {e}") from None
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise VideoError(f"{path}: --mask-out: folder {parent} does not exist")


def _write_mask(path: str, mask: np.ndarray) -> None:
    try:
        imageio.write_bytes_atomic(path, imageio.encode(Path(path).suffix.lower(), mask))
    except imageio.ImageError as e:
        raise VideoError(f"{path}: cannot encode the mask ({e})") from None
    except OSError as e:
        raise VideoError(f"{path}: cannot write ({e.strerror or e})") from None


def correct_video(args: argparse.Namespace) -> int:
    """`camheal correct-video IN -o OUT [--json] [--mask-out MASK.png]`; 0 on success."""
    t0 = time.monotonic()
    src, out = Path(args.input), Path(args.output)
    sink = None
    try:
        if src.exists() and out.exists() and src.resolve() == out.resolve():
            raise VideoError(f"{out}: output would overwrite the input")
        clip = Clip(src)
        if clip.files is None and out.exists() and out.is_dir():
            raise VideoError(f"{out}: is a folder (the input is a video file)")
        if args.mask_out:
            _check_mask_path(Path(args.mask_out), src, out, clip)
        sink = _Sink(clip, out)
        det = _detector()
        tracker, frames = track(clip, det, use_lens=getattr(args, "lens", False))
        mask = tracker.mask_at(clip.width, clip.height)
        stats: dict = {}
        written = correct(clip, mask, sink, det, frames, stats)
        if written == 0:
            raise VideoError(f"{src}: no frames could be read")
        if args.mask_out:
            _write_mask(args.mask_out, mask)
        sink.commit()
    except VideoError as e:
        if sink is not None:
            sink.abort()
        print(f"camheal: error: {e}", file=sys.stderr, flush=True)
        return 1
    except BaseException:
        if sink is not None:
            sink.abort()
        raise
    found = tracker.defects()
    report = {
        "input": str(src), "output": str(out), "frames": written, "fps": round(clip.fps, 3),
        "defects": [{"kind": d.kind, "confidence": round(d.confidence, 3),
                     "bbox": list(d.bbox), "first_frame": d.first_frame} for d in found],
        "deblurred_frames": stats["deblurred"],
        "deblur_kernels": stats["kernels"],
        "merged_frames": stats["merged"],
        "elapsed_s": round(time.monotonic() - t0, 3),
    }
    if args.json:
        print(json.dumps(report), flush=True)
    else:
        what = ", ".join(f"{d.kind} ({d.confidence:.2f}) at {d.bbox} from frame {d.first_frame}"
                         for d in found) or "no persistent defect"
        kinds = ", ".join(f"{k} {v}" for k, v in stats["kernels"].items() if v)
        sharp = f", {stats['deblurred']} deblurred ({kinds})" if stats["deblurred"] else ""
        sharp += f", {stats['merged']} denoised by merging" if stats["merged"] else ""
        print(f"{src} -> {out}: {written} frames{sharp}, {what}", flush=True)
    return 0
