from __future__ import annotations

import logging
import shutil

import cv2
import numpy as np
import pytest

from camheald.capture.uri import parse_source
from camheald.service.camera import Camera
from camheald.service.vision import VisionEngine
from support import copy_detector, wait_for


def make_folder(path, n=3):
    path.mkdir()
    for i in range(n):
        img = np.random.default_rng(i).integers(0, 255, (48, 64, 3), np.uint8)
        cv2.imwrite(str(path / f"{i}.png"), img)


def test_missing_model_passes_frames_through_and_says_why(tmp_path):
    vision = VisionEngine(str(tmp_path / "nope.onnx"))
    vision.load()
    assert not vision.ready and "model unavailable" in vision.error
    assert "\n" not in vision.error
    folder = tmp_path / "frames"
    make_folder(folder)
    cam = Camera("t", parse_source(f"file:{folder}?fps=50"), vision, analyze_fps=5)
    seen = []
    cam.add_sink(lambda raw, cor: seen.append(
        (raw.seq, raw.pixels is cor.pixels and cor.correction is None)))
    cam.start()
    try:
        assert wait_for(lambda: len(seen) >= 5)
        raw, cor = cam.latest(False), cam.latest(True)
        assert raw.image.shape == (48, 64, 3)
        # the decoder's BGR reaches consumers as RGB, whichever way they read it
        files = {cv2.imread(str(p)).tobytes(): p for p in folder.iterdir()}
        bgr = raw.image[..., ::-1]
        assert np.ascontiguousarray(bgr).tobytes() in files
        assert np.array_equal(cam.snapshot(False).image, raw.image)
        assert np.array_equal(cam.snapshot(True).image, raw.image)
        assert cor.actions == () and all(same for _, same in seen)
        seqs = [s for s, _ in seen]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        assert cam.health_report()["model_error"].startswith("model unavailable")
        assert cam.health_report()["state"] == "ok"
    finally:
        cam.stop()


def test_source_that_disappears_reports_no_signal_and_recovers(tmp_path):
    folder = tmp_path / "frames"
    make_folder(folder, 1)
    vision = VisionEngine(str(tmp_path / "nope.onnx"))
    states = []
    cam = Camera("t", parse_source(f"file:{folder / '0.png'}?fps=50"), vision,
                 on_events=lambda c, evs: states.extend(e.name for e in evs))
    cam.start()
    try:
        assert wait_for(lambda: "ok" in states)
        backup = tmp_path / "backup"
        shutil.move(str(folder), backup)  # the camera goes away
        assert wait_for(lambda: "no_signal" in states)
        errors = cam.stats.source_errors
        assert errors >= 1 and cam.stats.last_error
        shutil.move(str(backup), folder)  # and comes back
        assert wait_for(lambda: states[-1] == "ok", timeout=15)
        assert cam.stats.reconnects >= 1
    finally:
        cam.stop()


def test_sinks_are_removed_by_equality(tmp_path):
    """Bound methods are new objects on every access: removal must not rely on identity."""

    class Hub:
        def sink(self, raw, cor):
            pass

    cam = Camera("t", parse_source("demo"), VisionEngine(str(tmp_path / "none.onnx")))
    hub = Hub()
    cam.add_sink(hub.sink)
    cam.remove_sink(hub.sink)
    assert cam._sinks == []


def test_detected_noise_and_blur_are_restored_on_the_corrected_stream_only(tmp_path):
    from camheald.vision import restore
    from camheald.vision.types import Analysis

    vision = VisionEngine(None)  # the shipped detector: the plan needs a working model
    vision.load()
    assert vision.ready, vision.error
    folder = tmp_path / "frames"
    make_folder(folder, 1)
    cam = Camera("t", parse_source(f"file:{folder}?fps=50"), vision)
    analysis = Analysis({"noise": 0.9, "blur": 0.8}, detected=("blur", "noise"),
                        extra={"severity.noise": 0.3, "severity.blur": 0.6})
    cam._analysis = analysis
    bgr = cv2.imread(str(folder / "0.png"))
    cam._process(bgr, True, 1)
    raw, cor = cam.latest(False), cam.latest(True)
    assert raw.restore == () and cor.restore == (("denoise", 0.3), ("sharpen", 0.6))
    assert cor.actions == ("denoise", "sharpen")
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    expected = restore.stream_sharpen(restore.stream_denoise(rgb.copy(), 0.3), 0.6)
    assert np.array_equal(cam.render(cor, np.empty_like(rgb)), expected)
    assert np.array_equal(cam.snapshot(False).image, rgb)
    assert cam.stats.corrections == 1  # rendering restorations counts as correcting
    cam.restore_enabled = False  # the plan follows the setting at the next frame
    cam._process(bgr, True, 2)
    assert cam.latest(True).restore == () and cam.latest(True).actions == ()
    cam.restore_enabled, cam.correct_enabled = True, False  # restoration rides on correction
    cam._process(bgr, True, 3)
    assert cam.latest(True).restore == ()
    # a blur that looks like motion (vision.directional) is not sharpened; noise still is
    cam.correct_enabled = True
    cam._analysis = Analysis({"noise": 0.9, "blur": 0.8}, detected=("blur", "noise"),
                             extra={"severity.noise": 0.3, "severity.blur": 0.6,
                                    "blur.coherence": 0.8})
    cam._process(bgr, True, 4)
    assert cam.latest(True).restore == (("denoise", 0.3),)


def test_health_reports_anomalies_at_the_models_calibrated_thresholds(tmp_path):
    folder = tmp_path / "frames"
    make_folder(folder, 1)
    vision = VisionEngine(str(tmp_path / "none.onnx"))  # not loaded yet: the shared levels
    cam = Camera("t", parse_source(f"file:{folder}?fps=50"), vision)
    assert cam.health.thresholds == {} and cam.health.levels("color_cast") == (0.6, 0.35)
    vision.model_path = None  # the shipped detector, loaded later (as the daemon does)
    vision.load()
    assert vision.ready, vision.error
    cam.model_changed()
    assert cam.health.thresholds == vision.detector.thresholds
    assert cam.health.levels("color_cast")[0] == vision.detector.thresholds["color_cast"]
    assert cam.health_report()["model"] == vision.name


@pytest.mark.parametrize("estimators", [True, False])
def test_the_engine_loads_the_stacked_estimators_as_configured(estimators):
    vision = VisionEngine(None, estimators=estimators)
    vision.load()
    assert vision.ready, vision.error
    assert bool(vision.detector.estimators) is estimators


def test_a_broken_estimator_costs_only_itself(tmp_path):
    from camheald.vision.detector import read_sidecar, shipped_weights

    copy_detector(tmp_path)
    (tmp_path / "camheal_cast.onnx").write_bytes(b"not a model" * 10)
    vision = VisionEngine(str(tmp_path / shipped_weights().name))
    vision.load()
    others = {t for t in read_sidecar(shipped_weights())["estimators"] if t != "cast"}
    assert vision.ready and "color_cast" not in vision.detector.estimators
    assert {e.task_name for e in vision.detector.estimators.values()} == others
    assert vision.error.startswith("estimators unavailable: ") and "camheal_cast" in vision.error
    assert "\n" not in vision.error


def test_two_broken_estimators_cost_only_themselves_and_both_are_named(tmp_path):
    from camheald.vision.detector import shipped_weights

    copy_detector(tmp_path)
    for name in ("camheal_cast.onnx", "camheal_contrast.onnx"):
        (tmp_path / name).write_bytes(b"not a model" * 10)
    vision = VisionEngine(str(tmp_path / shipped_weights().name))
    vision.load()
    assert vision.ready
    assert {"color_cast", "low_contrast"}.isdisjoint(vision.detector.estimators)
    assert {"noise", "obstruction"} <= set(vision.detector.estimators)
    assert vision.error.startswith("estimators unavailable: ") and "\n" not in vision.error
    assert "camheal_cast" in vision.error and "camheal_contrast" in vision.error


@pytest.mark.parametrize("lens", [True, False])
def test_the_cameras_defect_tracker_gets_the_lens_segmenter_as_configured(lens):
    vision = VisionEngine(None, lens=lens)
    cam = Camera("t", parse_source("demo"), vision)
    assert cam.defects.lens is None  # nothing loaded yet
    vision.load()
    cam.model_changed()  # what the manager does after loading
    assert (vision.lens is not None) == lens and cam.defects.lens is vision.lens


def test_a_cameras_analysis_leaves_out_the_estimators_of_scores_judged_elsewhere(tmp_path):
    class Recording(VisionEngine):
        def analyze(self, rgb, skip=()):
            skips.append(frozenset(skip))
            return super().analyze(rgb, skip)

    skips: list[frozenset] = []
    folder = tmp_path / "frames"
    make_folder(folder, 2)
    vision = Recording(None)
    vision.load()
    cam = Camera("t", parse_source(f"file:{folder}?fps=50"), vision, analyze_fps=20)
    cam.start()
    try:
        assert wait_for(lambda: len(skips) >= 2)
    finally:
        cam.stop()
    # obstruction: the defect tracker decides it, so its estimator (a segmenter pass) never runs
    assert set(skips) == {cam.health.judged_elsewhere} and "obstruction" in skips[0]


def test_a_configured_but_unloadable_lens_segmenter_costs_only_what_needs_it(monkeypatch,
                                                                             caplog):
    from camheald.vision import lens

    monkeypatch.setattr(lens, "_shared", [None])  # as after camheal_lens.onnx failed to load
    vision = VisionEngine(None, lens=True)
    with caplog.at_level(logging.WARNING):
        vision.load()
    # the detector runs; the obstruction estimator (built on the segmenter) is refused and
    # left out, the others stay, and the health report says why
    assert vision.ready and "obstruction" not in vision.detector.estimators
    assert {"color_cast", "low_contrast", "noise"} <= set(vision.detector.estimators)
    assert vision.error.startswith("estimators unavailable: ") and "segmenter" in vision.error
    assert "\n" not in vision.error
    assert vision.lens is None and "camheal_lens.onnx" in caplog.text
    cam = Camera("t", parse_source("demo"), vision)
    cam.model_changed()
    assert cam.defects.lens is None  # the tracker works from time alone


def test_frames_too_small_to_analyse_are_reported_once_not_analysed(tmp_path, caplog):
    """Frames under 16x16 pass through; the detector and the defect tracker (which fail on
    them) are not run, the log says so once per size and the health report says why."""
    folder = tmp_path / "frames"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        cv2.imwrite(str(folder / f"{i}.png"), rng.integers(0, 255, (8, 8, 3), np.uint8))
    vision = VisionEngine(None)
    vision.load()
    assert vision.ready, vision.error
    events = []
    cam = Camera("t", parse_source(f"file:{folder}?fps=50"), vision, analyze_fps=20,
                 on_events=lambda c, evs: events.extend(evs))
    with caplog.at_level(logging.INFO):
        cam.start()
        try:
            assert wait_for(lambda: "analysis_error" in cam.health_report())
            frames = cam.stats.frames
            assert wait_for(lambda: cam.stats.frames > frames + 40)  # ~20 analysis periods
        finally:
            cam.stop()
    report = cam.health_report()
    assert report["analysis_error"] == ("frames must be at least 16x16 to be analysed, got 8x8: "
                                        "anomalies and lens defects are not tracked")
    assert report["state"] == "ok" and cam.latest(False).image.shape == (8, 8, 3)
    assert cam.stats.analyses == 0 and "16x16" in cam.stats.last_error
    assert [(e.kind, e.name) for e in events if e.kind == "analysis"] == \
        [("analysis", "unavailable")]
    problems = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(problems) == 1 and "got 8x8" in problems[0].getMessage(), \
        [r.getMessage() for r in problems]
    assert not any(r.exc_info for r in caplog.records)
    # frames big enough again: analysed again, the report's note is gone
    for i in range(2):
        cv2.imwrite(str(folder / f"{i}.png"), rng.integers(0, 255, (48, 64, 3), np.uint8))
    cam = Camera("t", parse_source(f"file:{folder}?fps=50"), vision, analyze_fps=20)
    cam._analysable(np.zeros((8, 8, 3), np.uint8))
    assert "analysis_error" in cam.health_report()
    cam.start()
    try:
        assert wait_for(lambda: cam.stats.analyses >= 1)
    finally:
        cam.stop()
    assert "analysis_error" not in cam.health_report()
