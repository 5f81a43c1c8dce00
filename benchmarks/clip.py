"""Synthetic test clips: a panning textured scene with moving objects, written with OpenCV."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from benchmarks.common import OUT

CODECS = {"MJPG": ".avi", "mp4v": ".mp4"}


def _texture(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """A BGR texture bigger than the frame: gratings, blobs and fine noise (JPEG-unfriendly)."""
    h, w = height + height // 2, width + width // 2
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([
        128 + 60 * np.sin(x / 23.0) * np.cos(y / 31.0),
        128 + 60 * np.sin((x + y) / 47.0),
        128 + 60 * np.cos(x / 71.0 - y / 19.0),
    ], axis=-1)
    blobs = cv2.GaussianBlur(rng.normal(0, 40, (h // 8, w // 8, 3)).astype(np.float32),
                             (0, 0), 2)
    base += cv2.resize(blobs, (w, h), interpolation=cv2.INTER_CUBIC)
    base += rng.normal(0, 12, base.shape).astype(np.float32)
    return np.clip(base, 0, 255).astype(np.uint8)


def render(width: int, height: int, frames: int, seed: int = 0, objects: bool = True):
    """Yield ``frames`` BGR frames of the moving scene (``objects``: with the coloured discs
    drawn in screen space; a slow dark one holds still in the image while the scene pans,
    which the persistent-defect tracker rightly takes for lens dirt)."""
    rng = np.random.default_rng(seed)
    tex = _texture(width, height, rng)
    th, tw = tex.shape[:2]
    objects = [(rng.uniform(0.05, 0.95, 2), rng.uniform(-0.01, 0.01, 2),
                tuple(int(c) for c in rng.integers(0, 256, 3)), int(rng.integers(20, 90)))
               for _ in range(8 if objects else 0)]
    for i in range(frames):
        ox = int((tw - width) * (0.5 + 0.5 * np.sin(i / 40.0)))
        oy = int((th - height) * (0.5 + 0.5 * np.cos(i / 55.0)))
        frame = tex[oy:oy + height, ox:ox + width].copy()
        scale = height / 720
        for pos, vel, colour, radius in objects:
            p = (pos + vel * i) % 1.0
            centre = (int(p[0] * width), int(p[1] * height))
            cv2.circle(frame, centre, int(radius * scale), colour, -1, cv2.LINE_AA)
        cv2.putText(frame, f"camheal bench {i:04d}", (int(40 * scale), int(80 * scale)),
                    cv2.FONT_HERSHEY_SIMPLEX, 2 * scale, (255, 255, 255), max(1, int(3 * scale)),
                    cv2.LINE_AA)
        yield frame


def make_clip(width: int, height: int, frames: int = 300, fps: float = 30.0,
              codec: str = "MJPG", out_dir: Path = OUT) -> Path:
    """Write (once; reused when present) a test clip and return its path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"clip-{width}x{height}-{frames}f-{codec}{CODECS[codec]}"
    if path.is_file() and path.stat().st_size > 0:
        cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
        ok = cap.isOpened() and int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == frames
        cap.release()
        if ok:
            return path
    tmp = path.with_name(path.stem + ".tmp" + path.suffix)
    writer = cv2.VideoWriter(str(tmp), cv2.CAP_FFMPEG, cv2.VideoWriter_fourcc(*codec), fps,
                             (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {codec} video here")
    try:
        for frame in render(width, height, frames):
            writer.write(frame)
    finally:
        writer.release()
    tmp.replace(path)
    return path
