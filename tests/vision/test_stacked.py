"""Stacked estimators (colour cast, low contrast, noise, obstruction): features, corrections,
wiring (the obstruction features: test_obstruct.py)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from camheal.constants import ANOMALIES
from camheald.vision import cast, spec, tone
from camheald.vision.correct import Correction, apply_global
from camheald.vision.detector import Detector, ModelError, read_sidecar, shipped_weights
from camheald.vision.stacked import TASKS, Views
from support import copy_detector, make_photo


def linear_gain(rgb: np.ndarray, gain) -> np.ndarray:
    """Exact per-channel gain in linear light (float maths), back to uint8 sRGB."""
    lin = cast._srgb_to_linear(rgb / 255.0) * np.asarray(gain)
    return np.rint(cast._linear_to_srgb(lin) * 255).astype(np.uint8)


@pytest.mark.parametrize("value", [0, 1, 128, 255])
def test_features_of_flat_frames_are_finite(value):
    f = cast.features(np.full((cast.SIDE, cast.SIDE, 3), value, np.uint8))
    assert f.shape == (cast.N_FEATURES,) and f.dtype == np.float32
    assert np.isfinite(f).all()


def test_features_follow_a_cast():
    photo = spec.thumbnail((make_photo(1) * 0.6).astype(np.uint8))  # nothing near clipping
    base = cast.features(cast.small(photo))
    warm = cast.features(cast.small(linear_gain(photo, [1.4, 1.0, 0.7])))
    # gray world (features 0, 1 = log R/G, log B/G of the mean): up by ~log 1.4, down by ~log 0.7
    assert warm[0] - base[0] == pytest.approx(np.log(1.4), abs=0.08)
    assert warm[1] - base[1] == pytest.approx(np.log(0.7), abs=0.08)


def test_oracle_gain_recovers_a_known_gain():
    photo = make_photo(2)
    g = np.array([0.8, 1.0, 1.3])
    est = cast.oracle_log_gain(linear_gain(photo, g), photo)
    assert est == pytest.approx(np.log(1 / g), abs=0.03)


def test_gain_curves_match_the_exact_gain():
    photo = make_photo(3)
    assert np.abs(cast.gain_curves(np.zeros(3)) - spec.CURVE_X).max() < 1e-6
    g = np.array([1.25, 1.0, 0.75])
    got = apply_global(photo, Correction(cast.gain_curves(np.log(g)), np.eye(3)))
    want = linear_gain(photo, g)
    diff = np.abs(got.astype(int) - want.astype(int))
    assert diff.max() <= 3 and diff.mean() < 0.5  # 33 knots, piecewise linear


def test_shipped_detector_uses_its_estimators():
    det = Detector.load()
    side = read_sidecar(shipped_weights())
    assert set(side["estimators"]) <= set(TASKS)
    assert {e.task_name for e in det.estimators.values()} == set(side["estimators"])
    assert "color_cast" in det.estimators
    # the model name reported in Stats and reports lists them
    assert det.name.split("+")[0].startswith("camheal_detector.onnx@")
    assert sorted(n.split("@")[0] for n in det.name.split("+")[1:]) == \
        sorted(side["estimators"].values())
    assert "+" not in Detector.load(with_estimators=False).name


def _only_cast_gated(det: Detector) -> None:
    """Thresholds that gate the global correction on a colour cast and nothing else."""
    det.thresholds.update({a: 1.01 for a in spec.GLOBAL_ANOMALIES})
    det.correction_gate = 1.01
    det.thresholds["color_cast"] = 0.0


def _net_probs(det: Detector, rgb: np.ndarray) -> dict[str, float]:
    z = det.run(rgb)["logits"][0]
    return {a: float(1 / (1 + np.exp(-z[ANOMALIES.index(a)]))) for a in spec.GLOBAL_ANOMALIES}


def _cast_frame(det: Detector) -> tuple[np.ndarray, dict[str, float]]:
    """A tinted frame the network also calls a cast, and nothing else global."""
    for seed in range(20):
        photo = linear_gain(make_photo(seed, 240, 320), [1.0, 0.85, 0.5])
        net = _net_probs(det, photo)
        if net["color_cast"] >= 0.5 and max(v for a, v in net.items() if a != "color_cast") < 0.5:
            return photo, net
    pytest.fail("no generated frame that the network calls a cast alone")


def test_a_cast_alone_is_corrected_with_the_estimators_gain():
    # Wiring only: how well it corrects is measured on real photos (MODEL_CARD, Kodak);
    # generated test images are far from them and the estimator's guesses there are poor.
    det = Detector.load()
    photo, net = _cast_frame(det)
    views = Views(photo, spec.prepare(photo)["thumb"])
    gain, logit = det.estimators["color_cast"](views, det.run(photo)["logits"][0])
    _only_cast_gated(det)
    a = det.analyze(photo)
    assert a.scores["color_cast"] == pytest.approx(1 / (1 + np.exp(-logit)), abs=1e-6)
    assert a.correction is not None and a.actions == ("tone_curve",)
    assert np.allclose(a.correction.curves, cast.gain_curves(gain), atol=1e-6)
    assert np.array_equal(a.correction.matrix, np.eye(3, dtype=np.float32))
    # the network leaning towards another global anomaly too: its own correction instead
    det.estimator_network_gate = min(net.values()) - 1e-3
    b = det.analyze(photo)
    assert b.correction is not None
    assert np.allclose(b.correction.curves, det.run(photo)["curves"][0], atol=1e-6)


def test_a_detection_only_estimator_leaves_the_networks_correction():
    det = Detector.load()
    photo, _ = _cast_frame(det)
    _only_cast_gated(det)
    est = det.estimators["color_cast"]
    est.task = dataclasses.replace(est.task, curves=None, n_params=0)  # scores, no curves
    a = det.analyze(photo)
    assert a.correction is not None
    assert np.allclose(a.correction.curves, det.run(photo)["curves"][0], atol=1e-6)


def test_no_cast_correction_unless_the_network_agrees():
    det = Detector.load()
    photo = make_photo(5)
    _only_cast_gated(det)
    det.estimator_network_gate = 1.01  # the network's own probability can never reach it
    assert det.analyze(photo).correction is None


class _Counting:
    """Wraps an estimator and counts its calls."""

    def __init__(self, est):
        self.est, self.calls = est, 0
        self.task = est.task

    def __call__(self, views, logits):
        self.calls += 1
        return self.est(views, logits)


def test_an_estimator_is_skipped_where_the_network_rules_its_anomaly_out():
    det = Detector.load()
    assert det.estimator_skip_below > 0  # the shipped sidecar turns the cascade on
    photo = make_photo(8)
    z = det.run(photo)["logits"][0]
    net = {a: float(1 / (1 + np.exp(-z[ANOMALIES.index(a)]))) for a in det.estimators}
    for a in det.estimators:
        det.estimators[a] = _Counting(det.estimators[a])
    # every network probability above the bar: every estimator runs, their scores stand
    det.estimator_skip_below = 0.0
    ran = det.analyze(photo)
    assert all(e.calls == 1 for e in det.estimators.values())
    # the bar between the network's two lowest probabilities: the estimator of the least
    # likely anomaly is not run and the network's own score stands; the others run as before
    lo, *others = sorted(det.estimators, key=lambda a: net[a])
    assert net[lo] < net[others[0]]
    det.estimator_skip_below = (net[lo] + net[others[0]]) / 2
    skipped = det.analyze(photo)
    assert det.estimators[lo].calls == 1
    assert all(det.estimators[a].calls == 2 for a in others)
    assert skipped.scores[lo] == pytest.approx(net[lo], abs=1e-6)
    assert skipped.scores[lo] != pytest.approx(ran.scores[lo], rel=1e-3)  # the estimator's
    assert all(skipped.scores[a] == ran.scores[a] for a in others)


@pytest.mark.parametrize("value", ["0.1", 1.5, -0.1, True, None])
def test_bad_estimator_bars_in_the_sidecar_are_one_line_model_errors(tmp_path, value):
    p = copy_detector(tmp_path)
    side = p.with_suffix(".json")
    data = json.loads(side.read_text())
    data["estimator_skip_below"] = value
    side.write_text(json.dumps(data))
    with pytest.raises(ModelError, match="estimator_skip_below must be a probability") as e:
        Detector.load(p)
    assert "\n" not in str(e.value)


def test_estimator_for_another_detector_is_refused(tmp_path):
    p = copy_detector(tmp_path)
    side = tmp_path / "camheal_cast.json"
    data = json.loads(side.read_text())
    data["detector_sha256"] = "0" * 64
    side.write_text(json.dumps(data))
    with pytest.raises(ModelError, match="another detector") as e:
        Detector.load(p)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("damage", ["missing", "garbage"])
def test_broken_estimator_is_a_one_line_model_error(tmp_path, damage):
    p = copy_detector(tmp_path)
    est = tmp_path / "camheal_cast.onnx"
    if damage == "missing":
        est.unlink()
    else:
        est.write_bytes(b"not an onnx model" * 20)
    with pytest.raises(ModelError) as e:
        Detector.load(p)
    assert "camheal_cast" in str(e.value) and "\n" not in str(e.value)


def test_without_the_sidecar_entry_the_network_decides(tmp_path):
    p = copy_detector(tmp_path)
    side = p.with_suffix(".json")
    data = json.loads(side.read_text())
    del data["estimators"]
    side.write_text(json.dumps(data))
    assert Detector.load(p).estimators == {}


def test_estimator_listed_under_another_task_is_refused(tmp_path):
    p = copy_detector(tmp_path)
    side = p.with_suffix(".json")
    data = json.loads(side.read_text())
    data["estimators"] = {"contrast": "camheal_cast.onnx"}
    side.write_text(json.dumps(data))
    with pytest.raises(ModelError, match="a cast estimator, listed as contrast"):
        Detector.load(p)


@pytest.mark.parametrize("value", [0, 128, 255])
def test_tone_features_of_flat_frames_are_finite(value):
    f = tone.features(np.full((cast.SIDE, cast.SIDE, 3), value, np.uint8))
    assert f.shape == (tone.N_FEATURES,) and np.isfinite(f).all()


def test_tone_oracle_and_curves_undo_a_haze():
    photo = make_photo(6)
    hazy = np.rint(photo * 0.45 + 0.55 * 220).astype(np.uint8)
    params = tone.oracle_affine(hazy, photo)
    assert np.exp(params[0::2]) == pytest.approx(1 / 0.45, rel=0.02)
    fixed = apply_global(hazy, Correction(tone.affine_curves(params), np.eye(3)))
    assert np.abs(fixed.astype(int) - photo.astype(int)).mean() < 1.5
    assert np.abs(tone.affine_curves(np.zeros(6)) - spec.CURVE_X).max() < 1e-6


def test_tone_features_see_a_haze():
    photo = spec.thumbnail(make_photo(7))
    hazy = np.rint(photo * 0.5 + 0.5 * 230).astype(np.uint8)
    q = len(tone.QUANTILES)
    base, veiled = tone.features(cast.small(photo)), tone.features(cast.small(hazy))
    # luma quantiles (the fourth block) are squeezed towards the airlight
    spread = lambda f: f[3 * q + q - 2] - f[3 * q + 1]  # noqa: E731  (99 % - 1 %)
    assert spread(veiled) == pytest.approx(0.5 * spread(base), abs=0.03)
