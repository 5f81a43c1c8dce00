"""CaptureBurst: consecutive frames of a camera, corrected together (global + lens defects)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from camheald.errors import Busy, InvalidArgument
from camheald.service.camera import Camera, PublishedFrame
from camheald.service.images import MAX_RESTORE_PIXELS
from camheald.vision.inpaint import fill_sequence
from camheald.vision.spec import MIN_SIDE

MAX_BURST = 16
#: how long a burst waits for its frames
FRAMES_TIMEOUT_S = 10.0
# A restored burst holds three copies of its frames (raw, merged, restored) and takes ~3 s
# per blurred 1080p frame on one core: restoration is for bursts up to this many pixels in
# all (16 frames of 1080p), one at a time in the whole daemon (a second one gets Busy).
MAX_BURST_RESTORE_PIXELS = 40_000_000
_RESTORING = threading.BoundedSemaphore(1)


def check_count(count: int) -> None:
    """Refuse a burst length outside 1..MAX_BURST (InvalidArgument)."""
    if not 1 <= count <= MAX_BURST:
        raise InvalidArgument(f"count must be between 1 and {MAX_BURST}")


@contextmanager
def restoring(restore: bool) -> Iterator[None]:
    """Hold the daemon's one restoring-burst slot for the block when ``restore`` (a second
    restoring burst gets Busy; bursts without restoration are not limited)."""
    if not restore:
        yield
        return
    if not _RESTORING.acquire(blocking=False):
        raise Busy("a restoring burst is already running (restore=false is not limited)")
    try:
        yield
    finally:
        _RESTORING.release()


def correct_burst(camera: Camera, got: list[PublishedFrame], corrected: bool = True,
                  restore: bool = False) -> tuple[list[PublishedFrame], dict[str, object]]:
    """Correct consecutive raw frames of ``camera`` as a burst (blocking: seconds with
    ``restore``). The caller collects the frames (a sink of the camera) and holds
    ``restoring(corrected and restore)`` around both.

    The persistent defect mask the camera has learned (lens dirt, crack) is filled in every
    frame, from the other frames of the burst where the scene behind it was visible and by
    inpainting elsewhere; the global correction of the latest analysis is applied to every
    frame (one correction: the frames match; with ``restore``, before the camera's first
    analysis, the middle frame's). With ``restore`` (with a model, frames of MIN_SIDE to
    MAX_RESTORE_PIXELS, up to MAX_BURST_RESTORE_PIXELS in all): when the middle frame shows
    noise, every frame is first averaged with its aligned neighbours where they agree with
    it (``vision.merge``, action "merge"); then each frame is analysed on its own and
    restored as ``CorrectImage`` restores a still (``offline.correct_image``: denoising what
    noise is left, deblurring or sharpening where its own analysis finds blur: a shaken
    frame among sharp ones is deblurred alone). That costs seconds per blurred frame;
    without it a burst takes milliseconds per frame plus the inpainting.

    Returns:
        (frames, report) — report: count, seqs, defects (as in Health), actions (every
        action applied to any frame; each frame's meta names its own), restored.
    """
    count = len(got)
    restore = corrected and restore
    health = camera.health_report()
    report: dict[str, object] = {"count": count, "seqs": [f.seq for f in got],
                                 "defects": health["defects"], "actions": [],
                                 "restored": False}
    if not corrected:
        return got, report
    det = camera.vision.detector
    raws = [f.image for f in got]
    h, w = raws[0].shape[:2]
    restore = restore and det is not None and MIN_SIDE <= min(h, w) \
        and h * w <= MAX_RESTORE_PIXELS and count * h * w <= MAX_BURST_RESTORE_PIXELS
    # Detector.analyze may be called beside the camera's analysis thread (its network runs
    # under the detector's lock; the rest is per call)
    middle = camera.vision.analyze(raws[len(raws) // 2]) if restore else None
    analysis = camera.current_analysis() or middle
    if restore:
        # imported here: it pulls in the detector's runtime (see ImageCorrector.correct)
        from camheald.offline import correct_image
        from camheald.vision.deblur import noise_level
        from camheald.vision.merge import merge_burst
    per_frame: list[list[str]] = [[] for _ in got]
    if middle is not None and len(raws) > 1 and "noise" in middle.detected:
        raws, used = merge_burst(raws, noise_level(raws[len(raws) // 2]))
        for acts, n in zip(per_frame, used, strict=True):
            acts += ["merge"] if n else []
    images = []
    for raw, acts in zip(raws, per_frame, strict=True):
        if restore:  # (analysis is not None: middle was computed)
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
