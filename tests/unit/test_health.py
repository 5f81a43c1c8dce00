from __future__ import annotations

import numpy as np
import pytest

from camheal.constants import ANOMALIES
from camheald.service.health import HealthConfig, HealthTracker


def scores(**kw: float) -> dict[str, float]:
    return {a: kw.get(a, 0.02) for a in ANOMALIES}


def test_single_spike_does_not_alarm_but_persistent_anomaly_does():
    h = HealthTracker(HealthConfig(alpha=0.5, on=0.6, off=0.35, confirm=2))
    assert h.observe_analysis(scores(blur=0.99), now=1) == []
    assert h.observe_analysis(scores(), now=2) == []
    assert "blur" not in h.snapshot()["detected"]
    events = []
    for t in range(3, 8):
        events += h.observe_analysis(scores(blur=0.95), now=t)
    assert [(e.kind, e.name) for e in events] == [("detected", "blur")]
    snap = h.snapshot()
    assert snap["detected"] == ["blur"] and snap["since"]["blur"] == events[0].wall_time
    # hysteresis: a dip just under `on` does not clear it
    assert h.observe_analysis(scores(blur=0.5), now=9) == []
    cleared = []
    for t in range(10, 16):
        cleared += h.observe_analysis(scores(), now=t)
    assert [(e.kind, e.name) for e in cleared] == [("cleared", "blur")]
    assert h.snapshot()["detected"] == []


def test_frozen_and_no_signal_states():
    h = HealthTracker(HealthConfig(frozen_s=2.0, no_signal_s=1.0))
    frame = np.zeros((24, 32), np.uint8)
    assert [e.name for e in h.observe_frame(frame, 0.0, now=0)] == ["ok"]
    assert h.observe_frame(frame, 1.0) == []
    assert [e.name for e in h.observe_frame(frame, 2.5)] == ["frozen"]
    moving = frame.copy()
    moving[0, 0] = 9
    assert [e.name for e in h.observe_frame(moving, 2.6)] == ["ok"]
    assert h.observe_tick(3.0) == []
    assert [e.name for e in h.observe_tick(4.0)] == ["no_signal"]
    assert [e.name for e in h.observe_frame(frame, 4.1)] == ["ok"]


def test_an_anomaly_is_reported_at_its_calibrated_threshold():
    h = HealthTracker(HealthConfig(alpha=1.0, on=0.6, off=0.35, confirm=1),
                      thresholds={"color_cast": 0.985, "blur": 0.5})
    on, off = h.levels("color_cast")
    assert on == 0.985 and 0.8 < off < 0.985
    # `off` sits off_gap under the threshold in log-odds
    assert HealthTracker(thresholds={"noise": 0.5}).levels("noise") == \
        (0.5, pytest.approx(1 / (1 + np.exp(2.5))))
    assert h.levels("noise") == (0.6, 0.35)  # no calibrated threshold: the shared levels
    assert h.observe_analysis(scores(color_cast=0.9), now=1) == []  # was an alarm at 0.6
    events = h.observe_analysis(scores(color_cast=0.99, blur=0.55), now=2)
    assert [(e.kind, e.name) for e in events] == [("detected", "blur"), ("detected", "color_cast")]
    assert h.observe_analysis(scores(color_cast=off + 0.005, blur=0.3), now=3) == []
    events = h.observe_analysis(scores(color_cast=off - 0.005, blur=0.05), now=4)
    assert [(e.kind, e.name) for e in events] == [("cleared", "blur"), ("cleared", "color_cast")]


def test_obstruction_is_reported_by_the_defect_tracker_not_by_its_score():
    h = HealthTracker(HealthConfig(alpha=1.0, confirm=1), thresholds={"obstruction": 0.88})
    for t in range(5):
        assert h.observe_analysis(scores(obstruction=0.99), now=t) == []
    # the score is the tracker's too: a single-frame score near 1 on a clean view shows 0
    assert h.snapshot()["scores"]["obstruction"] == 0.0 and h.snapshot()["detected"] == []
    ev = h.set_detected("obstruction", True, 0.8, now=6)
    assert [(e.kind, e.name, e.score) for e in ev] == [("detected", "obstruction", 0.8)]
    assert h.set_detected("obstruction", True, 0.9, now=7) == []  # no repeat
    assert h.snapshot()["scores"]["obstruction"] == 0.9  # the tracker's latest confidence
    assert h.observe_analysis(scores(obstruction=0.0), now=8) == []  # the score cannot clear it
    assert h.snapshot()["detected"] == ["obstruction"] and h.snapshot()["since"]["obstruction"] == 6
    assert h.snapshot()["scores"]["obstruction"] == 0.9
    ev = h.set_detected("obstruction", False, now=9)
    assert [(e.kind, e.name) for e in ev] == [("cleared", "obstruction")]
    assert h.snapshot()["detected"] == [] and h.snapshot()["scores"]["obstruction"] == 0.0


def test_a_steady_score_crosses_a_threshold_near_one_about_as_fast_as_0_6():
    def first_alarm(thresholds: dict[str, float], p: float) -> int:
        h = HealthTracker(thresholds=thresholds)  # default smoothing, confirm 2
        return next(t for t in range(50)
                    for e in h.observe_analysis(scores(noise=p), now=t) if e.kind == "detected")

    # smoothing log-odds: 0.98 is reached in a few analyses (an average of probabilities
    # needed 9 to climb from 0 to 0.98 at weight 0.35)
    assert first_alarm({"noise": 0.98}, 0.999) <= 4
    assert first_alarm({}, 0.999) <= 3  # the shared 0.6 level
    # and a score just under the threshold never gets there
    h = HealthTracker(thresholds={"noise": 0.98})
    assert all(h.observe_analysis(scores(noise=0.97), now=t) == [] for t in range(100))


def test_one_certainly_clean_analysis_does_not_clear_a_confirmed_anomaly():
    h = HealthTracker(thresholds={"noise": 0.98})  # default smoothing, confirm 2
    for t in range(6):
        h.observe_analysis(scores(noise=0.999), now=t)
    assert h.snapshot()["detected"] == ["noise"]
    # now and then an analysis says "certainly not" (on log-odds one such drops the smoothed
    # score under `off`): never two in a row below it, so no flapping
    for t in range(6, 30):
        assert h.observe_analysis(scores(noise=0.0 if t % 4 == 0 else 0.999), now=t) == []
    assert h.snapshot()["detected"] == ["noise"]
    events = []
    for t in range(30, 34):
        events += h.observe_analysis(scores(noise=0.0), now=t)
    assert [(e.kind, e.name) for e in events] == [("cleared", "noise")]
