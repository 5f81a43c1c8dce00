"""Evaluate the restoration networks on held-out photos next to the classical tools.

    python -m camheal_train.restore_eval --data DIR --include kodak24- [--json OUT.json]
        [--restore models/weights/camheal_restore.onnx] [--inpaint ...camheal_inpaint.onnx]

Runs the daemon's runtime (``camheald.vision.restore``, ONNX Runtime on the CPU, no torch
in the measured path) at full photo resolution, with fixed seeds. Tables (Markdown):

* deblurring, defocus and linear motion separately: PSNR/SSIM of the input, of the daemon's
  ``restore.sharpen`` given the true severity, of an unsharp mask with the one setting that is
  best on average over these very images (favours the baseline), of the network given the
  true severity too (as the baselines are), of the network left to judge by itself
  ("blind"), and of ``camheal correct``'s classical path, blind (``vision.deblur``: a
  defocus disk or a motion streak read off the spectrum and divided out, else the unsharp
  mask unless the blur looks directional); the gain is over the better of the two baselines;
* denoising, Poisson-Gaussian sensor noise and the other kinds: input, the daemon's
  ``restore.denoise`` (``fastNlMeansDenoisingColored``) given the true severity, the network,
  and the median milliseconds per megapixel of each with ``--threads`` threads;
* clean photos: what the network does to an undegraded image;
* inpainting, crack/dirt/scratch masks: PSNR inside the mask of OpenCV Telea given the true
  mask (the daemon's ``inpaint_still``) and of the network given the same mask.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from camheal_train import baselines as bl
from camheal_train import blur, noise, obstruction
from camheal_train.data import data_dir, list_photos, load_rgb
from camheald.vision import deblur, directional, restore
from camheald.vision.inpaint import inpaint_still

logger = logging.getLogger(__name__)
USM_GRID = [(s, a) for s in (1.0, 1.5, 2.0, 3.0, 4.0) for a in (0.5, 1.0, 1.5, 2.0, 3.0)]
MASK_KINDS = ("crack", "dirt", "scratch")


def _f(img: np.ndarray) -> np.ndarray:
    return img.astype(np.float32) / 255.0


def _u8(img: np.ndarray) -> np.ndarray:
    return np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)


def _timed(fn, *args) -> tuple[np.ndarray, float]:
    t = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t


def psnr_in(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    """PSNR (dB) over the pixels where ``mask`` is true."""
    d = a[mask].astype(np.float64) - b[mask].astype(np.float64)
    return float(10 * np.log10(255.0**2 / max(float(np.mean(d * d)), 1e-10)))


def eval_restore(net: restore.LearnedRestorer, photos: Sequence[Path], seed: int) -> dict:
    """Per-case lists of PSNR/SSIM (and seconds per megapixel) for each method."""
    r: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for pi, path in enumerate(photos):
        clean = load_rgb(path)
        mp = clean.shape[0] * clean.shape[1] / 1e6
        rng = np.random.default_rng([seed, pi])
        cases = {}
        for kind in ("defocus", "motion"):
            out, sev = blur.KINDS[kind](_f(clean), rng)
            cases[kind] = (_u8(out), sev, (sev, 0.0))
        out, sev, _ = noise.sensor(_f(clean), rng)
        cases["noise: sensor"] = (_u8(out), sev, (0.0, sev))
        kind = str(rng.choice(["chroma", "jpeg", "impulse", "speckle"]))
        out, sev, _ = noise.KINDS[kind](_f(clean), rng)
        cases["noise: other kinds"] = (_u8(out), sev, (0.0, sev))
        cases["clean"] = (clean, 0.0, (0.0, 0.0))
        r["clean"]["deblur_found"].append(float(deblur.estimate(clean) is not None))
        r["clean"]["motion_found"].append(float(deblur.estimate_motion(clean) is not None))
        for case, (deg, sev, (sb, sn)) in cases.items():
            q = r[case]

            def add(name: str, img: np.ndarray, q=q, clean=clean) -> None:
                q[name].append(bl.psnr(img, clean))
                q[name + "_ssim"].append(bl.ssim(img, clean))

            add("input", deg)
            fixed, dt = _timed(net.restore, deg, sb, sn)
            add("net", fixed)
            q["net_ms_mp"].append(1000 * dt / mp)
            add("blind", net.restore(deg))
            if case in ("defocus", "motion"):
                sharpened = restore.sharpen(deg, sev)
                add("sharpen", sharpened)
                # camheal correct's classical path: the defocus disk, else the motion streak
                # read off the spectrum (blind) or, where neither is found, the unsharp mask
                # unless the blur looks directional (given the true severity, as `sharpen` is)
                keep = not directional.sharpens({"blur.coherence": directional.coherence(deg)})
                found = deblur.deconvolve(deg)
                kind = found[1] if found is not None else ""
                q["deblur_found"].append(float(kind == "disk"))
                q["motion_found"].append(float(kind == "streak"))
                add("deblur", found[0] if found else deg if keep else sharpened)
                for s, a in USM_GRID:
                    q[f"usm {s:g}/{a:g}"].append(bl.psnr(bl.unsharp_mask(deg, s, a), clean))
            elif case.startswith("noise"):
                out, dt = _timed(restore.denoise, deg, sev)
                add("nlm", out)
                q["nlm_ms_mp"].append(1000 * dt / mp)
        logger.info("restore: %s done", path.name)
    return r


def eval_inpaint(net: restore.LearnedInpainter, photos: Sequence[Path], seed: int) -> dict:
    """Per mask kind: PSNR inside the mask of Telea and of the network, and mask cover."""
    r: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for pi, path in enumerate(photos):
        clean = load_rgb(path)
        h, w = clean.shape[:2]
        rng = np.random.default_rng([seed, 7, pi])
        for kind in MASK_KINDS:
            mask = (obstruction.obstruction_mask(kind, h, w, rng) > 0.1).astype(np.uint8) * 255
            hole = mask > 0
            if not hole.any():
                continue
            bad = clean.copy()
            bad[hole] = 0
            q = r[kind]
            q["cover"].append(float(hole.mean()))
            q["telea"].append(psnr_in(inpaint_still(bad, mask, "telea", grow=0), clean, hole))
            q["net"].append(psnr_in(net.fill(bad, mask), clean, hole))
        logger.info("inpaint: %s done", path.name)
    return r


def restore_tables(r: dict) -> tuple[list[str], dict]:
    """Markdown lines and a JSON-able summary for ``eval_restore``'s result."""
    m = {case: {k: float(np.mean(v)) for k, v in q.items()} for case, q in r.items()}
    for case in ("defocus", "motion"):
        if case in m:
            best = max((k for k in m[case] if k.startswith("usm ")), key=m[case].get)
            m[case]["usm_best"] = m[case][best]
            m[case]["usm_best_setting"] = best[4:]  # type: ignore[assignment]
    n = len(next(iter(r.values()))["input"]) if r else 0
    lines = [f"Deblurring ({n} photos, PSNR dB / SSIM):", "",
             "| blur | input | sharpen (true severity) | unsharp mask (best fixed sigma/amount) "
             "| net (true severity) | net - best baseline | net (blind) | deblur (disk or "
             "streak found blind, else sharpen) | deblur - best baseline | disk found | "
             "streak found |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for case in ("defocus", "motion"):
        if case not in m:
            continue
        q = m[case]
        base = max(q["sharpen"], q["usm_best"])
        lines.append(f"| {case} | {q['input']:.2f} / {q['input_ssim']:.3f} | "
                     f"{q['sharpen']:.2f} / {q['sharpen_ssim']:.3f} | {q['usm_best']:.2f} "
                     f"({q['usm_best_setting']}) | {q['net']:.2f} / {q['net_ssim']:.3f} | "
                     f"{q['net'] - base:+.2f} | {q['blind']:.2f} / {q['blind_ssim']:.3f} | "
                     f"{q['deblur']:.2f} / {q['deblur_ssim']:.3f} | {q['deblur'] - base:+.2f} | "
                     f"{q['deblur_found']:.0%} | {q['motion_found']:.0%} |")
        q["gain_over_baseline"] = q["net"] - base
        q["deblur_over_baseline"] = q["deblur"] - base
    lines += ["", "Denoising (PSNR dB / SSIM; median ms per megapixel on this CPU):", "",
              "| noise | input | fastNlMeans (true severity) | net (true severity) | net - NLM | "
              "net (blind) | NLM ms/MP | net ms/MP |",
              "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for case in ("noise: sensor", "noise: other kinds"):
        if case not in m:
            continue
        q, raw = m[case], r[case]
        q["nlm_ms_mp"], q["net_ms_mp"] = (float(np.median(raw[k])) for k in ("nlm_ms_mp",
                                                                            "net_ms_mp"))
        lines.append(f"| {case[7:]} | {q['input']:.2f} / {q['input_ssim']:.3f} | "
                     f"{q['nlm']:.2f} / {q['nlm_ssim']:.3f} | {q['net']:.2f} / "
                     f"{q['net_ssim']:.3f} | {q['net'] - q['nlm']:+.2f} | {q['blind']:.2f} / "
                     f"{q['blind_ssim']:.3f} | {q['nlm_ms_mp']:.0f} | {q['net_ms_mp']:.0f} |")
    if "clean" in m:
        q = m["clean"]
        lines += ["", f"Clean photos through the net, told blur = noise = 0: PSNR "
                  f"{q['net']:.2f} dB, SSIM {q['net_ssim']:.4f} against the untouched photo; "
                  f"blind: {q['blind']:.2f} dB, {q['blind_ssim']:.4f}. A defocus disk was "
                  f"found in {q['deblur_found']:.0%} of the clean photos, a motion streak "
                  f"in {q['motion_found']:.0%}."]
    return lines, m


def inpaint_table(r: dict) -> tuple[list[str], dict]:
    """Markdown lines and a summary for ``eval_inpaint``'s result."""
    m = {k: {n: float(np.mean(v)) for n, v in q.items()} | {"n": len(q["net"])}
         for k, q in r.items()}
    lines = ["Inpainting (PSNR dB inside the true mask; both given the same mask):", "",
             "| mask | n | mean cover | Telea | net | net - Telea |",
             "| --- | --- | --- | --- | --- | --- |"]
    for k, q in m.items():
        lines.append(f"| {k} | {q['n']} | {100 * q['cover']:.1f} % | {q['telea']:.2f} | "
                     f"{q['net']:.2f} | {q['net'] - q['telea']:+.2f} |")
    return lines, m


def write_use_for(side: Path, m: dict, photos: Sequence[Path]) -> list[str]:
    """Set ``use_for`` in a restore sidecar: "blur" when the net's mean margin over the best
    classical baseline on defocus and motion is positive, "noise" likewise over NLM."""
    margins = {"blur": float(np.mean([m[c]["gain_over_baseline"]
                                      for c in ("defocus", "motion")])),
               "noise": float(np.mean([m[c]["net"] - m[c]["nlm"]
                                       for c in ("noise: sensor", "noise: other kinds")]))}
    use = [k for k, v in margins.items() if v > 0]
    data = json.loads(side.read_text()) if side.is_file() else {}
    data["use_for"] = use
    data["use_for_evidence"] = {"photos": sorted({p.name.split("-")[0] for p in photos}),
                                "n": len(photos),
                                "margin_db": {k: round(v, 2) for k, v in margins.items()}}
    tmp = side.with_name(side.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    tmp.replace(side)
    logger.info("%s: use_for %s (margins %s)", side, use, margins)
    return use


def write_auto(side: Path, m: dict, photos: Sequence[Path]) -> bool:
    """Set ``auto`` in an inpaint sidecar: whether the net's mean margin over Telea inside
    the mask, over the mask kinds, is positive (inpainting "auto" then uses the net)."""
    margin = float(np.mean([q["net"] - q["telea"] for q in m.values()]))
    data = json.loads(side.read_text()) if side.is_file() else {}
    data["auto"] = margin > 0
    data["auto_evidence"] = {"photos": sorted({p.name.split("-")[0] for p in photos}),
                             "n": len(photos), "margin_over_telea_db": round(margin, 2)}
    tmp = side.with_name(side.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    tmp.replace(side)
    logger.info("%s: auto %s (margin %.2f dB)", side, data["auto"], margin)
    return data["auto"]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point."""
    ap = argparse.ArgumentParser(prog="python -m camheal_train.restore_eval", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", help="photo folder (default $CAMHEAL_DATA)")
    ap.add_argument("--include", action="append", default=None,
                    help="photo name prefix (default kodak24-)")
    ap.add_argument("--restore", help="restore ONNX (default: shipped weights)")
    ap.add_argument("--inpaint", help="inpaint ONNX (default: shipped weights)")
    ap.add_argument("--skip", choices=("restore", "inpaint"), action="append", default=[])
    ap.add_argument("--threads", type=int, default=1, help="ONNX Runtime and OpenCV threads")
    ap.add_argument("--limit", type=int, help="only the first N photos")
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("--json", help="also write the summary as JSON")
    ap.add_argument("--set-use-for", metavar="SIDECAR",
                    help="write into this restore sidecar JSON which anomalies (blur, noise) "
                    "the net beat the classical tools on, here, and into the inpaint "
                    "sidecar whether it beat Telea (use a validation split)")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    cv2.setNumThreads(a.threads)
    photos = list_photos(data_dir(a.data), a.include or ["kodak24-"])[: a.limit]
    if not photos:
        raise SystemExit("no photos matched")
    summary: dict = {"photos": len(photos), "threads": a.threads, "seed": a.seed}
    out: list[str] = []
    if "restore" not in a.skip:
        net = restore.LearnedRestorer.load(a.restore, threads=a.threads)
        lines, summary["restore"] = restore_tables(eval_restore(net, photos, a.seed))
        summary["restore_model"] = net.name
        out += [f"Restore network {net.name}, {len(photos)} photos, {a.threads} thread(s).", "",
                *lines, ""]
    if a.set_use_for and "restore" in summary:
        write_use_for(Path(a.set_use_for), summary["restore"], photos)
    if "inpaint" not in a.skip:
        net = restore.LearnedInpainter.load(a.inpaint, threads=a.threads)
        lines, summary["inpaint"] = inpaint_table(eval_inpaint(net, photos, a.seed))
        if a.set_use_for:
            side = Path(a.inpaint or restore.shipped(restore.INPAINT_FILE)).with_suffix(".json")
            write_auto(side, summary["inpaint"], photos)
        summary["inpaint_model"] = net.name
        out += [f"Inpainting network {net.name}.", "", *lines]
    print("\n".join(out))
    if a.json:
        Path(a.json).write_text(json.dumps(summary, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
