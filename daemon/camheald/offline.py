"""Offline tools behind ``camheal diagnose`` and ``camheal correct`` (no daemon needed)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

import numpy as np

from camheal.files import identity
from camheald.vision import deblur, directional, imageio
from camheald.vision.correct import apply_global
from camheald.vision.detector import LOCAL_ACTIONS, Detector, ModelError
from camheald.vision.types import Analysis

logger = logging.getLogger(__name__)


def _error(file: str, problem: str) -> None:
    print(f"camheal: error: {file}: {problem}", file=sys.stderr, flush=True)


def _load_detector() -> Detector | None:
    path = os.environ.get("CAMHEAL_MODEL") or None
    try:
        return Detector.load(path)
    except ModelError as e:
        print(f"camheal: error: {e}", file=sys.stderr, flush=True)
        return None


def report(file: str, a: Analysis, actions: tuple[str, ...] | None = None,
           disk: bool = False) -> dict:
    """JSON-able report for one file: {"file", "scores", "detected", "actions"}.

    Without ``actions``, the suggestions: the global corrections plus the local
    restorations, for blur "deblur" when a defocus disk shows in the frame's spectrum
    (``disk``, from ``vision.deblur.estimate``), else "sharpen" unless the blur looks
    directional. Diagnose runs no motion-streak search (a second or more per photo), so
    ``correct`` may still deblur a directional blur for which nothing is suggested.
    """
    if actions is None:
        def local(d: str) -> str | None:
            if d != "blur":
                return LOCAL_ACTIONS.get(d)
            return "deblur" if disk else LOCAL_ACTIONS[d] if directional.sharpens(a.extra) \
                else None

        actions = (*a.actions, *(x for x in map(local, a.detected) if x))
    return {"file": file, "scores": {k: round(v, 4) for k, v in a.scores.items()},
            "detected": list(a.detected), "actions": list(actions)}


def _human(rep: dict, out: str | None = None) -> str:
    if rep["detected"]:
        found = ", ".join(f"{n} ({rep['scores'][n]:.2f})" for n in rep["detected"])
    else:
        found = "no anomaly"
    line = f"{rep['file']}: {found}"
    if out is not None:
        acts = ", ".join(rep["actions"]) or "unchanged"
        line += f" -> {out} [{acts}]"
    elif rep["actions"]:
        line += f"; suggested: {', '.join(rep['actions'])}"
    return line


def diagnose(args: argparse.Namespace) -> int:
    """`camheal diagnose [--json] FILE...`: print a report per file; 1 if any file failed."""
    det = _load_detector()
    if det is None:
        return 1
    failed = 0
    for file in args.files:
        try:
            rgb, _ = imageio.read_rgb(file)
            a = det.analyze(rgb)
        except (imageio.ImageError, ValueError) as e:
            _error(file, str(e))
            failed += 1
            continue
        rep = report(file, a, disk="blur" in a.detected and deblur.estimate(rgb) is not None)
        print(json.dumps(rep) if args.json else _human(rep), flush=True)
    return 1 if failed else 0


def correct_image(det: Detector, rgb: np.ndarray, tone: Analysis | None = None
                  ) -> tuple[np.ndarray, Analysis, tuple[str, ...]]:
    """Correct one frame: denoise, deblur, global tone/colour, sharpen, as detected.

    Blur and noise go to the learned restorer (one pass, on the frame as captured: it was
    trained on normally exposed photos) for the anomalies it is shipped for, else to the
    classical ``denoise`` and, for blur, to ``vision.deblur`` when the frame's spectrum shows
    a defocus disk or else a linear motion streak (a Wiener deconvolution, on the frame as
    captured, after any denoising), or else to ``sharpen`` (also the fallback when the
    restorer's weights are missing), unless the blur looks directional
    (``vision.directional``): unsharp masking hurts a motion blur.

    The frame's own analysis decides the local restorations; the global tone/colour
    correction is ``tone``'s when given (a burst applies one analysis to all of its frames,
    so that they match), else the frame's own.

    Returns:
        (corrected HxWx3 uint8, the frame's analysis, actions actually applied)
    """
    from camheald.vision import restore

    a = det.analyze(rgb)
    out = rgb
    done: list[str] = []
    local = [x for x in ("noise", "blur") if x in a.detected]
    net = restore.shared("restore") if local else None
    learned = [x for x in local if net is not None and x in net.use_for]
    if learned:
        sev = {x: a.extra.get(f"severity.{x}", 0.5) if x in learned else 0.0
               for x in ("blur", "noise")}
        out = net.restore(out, blur=sev["blur"], noise=sev["noise"])
        done += [LOCAL_ACTIONS[x] for x in learned]
    if "noise" in local and "noise" not in learned:
        out = restore.denoise(out, a.extra.get("severity.noise", 0.5))
        done.append("denoise")
    unsharp = False
    if "blur" in local and "blur" not in learned:
        # a defocus disk, else a motion streak read off the spectrum is divided out; else
        # an unsharp mask, unless the blur looks directional (it would ring)
        found = deblur.deconvolve(out)
        if found is not None:
            out = found[0]
            done.append("deblur")
        else:
            unsharp = directional.sharpens(a.extra)
    g = a if tone is None else tone
    if g.correction is not None:
        out = apply_global(out, g.correction)
        done += [x for x in g.actions if x in ("tone_curve", "color_matrix")]
    if unsharp:
        out = restore.sharpen(out, a.extra.get("severity.blur", 0.5))
        done.append("sharpen")
    return out, a, tuple(done)


def _targets(inputs: list[str], output: str) -> list[tuple[str, Path]] | None:
    as_dir = len(inputs) > 1 or output.endswith(("/", os.sep)) or Path(output).is_dir()
    if not as_dir:
        try:  # a file name: its extension must name a format (before any work is done)
            imageio.output_family(output)
        except imageio.ImageError as e:
            _error(output, str(e))
            return None
        return [(inputs[0], Path(output))]
    outdir = Path(output)
    try:
        outdir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        _error(output, f"cannot create output folder ({e.strerror or e})")
        return None
    return [(f, outdir / Path(f).name) for f in inputs]


def correct(args: argparse.Namespace) -> int:
    """`camheal correct [--json] IN... -o OUT`: write corrected images; 1 if any file failed.

    In a folder, each output keeps its input's name (and its input's format where that name's
    extension names none); no output may replace an input.
    """
    targets = _targets(list(args.inputs), args.output)
    if targets is None:
        return 1
    det = _load_detector()
    if det is None:
        return 1
    failed = 0
    seen: set[Path] = set()
    inputs = {i for i in map(identity, args.inputs) if i is not None}
    for file, dest in targets:
        if dest.resolve() in seen:
            _error(file, f"another input already writes {dest}")
            failed += 1
            continue
        seen.add(dest.resolve())
        if identity(dest) in inputs:
            which = "the input" if identity(dest) == identity(file) else "another input"
            _error(file, f"output {dest} would overwrite {which}")
            failed += 1
            continue
        try:
            data = imageio.read_file(file)  # (kept: an unchanged image is copied as it is)
            rgb, family = imageio.decode_rgb(data)
            imageio.check_size(imageio.family_of(dest) or family, rgb.shape[1], rgb.shape[0])
            fixed, a, done = correct_image(det, rgb)
            if not done and imageio.copyable(dest, family, data):
                imageio.write_bytes_atomic(dest, data)  # bit-exact copy
            else:
                imageio.write_rgb(dest, fixed, family)
        except (imageio.ImageError, ValueError) as e:
            _error(file, str(e))
            failed += 1
            continue
        except OSError as e:
            _error(str(dest), f"cannot write ({e.strerror or e})")
            failed += 1
            continue
        rep = report(file, a, done)
        print(json.dumps(rep) if args.json else _human(rep, str(dest)), flush=True)
    return 1 if failed else 0
