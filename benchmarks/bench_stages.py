"""The capture path stage by stage, in one process: what each step of Camera._process costs.

Each stage is timed in isolation on a real clip frame, with the variants worth comparing
(allocating vs reusing an output, full frame vs strided view, copy vs in-place ring write).
Nothing here imports the daemon's capture loop, so the table does not say which variant the
daemon uses at any given commit; the profile section does.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import cv2
import numpy as np

from benchmarks.timing import time_call


def _decode_ms(clip: Path, budget: float) -> dict[str, float]:
    cap = cv2.VideoCapture(str(clip), cv2.CAP_FFMPEG)

    def read() -> None:
        ok, _ = cap.read()
        if not ok:
            cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            cap.read()

    t = time_call(read, budget).as_dict()
    cap.release()
    return t


def stages(clip: Path, rgb: np.ndarray, budget: float) -> list[dict]:
    """Rows (stage, variant, timing) for one resolution."""
    from camheald.service.ring import FrameRing
    from camheald.vision import spec
    from camheald.vision.correct import Correction, apply_global

    h, w = rgb.shape[:2]
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    x = spec.CURVE_X
    corr = Correction(np.stack([x ** 0.85, x ** 0.9, x ** 1.1]).astype(np.float32),
                      np.array([[1.12, -0.08, -0.04], [-0.04, 1.08, -0.04],
                                [-0.04, -0.08, 1.12]], np.float32))
    out = np.empty_like(rgb)
    meta_src = {"scores": {a: 0.1 for a in ("blur", "noise", "dirty", "underexposed",
                                            "overexposed", "low_contrast", "color_cast")},
                "actions": ["tone_curve", "color_matrix"], "corrected": True}
    rows: list[dict] = []

    def add(stage: str, variant: str, timing: dict) -> None:
        rows.append({"stage": stage, "variant": variant, **timing})

    add("decode", "cap.read() (MJPG)", _decode_ms(clip, budget))
    add("BGR→RGB", "cv2.cvtColor (allocates)",
        time_call(lambda: cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), budget).as_dict())
    add("BGR→RGB", "cv2.cvtColor(dst=preallocated)",
        time_call(lambda: cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB, dst=out), budget).as_dict())
    add("freeze thumbnail", "resize(cvtColor(full frame→gray), 32×24, AREA)",
        time_call(lambda: cv2.resize(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), (32, 24),
                                     interpolation=cv2.INTER_AREA), budget).as_dict())
    step = max(1, min(h // 96, w // 128))
    add("freeze thumbnail", f"same on a 1/{step} strided view (rgb[::{step}, ::{step}])",
        time_call(lambda: cv2.resize(cv2.cvtColor(np.ascontiguousarray(rgb[::step, ::step]),
                                                  cv2.COLOR_RGB2GRAY), (32, 24),
                                     interpolation=cv2.INTER_AREA), budget).as_dict())
    add("correction", "apply_global LUT + matrix (allocates)",
        time_call(lambda: apply_global(rgb, corr), budget).as_dict())
    add("correction", "apply_global LUT + matrix (out=)",
        time_call(lambda: apply_global(rgb, corr, out), budget).as_dict())
    same = Correction(np.stack([x ** 0.9] * 3).astype(np.float32), corr.matrix)
    add("correction", "apply_global, equal curves: one 256-entry LUT + matrix (out=)",
        time_call(lambda: apply_global(rgb, same, out), budget).as_dict())
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        add("correction", "apply_global LUT + matrix (out=), cv2.setNumThreads(1)",
            time_call(lambda: apply_global(rgb, corr, out), budget).as_dict())
    finally:
        cv2.setNumThreads(threads)
    meta = json.dumps(meta_src, separators=(",", ":")).encode()
    add("metadata", "json.dumps per frame",
        time_call(lambda: json.dumps(meta_src, separators=(",", ":")).encode(),
                  budget).as_dict())
    with FrameRing(w, h, slots=4, name="camheal-bench-stages") as ring:
        ring.add_waiter()
        seq = iter(range(1, 10**9))
        add("ring publish", "FrameRing.write (copy into shared memory, 1 waiter)",
            time_call(lambda: ring.write(rgb, next(seq), time.monotonic_ns(), meta),
                      budget).as_dict())

        def in_place() -> None:
            with ring.writing(next(seq), time.monotonic_ns()) as slot:
                slot.set_meta(meta)
                apply_global(rgb, corr, slot.image)

        add("correction + ring publish", "apply_global(out=slot.image) inside "
            "FrameRing.writing() (no copy)", time_call(in_place, budget).as_dict())
        cv2.setNumThreads(1)
        try:
            add("correction + ring publish", "same, cv2.setNumThreads(1)",
                time_call(in_place, budget).as_dict())
        finally:
            cv2.setNumThreads(threads)
    return rows
