"""End-to-end: camheald on a private bus with a file source, N SDK clients in other processes.

One run = one daemon process: wait for ``camheald ready``, start the clients, wait until every
client has its first frame, then measure a fixed window: daemon CPU (/proc/PID/stat) and
``Stats.frames`` at both ends, per-client frames received in the window and their
capture-to-client latency.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from benchmarks.common import OUT, PY, cpu_of, loadavg, machine_busy, pct, thread_cpu

LOGS = OUT / "logs"


@dataclass
class RunSpec:
    """What one end-to-end run measures."""

    name: str
    res: str
    clip: Path
    clients: int = 1
    correct: bool = True
    fps: float = 0.0  # source pacing; 0 = as fast as it decodes
    model: Path | None = None
    model_label: str = "none"
    analyze_fps: float = 5.0
    # subscribers that never read: the daemon corrects and writes the ring for them and bumps
    # their eventfd, but no client wakes up (the baseline for what waking clients costs)
    idle_subscribers: int = 0


@dataclass
class RunResult:
    """Measured numbers of one run (rates over the measurement window)."""

    name: str
    res: str
    clients: int
    correct: bool
    source_fps: float
    model: str
    window_s: float
    pipeline_fps: float
    daemon_cpu_ms_per_frame: float
    daemon_cpu_pct: float
    client_fps: list[float]
    client_cpu_ms_per_frame: float
    latency_p50_ms: float
    latency_p99_ms: float
    skipped: int
    analyze_ms: float
    correct_ms: float  # the daemon's moving average at the end of the window
    correct_ms_mean: float  # mean correction over the window (NaN: none, or an old daemon)
    analyses: int
    actions: list[str]
    loadavg: tuple[float, float, float]
    busy_cores: float  # whole machine over the window (daemon + clients + everything else)
    # daemon CPU ms per frame by OS thread name (camera threads are named: capture-cam0, ...)
    thread_cpu_ms_per_frame: dict[str, float] = field(default_factory=dict)
    rep: int = 1  # repetition (full mode runs every configuration twice, interleaved)
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def camheald_cmd() -> list[str]:
    """The installed daemon entry point next to this interpreter (``-m camheald`` otherwise)."""
    exe = Path(PY).parent / "camheald"
    return [str(exe)] if exe.is_file() else [PY, "-m", "camheald"]


def write_config(spec: RunSpec) -> Path:
    """A camheald TOML config for ``spec`` (one camera ``cam0``)."""
    source = f"file:{spec.clip}?fps={spec.fps:g}"
    lines = ["[daemon]", 'bus = "session"', 'log_level = "warning"',
             f"analyze_fps = {spec.analyze_fps}", "", "[model]",
             f'path = "{spec.model or ""}"', "threads = 1", "", "[[camera]]", 'id = "cam0"',
             f'source = "{source}"', f"correct = {'true' if spec.correct else 'false'}", ""]
    path = OUT / f"camheald-{spec.name}.toml"
    path.write_text("\n".join(lines))
    return path


class Daemon:
    """camheald as a subprocess on ``address``; stderr goes to a log file."""

    def __init__(self, spec: RunSpec, address: str) -> None:
        LOGS.mkdir(parents=True, exist_ok=True)
        self.log_path = LOGS / f"camheald-{spec.name}.log"
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        env = dict(os.environ, DBUS_SESSION_BUS_ADDRESS=address)
        self.cmd = [*camheald_cmd(), "--config", str(write_config(spec)), "--bus", "session"]
        self.proc = subprocess.Popen(self.cmd, env=env, stdout=subprocess.PIPE,
                                     stderr=self._log, stdin=subprocess.DEVNULL, text=True)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_ready(self, timeout: float = 90.0) -> None:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            if line.strip() == "camheald ready":
                return
        self.stop()
        raise RuntimeError(f"camheald did not become ready; log: {self.log_path}\n"
                           + self.log_path.read_text()[-2000:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._log.close()


def _spawn_clients(n: int, address: str, corrected: bool, idle: bool = False
                   ) -> list[subprocess.Popen[str]]:
    kind = "corrected" if corrected else "raw"
    extra = ["idle"] if idle else []
    return [subprocess.Popen([PY, "-m", "benchmarks.client", address, kind, *extra],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            for _ in range(n)]


def _mean_correct_ms(s0: dict, s1: dict) -> float:
    """Mean correction over the window, from the daemon's running totals."""
    n = int(s1.get("corrections", 0)) - int(s0.get("corrections", 0))
    if "correct_total_ms" not in s1 or n <= 0:
        return float("nan")
    return (float(s1["correct_total_ms"]) - float(s0["correct_total_ms"])) / n


def _stats(address: str) -> dict:
    from camheal import Client

    with Client(bus=address, timeout=10.0) as client:
        return client.camera("cam0").stats()


def run(spec: RunSpec, warmup_s: float, window_s: float, profiler=None) -> RunResult:
    """One end-to-end run on its own private bus. ``profiler(pid, seconds)`` samples the daemon
    during the window when given (it must return when the window is over)."""
    from camheald.devbus import private_session_bus

    with private_session_bus() as address:
        daemon = Daemon(spec, address)
        clients: list[subprocess.Popen[str]] = []
        try:
            daemon.wait_ready()
            clients = _spawn_clients(spec.clients, address, spec.correct)
            idle = _spawn_clients(spec.idle_subscribers, address, spec.correct, idle=True)
            clients += idle
            for c in clients:
                assert c.stdout is not None
                line = c.stdout.readline().strip()
                if line != "ready":
                    raise RuntimeError(f"stream client failed: {line!r}")
            time.sleep(warmup_s)
            # the window: clients count frames received between t0 and t1
            t0 = time.monotonic_ns() + 200_000_000
            t1 = t0 + int(window_s * 1e9)
            for c in clients:
                assert c.stdin is not None
                c.stdin.write(f"{t0} {t1}\n")
                c.stdin.flush()
            time.sleep(max(0.0, (t0 - time.monotonic_ns()) / 1e9))
            s0, c0, w0 = _stats(address), cpu_of(daemon.pid), time.monotonic()
            th0 = thread_cpu(daemon.pid)
            m0 = machine_busy()
            if profiler is not None:
                profiler(daemon.pid, window_s)
            time.sleep(max(0.0, (t1 - time.monotonic_ns()) / 1e9))
            s1, c1, w1 = _stats(address), cpu_of(daemon.pid), time.monotonic()
            th1 = thread_cpu(daemon.pid)
            m1 = machine_busy()
            load = loadavg()
            reports = [json.loads(c.communicate(timeout=60)[0].strip().splitlines()[-1])
                       for c in clients]
            reports = [r for r in reports if not r.get("idle")]
        finally:
            for c in clients:
                if c.poll() is None:
                    c.kill()
                    c.wait()
            daemon.stop()
    frames = max(1, int(s1["frames"]) - int(s0["frames"]))
    wall = w1 - w0
    lat = [x / 1e6 for r in reports for x in r["lat_ns"]]
    notes = []
    if "model_error" in s1 or s1.get("model") == "none":
        notes.append(f"model: {s1.get('model')}")
    return RunResult(
        name=spec.name, res=spec.res, clients=spec.clients, correct=spec.correct,
        source_fps=spec.fps, model=spec.model_label, window_s=round(wall, 2),
        pipeline_fps=frames / wall, daemon_cpu_ms_per_frame=(c1 - c0) / frames * 1e3,
        daemon_cpu_pct=(c1 - c0) / wall * 100,
        client_fps=[len(r["lat_ns"]) / window_s for r in reports],
        client_cpu_ms_per_frame=(sum(r["cpu_s"] for r in reports)
                                 / max(1, sum(len(r["lat_ns"]) for r in reports)) * 1e3),
        latency_p50_ms=pct(lat, 50), latency_p99_ms=pct(lat, 99),
        skipped=sum(r["skipped"] for r in reports),
        analyze_ms=float(s1.get("analyze_ms", 0.0)), correct_ms=float(s1.get("correct_ms", 0.0)),
        correct_ms_mean=_mean_correct_ms(s0, s1),
        analyses=int(s1.get("analyses", 0)) - int(s0.get("analyses", 0)),
        actions=sorted({a for r in reports for a in r.get("actions", [])}),
        thread_cpu_ms_per_frame={k: round((v - th0.get(k, 0.0)) / frames * 1e3, 2)
                                 for k, v in sorted(th1.items()) if v - th0.get(k, 0.0) > 0},
        loadavg=load, busy_cores=(m1[0] - m0[0]) / (m1[1] - m0[1]) * (os.cpu_count() or 1),
        notes=notes)


def decode_only(clip: Path, seconds: float) -> dict:
    """The decode-only baseline (``benchmarks.decode``) in a fresh process."""
    out = subprocess.run([PY, "-m", "benchmarks.decode", str(clip), f"{seconds}"],
                         capture_output=True, text=True, timeout=seconds * 4 + 60, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


if __name__ == "__main__":  # a manual single run: python -m benchmarks.e2e CLIP [CLIENTS]
    from benchmarks import detmodel

    clip = Path(sys.argv[1])
    model = detmodel.synthetic_onnx()
    result = run(RunSpec("manual", "?", clip, int(sys.argv[2]) if len(sys.argv) > 2 else 1,
                         model=model, model_label="synthetic"), 2.0, 5.0)
    print(json.dumps(result.as_dict(), indent=1))
