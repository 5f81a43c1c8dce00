"""The benchmark report's look-ups into raw results, and one tiny run of the offline section."""

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


def test_detector_rows_are_looked_up_by_backend_and_part():
    from benchmarks.tables import ALL_ESTIMATORS, det

    rows = [{"backend": "onnxruntime", "threads": 1, "res": "1080p", "estimators_run": 0,
             "analyze": {"median_ms": 5.0, "cpu_ms": 5.5}},
            {"backend": ALL_ESTIMATORS, "threads": 1, "res": "1080p", "estimators_run": 3,
             "analyze": {"median_ms": 9.0, "cpu_ms": 9.5}}]
    res = {"model": {"detector": rows}}
    assert det(res, "onnxruntime", 1, "1080p", stat="cpu_ms") == 5.5
    assert det(res, ALL_ESTIMATORS, 1, "1080p") == 9.0
    assert det(res, ALL_ESTIMATORS, 1, "1080p", "estimators_run", None) == 3
    assert det(res, "onnxruntime", 1, "1080p", "infer") is None  # a part not measured
    assert det(res, "onnxruntime", 2, "1080p") is None


def test_eval_health_reports_each_clip(tmp_path, capsys):
    import cv2
    from benchmarks.eval_health import main

    from support import make_photo

    with pytest.raises(SystemExit, match="no .avi/.mp4 clips"):
        main([str(tmp_path)])
    out = cv2.VideoWriter(str(tmp_path / "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10,
                          (160, 120))
    for i in range(6):
        out.write(cv2.cvtColor(make_photo(i, 120, 160), cv2.COLOR_RGB2BGR))
    out.release()
    assert main([str(tmp_path), "--step", "2"]) == 0
    text = capsys.readouterr().out
    assert "| clip.avi | 3 |" in text and "Single-frame scores" in text


def test_offline_section_times_the_real_correct_video(tmp_path):
    from benchmarks import offline
    from benchmarks.sections import offline_section

    clips = offline.make_clips(160, 96, 8, out_dir=tmp_path)
    rows = [{"res": "tiny", "content": kind, **offline.run_one(clip, mask, 8)}
            for kind, (clip, mask) in clips.items()]
    clean, dirt = rows
    assert clean["fps"] > 0 and clean["cpu_ms_per_frame"] > 0 and clean["peak_rss_mb"] > 50
    assert "iou_end" not in clean and 0.0 <= dirt["iou_end"] <= 1.0
    assert not list(tmp_path.glob("*-out.avi")) and not list(tmp_path.glob("*-mask.png"))
    text = offline_section({"offline": rows})
    assert "| tiny | dirt | 8 |" in text and "Mask IoU" in text
