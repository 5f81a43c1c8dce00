"""Model-side costs: detector latency per backend and threads, global-correction apply, restoration.

Frames are real frames of the benchmark clip (textured, moving), so the crop selection and
histograms see realistic content.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from benchmarks import detmodel
from benchmarks.common import log
from benchmarks.tables import ALL_ESTIMATORS, NETWORK_ONLY
from benchmarks.timing import time_call

logger = logging.getLogger(__name__)


def frame_from(clip: Path, index: int = 30) -> np.ndarray:
    """One RGB frame of ``clip``."""
    cap = cv2.VideoCapture(str(clip), cv2.CAP_FFMPEG)
    cap.set(cv2.CAP_PROP_POS_FRAMES, index)
    ok, bgr = cap.read()
    cap.release()
    if not ok:
        raise RuntimeError(f"cannot read a frame of {clip}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _onnx_config(path: Path) -> dict | None:
    """The network config recorded in an exported detector's ONNX metadata."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    meta = {p.key: p.value for p in model.metadata_props}
    return json.loads(meta["camheal.config"]) if "camheal.config" in meta else None


def detector_onnx(frames: dict[str, np.ndarray], threads: list[int], budget: float,
                  path: Path, label: str, estimators: str = "shipped") -> list[dict]:
    """ONNX Runtime through the daemon's own Detector (load, analyze, and the parts).

    ``estimators``: "shipped" runs the stacked estimators as a camera does (only where the
    network does not rule their anomaly out, and not those of the scores its health judges
    elsewhere: obstruction; each row records how many ran on its frame), "always" every one
    on every frame (the worst case, as offline ``camheal diagnose`` may; rows' backend
    ALL_ESTIMATORS), "none" leaves them out (rows' backend NETWORK_ONLY: the same work as
    the PyTorch rows).
    """
    from camheald.service.health import HealthTracker
    from camheald.vision import spec
    from camheald.vision.detector import Detector

    skip = HealthTracker.judged_elsewhere if estimators == "shipped" else frozenset()

    rows = []
    before = cv2.getNumThreads()
    for n in threads:
        det = Detector.load(path, threads=n, with_estimators=estimators != "none")
        if estimators == "always":
            det.estimator_skip_below = 0.0
        # "n threads" for the whole call: the preprocessing's OpenCV resizes too (the daemon
        # sets OpenCV's pool the same way), so a 1-thread row is the cost on one core
        cv2.setNumThreads(n)
        for res, rgb in frames.items():
            prep = spec.prepare(rgb)
            inputs = spec.to_model_inputs(prep)
            run = det._session.run  # the inference alone, without pre/post-processing
            ran = len(set(det.estimators_to_run(det.run(rgb)["logits"][0])) - skip)
            rows.append({
                "backend": {"shipped": "onnxruntime", "always": ALL_ESTIMATORS,
                            "none": NETWORK_ONLY}[estimators],
                "model": label, "threads": n, "res": res, "estimators_run": ran,
                "analyze": time_call(lambda d=det, f=rgb: d.analyze(f, skip), budget).as_dict(),
                "prepare": time_call(lambda f=rgb: spec.prepare(f), budget / 3).as_dict(),
                "infer": time_call(lambda r=run, i=inputs: r(list(spec.OUTPUTS), i),
                                   budget).as_dict(),
            })
    cv2.setNumThreads(before)
    return rows


def detector_torch(frames: dict[str, np.ndarray], threads: list[int], budget: float,
                   config: dict | None, label: str) -> list[dict]:
    """PyTorch eager of the same network, same preprocessing (``spec.prepare``)."""
    import torch

    from camheal_train.net import CamhealNet, NetConfig
    from camheald.vision import spec

    net = detmodel.torch_net() if config is None else CamhealNet(NetConfig.from_dict(config))
    net = net.eval()
    before, cv_before = torch.get_num_threads(), cv2.getNumThreads()
    rows = []
    try:
        for n in threads:
            torch.set_num_threads(n)
            cv2.setNumThreads(n)  # the shared preprocessing on as many threads
            for res, rgb in frames.items():
                def analyze(f: np.ndarray = rgb) -> object:
                    x = spec.to_model_inputs(spec.prepare(f))
                    with torch.inference_mode():
                        return net(*(torch.from_numpy(x[k]) for k in spec.INPUTS))

                x = spec.to_model_inputs(spec.prepare(rgb))
                tensors = [torch.from_numpy(x[k]) for k in spec.INPUTS]

                def infer(t: list = tensors) -> object:
                    with torch.inference_mode():
                        return net(*t)

                rows.append({
                    "backend": "pytorch-eager", "model": label, "threads": n, "res": res,
                    "analyze": time_call(analyze, budget).as_dict(),
                    "infer": time_call(infer, budget).as_dict(),
                })
    finally:
        torch.set_num_threads(before)
        cv2.setNumThreads(cv_before)
    return rows


def detector(frames: dict[str, np.ndarray], budget: float) -> tuple[list[dict], list[str]]:
    """Detector latency rows for every backend available here, and notes on what is not."""
    notes: list[str] = []
    rows: list[dict] = []
    threads = [1, 2]
    shipped = detmodel.shipped()
    config = None
    if shipped is not None:
        rows += detector_onnx(frames, threads, budget, shipped, "shipped")
        rows += detector_onnx(frames, [1], budget, shipped, "shipped", estimators="always")
        rows += detector_onnx(frames, [1], budget, shipped, "shipped", estimators="none")
        config = _onnx_config(shipped)
        stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(shipped.stat().st_mtime))
        digest = hashlib.sha256(shipped.read_bytes()).hexdigest()[:8]
        notes.append(f"Shipped detector measured: `{shipped.name}@{digest}` (file written "
                     f"{stamp}); the PyTorch rows build the same architecture from its ONNX "
                     "metadata (`camheal.config`).")
    else:
        notes.append("No shipped detector (`models/weights/camheal_detector.onnx`) yet: the "
                     "detector rows use the synthetic network (same architecture, "
                     "`camheal_train.net.build('small')`, fixed weights; latency does not "
                     "depend on the weight values).")
    try:
        synth = detmodel.synthetic_onnx()
    except ImportError as exc:
        notes.append(f"PyTorch/onnx not installed ({exc}): no synthetic detector.")
        synth = None
    if synth is not None and shipped is None:
        rows += detector_onnx(frames, threads, budget, synth, "synthetic")
    try:
        rows += detector_torch(frames, threads, budget, config,
                               "shipped (architecture)" if config else "synthetic")
    except ImportError as exc:
        notes.append(f"PyTorch eager not measured: {exc}")
    try:
        import tensorrt  # noqa: F401
        notes.append("TensorRT is importable but not benchmarked by this suite yet.")
    except ImportError:
        notes.append("TensorRT: not installed on this machine (CPU only): not measured.")
    return rows, notes


def correction(frames: dict[str, np.ndarray], budget: float) -> list[dict]:
    """Full-resolution apply_global cost: LUT+matrix, LUT only, matrix only; in place or not."""
    from camheald.vision import spec
    from camheald.vision.correct import Correction, apply_global

    x = spec.CURVE_X
    curves = np.stack([x ** 0.85, x ** 0.9, x ** 1.1]).astype(np.float32)
    matrix = np.array([[1.12, -0.08, -0.04], [-0.04, 1.08, -0.04], [-0.04, -0.08, 1.12]],
                      np.float32)
    kinds = {
        "curves+matrix": Correction(curves, matrix),
        "curves only": Correction(curves, np.eye(3, dtype=np.float32)),
        "matrix only": Correction(np.tile(x, (3, 1)), matrix),
    }
    rows = []
    for res, rgb in frames.items():
        out = np.empty_like(rgb)
        mpix = rgb.shape[0] * rgb.shape[1] / 1e6
        for kind, corr in kinds.items():
            alloc = time_call(lambda f=rgb, c=corr: apply_global(f, c), budget)
            pre = time_call(lambda f=rgb, c=corr, o=out: apply_global(f, c, o), budget)
            rows.append({"res": res, "kind": kind, "alloc": alloc.as_dict(),
                         "out": pre.as_dict(), "ms_per_mpix": round(pre.median_ms / mpix, 3)})
    return rows


def restoration(frames: dict[str, np.ndarray], budget: float) -> tuple[list[dict], list[str]]:
    """Restoration cost per megapixel: the capture path's cheap in-place fallbacks, the
    classical tools of the offline commands, and the learned restoration network."""
    notes = ["*stream*: the capture path's in-place fallbacks (`stream_sharpen`, "
             "`stream_denoise`), run on a corrected frame while blur / noise is detected "
             "(OpenCV's default thread count; the daemon with one camera on 2 cores "
             "gives OpenCV 1 thread); "
             "*stills*: the classical tools of `camheal correct` when the network is missing "
             "(`sharpen`, `denoise`) and its deconvolution (`vision.deblur`: the search for a "
             "defocus disk or a motion streak in the frame's spectrum, then one Wiener "
             "deconvolution, timed whether or not this frame shows one); "
             "*network*: `camheal_restore.onnx` (deblur + denoise, "
             "ONNX Runtime, 1 thread, 768-px tiles), which `camheal correct` and "
             "`CorrectImage` use where its sidecar says it helps (models/RESTORE_CARD.md). "
             "The inpainting network runs only on the tiles a defect mask touches, so it "
             "has no per-frame cost to show here."]
    try:
        from camheald.vision import deblur, merge, restore
    except ImportError as exc:
        return [], [f"camheald.vision.restore not importable: {exc}"]
    ops: list[tuple[str, Callable[[np.ndarray], object], int]] = [
        ("sharpen, stream (half-resolution low-pass)",
         lambda f: restore.stream_sharpen(f, 0.5), 20),
        ("denoise, stream (clamped 3x3 mean)", lambda f: restore.stream_denoise(f, 0.5), 20),
        ("sharpen, stills (unsharp mask)", lambda f: restore.sharpen(f, 0.5), 20),
        ("denoise, stills (NL-means)", lambda f: restore.denoise(f, 0.5), 2),
        ("deblur, stills (disk search + Wiener)",
         lambda f: (deblur.estimate(f), deblur.wiener(f, deblur.disk_psf(3.0))), 2),
        ("deblur, stills (streak search + Wiener)",
         lambda f: (deblur.estimate_motion(f), deblur.wiener(f, deblur.motion_psf(15, 30.0))),
         2),
        ("deblur, video (does the streak still fit this frame?)",
         lambda f: deblur.streak_fits(f, (30.0, 15, 0.0, "nearest")), 10),
        ("denoise, bursts and video (merge with 4 aligned neighbours)",
         lambda f: merge.merge_one([f] * 5, 2, 8.0), 3)]
    try:
        net = restore.LearnedRestorer.load(threads=1)
    except restore.ModelError as exc:
        notes.append(f"restoration network not measured: {exc}")
    else:
        ops.append(("network (camheal_restore.onnx)",
                    lambda f: net.restore(f, blur=0.5, noise=0.5), 2))
    rows = []
    for res, rgb in frames.items():
        mpix = rgb.shape[0] * rgb.shape[1] / 1e6
        work = rgb.copy()  # the in-place ops overwrite it; their cost does not depend on it
        for name, fn, calls in ops:
            t = time_call(lambda g=fn, w=work: g(w), budget, min_calls=calls if calls < 5
                          else 5, max_calls=calls, warmup=1 if calls < 5 else 3)
            np.copyto(work, rgb)
            rows.append({"res": res, "op": name, **t.as_dict(),
                         "ms_per_mpix": round(t.median_ms / mpix, 2)})
            log(f"  restore {name} {res}: {t.median_ms:.1f} ms")
    return rows, notes
