"""`camheal hil` against the demo scene inside the inject: wrapper on a private bus."""

from __future__ import annotations

import argparse
import json
import time

import pytest

from camheal.errors import CamhealError
from camheald.hil import Observer, run_hil, summarize

SCHEDULE = "clean,underexposed,clean,blur"


def test_hil_scores_the_injected_schedule(start_daemon, bus_address, tmp_path):
    start_daemon("--source", f"inject:demo:?size=320x180&fps=15#schedule={SCHEDULE}&phase=3")
    args = argparse.Namespace(profile="demo", duration=13.0, bus=bus_address,
                              report_dir=str(tmp_path / "hil"), physical=False)
    assert run_hil(args) == 0
    report = json.loads((tmp_path / "hil" / "report.json").read_text())
    md = (tmp_path / "hil" / "report.md").read_text()
    seen = [p["defect"] for p in report["phases"]]
    assert set(seen) <= set(SCHEDULE.split(",")) and "underexposed" in seen, seen
    complete = [p for p in report["phases"] if p["complete"]]
    assert complete and all(1.0 < p["end_s"] - p["start_s"] < 5.5 for p in complete), complete
    scored = {name: a for name, a in report["anomalies"].items() if a["phases"]}
    assert scored, report["anomalies"]
    for a in scored.values():
        assert 0.0 <= a["recall"] <= 1.0
        assert all(0.0 <= t <= 5.5 for t in a["ttd_s"])
    assert report["clean"]["phases"] >= 1 and report["clean"]["false_alarms"] >= 0
    stream = report["stream"]
    assert stream["frames"] > 5 and stream["fps"] > 2, stream
    assert 0 < stream["latency_ms"]["p50"] < 2000, stream
    assert "| anomaly |" in md and "Stream:" in md


def test_observer_recall_time_to_detect_and_false_alarms():
    obs = Observer()
    obs.begin("blur", ("blur",), None)  # joined mid-phase: partial
    obs.sample(0.0, {"blur"}, "ok")
    obs.begin("clean", (), 1.0)
    obs.sample(2.0, {"blur"}, "ok")  # still clearing: not a false alarm
    obs.sample(5.0, {"noise"}, "ok")  # after settling: a false alarm
    obs.begin("dirt", ("obstruction",), 9.0)
    obs.sample(10.5, {"obstruction"}, "ok")
    obs.begin("clean", (), 17.0)
    obs.sample(18.0, set(), "no_signal")  # a clean phase without signal: not scored
    obs.begin("blur", ("blur",), 20.0)
    obs.sample(21.0, set(), "no_signal")  # no signal: partial, not a miss
    obs.begin("clean", (), 25.0)
    obs.finish(26.0)
    out = summarize(obs.phases)
    assert out["anomalies"]["blur"] == {"phases": 0, "detected": 0, "partial": 2, "ttd_s": [],
                                        "defects": ["blur"], "recall": None, "ttd_mean_s": None,
                                        "ttd_max_s": None}
    assert out["anomalies"]["obstruction"]["recall"] == 1.0
    assert out["anomalies"]["obstruction"]["ttd_s"] == [1.5]
    assert out["clean"]["phases"] == 2 and out["clean"]["false_alarms"] == 1  # 1-9 s, 25-26 s
    assert out["clean"]["by_anomaly"] == {"noise": 1}
    assert obs.states == {"ok": 4, "no_signal": 2}


def test_physical_steps_prompt_the_operator_and_score_each_step():
    from camheald import hil

    class FakeCam:
        detected: list[str] = []

        def health(self):
            return {"detected": list(self.detected), "state": "ok"}

    cam, prompts = FakeCam(), []

    def ask(text: str) -> str:
        prompts.append(text)
        cam.detected = ["obstruction"] if "Cover" in text else []
        return ""

    obs = Observer()
    hil._physical(cam, obs, 0.0, 0.3, ask)
    assert len(prompts) == len(hil.PHYSICAL_STEPS)
    assert [p.defect for p in obs.phases] == ["clean", "covered", "smudged", "clean"]
    assert all(p.complete and p.source == "physical" for p in obs.phases)
    out = summarize(obs.phases)["anomalies"]
    assert out["physical: covered"]["recall"] == 1.0
    assert out["physical: smudged"]["recall"] == 0.0


def test_hil_refuses_a_zero_duration(bus_env):
    from support import run_cli

    res = run_cli("hil", "--profile", "demo", "--duration", "0", env=bus_env, timeout=30)
    assert res.returncode == 2, res
    assert res.stderr.splitlines()[-1] == ("camheal hil: error: argument --duration: must be "
                                           "a number of seconds above 0, got '0'")
    args = argparse.Namespace(profile="demo", duration=0.0, bus="session",
                              report_dir="unused", physical=False)
    with pytest.raises(CamhealError, match="duration must be above 0"):
        run_hil(args)


@pytest.mark.parametrize("where, needle", [
    ("f", "report folder {}: a file of that name exists"),
    ("f/sub", "report folder {}: Not a directory"),
])
def test_hil_checks_the_report_folder_before_the_run(start_daemon, bus_env, tmp_path, where,
                                                     needle):
    from support import run_cli

    start_daemon("--source", f"inject:demo:?size=320x180&fps=15#schedule={SCHEDULE}&phase=3")
    (tmp_path / "f").write_text("not a folder\n")
    report_dir = tmp_path / where
    t0 = time.monotonic()
    res = run_cli("hil", "--profile", "demo", "--duration", "30", "--report-dir",
                  str(report_dir), env=bus_env, timeout=25)
    assert time.monotonic() - t0 < 10, "the run went ahead"
    assert res.returncode == 1 and res.stdout == "", res
    assert res.stderr == f"camheal: error: {needle.format(report_dir)}\n"
    assert (tmp_path / "f").read_text() == "not a folder\n"
