"""CaptureBurst: consecutive frames of a camera, corrected together (global + lens defects)."""

from __future__ import annotations

import threading
import time

import numpy as np

from camheald.errors import InvalidArgument, NotReady
from camheald.service.camera import Camera, PublishedFrame
from camheald.service.images import MAX_RESTORE_PIXELS
from camheald.vision.inpaint import fill_sequence

MAX_BURST = 16


def capture_burst(camera: Camera, count: int, corrected: bool = True,
                  timeout_s: float = 10.0, restore: bool = True
                  ) -> tuple[list[PublishedFrame], dict[str, object]]:
    """Collect ``count`` consecutive frames and correct them as a burst (blocking).

    The persistent defect mask the camera has learned (lens dirt, crack) is filled in every
    frame, from the other frames of the burst where the scene behind it was visible and by
    inpainting elsewhere; the global correction of the latest analysis is applied to every
    frame (one correction: the frames match). With ``restore`` (up to MAX_RESTORE_PIXELS per
    frame, with a model): when the middle frame shows noise, every frame is first averaged
    with its aligned neighbours where they agree with it (``vision.merge``, action
    "merge"); then each frame is analysed on its own and restored as ``CorrectImage``
    restores a still (``offline.correct_image``: denoising what noise is left, deblurring
    or sharpening where its own analysis finds blur: a shaken frame among sharp ones is
    deblurred alone). That costs seconds per blurred frame; without it a burst takes
    milliseconds per frame plus the inpainting.

    Returns:
        (frames, report) — report: count, seqs, defects (as in Health), actions (every
        action applied to any frame; each frame's meta names its own), restored.
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
                                 "defects": health["defects"], "actions": [],
                                 "restored": False}
    if not corrected:
        return got, report
    analysis = camera.current_analysis()
    det = camera.vision.detector
    h, w = got[0].image.shape[:2]
    restore = restore and det is not None and h * w <= MAX_RESTORE_PIXELS
    if restore:
        # imported here: it pulls in the detector's runtime (see ImageCorrector.correct)
        from camheald.offline import correct_image
        from camheald.vision.deblur import noise_sigma
        from camheald.vision.merge import merge_burst
    raws = [f.image for f in got]
    per_frame: list[list[str]] = [[] for _ in got]
    if restore and len(raws) > 1 and "noise" in det.analyze(raws[len(raws) // 2]).detected:
        raws, used = merge_burst(raws, noise_sigma(raws[len(raws) // 2]))
        for acts, n in zip(per_frame, used, strict=True):
            acts += ["merge"] if n else []
    images = []
    for raw, acts in zip(raws, per_frame, strict=True):
        if restore:
            img, _, actions = correct_image(det, raw, tone=analysis)
        else:
            img, actions = camera.vision.correct(raw, analysis)
        images.append(img)
        acts += actions
    mask = camera.defect_mask()
    if mask.shape == images[0].shape[:2] and mask.any():
        images = fill_sequence(images, mask)
        for acts in per_frame:
            acts.append("inpaint")
    report["actions"] = list(dict.fromkeys(a for acts in per_frame for a in acts))
    report["restored"] = restore
    scores = dict(analysis.scores) if analysis else {}
    frames = [PublishedFrame(np.ascontiguousarray(img), f.seq, f.timestamp_ns, True, scores,
                             tuple(acts))
              for img, f, acts in zip(images, got, per_frame, strict=True)]
    report["elapsed_s"] = round(time.monotonic() - got[0].timestamp_ns / 1e9, 3)
    return frames, report
