"""Run the camheal benchmark suite and write docs/BENCHMARKS.md.

    python -m benchmarks.run            # full suite, about 6-7 minutes on 2 cores
    python -m benchmarks.run --quick    # about 1-2 minutes, shorter windows, fewer configs;
                                        # writes .bench-out/BENCHMARKS-quick.md
    python -m benchmarks.run --report-only   # re-render the report from .bench-out/results.json
    python -m benchmarks.run --skip model,stages,profile,ipc --runs 720p-1c,1080p30-4c --reps 3
                                        # just those end-to-end runs (with their decode-only
                                        # baselines); writes .bench-out/BENCHMARKS-partial.md

Sections: end-to-end (daemon + SDK clients vs decode-only), model costs, IPC (bench_ipc.py),
a py-spy profile of the daemon at 1080p, and what ``camheal correct-video`` costs
(offline.py). Raw results: .bench-out/results.json.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

from benchmarks import bench_model, bench_stages, detmodel, e2e, ipc, offline, report
from benchmarks.clip import make_clip
from benchmarks.common import (
    DOCS,
    OUT,
    Progress,
    code_state,
    loadavg,
    log,
    machine,
    other_busy_processes,
)
from benchmarks.profile import Recorder, py_spy, summarize

RESOLUTIONS = {"720p": (1280, 720), "1080p": (1920, 1080)}
SECTIONS = ("model", "stages", "e2e", "profile", "ipc", "offline")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="about 2 minutes instead of about 8")
    p.add_argument("--skip", default="", help=f"comma-separated sections to skip: {SECTIONS}")
    p.add_argument("--frames", type=int, default=300, help="frames in each test clip")
    p.add_argument("--codec", default="MJPG", choices=("MJPG", "mp4v"))
    p.add_argument("--out", type=Path, help="report to write (default: docs/BENCHMARKS.md; "
                   "with --quick .bench-out/BENCHMARKS-quick.md)")
    p.add_argument("--results", type=Path, help="raw results JSON (default: "
                   ".bench-out/results.json, or results-quick.json with --quick)")
    p.add_argument("--report-only", action="store_true",
                   help="only re-render the report from --results")
    p.add_argument("--runs", default="", help="comma-separated end-to-end runs to keep (e.g. "
                   "720p-1c,1080p30-4c; default: all of the mode); for quick comparisons")
    p.add_argument("--reps", type=int, default=0, help="repetitions of each end-to-end run "
                   "(default: 2, quick: 1)")
    args = p.parse_args(argv)
    # a partial run (--quick, --runs) never overwrites the full report or its raw results
    kind = "quick" if args.quick else "partial" if args.runs else ""
    if args.out is None:
        args.out = OUT / f"BENCHMARKS-{kind}.md" if kind else DOCS / "BENCHMARKS.md"
    if args.results is None:
        args.results = OUT / (f"results-{kind}.json" if kind else "results.json")
    return args


def plan(quick: bool, clips: dict[str, Path], synth: Path | None, shipped: Path | None
         ) -> list[e2e.RunSpec]:
    """The end-to-end runs, in order (decode-only baselines are taken around each block)."""
    model, label = (synth, "synthetic worst case") if synth else (shipped, "shipped")
    runs: list[e2e.RunSpec] = []
    def spec(res: str, name: str, clients: int, correct: bool = True) -> e2e.RunSpec:
        return e2e.RunSpec(f"{res}-{name}", res, clips[res], clients, correct, model=model,
                           model_label=label or "none")

    for res in clips:
        if quick:
            runs.append(spec(res, "1c", 1))
            if res == "1080p":
                runs.append(spec(res, "4c", 4))
            continue
        runs += [spec(res, "0c", 0), spec(res, "1c", 1), spec(res, "4c", 4),
                 spec(res, "1c-nocorrect", 1, correct=False)]
    if not quick and "1080p" in clips:
        clip = clips["1080p"]
        runs += [e2e.RunSpec("1080p30-0c", "1080p", clip, 0, True, 30.0, model, label),
                 e2e.RunSpec("1080p30-idle", "1080p", clip, 0, True, 30.0, model, label,
                             idle_subscribers=1),
                 e2e.RunSpec("1080p30-4c", "1080p", clip, 4, True, 30.0, model, label)]
        if shipped is not None and synth is not None:
            runs.append(e2e.RunSpec("1080p-1c-shipped", "1080p", clip, 1, True, 0.0, shipped,
                                    "shipped"))
    return runs


def run_e2e(res_clips: dict[str, Path], quick: bool, progress: Progress,
            results: dict, only: set[str] | None = None, reps: int = 0) -> None:
    """Every end-to-end configuration, ``reps`` times interleaved, with decode-only baselines
    before, between and after (on a shared machine the best repetition is the fair one)."""
    warmup, window, dec_s, default_reps = (1.0, 3.0, 2.0, 1) if quick else (2.0, 7.0, 3.0, 2)
    reps = reps or default_reps
    try:
        synth = detmodel.synthetic_onnx()
    except ImportError as exc:
        synth = None
        results["notes"].append(f"Synthetic detector not built ({exc}); end-to-end runs use "
                                "the shipped model if any.")
    shipped = detmodel.shipped()
    if synth is None and shipped is None:
        results["notes"].append("No detector at all: the end-to-end runs pass frames through "
                                "without analysis or correction.")
    runs = plan(quick, res_clips, synth, shipped)
    if only:
        runs = [r for r in runs if r.name in only]
        res_clips = {res: p for res, p in res_clips.items() if any(r.res == res for r in runs)}
    progress.grow(reps * len(runs) + len(res_clips) * (reps + 1))
    results.update(e2e_window_s=window, e2e_reps=reps)
    decode: dict[str, list[dict]] = {res: [] for res in res_clips}

    def baseline(res: str) -> None:
        progress.step(f"decode-only {res}")
        decode[res].append(e2e.decode_only(res_clips[res], dec_s))
        progress.advance()

    for rep in range(1, reps + 1):
        for res in res_clips:
            baseline(res)
            for spec in [r for r in runs if r.res == res]:
                progress.step(f"e2e {spec.name} (rep {rep}/{reps})")
                result = e2e.run(spec, warmup, window)
                result.rep = rep
                results["e2e"].append(result.as_dict())
                log(f"  {spec.name} rep {rep}: pipeline {result.pipeline_fps:.1f} fps, clients "
                    f"{[round(f, 1) for f in result.client_fps]}, p99 "
                    f"{result.latency_p99_ms:.1f} ms, {result.daemon_cpu_ms_per_frame:.1f} "
                    f"CPU ms/frame, machine busy {result.busy_cores:.2f} cores")
                progress.advance()
    for res in res_clips:
        baseline(res)
    results["decode"] = decode


def run_profile(clip: Path, quick: bool, progress: Progress, results: dict) -> None:
    progress.step("profile 1080p (py-spy)")
    window = 4.0 if quick else 8.0
    try:
        model = detmodel.synthetic_onnx()
        label = "synthetic worst case"
    except ImportError:
        model, label = detmodel.shipped(), "shipped"
    rec = Recorder(OUT / "profile-1080p.txt")
    spec = e2e.RunSpec("1080p-1c-profile", "1080p", clip, 1, True, 0.0, model, label)
    result = e2e.run(spec, 1.0 if quick else 2.0, window, profiler=rec)
    prof: dict = {"run": result.as_dict(), "error": rec.error, "tool": py_spy() or ""}
    if rec.samples_path is not None:
        frames = result.pipeline_fps * max(1, round(window))
        prof.update(summarize(rec.samples_path, result.daemon_cpu_ms_per_frame, frames))
    results["profile"] = prof
    progress.advance()


def run_model(res_frames: dict, quick: bool, progress: Progress, results: dict) -> None:
    budget = 0.4 if quick else 1.0
    progress.step("model: detector")
    rows, notes = bench_model.detector(res_frames, budget)
    progress.advance()
    progress.step("model: global correction")
    corr = bench_model.correction(res_frames, budget / 2)
    progress.advance()
    progress.step("model: restoration")
    frames = {k: v for k, v in res_frames.items() if not quick or k == "720p"}
    rest, rnotes = bench_model.restoration(frames, budget / 2)
    progress.advance()
    results["model"] = {"detector": rows, "detector_notes": notes, "correction": corr,
                        "restoration": rest, "restoration_notes": rnotes}


def run_ipc(quick: bool, progress: Progress, results: dict) -> None:
    counts = [1] if quick else [1, 4]
    frames = 60 if quick else 150
    results["ipc"] = {}
    for n in counts:
        progress.step(f"ipc bench_ipc.py --clients {n}")
        try:
            results["ipc"][str(n)] = ipc.run(frames, n)
        except (RuntimeError, OSError) as exc:
            results["notes"].append(f"bench_ipc --clients {n} failed: {exc}")
        progress.advance()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.report_only:
        results = json.loads(args.results.read_text())
        report.write(results, args.out)
        print(f"wrote {args.out}")
        return 0
    skip = {s for s in args.skip.split(",") if s}
    unknown = skip - set(SECTIONS)
    if unknown:
        print(f"unknown section(s) to skip: {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    t0 = time.monotonic()
    cmd = "python -m benchmarks.run" + "".join(f" {shlex.quote(a)}" for a in
                                               (argv if argv is not None else sys.argv[1:]))
    results: dict = {"command": cmd, "quick": args.quick, "machine": machine(),
                     "load_start": loadavg(), "busy_start": other_busy_processes(),
                     "notes": [], "e2e": [], "skipped": sorted(skip),
                     "code_start": code_state()}
    n_steps = 2 + (3 if "model" not in skip else 0) + (1 if "profile" not in skip else 0)
    n_steps += 0 if "stages" in skip else 1
    n_steps += 0 if "ipc" in skip else (1 if args.quick else 2)
    n_steps += 0 if "offline" in skip else (1 if args.quick else len(offline.SIZES))
    progress = Progress(n_steps, "camheal bench")
    try:
        progress.step("test clips")
        clips = {res: make_clip(w, h, args.frames, codec=args.codec)
                 for res, (w, h) in RESOLUTIONS.items()}
        results["clips"] = {res: {"path": str(p.relative_to(OUT.parent)), "frames": args.frames,
                                  "codec": args.codec, "mb": round(p.stat().st_size / 1e6, 1)}
                            for res, p in clips.items()}
        progress.advance()
        if "model" not in skip:
            frames = {res: bench_model.frame_from(p) for res, p in clips.items()}
            run_model(frames, args.quick, progress, results)
        if "stages" not in skip:
            progress.step("capture path stage by stage")
            budget = 0.3 if args.quick else 0.8
            results["stages"] = {res: bench_stages.stages(p, bench_model.frame_from(p), budget)
                                 for res, p in clips.items()}
            progress.advance()
        if "e2e" not in skip:
            only = {r for r in args.runs.split(",") if r} or None
            run_e2e(clips, args.quick, progress, results, only, args.reps)
        if "profile" not in skip:
            run_profile(clips["1080p"], args.quick, progress, results)
        if "ipc" not in skip:
            run_ipc(args.quick, progress, results)
        if "offline" not in skip:
            offline.run(args.quick, progress, results)
        progress.step("report")
        results["load_end"] = loadavg()
        results["busy_end"] = other_busy_processes()
        results["code_end"] = code_state()
        results["duration_s"] = round(time.monotonic() - t0, 1)
        args.results.parent.mkdir(parents=True, exist_ok=True)
        args.results.write_text(json.dumps(results, indent=1))
        report.write(results, args.out)
        progress.advance()
    finally:
        progress.close()
    print(f"wrote {args.out} and {args.results} in {time.monotonic() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
