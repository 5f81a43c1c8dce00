"""Learned restoration at run time (ONNX Runtime, no torch): the shipped networks, tiling,
the inpainting fill in the sequence inpainter, and the errors for missing/wrong models."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from camheald.vision import restore
from camheald.vision.detector import ModelError, shipped_weights
from camheald.vision.inpaint import SequenceInpainter, inpaint_still

HAVE_RESTORE = restore.shipped(restore.RESTORE_FILE).is_file()
HAVE_INPAINT = restore.shipped(restore.INPAINT_FILE).is_file()


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    a, b = a.astype(np.float64), b.astype(np.float64)
    d = (a - b)[mask] if mask is not None else a - b
    return float(10 * np.log10(255.0**2 / max(float(np.mean(d * d)), 1e-10)))


def crack_mask(h: int, w: int) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    cv2.polylines(m, [np.array([[10, 30], [90, 60], [150, 50], [230, 120], [300, 110]],
                               np.int32)], False, 255, 3)
    cv2.circle(m, (80, 170), 9, 255, -1)
    return m


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    """Tiny exported networks (only when torch is here) for when no weights ship."""
    pytest.importorskip("torch", reason="needs torch to export a tiny model")
    pytest.importorskip("onnx", reason="needs onnx to export a tiny model")
    import torch

    from camheal_train.restore_export import export
    from camheal_train.restore_net import build

    d = tmp_path_factory.mktemp("tiny")
    out = {}
    torch.manual_seed(0)
    for task in ("restore", "inpaint"):
        net = build(f"tiny-{task}")
        with torch.no_grad():  # untrained nets are exact identities: give them something
            for p in net.parameters():
                p.add_(0.05 * torch.randn_like(p))
        export(net, d / f"{task}.onnx")
        out[task] = d / f"{task}.onnx"
    return out


@pytest.fixture
def restore_path(request) -> Path | None:
    if HAVE_RESTORE:
        return None
    return request.getfixturevalue("tiny_models")["restore"]


@pytest.fixture
def inpaint_path(request) -> Path | None:
    if HAVE_INPAINT:
        return None
    return request.getfixturevalue("tiny_models")["inpaint"]


def test_tiles_match_a_single_pass(restore_path, photo):
    whole = restore.LearnedRestorer.load(restore_path)
    # small tiles (many seams) with the runtime's default 64 px of context
    tiled = restore.LearnedRestorer.load(restore_path, tile=96, overlap=64)
    img = photo[:227, :301]  # not a multiple of anything
    a, b = whole.restore(img, 0.3, 0.2), tiled.restore(img, 0.3, 0.2)
    assert a.shape == img.shape and a.dtype == np.uint8
    diff = np.abs(a.astype(int) - b)
    # The network sees beyond 64 px a little (run 11 more than run 9: on this cartoon-like
    # photo 3 of 205 k values differ by 7; real 1080p photos at the default 768-px tiles
    # differ by at most 1 grey level from one pass): seams must stay invisible.
    assert diff.mean() < 0.1 and (diff > 6).mean() < 1e-4 and diff.max() <= 12, (
        diff.mean(), (diff > 6).mean(), diff.max())


def test_small_and_odd_sizes(restore_path):
    net = restore.LearnedRestorer.load(restore_path)
    for h, w in ((1, 1), (3, 70), (17, 5)):
        img = np.random.default_rng(h).integers(0, 256, (h, w, 3), dtype=np.uint8)
        assert net.restore(img).shape == (h, w, 3)


@pytest.mark.skipif(not HAVE_RESTORE, reason="no shipped camheal_restore.onnx")
def test_shipped_restorer_keeps_clean_and_removes_noise(photo):
    net = restore.LearnedRestorer.load()
    assert psnr(net.restore(photo, blur=0.0, noise=0.0), photo) > 45.0  # switched off
    grey = photo.mean(axis=2, keepdims=True)  # photo-like saturation (see RESTORE_CARD.md)
    photo = np.clip(grey + 0.4 * (photo - grey), 0, 255).astype(np.uint8)
    rng = np.random.default_rng(1)
    noisy = np.clip(photo + rng.normal(0, 20, photo.shape), 0, 255).astype(np.uint8)
    assert psnr(net.restore(noisy, blur=0.0, noise=0.7), photo) > psnr(noisy, photo) + 2.0


def test_inpainter_fills_only_the_hole_and_beats_nothing(inpaint_path, photo):
    net = restore.LearnedInpainter.load(inpaint_path)
    mask = crack_mask(*photo.shape[:2])
    hole = mask > 0
    bad = photo.copy()
    bad[hole] = 0
    out = net.fill(bad, mask)
    assert np.array_equal(out[~hole], photo[~hole])
    assert psnr(out, photo, hole) > psnr(bad, photo, hole) + 6.0
    assert np.array_equal(net.fill(bad, np.zeros_like(mask)), bad)
    tiled = restore.LearnedInpainter.load(inpaint_path, tile=64, overlap=64)  # skips tiles
    diff = np.abs(tiled.fill(bad, mask).astype(int) - out)[hole]
    assert diff.mean() < 0.5 and diff.max() <= 8, (diff.mean(), diff.max())


@pytest.mark.skipif(not HAVE_INPAINT, reason="no shipped camheal_inpaint.onnx")
def test_shipped_inpainter_in_still_and_sequence_fills(photo):
    mask = crack_mask(*photo.shape[:2])
    hole = mask > 0
    bad = photo.copy()
    bad[hole] = 255
    learned = inpaint_still(bad, mask, "learned", grow=0)
    assert psnr(learned, photo, hole) > psnr(bad, photo, hole) + 10.0
    inp = SequenceInpainter(mask, window=1, method="learned")
    out = [*inp.push(bad), *inp.push(bad), *inp.flush()]
    assert len(out) == 2 and inp.stats["temporal"] == 0
    assert inp.stats["learned"] > 0 and inp.stats["opencv"] < inp.stats["learned"]
    telea = SequenceInpainter(mask, window=1, method="telea")
    telea.push(bad)
    telea.flush()
    assert telea.stats["learned"] == 0 and telea.stats["opencv"] > 0


def test_missing_and_wrong_models_are_clear_errors(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        restore.LearnedRestorer.load(tmp_path / "nope.onnx")
    with pytest.raises(ModelError, match="not a camheal restore network"):
        restore.LearnedRestorer.load(shipped_weights())  # the detector
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage")
    with pytest.raises(ModelError, match="not a loadable"):
        restore.LearnedInpainter.load(bad)
    with pytest.raises(ValueError):
        inpaint_still(np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8), np.uint8), "magic")


# -- the capture path's cheap fallbacks ---------------------------------------------------------

@pytest.mark.parametrize("sigma", [5.0, 10.0, 20.0])
def test_stream_denoise_removes_noise_keyed_to_severity(photo, sigma):
    rng = np.random.default_rng(int(sigma))
    noisy = np.clip(photo + rng.normal(0, sigma, photo.shape), 0, 255).astype(np.uint8)
    severity = (sigma / 255 - 0.01) / 0.1  # the generator's mapping, inverted
    assert restore.noise_sigma(severity) == pytest.approx(sigma)
    out = noisy.copy()
    assert restore.stream_denoise(out, severity) is out  # in place
    gain = psnr(out, photo) - psnr(noisy, photo)
    assert gain > (0.8 if sigma < 8 else 2.0), gain
    # edges move by at most the clamp: never more than the noise level it stands for
    assert np.abs(out.astype(int) - noisy).max() <= round(sigma)
    # a clean photo barely changes at a low severity
    clean = photo.copy()
    restore.stream_denoise(clean, 0.0)
    assert psnr(clean, photo) > 38


def test_stream_sharpen_is_the_unsharp_mask_with_a_half_resolution_low_pass(photo):
    for sigma, severity in ((1.0, 0.1), (2.0, 0.6), (3.0, 1.0)):
        blurred = cv2.GaussianBlur(photo, (0, 0), sigma)
        out = blurred.copy()
        assert restore.stream_sharpen(out, severity) is out  # in place
        exact = restore.sharpen(blurred, severity)
        assert psnr(out, exact) > 42, (sigma, psnr(out, exact))
        gain, exact_gain = psnr(out, photo) - psnr(blurred, photo), \
            psnr(exact, photo) - psnr(blurred, photo)
        assert abs(gain - exact_gain) < 0.3, (sigma, gain, exact_gain)
    odd = photo[:101, :77].copy()  # odd sizes: the half-resolution frame rounds up
    assert psnr(restore.stream_sharpen(odd.copy(), 0.5), restore.sharpen(odd, 0.5)) > 40
    out = photo.copy()
    restore.apply_stream_ops(out, (("denoise", 0.2), ("sharpen", 0.5)))
    assert np.array_equal(out, restore.stream_sharpen(restore.stream_denoise(photo.copy(), 0.2),
                                                      0.5))
    with pytest.raises(ValueError, match="unknown stream restoration 'deblur'"):
        restore.apply_stream_ops(out, (("deblur", 0.5),))
