"""False alarms of the live health report on clean real clips.

    .venv/bin/python -m benchmarks.eval_health ../shared/datasets/video [--step 3]

Runs the shipped detector (with its stacked estimators) on every ``step``-th frame of each
clip (``*.avi``/``*.mp4``), feeds the scores to ``HealthTracker`` as the daemon does (one
analysis per sampled frame), and prints, per clip, the anomalies it would report:

* *shipped*: each anomaly at the detector's calibrated threshold, obstruction left to the
  persistent-defect tracker (which ``benchmarks/eval_defects.py`` measures on these clips);
* *shared levels*: every anomaly, obstruction included, at the shared 0.6 / 0.35 levels (the
  daemon before 2026-12-02, but with today's log-odds smoothing).

The clips are clean, so every report is a false alarm. Also the median and 90th percentile
of each anomaly's single-frame score. Prints Markdown.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from camheal.constants import ANOMALIES
from camheald.service.health import HealthTracker
from camheald.vision.detector import Detector


def clip_scores(det: Detector, path: Path, step: int) -> list[dict[str, float]]:
    """The detector's scores on every ``step``-th frame of a clip."""
    cap = cv2.VideoCapture(str(path))
    out, i = [], 0
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        if i % step == 0:
            out.append(det.analyze(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)).scores)
        i += 1
    cap.release()
    return out


def alarms(tracker: HealthTracker, scores: list[dict[str, float]]) -> list[str]:
    """'name@analysis' for every anomaly the tracker reports over the clip."""
    return [f"{e.name}@{i}" for i, s in enumerate(scores)
            for e in tracker.observe_analysis(s, now=float(i)) if e.kind == "detected"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.eval_health", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dataset", help="folder of clean clips (e.g. ../shared/datasets/video)")
    ap.add_argument("--step", type=int, default=3, help="analyse every N-th frame")
    a = ap.parse_args(argv)
    clips = sorted(p for p in Path(a.dataset).iterdir() if p.suffix in (".avi", ".mp4"))
    if not clips:
        raise SystemExit(f"{a.dataset}: no .avi/.mp4 clips")
    det = Detector.load(threads=1)
    print(f"detector `{det.name}`, one analysis every {a.step} frames\n")
    print("| clip | analyses | alarms, shipped | alarms, shared levels (before) |")
    print("| --- | --- | --- | --- |")
    per_clip = {}
    for clip in clips:
        scores = clip_scores(det, clip, max(1, a.step))
        per_clip[clip.name] = scores
        shipped = alarms(HealthTracker(thresholds=det.thresholds), scores)
        before = alarms(HealthTracker(judged_elsewhere=frozenset()), scores)
        print(f"| {clip.name} | {len(scores)} | {', '.join(shipped) or 'none'} | "
              f"{', '.join(before) or 'none'} |")
    print("\nSingle-frame scores, median / 90th percentile:\n")
    print("| clip | " + " | ".join(ANOMALIES) + " |")
    print("| --- |" + " --- |" * len(ANOMALIES))
    for name, scores in per_clip.items():
        cells = [f"{np.median([s[x] for s in scores]):.3f} / "
                 f"{np.quantile([s[x] for s in scores], 0.9):.3f}" for x in ANOMALIES]
        print(f"| {name} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
