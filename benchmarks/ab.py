"""Interleaved A/B of end-to-end runs between versions of the daemon and SDK (not in make bench).

    python -m benchmarks.ab --version before=/tmp/before --version after=. \\
        --runs 720p-1c,1080p30-4c --reps 8 [--window 5]

A version is a source tree holding ``daemon/`` and ``client_sdk/`` (e.g. ``git archive COMMIT
daemon client_sdk | tar -x -C DIR``); ``.`` is this checkout. The daemon and the SDK clients
of each run import that version (``PYTHONPATH``); the benchmark harness is this checkout's.
Each repetition takes a decode-only baseline of every clip it uses, then runs every
configuration once per version, alternating the order, so that both versions see the same
load. One JSON line per run on stdout (and in ``--out``), medians at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from pathlib import Path

from benchmarks import detmodel, e2e
from benchmarks.clip import make_clip
from benchmarks.common import OUT, ROOT

CLIPS = {"720p": (1280, 720), "1080p": (1920, 1080)}


def spec_for(name: str, clips: dict[str, Path], model: Path) -> e2e.RunSpec:
    """``720p-1c``, ``1080p30-4c``, ``720p-1c-nocorrect``: resolution[30], clients, options."""
    res, rest = name.split("-", 1)
    fps = 30.0 if res.endswith("30") else 0.0
    res = res.removesuffix("30")
    clients = int(rest.split("c", 1)[0])
    return e2e.RunSpec(name, res, clips[res], clients, "nocorrect" not in rest, fps, model,
                       "synthetic worst case")


def pythonpath(tree: str) -> str:
    root = Path(tree).resolve()
    return "" if root == ROOT else f"{root / 'daemon'}:{root / 'client_sdk'}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.ab", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="append", required=True, help="NAME=TREE (twice or more)")
    p.add_argument("--runs", default="720p-1c,1080p30-4c")
    p.add_argument("--reps", type=int, default=4)
    p.add_argument("--window", type=float, default=5.0)
    p.add_argument("--out", type=Path, default=OUT / "ab.jsonl")
    args = p.parse_args(argv)
    versions = dict(v.split("=", 1) for v in args.version)
    names = [r for r in args.runs.split(",") if r]
    model = detmodel.synthetic_onnx()
    used = {spec_for(n, {r: Path() for r in CLIPS}, model).res for n in names}
    clips = {res: make_clip(*CLIPS[res], 300) for res in used}
    records: list[dict] = []
    args.out.parent.mkdir(parents=True, exist_ok=True)
    env0 = os.environ.get("PYTHONPATH")
    with args.out.open("a") as out:
        for rep in range(args.reps):
            decode = {res: e2e.decode_only(clip, 3.0)["read"]["fps"] for res, clip in clips.items()}
            order = list(versions) if rep % 2 == 0 else list(reversed(versions))
            for name in names:
                for version in order:
                    os.environ["PYTHONPATH"] = pythonpath(versions[version])
                    try:
                        r = e2e.run(spec_for(name, clips, model), 2.0, args.window)
                    finally:
                        if env0 is None:
                            os.environ.pop("PYTHONPATH", None)
                        else:
                            os.environ["PYTHONPATH"] = env0
                    corr = r.correct_ms_mean if r.correct_ms_mean == r.correct_ms_mean \
                        else r.correct_ms
                    rec = {"version": version, "run": name, "rep": rep,
                           "pipeline_fps": round(r.pipeline_fps, 1),
                           "vs_decode": round(r.pipeline_fps / decode[r.res], 3),
                           "p50_ms": round(r.latency_p50_ms, 2),
                           "p99_ms": round(r.latency_p99_ms, 2),
                           "on_top_ms": round(r.latency_p99_ms - corr, 2),
                           "cpu_ms_per_frame": round(r.daemon_cpu_ms_per_frame, 2),
                           "busy_cores": round(r.busy_cores, 2), "loadavg": r.loadavg}
                    records.append(rec)
                    line = json.dumps(rec)
                    print(line, flush=True)
                    out.write(line + "\n")
                    out.flush()
    keys = ("pipeline_fps", "vs_decode", "p99_ms", "on_top_ms", "cpu_ms_per_frame")
    for name in names:
        for version in versions:
            rows = [r for r in records if r["run"] == name and r["version"] == version]
            med = {k: statistics.median(r[k] for r in rows) for k in keys}
            print(f"{name} {version}: medians of {len(rows)}: "
                  + ", ".join(f"{k} {v:g}" for k, v in med.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
