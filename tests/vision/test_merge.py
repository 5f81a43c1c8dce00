"""Multi-frame denoising of bursts (vision.merge) on generated bursts."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from camheald.vision import deblur, merge, restore
from support import detailed_photo

SHIFTS = [(0, 0), (3, -2), (-4, 1), (2, 5), (-1, -3)]


def _burst(seed: int = 3, mover: bool = False) -> list[np.ndarray]:
    """Five 480x640 views of one scene, shifted as a hand-held burst; with ``mover`` a dark
    square moving on its own 30 px per frame."""
    big = detailed_photo(seed, 560, 760)
    out = []
    for i, (dx, dy) in enumerate(SHIFTS):
        f = np.ascontiguousarray(big[20 + dy:500 + dy, 40 + dx:680 + dx])
        if mover:
            cv2.rectangle(f, (100 + 30 * i, 200), (160 + 30 * i, 260), (20, 20, 20), -1)
        out.append(f)
    return out


def _noisy(frames: list[np.ndarray], sigma: float, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [np.clip(f + rng.normal(0, sigma, f.shape), 0, 255).astype(np.uint8) for f in frames]


def test_the_shift_between_frames_is_measured() -> None:
    clean = _burst()
    noisy = _noisy(clean, 12.0)
    for (dx, dy), f in zip(SHIFTS[1:], noisy[1:], strict=True):
        t = merge.shift(noisy[0], f)
        assert t is not None and abs(t[0] - dx) <= 0.15 and abs(t[1] - dy) <= 0.15, (t, dx, dy)
    other = _noisy([detailed_photo(9, 480, 640)], 12.0)[0]
    assert merge.shift(noisy[0], other) is None  # another scene: no translation explains it


@pytest.mark.parametrize("sigma", [5.0, 12.0, 25.0])
def test_a_noisy_burst_is_denoised_by_merging(sigma: float) -> None:
    clean = _burst(mover=True)
    noisy = _noisy(clean, sigma)
    out, used = merge.merge_burst(noisy, deblur.noise_level(noisy[2]))
    assert used == [2, 3, 4, 3, 2]
    gain = cv2.PSNR(out[2], clean[2]) - cv2.PSNR(noisy[2], clean[2])
    # 5 frames: at most 10 log10(5) = 7 dB; measured +6.0 to +6.5
    assert gain >= 5.0, gain
    # better than the single-frame NL-means at sigma 12 (26.8 -> 29.6 there)
    if sigma == 12.0:
        assert cv2.PSNR(out[2], clean[2]) > cv2.PSNR(restore.denoise(noisy[2], 0.5), clean[2])
    # the square that moved on its own leaves no ghost where it was in the other frames:
    # the background there keeps its brightness (a ghost would darken it by ~20 levels)
    for i in (0, 1, 3, 4):
        trail = (slice(205, 255), slice(105 + 30 * i, 155 + 30 * i))
        assert abs(float(out[2][trail].astype(float).mean() - clean[2][trail].mean())) < 4.0


def test_a_frame_without_usable_neighbours_is_left_alone() -> None:
    noisy = _noisy(_burst()[:1], 12.0)
    out, used = merge.merge_burst(noisy, 8.0)
    assert used == [0] and np.array_equal(out[0], noisy[0])
    scenes = _noisy([detailed_photo(s, 480, 640) for s in (1, 2)], 12.0)
    out, used = merge.merge_burst(scenes, 8.0)  # a cut, not a burst: nothing merged
    assert used == [0, 0] and np.array_equal(out[1], scenes[1])


def test_a_sliding_merge_keeps_the_clip_in_order() -> None:
    # a pan over one scene; noise is "found" at the first decision only (every 5 frames)
    big = detailed_photo(4, 480, 760)
    clean = [np.ascontiguousarray(big[:, 4 * i:4 * i + 640]) for i in range(9)]
    noisy = _noisy(clean, 12.0)
    decisions = iter([8.0, None])
    m = merge.SlidingMerge(lambda _: next(decisions), every=5)
    out = [g for f in noisy for g in m.push(f)]
    assert len(out) == 9 - merge.RADIUS  # each frame waits for its later neighbours
    out += m.flush()
    assert len(out) == 9 and m.merged == 5
    for i in range(5):  # merged, and each is still its own frame (not a neighbour's)
        assert cv2.PSNR(out[i], clean[i]) > cv2.PSNR(noisy[i], clean[i]) + 3.0
    for i in range(5, 9):
        assert np.array_equal(out[i], noisy[i])
