from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch", reason="the degradation library needs the train extra (torch)")
pytest.importorskip("kornia", reason="the degradation library needs the train extra (kornia)")

from camheal.constants import ANOMALIES  # noqa: E402
from camheal_train import blur, noise, obstruction, tone  # noqa: E402
from camheal_train.data import make_sample, mask_target  # noqa: E402
from camheal_train.degrade import choose_anomalies, degrade  # noqa: E402
from camheald.vision import spec  # noqa: E402


@pytest.mark.parametrize("name", ANOMALIES)
def test_each_anomaly_labelled_with_severity(photo, name):
    rng = np.random.default_rng(0)
    d = degrade(photo, rng, (name,))
    i = ANOMALIES.index(name)
    assert d.image.shape == photo.shape and d.image.dtype == np.uint8
    assert d.labels.tolist() == [float(j == i) for j in range(len(ANOMALIES))]
    assert 0.1 <= d.severity[i] <= 1.0
    assert not np.array_equal(d.image, photo)
    if name == "obstruction":
        assert d.alpha.max() > 0.5
    else:
        assert d.alpha.max() == 0
    if name in spec.GLOBAL_ANOMALIES:  # target is the frame before the global degradation
        assert np.abs(d.target.astype(int) - photo.astype(int)).mean() < 1.0


@pytest.mark.parametrize("module", [blur, obstruction])
def test_every_kind_runs(photo, module):
    img = photo.astype(np.float32) / 255
    for kind, fn in module.KINDS.items():
        out = fn(img, np.random.default_rng(1))
        out = out[0]
        assert out.shape == img.shape, kind
        assert np.isfinite(out).all() and out.min() >= -1e-6 and out.max() <= 1 + 1e-6, kind


def test_tone_and_noise_kinds(photo):
    img = photo.astype(np.float32) / 255
    rng = np.random.default_rng(2)
    dark, _, _ = tone.underexposed(img, rng)
    bright, _, _ = tone.overexposed(img, rng)
    flat, _, _ = tone.low_contrast(img, rng)
    assert dark.mean() < img.mean() < bright.mean()
    assert flat.std() < img.std()
    for fn in noise.KINDS.values():
        out, sev, _ = fn(img, rng)
        assert out.shape == img.shape and 0 < sev <= 1


def test_deterministic_and_pairs(photo):
    a = degrade(photo, np.random.default_rng(5))
    b = degrade(photo, np.random.default_rng(5))
    assert np.array_equal(a.image, b.image) and a.kinds == b.kinds
    rng = np.random.default_rng(0)
    sizes = [len(choose_anomalies(rng)) for _ in range(400)]
    assert {0, 1, 2} <= set(sizes)
    assert not any({"underexposed", "overexposed"} <= set(choose_anomalies(rng))
                   for _ in range(400))


def test_make_sample_layout(photo):
    s = make_sample(photo, np.random.default_rng(3))
    assert s["thumb"].shape == (spec.THUMB, spec.THUMB, 3)
    assert s["crops"].shape == (spec.N_CROPS, spec.CROP, spec.CROP, 3)
    assert s["mask"].shape == (spec.MASK, spec.MASK)
    assert s["labels"].shape == (len(ANOMALIES),)


def test_mask_target_keeps_thin_lines():
    alpha = np.zeros((512, 512), np.float32)
    alpha[100, :] = 1.0  # a one-pixel scratch
    m = mask_target(alpha)
    assert m.shape == (spec.MASK, spec.MASK) and m.max() >= 0.7


def test_focus_draws_an_anomaly_more_often():
    def share(focus):
        rng = np.random.default_rng(1)
        picks = [p for p in (choose_anomalies(rng, focus=focus) for _ in range(3000)) if p]
        return np.mean(["obstruction" in p for p in picks])

    plain, focused = share(None), share({"obstruction": 4.0})
    # uniform: 1/7 of singles, 2/7 of pairs; weight 4 of a total 10: about 0.4 / 0.65
    assert 0.15 < plain < 0.25 and focused > 2 * plain
    # without focus the random stream is the one of earlier versions (seeded caches)
    a, b = np.random.default_rng(2), np.random.default_rng(2)
    assert [choose_anomalies(a) for _ in range(50)] == \
        [choose_anomalies(b, focus=None) for _ in range(50)]
