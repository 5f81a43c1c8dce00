"""The benchmark report's look-ups into raw results (no benchmark is run)."""

from __future__ import annotations

import pytest
from benchmarks.tables import best_run, decode_fps, paired_ratios


def _results() -> dict:
    # run_e2e's order: baseline 1, repetition 1, baseline 2, repetition 2, baseline 3
    decode = [{"read": {"fps": fps}} for fps in (100.0, 120.0, 80.0)]
    runs = [{"name": "720p-1c", "res": "720p", "rep": 2, "pipeline_fps": 95.0},
            {"name": "720p-1c", "res": "720p", "rep": 1, "pipeline_fps": 99.0},
            {"name": "720p-4c", "res": "720p", "rep": 1, "pipeline_fps": 50.0}]
    return {"decode": {"720p": decode}, "e2e": runs}


def test_each_repetition_is_divided_by_the_baselines_around_it():
    assert paired_ratios(_results(), "720p-1c") == pytest.approx([99 / 110, 95 / 100])
    # the best-of ratio compares runs taken apart: best repetition / best baseline
    assert best_run(_results(), "720p-1c")["pipeline_fps"] / decode_fps(_results(), "720p") \
        == pytest.approx(99 / 120)


def test_a_repetition_without_baselines_has_no_ratio():
    res = _results()
    res["decode"]["720p"] = []
    assert paired_ratios(res, "720p-1c") == []
    assert paired_ratios(res, "1080p-1c") == []
