"""Report sections (end to end, stages, models, IPC, profile) rendered from the results dict."""

from __future__ import annotations

from pathlib import Path

from benchmarks import plot
from benchmarks.tables import (
    NETWORK_ONLY,
    best_run,
    correct_mean,
    decode_fps,
    det,
    f,
    reps,
    table,
)

PROFILE_BEGIN = "<!-- profile-notes:begin (hand-written, kept by benchmarks.run) -->"
PROFILE_END = "<!-- profile-notes:end -->"
PLACEHOLDER = "_Not written yet: read the table above._"


def e2e_section(results: dict, img_dir: Path) -> str:
    runs = results.get("e2e", [])
    if not runs:
        return "_Skipped._"
    out = []
    drows = []
    for res, baselines in results.get("decode", {}).items():
        for i, r in enumerate(baselines):
            drows.append([res, str(i + 1), f(r["read"]["fps"]),
                          f(r["read"]["cpu_ms_per_frame"], 2), f(r["read+rgb"]["fps"]),
                          f(r["read+rgb"]["cpu_ms_per_frame"], 2)])
    clips = results.get("clips", {})
    clip_desc = ", ".join(f"{res}: `{c['path']}` ({c['frames']} frames {c['codec']}, "
                          f"{c['mb']} MB)" for res, c in clips.items())
    out.append(
        "Source: a synthetic moving, textured clip written with OpenCV's VideoWriter "
        f"({clip_desc}), played by `camheald --config … --bus session` with "
        "`source = \"file:CLIP?fps=0\"` (unpaced: as fast as it decodes, looping) unless the "
        "row says 30 fps. Clients are separate processes using the SDK "
        "(`Client(address).camera().stream()`); latency = `time.monotonic_ns() - "
        "frame.timestamp_ns` (the daemon stamps a frame after decoding it, so latency covers "
        "correction, ring write, wake-up and the client's scheduling, not decoding). "
        f"Each run measures a {f(results.get('e2e_window_s'), 0)} s window after warm-up; "
        "daemon CPU is utime+stime of the daemon process over the window / frames captured.\n")
    out.append("**Decode-only baseline** (`cv2.VideoCapture(...).read()` in a loop, a fresh "
               "Python process, before each repetition of that resolution's runs and once "
               "at the end):\n")
    out.append(table(["Clip", "Baseline #", "read fps", "CPU ms/frame", "read + BGR→RGB fps",
                      "CPU ms/frame"], drows))
    rows = []
    names = list(dict.fromkeys(r["name"] for r in runs))
    for name in names:
        r = best_run(results, name)
        assert r is not None
        per_rep = " / ".join(f"{x['pipeline_fps']:.1f}" for x in reps(results, name))
        busy = " / ".join(f"{x['busy_cores']:.1f}" for x in reps(results, name))
        dec = decode_fps(results, r["res"])
        ratio = r["pipeline_fps"] / dec if dec else None
        cf = r["client_fps"]
        rows.append([
            r["name"], str(r["clients"]), "on" if r["correct"] else "off",
            f"**{r['pipeline_fps']:.1f}**", per_rep,
            f(ratio * 100, 0, " %") if ratio else "–",
            f"{min(cf):.1f} / {sum(cf) / len(cf):.1f}" if cf else "–",
            f"{f(r['latency_p50_ms'])} / {f(r['latency_p99_ms'])}" if cf else "–",
            f(r["daemon_cpu_ms_per_frame"], 2), f(r["daemon_cpu_pct"], 0, " %"),
            f(correct_mean(r), 1), busy])
    out.append("\n**End-to-end runs** (`720p-1c` = 720p, 1 client; `1080p30` = source paced "
               "at 30 fps; `shipped` = the shipped detector instead of the synthetic "
               "worst case):\n")
    out.append(table(["Run", "Clients", "Correction", "Pipeline fps (best)",
                      "fps per repetition", "÷ decode-only", "Client fps min / mean",
                      "Latency p50 / p99 ms", "Daemon CPU ms/frame", "Daemon CPU",
                      "correct_ms", "Machine busy (cores)"], rows))
    out.append(
        "\n*Pipeline fps*: frames the daemon captured per second (`Stats.frames`); each "
        f"configuration ran {results.get('e2e_reps', 1)} time(s), interleaved with the "
        "others, and the row shows the repetition with the highest pipeline fps (the other "
        "columns are from that repetition); *÷ decode-only* divides by the best decode-only "
        "baseline. *Machine busy*: busy cores of the whole machine during the window "
        "(/proc/stat), daemon and clients included: anything well above the daemon's "
        "share is the other load. *Model*: "
        "\"synthetic worst case\" is the detector network with a head that always asks for a "
        "tone curve and a colour matrix, so every frame pays the full correction (see "
        "`benchmarks/detmodel.py`); \"shipped\" is `models/weights/camheal_detector.onnx`, "
        "which corrects only when it detects a global anomaly. *correct_ms*: the mean time of "
        "one frame's correction over the window, from the daemon's own Stats "
        "(Δ`correct_total_ms` ÷ Δ`corrections`; the daemon corrects only frames a consumer "
        "takes corrected, so runs without clients show none). `1080p30-idle`: one "
        "subscriber that never reads, so the daemon corrects and writes the ring but wakes "
        "nobody (the baseline of the delivery cost). Clients read the newest frame, so a "
        "slow client skips frames instead of queueing them.")
    out.append(_thread_table(results, names))
    img = _e2e_plot(results, img_dir)
    if img:
        out.append(f"\n![End-to-end frame rates]({img})")
    return "\n".join(out)


def _thread_table(results: dict, names: list[str]) -> str:
    """Daemon CPU per frame split by thread (same repetitions as the table above)."""
    rows, kinds = [], ["capture", "process", "analyze"]
    for name in names:
        r = best_run(results, name)
        threads = (r or {}).get("thread_cpu_ms_per_frame") or {}
        if not threads:
            continue
        by_kind = {k: sum(v for t, v in threads.items() if t.startswith(k + "-"))
                   for k in kinds}
        other = sum(threads.values()) - sum(by_kind.values())
        rows.append([name, *(f(by_kind[k], 2) for k in kinds), f(other, 2),
                     f(r.get("client_cpu_ms_per_frame"), 2)])
    if not rows:
        return ""
    return ("\n**Where the CPU goes, per frame** (ms of CPU per captured frame by daemon thread "
            "from /proc/PID/task/*/stat; camheald names its threads; *capture* decodes, "
            "*process* corrects and publishes, *analyze* runs the detector and the defect "
            "tracker a few times a second, *other* is the D-Bus event loop and helpers; "
            "*client* is the mean of the SDK clients per frame they received):\n\n"
            + table(["Run", "capture", "process", "analyze", "other", "client"], rows))


def _e2e_plot(results: dict, img_dir: Path) -> str | None:
    labels, pipe, client = [], [], []
    for res in ("720p", "1080p"):
        dec = decode_fps(results, res)
        if dec is not None:
            labels.append(f"{res} decode only")
            pipe.append(dec)
            client.append(None)
        for name in dict.fromkeys(x["name"] for x in results.get("e2e", [])):
            r = best_run(results, name)
            if r is None or r["res"] != res:
                continue
            labels.append(r["name"])
            pipe.append(r["pipeline_fps"])
            client.append(min(r["client_fps"]) if r["client_fps"] else None)
    if not labels:
        return None
    path = plot.hbars(img_dir / "bench-e2e-fps.png", "End-to-end frame rate (file source)", labels,
                      {"pipeline / decode fps": pipe, "slowest client fps": client},
                      "frames per second", marker=("30 fps", 30.0))
    return f"{img_dir.name}/{path.name}"


def model_section(results: dict) -> str:
    m = results.get("model")
    if not m:
        return "_Skipped._"
    out = ["### Detector latency\n",
           "`camheald.vision.detector.Detector.load(path, threads=N).analyze(rgb)` (ONNX "
           "Runtime, CPU provider) against PyTorch eager of the same network with the same "
           "preprocessing (`camheald.vision.spec.prepare`); *analyze* = preprocessing + "
           "inference (+ post-processing for ONNX Runtime, and the stacked colour-cast, "
           "contrast, noise and obstruction estimators: the `onnxruntime` rows run them as a "
           "camera does, only where the network does not rule their anomaly out and not the "
           "obstruction one, whose score the camera's defect tracker replaces (*estimators* "
           "says how many ran on the frame); `onnxruntime (estimators on every frame)` always "
           "runs all of them, as offline `camheal diagnose` may, "
           "the cost of a frame the network suspects of every one; `onnxruntime (network "
           "only)` leaves them "
           "out, the same work as the PyTorch rows), *network* = the inference call "
           "alone. Wall: median (fastest) call; CPU: process CPU per call, all threads (with "
           "2 threads it includes spinning workers). One real clip frame.\n"]
    rows = []
    for r in m["detector"]:
        prep = r.get("prepare")
        rows.append([r["backend"], r["model"], str(r["threads"]), r["res"],
                     str(r.get("estimators_run", "–")),
                     f"{f(r['analyze']['median_ms'], 2)} ({f(r['analyze']['min_ms'], 2)})",
                     f(r["analyze"].get("cpu_ms"), 2),
                     f"{f(r['infer']['median_ms'], 2)} ({f(r['infer']['min_ms'], 2)})",
                     f(r["infer"].get("cpu_ms"), 2),
                     f(prep["median_ms"], 2) if prep else "–"])
    out.append(table(["Backend", "Weights", "Threads", "Frame", "estimators", "analyze wall ms",
                      "analyze CPU ms", "network wall ms", "network CPU ms", "prepare ms"],
                     rows))
    sp = []
    for th in (1, 2):
        for res in ("720p", "1080p"):
            o = det(results, NETWORK_ONLY, th, res) or det(results, "onnxruntime", th, res)
            t = det(results, "pytorch-eager", th, res)
            oi = det(results, "onnxruntime", th, res, "infer")
            ti = det(results, "pytorch-eager", th, res, "infer")
            oc = det(results, "onnxruntime", th, res, "infer", "cpu_ms")
            tc = det(results, "pytorch-eager", th, res, "infer", "cpu_ms")
            if o and t:
                sp.append([str(th), res, f"{t / o:.1f}×", f"{ti / oi:.1f}×" if oi and ti else "–",
                           f"{tc / oc:.1f}×" if oc and tc else "–"])
    if sp:
        out.append("\nPyTorch eager ÷ ONNX Runtime (same run):\n")
        out.append(table(["Threads", "Frame", "analyze (median wall)",
                          "network (median wall)", "network (CPU)"], sp))
    out += [f"\n- {n}" for n in m.get("detector_notes", [])]
    out.append("- With 2 threads both backends compete with the other load on this 2-core "
               "machine; on a shared machine the 2-thread rows are usually *slower*.")
    out.append("\n### Global correction at full resolution\n")
    out.append("`camheald.vision.correct.apply_global(rgb, correction[, out])` (cv2.LUT per "
               "channel, then cv2.transform with the 3×3 matrix). *alloc* allocates the output, "
               "*out=* writes into a preallocated frame.\n")
    rows = [[r["res"], r["kind"], f(r["alloc"]["median_ms"], 2), f(r["out"]["median_ms"], 2),
             f(r["out"]["min_ms"], 2), f(r["out"].get("cpu_ms"), 2), f(r["ms_per_mpix"], 2)]
            for r in m["correction"]]
    out.append(table(["Frame", "Correction", "alloc ms (median)", "out= ms (median)",
                      "out= ms (fastest)", "out= CPU ms", "ms / Mpix (median)"], rows))
    out.append("\n### Restoration\n")
    out += [f"- {n}" for n in m.get("restoration_notes", [])]
    rows = [[r["res"], r["op"], f(r["median_ms"], 1), str(r["calls"]), f(r["ms_per_mpix"], 1)]
            for r in m.get("restoration", [])]
    if rows:
        out.append("")
        out.append(table(["Frame", "Operation (severity 0.5)", "ms (median)", "calls",
                          "ms / Mpix"], rows))
    return "\n".join(out)


def stages_section(results: dict) -> str:
    data = results.get("stages")
    if not data:
        return "_Skipped._"
    out = ["Each step of the capture path timed alone on a real clip frame in one process "
           "(`benchmarks/bench_stages.py`), with the variants worth comparing; which variant "
           "the daemon uses depends on its commit (see the profile). Wall ms: median "
           "(fastest call); CPU ms: process CPU per call, OpenCV worker threads included (the "
           "steadiest number on a loaded machine).\n"]
    rows = []
    for res, items in data.items():
        for r in items:
            rows.append([res, r["stage"], r["variant"],
                         f"{f(r['median_ms'], 2)} ({f(r['min_ms'], 2)})",
                         f(r.get("cpu_ms"), 2)])
    out.append(table(["Frame", "Stage", "Variant", "Wall ms", "CPU ms"], rows))
    return "\n".join(out)


def ipc_section(results: dict) -> str:
    data = results.get("ipc")
    if not data:
        return "_Skipped._"
    out = ["`benchmarks/bench_ipc.py --json` (another helper's benchmark, run unchanged): a "
           "publisher process sends 1080p RGB frames at 30 fps to N client processes by the "
           "shared-memory ring (what camheald uses), a unix socket, and D-Bus signals with "
           "an `ay` payload through a private dbus-daemon. CPU per frame of publisher, all "
           "clients and the broker.\n"]
    rows = []
    for n, d in data.items():
        for r in d["results"]:
            rows.append([n, r["method"], f(r["total_cpu_ms_per_frame"], 2),
                         f(r["publisher_cpu_ms_per_frame"], 2),
                         f(r["clients_cpu_ms_per_frame"], 2), f(r["broker_cpu_ms_per_frame"], 2),
                         f(r["latency_ms_p50"], 2), f(r["latency_ms_p99"], 2),
                         f(r["fps_min"], 1), str(r["dropped_total"]),
                         f(r["extra"].get("cpu_x_vs_ring"), 1, "×")])
    out.append(table(["Clients", "Method", "Total CPU ms/frame", "Publisher", "Clients",
                      "Broker", "Latency p50 ms", "p99 ms", "fps (slowest)", "Dropped",
                      "CPU vs ring"], rows))
    return "\n".join(out)


def profile_section(results: dict, notes: str, img_dir: Path) -> str:
    p = results.get("profile")
    out = []
    if not p:
        out.append("_Profile skipped._")
    elif p.get("error"):
        out.append(f"_Profile not taken: {p['error']}_")
    else:
        run = p["run"]
        out.append(
            f"py-spy ({p['tool']}, {p['rate']} Hz, `record --threads --format raw`) on the "
            f"daemon of a separate 1080p run (unpaced, correction on, model: {run['model']}, "
            f"1 client): pipeline {run['pipeline_fps']:.1f} fps, daemon "
            f"{run['daemon_cpu_ms_per_frame']:.2f} CPU ms/frame "
            f"({run['daemon_cpu_pct']:.0f} % of a core). Busy samples per thread: "
            + ", ".join(f"{k} {v}" for k, v in p["threads"].items())
            + f" (plus {p['idle_samples']} samples blocked in waits, left out). Each row is the "
            "deepest camheald source line on the stack; *est. CPU ms/frame* spreads the "
            "measured daemon CPU per frame by sample share. Raw stacks: "
            "`.bench-out/profile-1080p.txt`.\n")
        rows = [[s["thread"], f"`{s['where']}`", f"`{s['code'][:70]}`" if s["code"] else "",
                 f(s["share"] * 100, 1, " %"), f(s["est_cpu_ms"], 2)] for s in p["sites"]]
        out.append(table(["Thread", "Where", "Code", "Share of busy samples",
                          "est. CPU ms/frame"], rows))
        img = _profile_plot(p, img_dir)
        if img:
            out.append(f"\n![Where the daemon's time goes at 1080p]({img})")
    out.append("\n### What the profile shows\n")
    out.append(PROFILE_BEGIN)
    out.append(notes.strip() or PLACEHOLDER)
    out.append(PROFILE_END)
    return "\n".join(out)


def _short(where: str) -> str:
    """``camheald/x/y.py:12 Func`` -> ``y.py:12``; anything else unchanged (cut)."""
    loc = where.split()[0]
    if ":" not in loc:
        return where[:30]
    file, line = loc.rsplit(":", 1)
    return f"{Path(file).name}:{line}"


def _profile_plot(p: dict, img_dir: Path) -> str | None:
    sites = [s for s in p["sites"] if s["share"] >= 0.005][:10]
    if not sites:
        return None
    labels = [f"{s['thread']}: {_short(s['where'])} {s['leaf'][:28]}" for s in sites]
    path = plot.hbars(img_dir / "bench-profile-1080p.png",
                      "camheald at 1080p: estimated CPU ms per frame by call site (py-spy)",
                      labels, {"est. CPU ms/frame": [s["est_cpu_ms"] for s in sites]},
                      "CPU ms per frame")
    return f"{img_dir.name}/{path.name}"


def offline_section(results: dict) -> str:
    rows_in = results.get("offline")
    if not rows_in:
        return "_Skipped._"
    out = ["`camheal correct-video IN -o OUT --json --mask-out MASK` on MJPG clips of the "
           "bench's panning texture (30 fps; `benchmarks/offline.py`), each in a fresh "
           "process timed from outside: wall time, the process's CPU time per frame "
           "(`os.wait4`; both of the tool's passes, decoding and encoding included) and its "
           "peak RSS (VmHWM, read every 50 ms). *clean*: the texture alone; *dirt*: the same "
           "frames under a synthetic lens-dirt overlay (`inject.dirt`, seed 1), which the "
           "tool tracks and fills in every frame; IoU of the written mask with the true "
           "overlay.\n"]
    rows = [[r["res"], r["content"], str(r["frames"]), f(r["wall_s"], 1), f(r["fps"], 2),
             f(r["cpu_ms_per_frame"], 0), f(r["peak_rss_mb"], 0), str(r["defects"]),
             f(r.get("iou_end"), 2) if r.get("iou_end") is not None else "–"]
            for r in rows_in]
    out.append(table(["Clip", "Content", "Frames", "Wall s", "fps", "CPU ms/frame",
                      "Peak RSS MB", "Defects reported", "Mask IoU"], rows))
    return "\n".join(out)
