"""CaptureBurst: consecutive frames of a camera, corrected together (global + lens defects)."""

from __future__ import annotations

import threading
import time

import numpy as np

from camheald.errors import InvalidArgument, NotReady
from camheald.service.camera import Camera, PublishedFrame
from camheald.vision.inpaint import fill_sequence

MAX_BURST = 16


def capture_burst(camera: Camera, count: int, corrected: bool = True,
                  timeout_s: float = 10.0) -> tuple[list[PublishedFrame], dict[str, object]]:
    """Collect ``count`` consecutive frames and correct them as a burst (blocking).

    The persistent defect mask the camera has learned (lens dirt, crack) is filled in every
    frame, from the other frames of the burst where the scene behind it was visible and by
    inpainting elsewhere; the global correction of the latest analysis is applied too.

    Returns:
        (frames, report) — report: count, seqs, defects (as in Health), actions.
    """
    if not 1 <= count <= MAX_BURST:
        raise InvalidArgument(f"count must be between 1 and {MAX_BURST}")
    got: list[PublishedFrame] = []
    done = threading.Event()

    def sink(raw: PublishedFrame, _corrected: PublishedFrame) -> None:
        if len(got) < count:
            got.append(raw)  # a source hands out a new array per frame: no copy needed
            if len(got) == count:
                done.set()

    camera.add_sink(sink)
    try:
        if not done.wait(timeout_s):
            raise NotReady(f"camera {camera.id} delivered {len(got)} of {count} frames "
                           f"in {timeout_s:g} s")
    finally:
        camera.remove_sink(sink)
    health = camera.health_report()
    report: dict[str, object] = {"count": count, "seqs": [f.seq for f in got],
                                 "defects": health["defects"], "actions": []}
    if not corrected:
        return got, report
    analysis = camera.current_analysis()
    images, actions = [], ()
    for f in got:
        img, actions = camera.vision.correct(f.image, analysis)
        images.append(img)
    acts = list(actions)
    mask = camera.defect_mask()
    if mask.shape == images[0].shape[:2] and mask.any():
        images = fill_sequence(images, mask)
        acts.append("inpaint")
    report["actions"] = acts
    scores = dict(analysis.scores) if analysis else {}
    frames = [PublishedFrame(np.ascontiguousarray(img), f.seq, f.timestamp_ns, True, scores,
                             tuple(acts)) for img, f in zip(images, got, strict=True)]
    report["elapsed_s"] = round(time.monotonic() - got[0].timestamp_ns / 1e9, 3)
    return frames, report
