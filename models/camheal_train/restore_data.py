"""Training pairs for the restoration networks, made on the fly from clean photos.

``restore``: a random crop, then (camera order) optics, then sensor/codec noise, and the
true severities as conditioning planes (jittered, sometimes "unknown"):
12 % clean (target = input, so a sharp clean image stays unchanged), 34 % blur only, 30 %
noise only, 24 % blur then noise. Blur and noise come from ``camheal_train.blur`` and
``camheal_train.noise`` at their full ranges (defocus, Gaussian, linear motion, camera shake;
Poisson-Gaussian, chroma, JPEG, impulse, speckle), plus a mild defocus (disk radius
0.5..1.3 px) for slightly soft images.

With ``saturated`` > 0, that share of the restore crops first gets stronger colours
(``saturate``): the photo sets hold few gamut-edge colours, and a network trained on them
desaturated a mosaic while denoising it.

``inpaint``: a random crop and a hole mask from the lens-obstruction shapes of
``camheal_train.obstruction`` (crack, scratch, dirt; a few raindrops and opaque patches),
thresholded, optionally grown by 1-3 px as the runtime grows a defect mask.

Samples are deterministic per (seed, index); workers keep the decoded photos in memory.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from camheal_train import blur, noise, obstruction
from camheal_train.data import load_rgb

MARGIN = 24  # context around a crop for the blur kernels (motion up to 35 px)
RESTORE_P = {"clean": 0.12, "blur": 0.34, "noise": 0.30, "both": 0.24}
MASK_KINDS = {"crack": 0.3, "scratch": 0.3, "dirt": 0.3, "raindrops": 0.05, "patch": 0.05}


def random_crop(img: np.ndarray, rng: np.random.Generator, size: int,
                min_scale: float = 0.5) -> np.ndarray:
    """Random rescale (``min_scale``..1, never below ``size``), crop, flip and 90-degree turn.

    Returns:
        size x size x 3 float32 RGB in [0, 1].
    """
    h, w = img.shape[:2]
    lo = max(min_scale, size / min(h, w))
    s = float(rng.uniform(lo, 1.0)) if lo < 1.0 else lo
    if abs(s - 1.0) > 0.02:
        img = cv2.resize(img, (max(size, round(w * s)), max(size, round(h * s))),
                         interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC)
    h, w = img.shape[:2]
    y = int(rng.integers(0, h - size + 1))
    x = int(rng.integers(0, w - size + 1))
    out = img[y:y + size, x:x + size]
    if rng.random() < 0.5:
        out = out[:, ::-1]
    out = np.rot90(out, int(rng.integers(4)))
    return np.ascontiguousarray(out, dtype=np.float32) / 255.0


def saturate(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Stronger colours: each pixel pushed away from its grey (Rec. 601 luma) by x1.3..2.2,
    clipped, so that gamut-edge colours (mosaics, paint, signs, LEDs) are common."""
    y = img @ np.array([0.299, 0.587, 0.114], np.float32)
    k = np.float32(rng.uniform(1.3, 2.2))
    return np.clip(y[..., None] + k * (img - y[..., None]), 0.0, 1.0).astype(np.float32)


def mild_defocus(img: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """Slight softness: a disk kernel of radius 0.5..1.3 px; (image, severity 0.04..0.1)."""
    r = float(rng.uniform(0.5, 1.3))
    k = blur.disk_kernel(r)
    return cv2.filter2D(img, -1, k, borderType=cv2.BORDER_REFLECT_101), 0.1 * r / 1.3


def degrade_restore(img: np.ndarray, rng: np.random.Generator,
                    mix: dict[str, float] | None = None
                    ) -> tuple[np.ndarray, str, float, float]:
    """(degraded image, what was done, blur severity, noise severity) for a clean HxWx3
    float32 crop with MARGIN context; the image is the crop without the margin.

    ``mix``: probabilities of "clean", "blur", "noise", "both" (default ``RESTORE_P``).
    """
    mix = mix or RESTORE_P
    p = np.array([mix.get(k, 0.0) for k in RESTORE_P], np.float64)
    mode = str(rng.choice(list(RESTORE_P), p=p / p.sum()))
    out, what, sb, sn = img, [], 0.0, 0.0
    if mode in ("blur", "both"):
        if rng.random() < 0.12:
            (out, sb), kind = mild_defocus(out, rng), "mild"
        else:
            out, sb, kind = blur.blur(out, rng)
        what.append(kind)
    m = MARGIN
    out = np.ascontiguousarray(out[m:-m, m:-m])  # noise is per pixel: no context needed
    if mode in ("noise", "both"):
        out, sn, kind = noise.noise(out, rng)
        what.append(kind)
    return np.clip(out, 0.0, 1.0).astype(np.float32), "+".join(what) or "clean", sb, sn


def severity_planes(h: int, w: int, blur_sev: float, noise_sev: float,
                    rng: np.random.Generator | None = None) -> np.ndarray:
    """HxWx2 float32 conditioning planes. With ``rng`` (training): each severity is jittered
    (x0.7..1.4, the detector's estimates are not exact) and replaced by -1 ("unknown") 15 %
    of the time."""
    vals = []
    for s in (blur_sev, noise_sev):
        if rng is not None:
            s = -1.0 if rng.random() < 0.15 else float(np.clip(s * rng.uniform(0.7, 1.4), 0, 1))
        vals.append(s)
    return np.broadcast_to(np.array(vals, np.float32), (h, w, 2)).copy()


def hole_mask(h: int, w: int, rng: np.random.Generator, kind: str | None = None,
              min_cover: float = 0.004) -> np.ndarray:
    """HxW float32 0/1 hole mask of one obstruction kind (random if None), grown 0..3 px."""
    kind = kind or str(rng.choice(list(MASK_KINDS), p=list(MASK_KINDS.values())))
    m = np.zeros((h, w), np.float32)
    for _ in range(6):
        # The shapes scale with the frame: draw on a canvas up to 2.5x the crop for variety.
        s = float(rng.uniform(1.0, 2.5))
        ch, cw = round(h * s), round(w * s)
        alpha = obstruction.obstruction_mask(kind, ch, cw, rng)
        y, x = int(rng.integers(0, ch - h + 1)), int(rng.integers(0, cw - w + 1))
        m = (alpha[y:y + h, x:x + w] > 0.1).astype(np.float32)
        if m.mean() >= min_cover:
            break
    grow = int(rng.choice([0, 0, 1, 2, 3]))
    if grow:
        k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1))
        m = cv2.dilate(m, k)
    return m


class RestoreDataset:
    """Map-style dataset of (input, target) tensors; sample ``i`` depends only on (seed, i).

    ``restore``: input (5,S,S) degraded RGB + severity planes (``severity_planes``), target
    (3,S,S) clean. ``inpaint``: input (4,S,S) (RGB with holes zeroed, mask), target (3,S,S)
    clean. Float32 in [0, 1] (severity -1 = unknown).
    """

    def __init__(self, photos: Sequence[str | os.PathLike], task: str, crop: int = 160,
                 seed: int = 0, length: int = 1 << 40, mix: dict[str, float] | None = None,
                 saturated: float = 0.0):
        if not photos:
            raise ValueError("no photos")
        if task not in ("restore", "inpaint"):
            raise ValueError(f"unknown task {task!r}")
        self.photos = [Path(p) for p in photos]
        self.task, self.crop, self.seed, self.length = task, int(crop), int(seed), int(length)
        self.mix = mix
        self.saturated = float(saturated)  # share of restore crops made more colourful
        self._cache: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return self.length

    def _photo(self, k: int) -> np.ndarray:
        img = self._cache.get(k)
        if img is None:
            img = self._cache[k] = load_rgb(self.photos[k])
        return img

    def pair(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """(input HxWxC, target HxWx3) float32 numpy for index ``i``."""
        rng = np.random.default_rng([self.seed, i])
        img = self._photo(int(rng.integers(len(self.photos))))
        if self.task == "restore":
            clean = random_crop(img, rng, self.crop + 2 * MARGIN)
            if self.saturated > 0 and rng.random() < self.saturated:
                clean = saturate(clean, rng)
            deg, _, sb, sn = degrade_restore(clean, rng, self.mix)
            planes = severity_planes(self.crop, self.crop, sb, sn, rng)
            return (np.concatenate([deg, planes], 2),
                    np.ascontiguousarray(clean[MARGIN:-MARGIN, MARGIN:-MARGIN]))
        clean = random_crop(img, rng, self.crop)
        m = hole_mask(self.crop, self.crop, rng)
        inp = np.concatenate([clean * (1.0 - m[..., None]), m[..., None]], 2)
        return inp.astype(np.float32), clean

    def __getitem__(self, i: int):
        import torch

        x, y = self.pair(int(i))
        return (torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1))),
                torch.from_numpy(np.ascontiguousarray(y.transpose(2, 0, 1))))


def worker_init(_worker_id: int) -> None:
    """DataLoader worker setup: one thread each for torch (kornia ops) and OpenCV."""
    import torch

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
