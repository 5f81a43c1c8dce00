"""Train and export the lens-defect segmenter (``camheal_lens.onnx``).

    python -m camheal_train.lens_train --data DIR --out runs/lens --time-limit 40 \
        --export models/weights/camheal_lens.onnx

A small fully convolutional network that marks, in one frame at the defect tracker's working
resolution (<= 320 px wide), the pixels hidden by something on the lens: dirt, smudges,
scratches, cracks, drops, tape. The tracker (``camheald.service.defects``) uses it where time
gives no evidence (a fixed camera over a still part of the scene).

Samples are made on the fly from the clean photos (the training split: Kodak24 and Val20 held
out): a random view scaled to a frame 200-400 px wide, a lens obstruction from the training
generator (``camheal_train.obstruction``, not the daemon's ``capture.inject`` overlays that
``benchmarks/eval_defects.py`` measures with) on 70 % of them, camera effects (exposure,
sensor noise, JPEG, slight blur), then a 128 x 128 crop. Target: obstruction alpha > 0.25.
Loss: BCE + soft Dice. AdamW, warm-up and cosine over ``max(step/steps, elapsed/limit)``;
``last.pt`` is written atomically every ``--ckpt-every`` steps and at the end, and rerunning
the command resumes from it.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from camheal_train import obstruction
from camheal_train.data import data_dir, list_photos, load_rgb
from camheal_train.train import lr_factor, save_atomic

logger = logging.getLogger(__name__)

CROP = 128
MULTIPLE = 16  # input sides the network takes (four stride-2 stages)
# obstruction kinds drawn: what stays on a lens and hides part of the view. Not the training
# generator's smudge, finger or opaque patch: a first run with them (10 min) learned "flat,
# smooth region = obstruction" and marked a quarter of the road in real traffic clips.
KIND_P = {"dirt": 0.45, "crack": 0.2, "scratch": 0.2, "raindrops": 0.15}
DARK_LINES = 0.5  # share of cracks and scratches redrawn dark (the generator draws most bright)
DEFECT_SHARE = 0.7
VAL_SEED = 1_000_003


class _DS(nn.Sequential):
    """Depthwise-separable 3x3 block: depthwise (stride, dilation) + BN + ReLU, 1x1 + BN + ReLU."""

    def __init__(self, cin: int, cout: int, stride: int = 1, dilation: int = 1):
        super().__init__(
            nn.Conv2d(cin, cin, 3, stride, dilation, dilation, groups=cin, bias=False),
            nn.BatchNorm2d(cin), nn.ReLU(inplace=True),
            nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class LensSegNet(nn.Module):
    """U-Net-like segmenter: RGB in [0, 1] (B, 3, H, W), H and W multiples of 16, to defect
    logits (B, 1, H, W). Encoder at 1/2 .. 1/16 (dilated context at 1/16), decoder with skips
    back to 1/2, logits upsampled bilinearly."""

    def __init__(self, width: int = 16):
        super().__init__()
        c1, c2, c3, c4 = width, width * 3 // 2, width * 2, width * 3
        self.stem = nn.Sequential(nn.Conv2d(3, c1, 3, 2, 1, bias=False), nn.BatchNorm2d(c1),
                                  nn.ReLU(inplace=True), _DS(c1, c1))
        self.e2 = nn.Sequential(_DS(c1, c2, 2), _DS(c2, c2))
        self.e3 = nn.Sequential(_DS(c2, c3, 2), _DS(c3, c3))
        self.e4 = nn.Sequential(_DS(c3, c4, 2), _DS(c4, c4, dilation=2), _DS(c4, c4, dilation=4))
        self.d3 = _DS(c4 + c3, c3)
        self.d2 = _DS(c3 + c2, c2)
        self.d1 = _DS(c2 + c1, c1)
        self.head = nn.Conv2d(c1, 1, 1)
        self.width = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - 0.5) * 4.0
        s1 = self.stem(x)
        s2 = self.e2(s1)
        s3 = self.e3(s2)
        s4 = self.e4(s3)
        y = self.d3(torch.cat([F.interpolate(s4, scale_factor=2.0, mode="nearest"), s3], 1))
        y = self.d2(torch.cat([F.interpolate(y, scale_factor=2.0, mode="nearest"), s2], 1))
        y = self.d1(torch.cat([F.interpolate(y, scale_factor=2.0, mode="nearest"), s1], 1))
        return F.interpolate(self.head(y), scale_factor=2.0, mode="bilinear",
                             align_corners=False)


def camera(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Camera-like effects on a float RGB frame in [0, 1]: exposure/gamma, slight blur,
    sensor noise, JPEG (uint8 out)."""
    img = np.clip(img * rng.uniform(0.6, 1.3), 0, 1) ** rng.uniform(0.8, 1.25)
    if rng.random() < 0.3:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.4, 1.2))
    if rng.random() < 0.6:
        img = img + rng.normal(0, rng.uniform(0.002, 0.02), img.shape)
    out = np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8)
    if rng.random() < 0.4:
        ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(35, 95))])
        out = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    return out


def make_sample(photo: np.ndarray, rng: np.random.Generator, crop: int = CROP
                ) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 crop x crop x 3 RGB, uint8 crop x crop target) from a clean photo."""
    h, w = photo.shape[:2]
    fw = rng.uniform(200, 400)  # the frame width this view stands for
    s = fw / w
    view = cv2.resize(photo, (max(crop, round(w * s)), max(crop, round(h * s))),
                      interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    if rng.random() < 0.5:
        view = view[:, ::-1]
    img = view.astype(np.float32) / 255.0
    alpha = np.zeros(img.shape[:2], np.float32)
    if rng.random() < DEFECT_SHARE:
        kind = str(rng.choice(list(KIND_P), p=list(KIND_P.values())))
        clean = img
        img, alpha = obstruction.KINDS[kind](img, rng)
        if kind in ("crack", "scratch") and rng.random() < DARK_LINES:
            img = obstruction._composite(clean, np.float32(rng.uniform(0.0, 0.25)), alpha)
    img = camera(np.clip(img, 0, 1), rng)
    vh, vw = img.shape[:2]
    # crops that hold some of the defect more often than chance
    ys, xs = np.nonzero(alpha > 0.25)
    if len(ys) and rng.random() < 0.7:
        k = int(rng.integers(len(ys)))
        y = int(np.clip(ys[k] - rng.integers(crop), 0, vh - crop))
        x = int(np.clip(xs[k] - rng.integers(crop), 0, vw - crop))
    else:
        y, x = int(rng.integers(vh - crop + 1)), int(rng.integers(vw - crop + 1))
    return (np.ascontiguousarray(img[y:y + crop, x:x + crop]),
            ((alpha[y:y + crop, x:x + crop] > 0.25) * 255).astype(np.uint8))


def to_tensors(img: np.ndarray, tgt: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """``make_sample``'s uint8 arrays (one sample or a stack) as float tensors in [0, 1]:
    (..., 3, H, W) image and (..., 1, H, W) target."""
    x = torch.from_numpy(img).movedim(-1, -3).float() / 255.0
    return x, torch.from_numpy(tgt).unsqueeze(-3).float() / 255.0


class LensDataset(IterableDataset):
    """Endless on-the-fly samples from photos (each worker its own random stream)."""

    def __init__(self, photos: Sequence[np.ndarray], seed: int):
        self.photos, self.seed = photos, seed

    def __iter__(self):
        info = get_worker_info()
        rng = np.random.default_rng([self.seed, info.id if info else 0, os.getpid()])
        while True:
            yield to_tensors(*make_sample(self.photos[int(rng.integers(len(self.photos)))],
                                          rng))


def load_photos(folder: Path, exclude: Sequence[str], include: Sequence[str] = (),
                max_side: int = 640) -> list[np.ndarray]:
    """The photos of ``folder`` as RGB arrays, scaled down to ``max_side``."""
    out = []
    for p in list_photos(folder, include=include, exclude=exclude):
        img = load_rgb(p)
        s = max_side / max(img.shape[:2])
        if s < 1:
            img = cv2.resize(img, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
        out.append(img)
    return out


def loss_fn(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """BCE + soft Dice over the batch."""
    bce = F.binary_cross_entropy_with_logits(logits, target)
    p = torch.sigmoid(logits)
    dice = 1 - (2 * (p * target).sum() + 1) / (p.sum() + target.sum() + 1)
    return bce + dice


def validation_set(photos: Sequence[np.ndarray], n: int) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(VAL_SEED)
    xs, ys = zip(*(make_sample(photos[i % len(photos)], rng) for i in range(n)), strict=True)
    return to_tensors(np.stack(xs), np.stack(ys))


@torch.no_grad()
def validate(model: LensSegNet, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """IoU of the thresholded (0.5) prediction over the defect samples, and the share of
    pixels called defect on the samples without one."""
    model.eval()
    p = torch.cat([torch.sigmoid(model(x[i:i + 64])) for i in range(0, len(x), 64)])
    model.train()
    has = y.flatten(1).amax(1) > 0
    pred, tgt = p > 0.5, y > 0.5
    inter = (pred & tgt)[has].sum().item()
    union = (pred | tgt)[has].sum().item()
    return {"iou": round(inter / max(union, 1), 4),
            "clean_fp_pixels": round(pred[~has].float().mean().item(), 5),
            "loss": round(loss_fn(torch.logit(p.clamp(1e-6, 1 - 1e-6)), y).item(), 4)}


def export(model: LensSegNet, out: Path, metrics: dict) -> float:
    """ONNX in the layout of the daemon's restoration networks (``camheald.vision.restore.
    TiledNet``: input ``image`` B,3,H,W, output ``output`` B,1,H,W logits, task ``lens``,
    sizes a multiple of 16), checked against PyTorch; returns the largest probability
    difference. Written atomically."""
    import onnxruntime as ort

    from camheal_train.export import finish_onnx

    model = model.eval()
    x = torch.rand(1, 3, 176, 320, generator=torch.Generator().manual_seed(0))
    buf = io.BytesIO()
    dyn = {n: {0: "batch", 2: "height", 3: "width"} for n in ("image", "output")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), buf, input_names=["image"], output_names=["output"],
                          dynamic_axes=dyn, opset_version=17, do_constant_folding=True,
                          dynamo=False)
    data = finish_onnx(buf.getvalue(), {
        "camheal.task": "lens", "camheal.multiple": str(MULTIPLE), "camheal.in_channels": "3",
        "camheal.config": json.dumps({"width": model.width}),
        "camheal.metrics": json.dumps(metrics)})
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    with torch.no_grad():
        ref = torch.sigmoid(model(x)).numpy()
    got = 1 / (1 + np.exp(-sess.run(None, {"image": x.numpy()})[0]))
    diff = float(np.abs(got - ref).max())
    if diff > 1e-3:
        raise RuntimeError(f"ONNX Runtime differs from PyTorch by {diff:.2e}")
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, out)
    return diff


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m camheal_train.lens_train", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", help="photo folder (default $CAMHEAL_DATA)")
    ap.add_argument("--out", required=True, help="run folder (last.pt, train.log)")
    ap.add_argument("--steps", type=int, default=20000, help="step budget (schedule length)")
    ap.add_argument("--time-limit", type=float, help="minutes of training, resume included")
    ap.add_argument("--batch", type=int, default=24)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--val", type=int, default=192, help="validation samples (Val20)")
    ap.add_argument("--ckpt-every", type=int, default=200)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--export", type=Path, help="write the final network as ONNX here")
    ap.add_argument("--export-only", action="store_true",
                    help="only export the run folder's last.pt (with --export)")
    return ap.parse_args(argv)


def train(a: argparse.Namespace) -> LensSegNet:
    """Train (or with ``--export-only`` export) per the options; returns the network."""
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    log = logging.FileHandler(out / "train.log")
    log.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    logger.addHandler(log)
    logger.setLevel(logging.INFO)
    try:
        return _train(a, out)
    finally:
        logger.removeHandler(log)
        log.close()


def _train(a: argparse.Namespace, out: Path) -> LensSegNet:
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    folder = data_dir(a.data)
    photos = load_photos(folder, exclude=("kodak24-", "val20-"))
    val_photos = load_photos(folder, (), include=("val20-",))
    if not photos or not val_photos:
        raise SystemExit(f"{folder}: need training photos and val20-* photos (validation)")
    val_x, val_y = validation_set(val_photos, a.val)
    model = LensSegNet(a.width)
    if a.export_only:
        state = torch.load(out / "last.pt", map_location="cpu")
        model = LensSegNet(state["width"])
        model.load_state_dict(state["model"])
        metrics = validate(model, val_x, val_y)
        diff = export(model, a.export, {"steps": state["step"], "val20": metrics})
        logger.info("exported %s (ONNX Runtime vs PyTorch: %.1e), val %s", a.export, diff,
                    metrics)
        return model
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=1e-4)
    step, elapsed = 0, 0.0
    ckpt = out / "last.pt"
    if ckpt.exists():
        state = torch.load(ckpt, map_location="cpu")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        step, elapsed = state["step"], state["elapsed"]
        logger.info("resumed at step %d (%.1f min)", step, elapsed / 60)
    limit = a.time_limit * 60 if a.time_limit else None
    loader = DataLoader(LensDataset(photos, a.seed * 1000 + step), batch_size=a.batch,
                        num_workers=a.workers, persistent_workers=a.workers > 0)
    start = time.monotonic() - elapsed

    def save() -> None:
        save_atomic(ckpt, {"model": model.state_dict(), "opt": opt.state_dict(), "step": step,
                           "elapsed": time.monotonic() - start, "width": a.width})

    run_loss = None
    for x, y in loader:
        progress = max(step / a.steps, (time.monotonic() - start) / limit if limit else 0.0)
        if progress >= 1.0:
            break
        for g in opt.param_groups:
            g["lr"] = a.lr * lr_factor(step, progress, 100)
        loss = loss_fn(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        run_loss = loss.item() if run_loss is None else 0.98 * run_loss + 0.02 * loss.item()
        if step % a.ckpt_every == 0:
            save()
            logger.info("step %d  %.1f min  loss %.4f  val %s", step,
                        (time.monotonic() - start) / 60, run_loss,
                        validate(model, val_x, val_y))
    save()
    metrics = validate(model, val_x, val_y)
    logger.info("done: step %d, %.1f min, val %s", step, (time.monotonic() - start) / 60, metrics)
    if a.export:
        diff = export(model, a.export, {"steps": step, "val20": metrics})
        logger.info("exported %s (ONNX Runtime vs PyTorch: %.1e)", a.export, diff)
    return model


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    train(parse_args(argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
