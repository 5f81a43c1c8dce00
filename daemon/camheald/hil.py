"""``camheal hil``: hardware-in-the-loop scoring of a live camheald against known defects.

The daemon's camera runs inside the ``inject:`` wrapper (``camheald --profile NAME --inject``,
or the ``demo`` profile on any machine), which shows the seven anomalies on a schedule and
names the one it shows now in ``Stats["injected"]``. This runner follows that ground truth,
polls the camera's ``Health``, and writes ``report.json`` and ``report.md``: per anomaly the
recall and time-to-detect, false alarms during clean phases, then capture fps and end-to-end
latency from a short stream read. ``--physical`` adds operator steps (cover, smudge the lens).
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from camheal.errors import CamhealError

logger = logging.getLogger(__name__)

#: injected defect name -> the anomaly the detector should report
ANOMALY_OF = {"dirt": "obstruction", "obstruction": "obstruction", "crack": "obstruction",
              "blur": "blur", "underexposed": "underexposed", "overexposed": "overexposed",
              "low_contrast": "low_contrast", "color_cast": "color_cast", "noise": "noise"}
POLL_S = 0.25
SETTLE_S = 3.0  # the detector's smoothing: detections this soon after a phase change are not
#                 counted as false alarms or confusions
PHYSICAL_STEPS = (
    ("clean", (), "Make sure the lens is clean and the camera sees its normal scene."),
    ("covered", ("obstruction", "underexposed"), "Cover about half of the lens with a card "
     "or a finger (do not touch the glass)."),
    ("smudged", ("blur", "low_contrast", "obstruction"), "Smudge the lens with a fingertip "
     "(a thin film of grease)."),
    ("clean", (), "Clean the lens again."),
)


@dataclass
class Phase:
    """One stretch of constant ground truth as seen by the runner."""

    defect: str
    expected: tuple[str, ...]  # anomalies that count as a hit; () for a clean phase
    start_s: float | None  # seconds since the run began; None when joined mid-phase
    end_s: float | None = None
    complete: bool = False
    detected: bool = False
    ttd_s: float | None = None
    false_alarms: list[str] = field(default_factory=list)  # anomalies newly confirmed (clean)
    also_detected: list[str] = field(default_factory=list)  # others confirmed (anomaly phases)
    no_signal: int = 0  # samples without frames: such a phase is not scored
    source: str = "inject"


class Observer:
    """Follows ground truth and health samples and turns them into phases."""

    def __init__(self) -> None:
        self.phases: list[Phase] = []
        self.states: dict[str, int] = {}
        self._prev_detected: set[str] = set()
        self._last_t = 0.0

    def begin(self, defect: str, expected: tuple[str, ...], t: float | None,
              source: str = "inject") -> None:
        if self.phases and self.phases[-1].end_s is None:
            last = self.phases[-1]
            last.end_s = t if t is not None else self._last_t
            last.complete = last.start_s is not None
        self.phases.append(Phase(defect, expected, t, source=source))

    def sample(self, t: float, detected: set[str], state: str) -> None:
        self.states[state] = self.states.get(state, 0) + 1
        new = detected - self._prev_detected
        self._prev_detected = detected
        self._last_t = t
        if not self.phases:
            return
        ph = self.phases[-1]
        if state in ("no_signal", "starting"):
            ph.no_signal += 1
        settled = ph.start_s is None or t - ph.start_s >= SETTLE_S
        hit = detected & set(ph.expected)
        if hit and not ph.detected:
            ph.detected = True
            if ph.start_s is not None:
                ph.ttd_s = round(t - ph.start_s, 2)
        if settled:
            others = sorted(new - set(ph.expected))
            (ph.false_alarms if not ph.expected else ph.also_detected).extend(others)

    def finish(self, t: float) -> None:
        if self.phases and self.phases[-1].end_s is None:
            self.phases[-1].end_s = t  # cut by the end of the run: not complete


def _pick_camera(client: Any, wanted: str | None, physical: bool,
                 wait_s: float = 15.0) -> Any:
    """The profile's camera if it injects, else the first that does (sources open lazily:
    wait up to ``wait_s`` for one to start)."""
    cams = client.cameras()
    if not cams:
        raise CamhealError("the daemon has no camera")
    by_id = {c.id: c for c in cams}
    order = ([by_id[wanted]] if wanted in by_id else []) + [c for c in cams if c.id != wanted]
    deadline = time.monotonic() + wait_s
    while True:
        for cam in order:
            if cam.stats().get("injected"):
                return cam
        if physical:
            return order[0]
        if time.monotonic() > deadline:
            raise CamhealError("no camera injects defects: start the daemon with "
                               "'camheald --profile NAME --inject' (or '--profile demo'), or "
                               "use --physical to test by hand")
        time.sleep(0.2)


def _follow_injected(cam: Any, obs: Observer, t0: float, until: float) -> None:
    current: str | None = None
    last_poll = 0.0
    while time.monotonic() < until:
        stats, health = cam.stats(), cam.health()
        now = time.monotonic() - t0
        injected = str(stats.get("injected") or "clean")
        if injected != current:
            # the change happened between two polls: take the midpoint
            start = None if current is None else round((last_poll + now) / 2, 3)
            obs.begin(injected, (ANOMALY_OF[injected],) if injected in ANOMALY_OF else (), start)
            current = injected
        obs.sample(now, set(health.get("detected", [])), str(health.get("state", "?")))
        last_poll = now
        time.sleep(max(0.0, POLL_S - (time.monotonic() - t0 - now)))


def _physical(cam: Any, obs: Observer, t0: float, step_s: float,
              ask: Callable[[str], str]) -> None:
    for name, expected, text in PHYSICAL_STEPS:
        ask(f"[hil] {text} Press Enter when done ({step_s:.0f} s of observation follow)")
        start = time.monotonic() - t0
        obs.begin(name, expected, start, source="physical")
        while time.monotonic() - t0 < start + step_s:
            health = cam.health()
            obs.sample(time.monotonic() - t0, set(health.get("detected", [])),
                       str(health.get("state", "?")))
            time.sleep(POLL_S)
        obs.begin("end", (), time.monotonic() - t0, source="physical")
        obs.phases.pop()


def _stream_check(cam: Any, seconds: float) -> dict[str, Any]:
    latencies: list[float] = []
    t_end = time.monotonic() + seconds
    with cam.stream(corrected=True, timeout=2.0) as stream:
        t_start = time.monotonic()
        while time.monotonic() < t_end:
            frame = stream.read(timeout=1.0)
            if frame is None:
                continue
            latencies.append((time.monotonic_ns() - frame.timestamp_ns) / 1e6)
        elapsed = time.monotonic() - t_start
        dropped = int(stream.stats.get("dropped", 0))
    out: dict[str, Any] = {"seconds": round(elapsed, 2), "frames": len(latencies),
                           "fps": round(len(latencies) / elapsed, 2) if elapsed else 0.0,
                           "dropped": dropped}
    if latencies:
        q = sorted(latencies)
        out["latency_ms"] = {"mean": round(statistics.fmean(q), 2),
                             "p50": round(q[len(q) // 2], 2),
                             "p95": round(q[min(len(q) - 1, int(len(q) * 0.95))], 2),
                             "max": round(q[-1], 2)}
    return out


def summarize(phases: list[Phase]) -> dict[str, Any]:
    """Per-anomaly recall and time-to-detect, and false alarms on clean phases."""
    anomalies: dict[str, dict[str, Any]] = {}
    clean = {"phases": 0, "seconds": 0.0, "false_alarms": 0, "by_anomaly": {}}
    for ph in phases:
        if not ph.expected:
            if ph.start_s is None or ph.end_s is None or ph.no_signal:
                continue
            clean["phases"] += 1
            clean["seconds"] = round(clean["seconds"] + ph.end_s - ph.start_s, 2)
            clean["false_alarms"] += len(ph.false_alarms)
            for name in ph.false_alarms:
                clean["by_anomaly"][name] = clean["by_anomaly"].get(name, 0) + 1
            continue
        key = ph.expected[0] if ph.source == "inject" else f"physical: {ph.defect}"
        a = anomalies.setdefault(key, {"phases": 0, "detected": 0, "partial": 0, "ttd_s": [],
                                       "defects": []})
        if ph.defect not in a["defects"]:
            a["defects"].append(ph.defect)
        if not ph.complete or ph.no_signal:
            a["partial"] += 1  # seen in part, or the camera had no signal meanwhile
            continue
        a["phases"] += 1
        if ph.detected:
            a["detected"] += 1
            if ph.ttd_s is not None:
                a["ttd_s"].append(ph.ttd_s)
    for a in anomalies.values():
        a["recall"] = round(a["detected"] / a["phases"], 3) if a["phases"] else None
        a["ttd_mean_s"] = round(statistics.fmean(a["ttd_s"]), 2) if a["ttd_s"] else None
        a["ttd_max_s"] = max(a["ttd_s"]) if a["ttd_s"] else None
    minutes = clean["seconds"] / 60
    clean["false_alarms_per_min"] = round(clean["false_alarms"] / minutes, 3) if minutes else None
    return {"anomalies": anomalies, "clean": clean}


def render_markdown(report: dict[str, Any]) -> str:
    """The human-readable report."""
    lines = [f"# camheal HIL report: {report['profile']}", "",
             f"- camera `{report['camera']}`, source `{report['source']}`",
             f"- model `{report['stats'].get('model', '?')}`, run {report['duration_s']} s, "
             f"started {report['started']}",
             f"- detections in the first {SETTLE_S:g} s of a phase are not counted as false "
             "alarms (detector smoothing); recall counts only phases seen from start to end "
             "with a camera signal throughout (others: partial)", "",
             "| anomaly | phases | detected | recall | time to detect (mean / max, s) |",
             "| --- | --- | --- | --- | --- |"]
    for name, a in sorted(report["anomalies"].items()):
        recall = "n/a" if a["recall"] is None else f"{a['recall']:.0%}"
        ttd = "-" if a["ttd_mean_s"] is None else f"{a['ttd_mean_s']} / {a['ttd_max_s']}"
        lines.append(f"| {name} | {a['phases']} (+{a['partial']} partial) | {a['detected']} "
                     f"| {recall} | {ttd} |")
    c = report["clean"]
    lines += ["", f"Clean: {c['phases']} phases, {c['seconds']} s, {c['false_alarms']} false "
              f"alarm(s) ({c['false_alarms_per_min']} per minute)"
              + (f": {c['by_anomaly']}" if c["by_anomaly"] else "")]
    s = report["stream"]
    lat = s.get("latency_ms", {})
    lines += ["", f"Stream: {s['frames']} frames in {s['seconds']} s = {s['fps']} fps, "
              f"{s['dropped']} dropped; latency capture→client mean {lat.get('mean', '-')} ms, "
              f"p95 {lat.get('p95', '-')} ms, max {lat.get('max', '-')} ms",
              f"Daemon: capture {report['stats'].get('fps')} fps, analysis "
              f"{report['stats'].get('analyze_ms')} ms, correction "
              f"{report['stats'].get('correct_ms')} ms; health states seen "
              f"{report['health_states']}", "", "## Phases", "",
              "| defect | start s | end s | complete | detected | ttd s | other detections |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    for p in report["phases"]:
        other = ", ".join(p["false_alarms"] + p["also_detected"]) or "-"
        lines.append(f"| {p['defect']} | {p['start_s']} | {p['end_s']} | {p['complete']} | "
                     f"{p['detected'] if p['expected'] else '-'} | {p['ttd_s']} | {other} |")
    return "\n".join(lines) + "\n"


def _report_folder(path: Path) -> Path:
    """Create the report folder and check that it takes files, before a run whose report
    would otherwise be lost at its end."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except FileExistsError:
        raise CamhealError(f"report folder {path}: a file of that name exists") from None
    except OSError as exc:
        raise CamhealError(f"report folder {path}: {exc.strerror or exc}") from None
    return path


def run_hil(args: argparse.Namespace, ask: Callable[[str], str] = input) -> int:
    """Run the HIL session described by ``args`` (profile, duration, bus, report_dir, physical)."""
    from camheal.client import Client
    from camheald import config as cfg
    from camheald.capture import profiles
    from camheald.errors import CamhealError as DaemonError

    try:
        profile_file = profiles.find(args.profile)
        profile = cfg.load(profile_file)
    except DaemonError as exc:
        raise CamhealError(str(exc)) from None
    wanted = profile.camera[0].id if profile.camera else None
    duration = float(args.duration)
    if not duration > 0:  # (the CLI refuses it already; 0 once meant 60 s, silently)
        raise CamhealError(f"duration must be above 0 seconds, got {args.duration!r}")
    physical = bool(getattr(args, "physical", False))
    report_dir = _report_folder(Path(args.report_dir or "hil-report"))
    obs = Observer()
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    with Client(args.bus) as client:
        cam = _pick_camera(client, wanted, physical)
        print(f"hil: camera {cam.id} ({cam.properties().get('Source', '?')}), {duration:g} s",
              flush=True)
        t0 = time.monotonic()
        try:
            if cam.stats().get("injected"):
                _follow_injected(cam, obs, t0, t0 + duration)
                obs.finish(time.monotonic() - t0)
            if physical:
                _physical(cam, obs, t0, max(10.0, duration / len(PHYSICAL_STEPS)), ask)
        except KeyboardInterrupt:
            print("hil: interrupted; writing the report so far", file=sys.stderr)
        obs.finish(time.monotonic() - t0)
        run_s = round(time.monotonic() - t0, 1)
        stream = _stream_check(cam, min(5.0, max(2.0, duration / 10)))
        stats = cam.stats()
        source = cam.properties().get("Source", "")
    report: dict[str, Any] = {
        "profile": args.profile, "profile_file": str(profile_file), "camera": cam.id,
        "source": source, "started": started, "duration_s": run_s, "poll_s": POLL_S,
        "settle_s": SETTLE_S, **summarize(obs.phases), "stream": stream,
        "stats": {k: stats.get(k) for k in ("model", "fps", "frames", "analyses", "analyze_ms",
                                            "correct_ms", "reconnects", "source_errors")},
        "health_states": obs.states, "phases": [asdict(p) for p in obs.phases]}
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (report_dir / "report.md").write_text(render_markdown(report))
    scored = sum(a["phases"] for a in report["anomalies"].values())
    print(render_markdown(report).split("\n## Phases")[0])
    print(f"hil: report written to {report_dir}/report.json and report.md")
    if not scored:
        print("hil: no anomaly phase was seen from start to end: run longer than two phases",
              file=sys.stderr)
        return 1
    return 0
