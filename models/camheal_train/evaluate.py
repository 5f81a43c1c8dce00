"""Evaluate the shipped (or any) detector ONNX on held-out photos, next to classical baselines.

    python -m camheal_train.evaluate --data DIR --include kodak24-            # report
    python -m camheal_train.evaluate --data DIR --include val20- \
        --calibrate models/weights/camheal_detector.json                      # fit thresholds
    python -m camheal_train.evaluate --clean-video DIR/video                  # real clips

Runs the daemon's runtime (``camheald.vision.detector.Detector`` + ``apply_global``), so it
measures what ships. Prints per-class precision/recall/F1, clean-image false-positive rate,
and PSNR/SSIM of corrected vs clean per anomaly with classical tools alongside.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections import defaultdict
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from camheal.constants import ANOMALIES
from camheal_train import baselines as bl
from camheal_train import obstruction as obs
from camheal_train.data import data_dir, list_photos, load_rgb, random_view
from camheal_train.degrade import degrade, to_u8
from camheald.vision import spec
from camheald.vision.correct import apply_global
from camheald.vision.detector import Detector

logger = logging.getLogger(__name__)
CORRECTABLE = (*spec.GLOBAL_ANOMALIES, "blur", "noise")
BEST_TOOLS = {"underexposed": ("auto_levels", "auto_gamma", "clahe"),
              "overexposed": ("auto_levels", "auto_gamma", "clahe"),
              "low_contrast": ("auto_levels", "clahe", "auto_gamma"),
              "color_cast": ("gray_world", "auto_levels"),
              "blur": ("unsharp_mask",), "noise": ()}


def samples(photos: Sequence[Path], seed: int, singles: int, pairs: int, clean: int
            ) -> Iterator[tuple[str, np.ndarray, np.ndarray, tuple[str, ...], bool]]:
    """Yield (name, degraded, reference, anomalies, pristine) per photo and variant.

    The reference is the clean photo (for clean variants: the variant itself).
    """
    for pi, path in enumerate(photos):
        img = load_rgb(path)
        rng = np.random.default_rng([seed, pi])
        yield path.name, img, img, (), True
        for _ in range(clean):
            d = degrade(random_view(img, rng, 1024), rng, ())
            yield path.name, d.image, d.target, (), False
        for a in ANOMALIES:
            for _ in range(singles):
                d = degrade(img, rng, (a,), jitter=False)
                yield path.name, d.image, img, (a,), False
        for _ in range(pairs):
            while True:
                pick = tuple(str(x) for x in rng.choice(ANOMALIES, 2, replace=False))
                if set(pick) != {"underexposed", "overexposed"}:
                    break
            d = degrade(img, rng, pick, jitter=False)
            yield path.name, d.image, img, pick, False


def prf(scores: np.ndarray, labels: np.ndarray, thr: float) -> tuple[float, float, float]:
    """Precision, recall, F1 of ``scores >= thr`` against 0/1 labels."""
    pred = scores >= thr
    tp = float((pred & (labels > 0)).sum())
    p = tp / max(1.0, float(pred.sum()))
    r = tp / max(1.0, float((labels > 0).sum()))
    return p, r, 2 * p * r / max(1e-9, p + r)


def best_threshold(scores: np.ndarray, labels: np.ndarray) -> float:
    """Threshold maximising F1 (used for the classical baselines: an optimistic fit)."""
    cands = np.unique(np.quantile(scores, np.linspace(0, 1, 201)))
    return float(max(cands, key=lambda t: prf(scores, labels, t)[2]))


# Candidate thresholds, with finer steps near 1: a class whose clean scores crowd there
# needs them.
_GRID = np.concatenate([np.linspace(0.5, 0.98, 49), [0.985, 0.99, 0.995]])


def calibrate(scores: np.ndarray, labels: np.ndarray, clean: np.ndarray,
              fp_per_class: float) -> dict[str, float]:
    """Per-class thresholds: best F1 among those keeping clean-image FP <= fp_per_class.

    Thresholds never go below 0.5: lower ones looked best on the calibration photos but
    produced many false positives on other photos (Kodak), whose clean scores sit higher.
    """
    out = {}
    for i, a in enumerate(ANOMALIES):
        s, y = scores[:, i], labels[:, i]
        ok = [t for t in _GRID if np.mean(s[clean] >= t) <= fp_per_class] or [_GRID[-1]]
        out[a] = round(float(max(ok, key=lambda t: prf(s, y, t)[2])), 3)
    return out


def run(det: Detector, photos: Sequence[Path], seed: int, singles: int, pairs: int,
        clean: int, with_tools: bool = True) -> dict:
    """Score every sample; returns raw arrays and per-anomaly PSNR/SSIM lists."""
    from camheald.offline import correct_image

    scores, cscores, labels, is_clean, pristine = [], [], [], [], []
    quality: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for _name, img, target, anoms, pure in samples(photos, seed, singles, pairs, clean):
        a = det.analyze(img)
        scores.append([a.scores[n] for n in ANOMALIES])
        cs = bl.classical_scores(img)
        cscores.append([cs[n] for n in ANOMALIES])
        labels.append([float(n in anoms) for n in ANOMALIES])
        is_clean.append(not anoms)
        pristine.append(pure)
        if not with_tools:
            continue
        if not anoms:
            fixed = apply_global(img, a.correction)
            quality["clean"]["input"].append(100.0)
            quality["clean"]["camheal"].append(bl.psnr(fixed, img))
            quality["clean"]["camheal_ssim"].append(bl.ssim(fixed, img))
        elif len(anoms) == 1 and anoms[0] in CORRECTABLE:
            k = anoms[0]
            q = quality[k]
            if k in spec.GLOBAL_ANOMALIES:
                fixed = apply_global(img, a.correction)
            else:
                fixed = correct_image(det, img)[0]
            q["input"].append(bl.psnr(img, target))
            q["camheal"].append(bl.psnr(fixed, target))
            q["input_ssim"].append(bl.ssim(img, target))
            q["camheal_ssim"].append(bl.ssim(fixed, target))
            for tool in BEST_TOOLS[k]:
                out = bl.TOOLS[tool](img)
                q[tool].append(bl.psnr(out, target))
                q[tool + "_ssim"].append(bl.ssim(out, target))
    return {"scores": np.array(scores), "classical": np.array(cscores),
            "labels": np.array(labels), "clean": np.array(is_clean, bool),
            "pristine": np.array(pristine, bool), "quality": quality}


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """ROC-AUC of ``scores`` for 0/1 ``labels`` (ties count half); NaN without both kinds."""
    pos, neg = scores[labels > 0], scores[labels <= 0]
    if not len(pos) or not len(neg):
        return float("nan")
    ranks = np.empty(len(scores))
    allv = np.concatenate([pos, neg])
    order = np.argsort(allv, kind="stable")
    _, inv, counts = np.unique(allv[order], return_inverse=True, return_counts=True)
    mid = np.cumsum(counts) - (counts - 1) / 2.0  # average rank of each tie group
    ranks[order] = mid[inv]
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2)
                 / (len(pos) * len(neg)))


def rank_table(r: dict, fp_per_class: float = 0.01) -> list[str]:
    """Markdown lines: per anomaly, the network's ROC-AUC and its best F1 over thresholds
    that keep clean-image FP <= ``fp_per_class`` (an oracle threshold, fitted on these very
    samples: for comparing weights, not for reporting)."""
    s, y, clean = r["scores"], r["labels"], r["clean"]
    lines = [f"| anomaly | AUC | best F1 at clean FP <= {fp_per_class:g} |", "| --- | --- | --- |"]
    f1s = []
    for i, a in enumerate(ANOMALIES):
        cands = np.unique(np.quantile(s[:, i], np.linspace(0, 1, 401)))
        f1 = max((prf(s[:, i], y[:, i], t)[2] for t in cands
                  if np.mean(s[clean, i] >= t) <= fp_per_class), default=0.0)
        f1s.append(f1)
        lines.append(f"| {a} | {auc(s[:, i], y[:, i]):.3f} | {f1:.3f} |")
    lines.append(f"| **macro** | | **{np.mean(f1s):.3f}** |")
    return lines


def obstruction_kinds(det: Detector, photos: Sequence[Path], seed: int, per_kind: int,
                      clean: int) -> dict[str, dict[str, np.ndarray]]:
    """The detector's obstruction evidence per obstruction kind, against clean photos.

    Every photo gives its untouched original and ``clean`` jittered variants (the negatives)
    and ``per_kind`` copies under each kind of ``camheal_train.obstruction.KINDS`` alone.

    Returns:
        {"clean" or kind: {"score": obstruction probabilities, "mask_max": the maximum of
        the coarse obstruction mask, "cover": share of pixels hidden > 25 % (kinds only)}}.
    """
    out: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for pi, path in enumerate(photos):
        img = load_rgb(path)
        rng = np.random.default_rng([seed, pi])
        negatives = [img] + [degrade(img, rng, ()).image for _ in range(clean)]
        for neg in negatives:
            a = det.analyze(neg)
            out["clean"]["score"].append(a.scores["obstruction"])
            out["clean"]["mask_max"].append(float(a.mask.max()))
        f = img.astype(np.float32) / np.float32(255.0)
        for kind, fn in obs.KINDS.items():
            for _ in range(per_kind):
                bad, alpha = fn(f, rng)
                a = det.analyze(to_u8(bad))
                out[kind]["score"].append(a.scores["obstruction"])
                out[kind]["mask_max"].append(float(a.mask.max()))
                out[kind]["cover"].append(float((alpha > 0.25).mean()))
    return {k: {m: np.array(v) for m, v in d.items()} for k, d in out.items()}


def kind_table(r: dict[str, dict[str, np.ndarray]], threshold: float) -> list[str]:
    """Markdown lines: per obstruction kind, the ROC-AUC of the obstruction score and of the
    mask maximum against the clean samples, and the recall at ``threshold``."""
    neg = r["clean"]
    lines = [f"clean: {len(neg['score'])} samples, obstruction score median "
             f"{np.median(neg['score']):.3f}, share >= threshold {threshold:.2f}: "
             f"{np.mean(neg['score'] >= threshold):.3f}", "",
             "| kind | n | median cover | AUC score | AUC mask max | recall at threshold |",
             "| --- | --- | --- | --- | --- | --- |"]
    for kind, d in r.items():
        if kind == "clean":
            continue
        y = np.r_[np.ones(len(d["score"])), np.zeros(len(neg["score"]))]
        lines.append(f"| {kind} | {len(d['score'])} | {np.median(d['cover']):.3f} | "
                     f"{auc(np.r_[d['score'], neg['score']], y):.3f} | "
                     f"{auc(np.r_[d['mask_max'], neg['mask_max']], y):.3f} | "
                     f"{np.mean(d['score'] >= threshold):.3f} |")
    return lines


def clean_video(det: Detector, folder: Path, every: int = 10) -> list[str]:
    """Markdown lines: per clip of ``folder`` (clean real video), on every ``every``-th frame,
    the share of frames in which each anomaly is detected (the full analysis, every
    estimator allowed, as offline ``diagnose`` runs it)."""
    from camheald.video import FOURCC, Clip, VideoError

    lines = ["| clip | frames | " + " | ".join(ANOMALIES) + " | any |",
             "| --- | --- | " + " | ".join("---" for _ in ANOMALIES) + " | --- |"]
    if not folder.is_dir():
        raise SystemExit(f"--clean-video {folder}: not a folder")
    clips = sorted(p for p in folder.iterdir() if p.suffix.lower() in FOURCC)
    if not clips:
        raise SystemExit(f"--clean-video {folder}: no video clips there")
    for path in clips:
        hits = []
        try:
            for i, rgb in enumerate(Clip(path).frames()):
                if i % every == 0:
                    found = det.analyze(rgb).detected
                    hits.append([a in found for a in ANOMALIES])
        except VideoError as e:
            raise SystemExit(f"--clean-video: {e}") from None
        h = np.array(hits, bool).reshape(-1, len(ANOMALIES))
        lines.append(f"| {path.name} | {len(h)} | "
                     + " | ".join(f"{v:.3f}" for v in h.mean(0))
                     + f" | {h.any(1).mean():.3f} |")
    return lines


def detection_table(r: dict, thresholds: dict[str, float]) -> tuple[list[str], dict]:
    """Markdown lines and a summary dict for detection metrics."""
    s, c, y = r["scores"], r["classical"], r["labels"]
    lines = ["| anomaly | threshold | precision | recall | F1 | clean FP | classical F1 "
             "(oracle threshold) |", "| --- | --- | --- | --- | --- | --- | --- |"]
    f1s, cf1s = [], []
    for i, a in enumerate(ANOMALIES):
        p, rc, f1 = prf(s[:, i], y[:, i], thresholds[a])
        cf1 = prf(c[:, i], y[:, i], best_threshold(c[:, i], y[:, i]))[2]
        f1s.append(f1)
        cf1s.append(cf1)
        cfp = float(np.mean(s[r["clean"], i] >= thresholds[a]))
        lines.append(f"| {a} | {thresholds[a]:.2f} | {p:.3f} | {rc:.3f} | {f1:.3f} | {cfp:.3f} "
                     f"| {cf1:.3f} |")
    thr = np.array([thresholds[a] for a in ANOMALIES])
    any_pos = (s >= thr).any(1)
    fp_clean = float(any_pos[r["clean"]].mean())
    fp_pristine = float(any_pos[r["pristine"]].mean())
    lines.append(f"| **macro** | | | | **{np.mean(f1s):.3f}** | | {np.mean(cf1s):.3f} |")
    lines.append("")
    lines.append(f"Clean-image false-positive rate (any anomaly detected): {fp_clean:.3f} on "
                 f"{int(r['clean'].sum())} clean images ({fp_pristine:.3f} on the "
                 f"{int(r['pristine'].sum())} untouched originals).")
    return lines, {"macro_f1": float(np.mean(f1s)), "classical_macro_f1": float(np.mean(cf1s)),
                   "f1": dict(zip(ANOMALIES, f1s, strict=True)), "clean_fp": fp_clean,
                   "pristine_fp": fp_pristine}


def quality_table(q: dict) -> list[str]:
    """Markdown lines: mean PSNR (dB) / SSIM per anomaly for input, camheal and tools."""
    lines = ["| anomaly | n | input | camheal | gain | best classical (tool) | margin |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for k, v in q.items():
        n = len(v["camheal"])
        inp, ours = np.mean(v["input"]), np.mean(v["camheal"])
        tools = {t: np.mean(v[t]) for t in BEST_TOOLS.get(k, ()) if v.get(t)}
        if tools:
            bt = max(tools, key=tools.get)
            best = f"{tools[bt]:.2f} ({bt})"
            margin = f"{(ours - inp) - (tools[bt] - inp):+.2f}"
        else:
            best, margin = "-", "-"
        ss = f" / {np.mean(v['camheal_ssim']):.3f}"
        lines.append(f"| {k} | {n} | {inp:.2f} | {ours:.2f}{ss} | {ours - inp:+.2f} | {best} | "
                     f"{margin} |")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point."""
    ap = argparse.ArgumentParser(prog="python -m camheal_train.evaluate", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", help="photo folder (default $CAMHEAL_DATA)")
    ap.add_argument("--include", action="append", default=None,
                    help="photo name prefix (default kodak24-)")
    ap.add_argument("--model", help="detector ONNX (default: shipped weights)")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--singles", type=int, default=2, help="variants per photo and anomaly")
    ap.add_argument("--pairs", type=int, default=2, help="two-anomaly variants per photo")
    ap.add_argument("--clean", type=int, default=2, help="jittered clean variants per photo")
    ap.add_argument("--calibrate", metavar="JSON", help="fit thresholds and write the sidecar")
    ap.add_argument("--only", action="append", choices=ANOMALIES, default=[],
                    help="with --calibrate: fit only this class's threshold (repeatable); "
                         "the others keep the sidecar's")
    ap.add_argument("--max-clean-fp", type=float, default=0.03,
                    help="calibration: allowed share of clean images with any detection")
    ap.add_argument("--json-out", help="write the summary as JSON")
    ap.add_argument("--ranks", action="store_true",
                    help="only the threshold-free comparison: per-class AUC and best F1 at "
                    "<= 1 %% clean FP (for choosing between weights on a calibration set)")
    ap.add_argument("--obstruction-kinds", type=int, metavar="N", default=0,
                    help="only the obstruction breakdown: N copies per photo under each "
                    "obstruction kind alone, AUC against the photo's clean versions")
    ap.add_argument("--clean-video", metavar="DIR",
                    help="only the real-video check: clips in DIR taken as clean, every 10th "
                    "frame analysed, the share of frames with each anomaly detected")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if a.clean_video:
        det = Detector.load(a.model)
        print(f"model {det.name}\n")
        print("\n".join(clean_video(det, Path(a.clean_video))))
        return 0
    photos = list_photos(data_dir(a.data), a.include or ["kodak24-"])
    det = Detector.load(a.model)
    if a.ranks:
        r = run(det, photos, a.seed, a.singles, a.pairs, a.clean, with_tools=False)
        print(f"model {det.name}, {len(photos)} photos, {len(r['labels'])} samples\n")
        print("\n".join(rank_table(r)))
        return 0
    if a.obstruction_kinds > 0:
        r = obstruction_kinds(det, photos, a.seed, a.obstruction_kinds, a.clean)
        print(f"model {det.name}, {len(photos)} photos\n")
        print("\n".join(kind_table(r, det.thresholds["obstruction"])))
        return 0
    if a.calibrate:
        r = run(det, photos, a.seed, a.singles, a.pairs, a.clean, with_tools=False)
        for q in (0.03, 0.02, 0.015, 0.01, 0.007, 0.004, 0.0):
            thr = calibrate(r["scores"], r["labels"], r["clean"], q)
            if a.only:  # the other classes keep the sidecar's thresholds
                thr = {n: (thr[n] if n in a.only else det.thresholds[n]) for n in ANOMALIES}
            t = np.array([thr[n] for n in ANOMALIES])
            fp = float((r["scores"][r["clean"]] >= t).any(1).mean())
            if fp <= a.max_clean_fp:
                break
        logger.info("per-class clean FP bound %.3f gives clean FP %.3f", q, fp)
        # keep what calibration does not own ("correction_gate")
        side_path = Path(a.calibrate)
        side = json.loads(side_path.read_text()) if side_path.is_file() else {}
        side.update({"thresholds": thr,
                     "calibrated_on": sorted({p.name.split("-")[0] for p in photos}),
                     "photos": len(photos), "samples": int(len(r["labels"])),
                     "clean_samples": int(r["clean"].sum()), "clean_fp": round(fp, 4),
                     "max_clean_fp": a.max_clean_fp})
        side_path.write_text(json.dumps(side, indent=2) + "\n")
        print(json.dumps(thr))
        det.thresholds.update(thr)
        lines, _ = detection_table(r, det.thresholds)
        print("\n".join(lines))
        return 0
    r = run(det, photos, a.seed, a.singles, a.pairs, a.clean)
    lines, summary = detection_table(r, det.thresholds)
    print(f"model {det.name}, {len(photos)} photos, {len(r['labels'])} samples\n")
    print("\n".join(lines))
    print()
    print("\n".join(quality_table(r["quality"])))
    if a.json_out:
        summary["quality"] = {k: {t: float(np.mean(v)) for t, v in d.items()}
                              for k, d in r["quality"].items()}
        Path(a.json_out).write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
