from __future__ import annotations

import numpy as np

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
