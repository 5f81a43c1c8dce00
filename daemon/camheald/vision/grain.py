"""Noise estimator features: grain, chroma blotches, JPEG blocks and hot pixels, seen at
native resolution.

Noise vanishes when a frame is shrunk, so the detector network sees it only in its four
native crops, which sit where the thumbnail is most textured (for blur), exactly where
texture hides grain. These statistics add four crops from the *flattest* grid cells and
measure, per crop: Immerkaer's noise sigma of luma and of the chroma differences R - G and
B - G, the chroma sigma after a 2x area shrink (blotchy colour noise survives it, white noise
halves), the share of impulse pixels (far from their 3x3 median), 8-px block edges against
the other pixel steps (JPEG), and the mean level (noise is signal-dependent); plus the same
sigmas in the same cells of the thumbnail, where the grain is averaged away. The stacked noise
estimator (``camheald.vision.stacked``, task ``noise``) turns them and the network's logits
into a score. numpy/OpenCV only.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from camheald.vision import spec

N_FLAT = 4
_K = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)
_SCALE = math.sqrt(math.pi / 2) / 6
_IMPULSE = 64
N_FEATURES = 19
VERSION = "g2"  # bump when the features change (training caches samples under it)


def _interior(block: int, width: int) -> np.ndarray:
    """Weights averaging a block x width block without its one-pixel border."""
    m = np.zeros((block, width), np.float32)
    m[1:-1, 1:-1] = 1.0 / ((block - 2) * (width - 2))
    return m.ravel()


def _block_means(x: np.ndarray, n: int) -> np.ndarray:
    """Mean of each of ``n`` equal blocks stacked along axis 0 of ``x`` (H x W or H x W x C),
    without the block's one-pixel border: (n,) or (n, C)."""
    b, w = x.shape[0] // n, x.shape[1]
    flat = x.reshape(n, b * w, -1)
    out = np.matmul(flat.transpose(0, 2, 1), _interior(b, w))  # (n, C)
    return out[:, 0] if x.ndim == 2 else out


def _sigmas(planes: np.ndarray, n: int) -> np.ndarray:
    """Immerkaer's noise sigma (0..255 scale) of each of ``n`` equal blocks stacked along
    axis 0 of ``planes`` (float32, H x W or H x W x C): (n,) or (n, C). A block's one-pixel
    border, where the 3x3 filter reaches into its neighbours, is left out, as Immerkaer's
    estimate leaves out a frame's."""
    return _block_means(np.abs(cv2.filter2D(planes, cv2.CV_32F, _K)), n) * _SCALE


def _stack(rgb: np.ndarray, origins: list[tuple[int, int]]) -> np.ndarray:
    """The CROP x CROP crops at ``origins``, stacked along axis 0 (n*CROP x CROP x 3)."""
    return np.concatenate([rgb[y:y + spec.CROP, x:x + spec.CROP] for y, x in origins])


def _blocks(luma: np.ndarray, origins: list[tuple[int, int]]) -> np.ndarray:
    """Per crop: mean |step| across the frame's 8-px block edges over the mean |step|
    elsewhere, for horizontal and vertical steps ((n, 2); JPEG makes them > 1)."""
    c = spec.CROP
    blocks = luma.reshape(len(origins), c, c)
    steps = np.arange(1, c)
    out = np.empty((len(origins), 2))
    for k, axis in ((0, 2), (1, 1)):
        across = np.abs(np.diff(blocks, axis=axis)).mean(axis=3 - axis)  # (n, c - 1)
        edge = np.array([(o[1 - k] + steps) % 8 == 0 for o in origins], np.float32)
        on = (across * edge).sum(1) / np.maximum(edge.sum(1), 1)
        off = (across * (1 - edge)).sum(1) / np.maximum((1 - edge).sum(1), 1)
        out[:, k] = (on + 1.0) / (off + 1.0)
    return out


def _planes(c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Luma (H x W) and chroma R - G, B - G (H x W x 2) float32 planes of uint8 RGB."""
    f = c.astype(np.float32)
    luma = cv2.cvtColor(c, cv2.COLOR_RGB2GRAY).astype(np.float32)
    return luma, f[..., (0, 2)] - f[..., 1:2]


def features(rgb: np.ndarray, thumb: np.ndarray,
             texture: np.ndarray | None = None) -> np.ndarray:
    """Feature vector (N_FEATURES float32) of a frame and its thumbnail (``spec.thumbnail``);
    ``texture``: ``spec.cell_texture(thumb)`` when already computed.

    Sigmas enter as log(1 + sigma) (0..255 scale). Frames smaller than a crop are reflect-
    padded as ``spec.crops`` does. The crops are stacked and filtered together; every
    statistic but the block edges leaves out each crop's one-pixel border.
    """
    h, w = rgb.shape[:2]
    if h < spec.CROP or w < spec.CROP:
        rgb = cv2.copyMakeBorder(rgb, 0, max(0, spec.CROP - h), 0, max(0, spec.CROP - w),
                                 cv2.BORDER_REFLECT_101)
        h, w = rgb.shape[:2]
    texture = spec.cell_texture(thumb) if texture is None else texture
    order = np.argsort(texture, kind="stable")
    cells = [*order[:N_FLAT], *order[::-1][:spec.N_CROPS]]
    origins = spec.cell_origins(cells, h, w)
    n, c = len(origins), spec.CROP
    crops = _stack(rgb, origins)
    luma, chroma = _planes(crops)
    sl = _sigmas(luma, n)
    sc = _sigmas(chroma, n).mean(1)
    shrunk = cv2.resize(chroma, (c // 2, n * c // 2), interpolation=cv2.INTER_AREA)
    blotch = _sigmas(shrunk, n).mean(1)
    d = cv2.absdiff(crops, cv2.medianBlur(crops, 3))
    far = (np.maximum(np.maximum(d[..., 0], d[..., 1]), d[..., 2]) > _IMPULSE)
    impulse = _block_means(far.astype(np.float32), n)
    blocks = _blocks(luma, origins)
    level = _block_means(luma, n) / 255.0
    # the same cells of the thumbnail, where the grain is averaged away
    g = spec.THUMB // spec.CROP_GRID
    tl, tc = _planes(np.concatenate([thumb[(i // spec.CROP_GRID) * g:][:g,
                                           (i % spec.CROP_GRID) * g:][:, :g] for i in cells]))
    tsl, tsc = _sigmas(tl, n), _sigmas(tc, n).mean(1)
    # per crop: the statistics below, then each column's median over the flat and the busy
    # crops (np.median costs more than this whole function's filtering on 4 values)
    per = np.column_stack([np.log1p(sl), np.log1p(sc), np.log1p(blotch), impulse, level,
                           np.log1p(tsl), np.log1p(tsc), np.log1p(sl) - np.log1p(tsl),
                           np.log(blocks)])
    mf, mb = (_median4(per[rows]) for rows in (slice(0, N_FLAT), slice(N_FLAT, n)))
    f = [*per[:N_FLAT, 0][np.argsort(sl[:N_FLAT])],  # 4: luma sigma, flat crops (ascending)
         mf[1], mf[2], mb[0], mb[1],               # 4: chroma, shrunk chroma (flat); busy
         mf[3], float(impulse.max()),              # 2: impulse share
         *np.sort(per[:, 8:], 0)[n // 2 - 1 : n // 2 + 1].mean(0),  # 2: JPEG block edges
         mf[4], mb[4],                             # 2: level
         mf[5], mf[6], mb[5],                      # 3: the thumbnail cells' sigmas
         mf[7],                                    # 1: native / thumbnail
         mf[1] - mf[2]]                            # 1: chroma before / after the shrink
    return np.asarray(f, np.float32)


def _median4(x: np.ndarray) -> np.ndarray:
    """Column medians of a 4-row array."""
    s = np.sort(x, 0)
    return 0.5 * (s[1] + s[2])
