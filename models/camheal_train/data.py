"""Training data: clean photos -> synthetic degraded samples -> model inputs and targets.

Samples are made on the fly (``SyntheticDataset``) or read from a pre-built cache of shards
(``CachedDataset``; build with ``python -m camheal_train.data --data DIR --out CACHE``).
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from camheal_train.degrade import degrade
from camheald.vision import spec

logger = logging.getLogger(__name__)

LOSS_RES = 128  # resolution of the corrected-image loss (pointwise apply, so any size works)
IMAGE_EXT = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
FIELDS = ("thumb", "crops", "hist", "loss_in", "loss_target", "mask", "labels", "severity")


def data_dir(arg: str | None) -> Path:
    """The photo folder from an argument or $CAMHEAL_DATA (its photos/ subfolder if present)."""
    path = arg or os.environ.get("CAMHEAL_DATA")
    if not path:
        raise SystemExit("no data folder: pass --data DIR or set CAMHEAL_DATA")
    p = Path(path)
    return p / "photos" if (p / "photos").is_dir() else p


def list_photos(folder: str | os.PathLike, include: Sequence[str] = (),
                exclude: Sequence[str] = ()) -> list[Path]:
    """Image files in ``folder`` whose names start with one of ``include`` (all when empty)
    and with none of ``exclude``, sorted."""
    out = []
    for p in sorted(Path(folder).iterdir()):
        if p.suffix.lower() not in IMAGE_EXT:
            continue
        if include and not p.name.startswith(tuple(include)):
            continue
        if exclude and p.name.startswith(tuple(exclude)):
            continue
        out.append(p)
    return out


def load_rgb(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as HxWx3 uint8 RGB (raises ValueError if unreadable)."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"cannot read image {path}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def random_view(img: np.ndarray, rng: np.random.Generator, max_side: int = 640) -> np.ndarray:
    """Random rescale, crop (random aspect) and flip of a clean photo."""
    h, w = img.shape[:2]
    s = rng.uniform(0.45, 1.0) * min(1.0, max_side / max(h, w))
    if s < 0.98:
        img = cv2.resize(img, (max(64, int(w * s)), max(64, int(h * s))),
                         interpolation=cv2.INTER_AREA)
    h, w = img.shape[:2]
    ch = int(rng.uniform(0.6, 1.0) * h)
    cw = int(rng.uniform(0.6, 1.0) * w)
    ch, cw = max(min(h, 96), ch), max(min(w, 96), cw)
    y = int(rng.integers(0, h - ch + 1))
    x = int(rng.integers(0, w - cw + 1))
    img = img[y : y + ch, x : x + cw]
    if rng.random() < 0.5:
        img = img[:, ::-1]
    return np.ascontiguousarray(img)


def mask_target(alpha: np.ndarray) -> np.ndarray:
    """MASK x MASK float32 obstruction target from a full-size alpha map (thin lines kept)."""
    area = cv2.resize(alpha, (spec.MASK, spec.MASK), interpolation=cv2.INTER_AREA)
    h, w = alpha.shape
    bh, bw = max(1, h // spec.MASK), max(1, w // spec.MASK)
    hard = cv2.dilate((alpha > 0.5).astype(np.uint8), np.ones((bh, bw), np.uint8))
    hard = cv2.resize(hard, (spec.MASK, spec.MASK), interpolation=cv2.INTER_NEAREST)
    return np.maximum(area, 0.7 * hard.astype(np.float32))


def make_sample(clean: np.ndarray, rng: np.random.Generator,
                focus: dict[str, float] | None = None) -> dict[str, np.ndarray]:
    """One training sample (numpy, no batch dimension; see FIELDS) from a clean photo.

    ``focus``: anomaly sampling weights (``degrade.choose_anomalies``).
    """
    d = degrade(random_view(clean, rng), rng, focus=focus)
    prep = spec.prepare(d.image)
    size = (LOSS_RES, LOSS_RES)
    return {
        "thumb": prep["thumb"],
        "crops": prep["crops"],
        "hist": prep["hist"],
        "loss_in": cv2.resize(prep["thumb"], size, interpolation=cv2.INTER_AREA),
        "loss_target": cv2.resize(spec.thumbnail(d.target), size, interpolation=cv2.INTER_AREA),
        "mask": np.rint(mask_target(d.alpha) * 255).astype(np.uint8),
        "labels": d.labels,
        "severity": d.severity,
    }


def to_tensors(sample: dict[str, np.ndarray]) -> dict:
    """Numpy sample -> torch tensors in model layout (uint8 images stay uint8, NCHW)."""
    import torch

    return {
        "thumb": torch.from_numpy(np.ascontiguousarray(sample["thumb"].transpose(2, 0, 1))),
        "crops": torch.from_numpy(np.ascontiguousarray(sample["crops"].transpose(0, 3, 1, 2))),
        "hist": torch.from_numpy(np.asarray(sample["hist"], np.float32)),
        "loss_in": torch.from_numpy(np.ascontiguousarray(sample["loss_in"].transpose(2, 0, 1))),
        "loss_target": torch.from_numpy(
            np.ascontiguousarray(sample["loss_target"].transpose(2, 0, 1))),
        "mask": torch.from_numpy(np.asarray(sample["mask"], np.float32)[None] / 255.0),
        "labels": torch.from_numpy(np.asarray(sample["labels"], np.float32)),
        "severity": torch.from_numpy(np.asarray(sample["severity"], np.float32)),
    }


class SyntheticDataset:
    """Map-style dataset that degrades photos on the fly (deterministic per index and epoch)."""

    def __init__(self, photos: Sequence[str | os.PathLike], length: int, seed: int = 0,
                 focus: dict[str, float] | None = None):
        self.images = [load_rgb(p) for p in photos]
        self.focus = dict(focus) if focus else None
        if not self.images:
            raise ValueError("no photos")
        self.length = length
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Change the random stream (call once per epoch)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict:
        rng = np.random.default_rng([self.seed, self.epoch, i])
        img = self.images[int(rng.integers(len(self.images)))]
        return to_tensors(make_sample(img, rng, self.focus))


class CachedDataset:
    """Map-style dataset over cache shards (memory-mapped .npy files per field)."""

    def __init__(self, roots: str | os.PathLike | Sequence[str | os.PathLike]):
        if isinstance(roots, (str, os.PathLike)):
            roots = [roots]
        self.shards = []
        for root in roots:
            for d in sorted(Path(root).glob("shard-*")):
                if (d / "done").exists():
                    self.shards.append({f: np.load(d / f"{f}.npy", mmap_mode="r")
                                        for f in FIELDS})
        if not self.shards:
            raise ValueError(f"no finished shards under {', '.join(map(str, roots))}")
        self.index = [(s, j) for s, sh in enumerate(self.shards) for j in range(len(sh["labels"]))]

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict:
        s, j = self.index[i]
        sample = {f: np.array(self.shards[s][f][j]) for f in FIELDS}
        return to_tensors(sample)


def build_shard(args: tuple[list[str], str, int, int, int]) -> str:
    """Write one cache shard of ``n`` samples (worker function)."""
    photos, out, shard, n, seed = args
    import torch

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    d = Path(out) / f"shard-{shard:04d}"
    if (d / "done").exists():
        return str(d)
    d.mkdir(parents=True, exist_ok=True)
    images = [load_rgb(p) for p in photos]
    rng = np.random.default_rng([seed, shard])
    samples = [make_sample(images[int(rng.integers(len(images)))], rng) for _ in range(n)]
    for f in FIELDS:
        np.save(d / f"{f}.npy", np.stack([s[f] for s in samples]))
    (d / "done").touch()
    return str(d)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: build a cache of degraded samples."""
    ap = argparse.ArgumentParser(prog="python -m camheal_train.data", description=main.__doc__)
    ap.add_argument("--data", help="photo folder (default $CAMHEAL_DATA)")
    ap.add_argument("--out", required=True, help="cache folder")
    ap.add_argument("--samples", type=int, default=20000)
    ap.add_argument("--shard-size", type=int, default=500)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--include", action="append", default=[], help="name prefix to use")
    ap.add_argument("--exclude", action="append", default=[], help="name prefix to skip")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    photos = [str(p) for p in list_photos(data_dir(a.data), a.include, a.exclude)]
    logger.info("%d photos", len(photos))
    jobs = [(photos, a.out, i, a.shard_size, a.seed)
            for i in range((a.samples + a.shard_size - 1) // a.shard_size)]
    from multiprocessing import get_context

    from tqdm import tqdm

    with get_context("spawn").Pool(a.workers) as pool:
        for _ in tqdm(pool.imap_unordered(build_shard, jobs), total=len(jobs), desc="shards"):
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
