"""Evaluate the persistent-defect tracker and the inpainting on real clips with overlays.

    .venv/bin/python benchmarks/eval_defects.py ../shared/datasets/video [--updates 300]
        [--photos ../shared/datasets/photos]

For every clip (``*.avi``/``*.mp4`` in the folder, sampled at about 10 updates per second)
and for a "moving camera" version of it (a window panning 2 px per update over the real
frames), it reports:

* false alarms on the clean clip (persistent defects reported; scene states entered);
* mask IoU with the true overlay (``inject.dirt``/``inject.crack``, seeds 1-3; true mask =
  overlay opacity > 0.25) after 30 updates and at the end of the clip, and whether every
  reported defect has the overlay's kind;
* how much of the true mask the scene visibly changed behind in those first 30 updates (a
  pixel whose grey level moved by more than 20 from its first value): temporal evidence
  cannot exist elsewhere, so with a fixed camera this bounds what any tracker working from
  time alone can reach at 30 updates;
* inpainting PSNR inside the true mask: raw, OpenCV Telea given the *true* mask, the
  temporal fill given the true mask, and the full pipeline (tracker mask -> fill);

and the tracker's cost per update on a 1920x1080 frame on one core (wall and thread CPU
time, panning and fixed). ``--lens shipped`` gives the trackers the lens-defect segmenter
(opt-in in the product; the default here is time alone, as there). With ``--photos DIR``
it adds clean clips made from photos (``photo_clip``: real content, a synthetic fixed or
moving camera with vignetting, sensor noise and, for some, an on-screen timestamp), with
the overlays on the moving ones. Prints Markdown tables (docs/defects.md quotes them);
``--json`` for raw numbers.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from camheald.capture import inject
from camheald.capture.demo import DemoSource
from camheald.service.defects import DefectTracker
from camheald.vision.inpaint import fill_sequence, inpaint_still

SEEDS = (1, 2, 3)
LENS = None  # the lens-defect segmenter the trackers use (``--lens``)


def load(path: Path, updates: int) -> tuple[list[np.ndarray], float]:
    """Frames of a clip sampled at about 10 per second (RGB), and the sampled rate."""
    cap = cv2.VideoCapture(str(path))
    fps = cap.get(cv2.CAP_PROP_FPS) or 10.0
    step = max(1, round(fps / 10.0))
    out, i = [], 0
    while len(out) < updates:
        ok, bgr = cap.read()
        if not ok:
            break
        if i % step == 0:
            out.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        i += 1
    cap.release()
    return out, fps / step


def panned(frames: list[np.ndarray], speed: int = 2) -> list[np.ndarray]:
    """A camera panning over the real clip: a 75%-wide window moving ``speed`` px/update,
    bouncing at the edges (the content stays real, the camera motion is synthetic)."""
    h, w = frames[0].shape[:2]
    cw = int(w * 0.75) // 2 * 2
    span = w - cw
    out = []
    for i, f in enumerate(frames):
        x = (i * speed) % (2 * span)
        x = x if x <= span else 2 * span - x
        out.append(np.ascontiguousarray(f[:, x:x + cw]))
    return out


def photo_clip(path: Path, n: int, moving: bool, seed: int, osd: bool = False,
               size: tuple[int, int] = (640, 360), period: int = 200) -> list[np.ndarray]:
    """A clean clip made from a still photo (real content, synthetic camera).

    The camera looks at it (fixed, the light slowly changing) or sweeps over it on a smooth
    two-axis path (``period`` updates per cycle: up to about 5 px per update by default,
    with hand jitter); a lens with vignetting (corners at ~65 % of the light: a fixed dark
    pattern that is not a defect) and sensor noise (sigma 2.5); with ``osd``, a camera's
    on-screen timestamp and name burned in at fixed places (bright text that stays put
    while the scene moves)."""
    rng = np.random.default_rng(seed)
    w, h = size
    img = cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    s = max(w * 1.4 / img.shape[1], h * 1.4 / img.shape[0])
    img = cv2.resize(img, None, fx=s, fy=s,
                     interpolation=cv2.INTER_CUBIC if s > 1 else cv2.INTER_AREA)
    ih, iw = img.shape[:2]
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    vignette = (1.0 - 0.35 * (((x - w / 2) / (w / 2)) ** 2 + ((y - h / 2) / (h / 2)) ** 2)
                / 2.0)[..., None]
    phase = rng.uniform(0.0, 2 * np.pi, 2)
    out = []
    for i in range(n):
        cx, cy, gain = (iw - w) / 2, (ih - h) / 2, 1.0 + 0.15 * np.sin(i / 40.0)
        if moving:
            t = 2 * np.pi * i / period
            cx *= 1 + 0.9 * np.sin(1.3 * t + phase[0])
            cy *= 1 + 0.9 * np.sin(0.9 * t + phase[1])
            cx, cy, gain = cx + rng.normal(0, 0.7), cy + rng.normal(0, 0.7), 1.0
        f = cv2.warpAffine(img, np.float32([[1, 0, -cx], [0, 1, -cy]]), (w, h),
                           flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        f = f.astype(np.float32) * (vignette * gain) + rng.normal(0, 2.5, f.shape).astype(
            np.float32)
        f = np.clip(f, 0, 255).astype(np.uint8)
        if osd:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(1.7e9 + i / 10.0))
            for text, org in ((stamp, (12, 28)), ("CAM 03", (w - 110, h - 16))):
                cv2.putText(f, text, org, cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 255, 255), 2,
                            cv2.LINE_AA)
        out.append(f)
    return out


def iou(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 127, b > 127
    union = int((a | b).sum())
    return int((a & b).sum()) / union if union else 1.0


def psnr_in(frames, clean, mask) -> float:
    m = mask > 0
    err = np.mean([((a[m].astype(np.float64) - c[m]) ** 2).mean()
                   for a, c in zip(frames, clean, strict=True)])
    return float(10 * np.log10(255.0 ** 2 / max(err, 1e-9)))


def changed_share(frames: list[np.ndarray], mask: np.ndarray, n: int = 30) -> float:
    """Share of ``mask`` where the clean scene changed visibly in the first ``n`` frames."""
    grey = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY).astype(np.int16) for f in frames[:n]]
    changed = np.max([np.abs(g - grey[0]) for g in grey[1:]], axis=0) > 20
    m = mask > 127
    return float(changed[m].mean()) if m.any() else float("nan")


def run(frames, defect=None, fps: float = 10.0) -> tuple[DefectTracker, list, float]:
    tr = DefectTracker(lens=LENS)
    events, iou30 = [], float("nan")
    for i, f in enumerate(frames):
        events += tr.update(defect.apply(f) if defect else f, None, 1e9 + i / fps)
        if i == 29 and defect is not None:
            h, w = f.shape[:2]
            iou30 = iou(tr.mask_at(w, h), defect.mask)
    return tr, events, iou30


def evaluate_clip(name: str, frames: list[np.ndarray], fps: float, inpaint_n: int,
                  overlays: bool = True) -> dict:
    """False alarms on the clean clip; with ``overlays``, the dirt and crack runs (and with
    ``inpaint_n`` > 0 the inpainting PSNR of seed 1 over that many frames)."""
    h, w = frames[0].shape[:2]
    tr, events, _ = run(frames, None, fps)
    res: dict = {"clip": name, "size": f"{w}x{h}", "updates": len(frames),
                 "false_alarms": sum(e.kind == "detected" for e in events),
                 "states": [e.state for e in events if e.kind == "state"], "overlays": []}
    for kind in ("dirt", "crack") if overlays else ():
        for seed in SEEDS:
            d = inject.dirt(w, h, seed) if kind == "dirt" else inject.crack(w, h, seed)
            tr, _, iou30 = run(frames, d, fps)
            found = [x.kind for x in tr.defects()]
            row = {"kind": kind, "seed": seed, "iou30": round(iou30, 3),
                   "iou_end": round(iou(tr.mask_at(w, h), d.mask), 3),
                   "found": found, "kind_ok": bool(found) and set(found) == {kind},
                   "changed30": round(changed_share(frames, d.mask), 3)}
            if seed == SEEDS[0] and inpaint_n > 0:
                clean = frames[:inpaint_n]
                bad = [d.apply(f) for f in clean]
                sub = slice(None, None, 3)
                row["psnr_raw"] = round(psnr_in(bad[sub], clean[sub], d.mask), 2)
                row["psnr_telea_true"] = round(psnr_in(
                    [inpaint_still(b, d.mask, grow=0) for b in bad[sub]], clean[sub], d.mask), 2)
                row["psnr_fill_true"] = round(psnr_in(
                    fill_sequence(bad, d.mask)[sub], clean[sub], d.mask), 2)
                row["psnr_pipeline"] = round(psnr_in(
                    fill_sequence(bad, tr.mask_at(w, h))[sub], clean[sub], d.mask), 2)
            res["overlays"].append(row)
    return res


def demo_frames(n: int) -> list[np.ndarray]:
    src = DemoSource(width=640, height=360)
    src.open()
    return [src.render(8.0 + i / 10.0) for i in range(n)]


def timing(reps: int = 80, fixed: bool = False) -> dict:
    """Tracker cost per update at 1080p, one OpenCV thread (a panning demo scene + crack;
    ``fixed``: the demo's first view held still with sensor noise, where the lens-defect
    segmenter runs)."""
    cv2.setNumThreads(1)
    src = DemoSource(width=1920, height=1080)
    src.open()
    d = inject.crack(1920, 1080)
    if fixed:
        rng = np.random.default_rng(0)
        still = src.render(8.0).astype(np.int16)
        frames = [d.apply(np.clip(still + rng.integers(-3, 4, still.shape), 0, 255
                                  ).astype(np.uint8)) for _ in range(4)]
    else:
        frames = [d.apply(src.render(8.0 + i / 10.0)) for i in range(16)]
        frames += frames[-2:0:-1]  # back and forth: the view never jumps
    tr = DefectTracker(lens=LENS)
    wall, cpu = [], []
    for k in range(reps):
        f = frames[k % len(frames)]
        t0, c0 = time.perf_counter(), time.thread_time()
        tr.update(f, None, 1e9 + k / 10.0)
        wall.append(time.perf_counter() - t0)
        cpu.append(time.thread_time() - c0)
    wall_ms, cpu_ms = np.array(wall[10:]) * 1e3, np.array(cpu[10:]) * 1e3
    return {"wall_ms_median": round(float(np.median(wall_ms)), 2),
            "wall_ms_p90": round(float(np.percentile(wall_ms, 90)), 2),
            "cpu_ms_median": round(float(np.median(cpu_ms)), 2),
            "cpu_ms_p90": round(float(np.percentile(cpu_ms, 90)), 2)}


def table(results: list[dict]) -> str:
    lines = ["| clip | camera | clean: false alarms | dirt IoU@30 / end (mean s1-3) "
             "[changed@30] | crack IoU@30 / end [changed@30] | kind right | PSNR in mask "
             "dirt s1: raw / Telea(true) / fill(true) / pipeline | same for crack s1 |",
             "|" + " --- |" * 8]
    for r in results:
        cells = [r["clip"], r["camera"], f"{r['false_alarms']} {r['states'] or ''}".strip()]
        for kind in ("dirt", "crack"):
            rows = [o for o in r["overlays"] if o["kind"] == kind]
            cells.append(f"{np.nanmean([o['iou30'] for o in rows]):.2f} / "
                         f"{np.mean([o['iou_end'] for o in rows]):.2f} "
                         f"[{np.nanmean([o['changed30'] for o in rows]):.2f}]" if rows else "–")
        cells.append(f"{sum(o['kind_ok'] for o in r['overlays'])}/{len(r['overlays'])}"
                     if r["overlays"] else "–")
        for kind in ("dirt", "crack"):
            o = next((o for o in r["overlays"] if o["kind"] == kind and "psnr_raw" in o), None)
            cells.append("–" if o is None else
                         f"{o['psnr_raw']:.1f} / {o['psnr_telea_true']:.1f} / "
                         f"{o['psnr_fill_true']:.1f} / {o['psnr_pipeline']:.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def photo_todo(folder: Path, count: int, updates: int) -> list[tuple]:
    """(name, make_frames, fps, camera, overlays) for ``count`` photos of ``folder``, drawn
    with a fixed seed (frames made when evaluated). Each photo gives three clean clips: a
    fixed camera (false alarms only: nothing behind an overlay would ever change), a moving
    one and a moving one with an on-screen timestamp (both with the overlays too)."""
    photos = sorted(p for p in folder.iterdir()
                    if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp"))
    rng = np.random.default_rng(11)
    todo = []
    for k, i in enumerate(sorted(rng.choice(len(photos), min(count, len(photos)),
                                            replace=False))):
        p = photos[i]
        for camera, osd in (("fixed", False), ("moving", False), ("moving", True)):
            todo.append((f"photo {p.name}" + (" + timestamp" if osd else ""),
                         lambda p=p, k=k, m=camera == "moving", o=osd:
                         photo_clip(p, updates, m, k, o), 10.0, camera, camera == "moving"))
    return todo


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dataset", help="folder of clips (e.g. ../shared/datasets/video)")
    ap.add_argument("--updates", type=int, default=300, help="updates per clip (10 per s)")
    ap.add_argument("--inpaint-frames", type=int, default=45)
    ap.add_argument("--photos", type=Path, default=None,
                    help="also make clean clips from photos in this folder (photo_clip)")
    ap.add_argument("--photo-count", type=int, default=4, help="photos drawn (3 clips each)")
    ap.add_argument("--photo-updates", type=int, default=200, help="updates per photo clip")
    ap.add_argument("--no-real", action="store_true", help="only the photo clips")
    ap.add_argument("--json", action="store_true", help="print raw results as JSON")
    ap.add_argument("--lens", default="none",
                    help="lens-defect segmenter: 'none' (time alone, the product's default), "
                    "'shipped' or an ONNX path")
    args = ap.parse_args(argv)
    global LENS
    if args.lens != "none":
        from camheald.vision.lens import LensSegmenter

        LENS = LensSegmenter.load(None if args.lens == "shipped" else args.lens)
    clips = sorted(p for p in Path(args.dataset).iterdir() if p.suffix in (".avi", ".mp4"))
    if not clips:
        print(f"eval_defects: no clips in {args.dataset}", file=sys.stderr)
        return 1
    t0 = time.monotonic()
    results = []
    todo = []
    if not args.no_real:
        for p in clips:
            frames, fps = load(p, args.updates)
            todo += [(p.name, frames, fps, "fixed", True),
                     (p.name, panned(frames), fps, "panning", True)]
        todo.append(("demo scene (synthetic)", demo_frames(min(args.updates, 120)), 10.0,
                     "panning", True))  # the demo camera pans by itself
    if args.photos is not None:
        todo += photo_todo(args.photos, args.photo_count, args.photo_updates)
    for name, frames, fps, camera, overlays in todo:
        frames = frames() if callable(frames) else frames
        r = evaluate_clip(name, frames, fps, args.inpaint_frames if overlays else 0, overlays)
        r["camera"] = camera
        results.append(r)
        print(f"# {name} {camera}: done ({time.monotonic() - t0:.0f} s)", file=sys.stderr)
    tim = {"panning": timing(), "fixed": timing(fixed=True)}
    if args.json:
        print(json.dumps({"clips": results, "timing_1080p": tim}, indent=1))
    else:
        print(table(results))
        for cam, t in tim.items():
            print(f"\n1080p update, {cam} camera, one thread: wall median {t['wall_ms_median']}"
                  f" ms (p90 {t['wall_ms_p90']}), thread CPU median {t['cpu_ms_median']} ms "
                  f"(p90 {t['cpu_ms_p90']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
