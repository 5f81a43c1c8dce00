"""Noise estimator features (camheald.vision.grain) on generated frames with known noise."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from camheald.vision import grain, spec

SIGMA_FLAT = slice(0, 4)  # log(1 + sigma) of luma in the four flattest crops
CHROMA_FLAT = 4
IMPULSE_FLAT = 8
BLOCKS = slice(10, 12)


def _feats(rgb: np.ndarray) -> np.ndarray:
    return grain.features(rgb, spec.thumbnail(rgb))


def _smooth(h: int = 720, w: int = 1280) -> np.ndarray:
    """A smooth frame: gentle colour gradients, nothing an estimator could call grain."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.dstack([60 + 120 * xx / w, 90 + 60 * yy / h, 150 - 80 * xx / w])
    return np.rint(img).astype(np.uint8)


@pytest.mark.parametrize("shape", [(720, 1280), (40, 50), (16, 16)])
@pytest.mark.parametrize("value", [0, 128, 255])
def test_flat_frames_of_any_size_give_finite_features(shape, value):
    f = _feats(np.full((*shape, 3), value, np.uint8))
    assert f.shape == (grain.N_FEATURES,) and f.dtype == np.float32
    assert np.isfinite(f).all()


@pytest.mark.parametrize("sigma", [3.0, 8.0, 15.0])
def test_luma_sigma_of_flat_crops_follows_added_gaussian_noise(sigma):
    rng = np.random.default_rng(1)
    base = _smooth()
    noisy = np.clip(base + rng.normal(0, sigma, base.shape), 0, 255).round().astype(np.uint8)
    got = np.expm1(_feats(noisy)[SIGMA_FLAT])
    # the same noise in every channel's pixels: luma (a weighted mean) keeps ~0.6 of sigma
    assert np.median(got) == pytest.approx(sigma * 0.61, rel=0.2)
    assert np.expm1(_feats(base)[SIGMA_FLAT]).max() < 0.5


def test_chroma_noise_raises_the_chroma_sigma_and_not_luma_much():
    rng = np.random.default_rng(2)
    base = _smooth().astype(np.float32)
    n = rng.normal(0, 10, base.shape[:2])
    chroma = base + np.dstack([n, -n * 0.5, n])  # luma change 0.21 - 0.36 + 0.07: small
    f = _feats(np.clip(chroma, 0, 255).round().astype(np.uint8))
    assert np.expm1(f[CHROMA_FLAT]) > 8
    assert np.expm1(np.median(f[SIGMA_FLAT])) < 2


def test_impulse_share_follows_salt_and_pepper():
    rng = np.random.default_rng(3)
    img = _smooth()
    hit = rng.random(img.shape[:2]) < 0.02
    img[hit] = np.where(rng.random((int(hit.sum()), 1)) < 0.5, 0, 255)
    assert _feats(img)[IMPULSE_FLAT] == pytest.approx(0.02, abs=0.008)
    assert _feats(_smooth())[IMPULSE_FLAT] == 0.0


def test_heavy_jpeg_shows_block_edges():
    rng = np.random.default_rng(4)
    img = np.clip(_smooth() + rng.normal(0, 4, (720, 1280, 3)), 0, 255).astype(np.uint8)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 20])
    assert ok
    blocky = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    assert _feats(blocky)[BLOCKS].min() > 0.2  # log ratio: edges > 1.2x the other steps
    assert np.abs(_feats(img)[BLOCKS]).max() < 0.05
