"""Train an estimator stacked on the detector (``camheald.vision.stacked``), export to ONNX.

    python -m camheal_train.stacked_train --task cast --data PHOTOS --out runs/cast \
        --detector models/weights/camheal_detector.onnx --per-photo 100 \
        --exclude kodak24- --exclude val20- --val-include val20- \
        --export models/weights/camheal_cast.onnx

``--task``: ``cast`` (colour cast: white-balance gains), ``contrast`` (low contrast:
per-channel affine levels), ``noise`` (detection only: a score from native-resolution grain
statistics, ``camheald.vision.grain``) or ``obstruction`` (detection only: statistics of the
lens-defect segmenter's map of the thumbnail and of the detector's mask,
``camheald.vision.obstruct``).

1. Samples: random views of the photos, degraded by our generator (40 % the task's anomaly
   alone, 15 % it plus another anomaly, 25 % clean with camera jitter, 20 % another anomaly
   alone). For each: the task's features of the degraded frame, the detector's logits (the
   estimator is stacked on that detector, whose sha256 the sidecar records), the
   least-squares correction parameters that take the degraded frame to its target, and the
   label. Cached in OUT/samples-*.npz (rerunning reuses them).
2. A small MLP (features + logits -> 128 -> 64 -> params + logit) fitted with a smooth-L1
   loss on the parameters and BCE on the label; input standardisation folded in; the logit's
   temperature fitted on the validation photos.
3. ``--export``: ONNX (inputs ``features``, ``logits``; outputs ``params``, ``logit``),
   checked against PyTorch, with a JSON sidecar.

CPU only; a few minutes for 20 000 samples on 2 cores.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import logging
import sys
import warnings
from collections.abc import Sequence
from multiprocessing import get_context
from pathlib import Path

import cv2
import numpy as np

from camheal.constants import ANOMALIES
from camheald.vision import cast, spec
from camheald.vision.stacked import INPUTS, OUTPUTS, TASKS, Views, segmenter

logger = logging.getLogger(__name__)

VIEW_SIDE = 512
PIXELS = 16  # side of the degraded/target thumbnails kept per sample for --w-img


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m camheal_train.stacked_train",
                                 description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", choices=sorted(TASKS), required=True)
    ap.add_argument("--data", help="photos folder (default: $CAMHEAL_DATA/photos)")
    ap.add_argument("--out", required=True, help="run folder (sample cache, checkpoint)")
    ap.add_argument("--detector", required=True, help="detector ONNX the estimator stacks on")
    ap.add_argument("--per-photo", type=int, default=100, help="training samples per photo")
    ap.add_argument("--exclude", action="append", default=[], help="photo name prefix to skip")
    ap.add_argument("--include", action="append", default=[], help="only these prefixes")
    ap.add_argument("--val-include", action="append", default=[],
                    help="photo prefix for a validation set (40 samples per photo)")
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--w-cls", type=float, default=0.3, help="weight of the label's BCE")
    ap.add_argument("--w-img", type=float, default=0.0,
                    help="weight of an L1 loss on the corrected 16x16 thumbnail against the "
                         "clean one (0: parameters only)")
    ap.add_argument("--seed", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--export", help="write the ONNX (and its .json sidecar) here")
    ap.add_argument("--no-progress", action="store_true", help="no tqdm bar")
    return ap.parse_args(argv)


# ---------------------------------------------------------------- samples

_DETECTOR = None


def _photo_samples(job: tuple[str, str, str, list[int], int]) -> dict[str, np.ndarray]:
    """Samples of one photo (runs in a worker process)."""
    import torch

    from camheal_train.data import load_rgb, random_view
    from camheal_train.degrade import degrade
    from camheald.vision.detector import Detector

    global _DETECTOR
    task_name, path, detector, seed, n = job
    task = TASKS[task_name]
    others = tuple(a for a in ANOMALIES if a != task.anomaly)
    torch.set_num_threads(1)
    if _DETECTOR is None:
        _DETECTOR = Detector.load(detector, with_estimators=False)
    img = load_rgb(path)
    rng = np.random.default_rng(seed)
    feats, logits, params, labels, pixels = [], [], [], [], []
    for _ in range(n):
        view = random_view(img, rng, VIEW_SIDE)
        u = rng.random()
        if u < 0.40:
            anomalies: tuple[str, ...] = (task.anomaly,)
        elif u < 0.55:
            other = str(rng.choice(others))
            anomalies = (task.anomaly,) if other == "obstruction" else (task.anomaly, other)
        elif u < 0.80:
            anomalies = ()
        else:
            anomalies = (str(rng.choice(others)),)
        d = degrade(view, rng, anomalies, jitter=True)
        thumb = spec.thumbnail(d.image)
        small, small_target = cast.small(thumb), cast.small(spec.thumbnail(d.target))
        out = _DETECTOR.run(d.image)
        feats.append(task.features(Views(d.image, thumb, mask=out["mask"][0, 0])))
        logits.append(out["logits"][0])
        params.append(task.target(small, small_target))
        pixels.append(np.stack([cv2.resize(im, (PIXELS, PIXELS), interpolation=cv2.INTER_AREA)
                                for im in (small, small_target)]))
        labels.append(d.labels[ANOMALIES.index(task.anomaly)])
    return {"features": np.stack(feats), "logits": np.stack(logits).astype(np.float32),
            "params": np.stack(params), "label": np.asarray(labels, np.float32),
            "pixels": np.stack(pixels)}


def make_samples(task: str, photos: Sequence[Path], detector: str, per_photo: int, seed: int,
                 workers: int, cache: Path, progress: bool = True) -> dict[str, np.ndarray]:
    """Samples for every photo (cached in ``cache``; reused when present)."""
    if cache.is_file():
        with np.load(cache) as z:
            logger.info("reusing %s", cache)
            return {k: z[k] for k in z.files}
    from tqdm import tqdm

    cv2.setNumThreads(1)
    jobs = [(task, str(p), detector, [seed, i], per_photo) for i, p in enumerate(photos)]
    parts = []
    bar = tqdm(total=len(jobs), desc=f"samples {cache.name}", unit="photo",
               disable=not progress, file=sys.stderr)
    if workers > 1:
        with get_context("spawn").Pool(workers) as pool:
            for part in pool.imap(_photo_samples, jobs):
                parts.append(part)
                bar.update()
    else:
        for job in jobs:
            parts.append(_photo_samples(job))
            bar.update()
    bar.close()
    out = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp.npz")
    np.savez(tmp, **out)
    tmp.replace(cache)
    return out


# ---------------------------------------------------------------- model


def build_model(mean: np.ndarray, std: np.ndarray, n_params: int):
    """The estimator MLP with input standardisation folded in (a torch Module)."""
    import torch
    from torch import nn

    class StackedNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
            self.register_buffer("inv_std", torch.as_tensor(1.0 / std, dtype=torch.float32))
            # 1 / temperature of the logit (``calibrate_temperature``)
            self.register_buffer("inv_temp", torch.ones(()))
            n = len(mean)
            self.body = nn.Sequential(nn.Linear(n, 128), nn.SiLU(), nn.Linear(128, 64),
                                      nn.SiLU(), nn.Linear(64, n_params + 1))

        def forward(self, features: torch.Tensor, logits: torch.Tensor):
            x = (torch.cat([features, logits], 1) - self.mean) * self.inv_std
            y = self.body(x)
            return y[:, :n_params], y[:, n_params:] * self.inv_temp

    return StackedNet()


def metrics(model, s: dict[str, np.ndarray]) -> dict[str, float]:
    """Mean |parameter error| (all samples, positives) and the label's AUC."""
    import torch

    from camheal_train.evaluate import auc

    with torch.no_grad():
        p, z = model(torch.from_numpy(s["features"]), torch.from_numpy(s["logits"]))
    y = s["label"] > 0.5
    out = {"auc": float(auc(z[:, 0].numpy(), y.astype(float)))}
    if s["params"].shape[1]:
        err = np.abs(p.numpy() - s["params"])
        out.update(params_l1=float(err.mean()), params_l1_positive=float(err[y].mean()))
    return out


def _apply_gain(x, p):
    """Torch twin of cast.gain_curves' map: linear-light gain exp(p) per channel."""
    import torch

    lin = torch.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)
    y = (lin * torch.exp(p.clamp(-3, 3))[:, :, None, None]).clamp(0, 1)
    return torch.where(y <= 0.0031308, y * 12.92,
                       1.055 * y.clamp(min=0.0031308) ** (1 / 2.4) - 0.055)


def _apply_affine(x, p):
    """Torch twin of tone.affine_curves' map: exp(p[2c]) * v + p[2c+1], clipped."""
    import torch

    p = p.view(-1, 3, 2)
    slope = torch.exp(p[..., 0].clamp(-1, 3))[:, :, None, None]
    return (slope * x + p[..., 1].clamp(-3, 1)[:, :, None, None]).clamp(0, 1)


APPLY = {"cast": _apply_gain, "contrast": _apply_affine}


def fit(train: dict[str, np.ndarray], a: argparse.Namespace,
        val: dict[str, np.ndarray] | None = None):
    """Fitted model (the MLP; its standardisation comes from ``train``)."""
    import torch
    from tqdm import tqdm

    torch.manual_seed(a.seed)
    x_all = np.concatenate([train["features"], train["logits"]], 1)
    model = build_model(x_all.mean(0), x_all.std(0) + 1e-4, train["params"].shape[1])
    f, lg = torch.from_numpy(train["features"]), torch.from_numpy(train["logits"])
    tg, lab = torch.from_numpy(train["params"]), torch.from_numpy(train["label"])
    px = None
    if a.w_img > 0:  # (N, 2, P, P, 3) uint8 -> float 0..1, channels first
        px = torch.from_numpy(train["pixels"]).float().div(255.0).permute(0, 1, 4, 2, 3)
    opt = torch.optim.AdamW(model.body.parameters(), a.lr, weight_decay=1e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, a.lr, total_steps=max(1, a.steps))
    gen = torch.Generator().manual_seed(a.seed)
    bar = tqdm(range(a.steps), desc="fit", disable=a.no_progress, file=sys.stderr)
    for step in bar:
        i = torch.randint(0, len(f), (a.batch,), generator=gen)
        g, z = model(f[i], lg[i])
        loss = a.w_cls * torch.nn.functional.binary_cross_entropy_with_logits(z[:, 0], lab[i])
        if tg.shape[1]:  # a detection-only task has no parameters
            loss = loss + torch.nn.functional.smooth_l1_loss(g, tg[i], beta=0.05)
        if a.w_img > 0:
            x, t = px[i, 0], px[i, 1]
            loss = loss + a.w_img * (APPLY[a.task](x, g) - t).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if val is not None and (step + 1) % 500 == 0:
            model.eval()
            bar.write(f"step {step + 1} loss {float(loss):.4f} val "
                      + json.dumps({k: round(v, 4) for k, v in metrics(model, val).items()}))
            model.train()
    return model.eval()


def calibrate_temperature(model, val: dict[str, np.ndarray]) -> float:
    """Fit the logit's temperature on ``val`` (least BCE) and fold it into the model.

    The MLP ranks well but its logits overshoot (the colour-cast estimator's reached 9 on
    clean validation frames); scaled down, the detector's threshold grid can separate them
    again. Ranks, and so the estimator's AUC, are unchanged.
    """
    import torch

    model.inv_temp.fill_(1.0)
    with torch.no_grad():
        z = model(torch.from_numpy(val["features"]), torch.from_numpy(val["logits"]))[1][:, 0]
    y = torch.from_numpy(val["label"])
    temps = np.exp(np.linspace(np.log(0.5), np.log(20.0), 200))
    loss = [float(torch.nn.functional.binary_cross_entropy_with_logits(z / t, y))
            for t in temps]
    t = float(temps[int(np.argmin(loss))])
    model.inv_temp.fill_(1.0 / t)
    return t


# ---------------------------------------------------------------- export


def to_onnx_bytes(model, task: str) -> bytes:
    """Serialised, checked ONNX of the estimator (dynamic batch)."""
    import torch

    from camheal_train.export import OPSET, finish_onnx

    n_feat = TASKS[task].n_features
    ex = (torch.zeros(1, n_feat), torch.zeros(1, len(ANOMALIES)))
    buf = io.BytesIO()
    dyn = {n: {0: "batch"} for n in (*INPUTS, *OUTPUTS)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), ex, buf, input_names=list(INPUTS),
                          output_names=list(OUTPUTS), dynamic_axes=dyn,
                          opset_version=OPSET, do_constant_folding=True, dynamo=False)
    meta = {"camheal.task": task, "camheal.anomalies": ",".join(ANOMALIES),
            "camheal.features": str(n_feat)}
    return finish_onnx(buf.getvalue(), meta)


def parity(model, data: bytes, n_features: int, atol: float = 1e-4) -> float:
    """Max |ONNX Runtime - PyTorch| on random inputs; raises if above ``atol``."""
    import onnxruntime as ort
    import torch

    rng = np.random.default_rng(0)
    f = rng.normal(0, 1, (4, n_features)).astype(np.float32)
    z = rng.normal(0, 3, (4, len(ANOMALIES))).astype(np.float32)
    with torch.no_grad():
        ref = [t.numpy() for t in model(torch.from_numpy(f), torch.from_numpy(z))]
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    got = sess.run(list(OUTPUTS), {"features": f, "logits": z})
    diff = max(float(np.abs(r - g).max()) if r.size else 0.0  # no params: (B, 0)
               for r, g in zip(ref, got, strict=True))
    if diff > atol:
        raise RuntimeError(f"ONNX Runtime and PyTorch differ by {diff:.2e} (> {atol})")
    return diff


def export(model, task: str, out: Path, sidecar: dict) -> None:
    """Write the ONNX and its sidecar atomically."""
    data = to_onnx_bytes(model, task)
    diff = parity(model, data, TASKS[task].n_features)
    side = {**sidecar, "onnx_sha256": hashlib.sha256(data).hexdigest(),
            "parity_max_abs": diff}
    out.parent.mkdir(parents=True, exist_ok=True)
    for path, blob in ((out, data), (out.with_suffix(".json"),
                                     (json.dumps(side, indent=2) + "\n").encode())):
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(blob)
        tmp.replace(path)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    a = parse_args(argv)
    from camheal_train.data import data_dir, list_photos

    if a.w_img > 0 and a.task not in APPLY:
        raise SystemExit(f"--w-img: the {a.task} task has no correction to apply")
    folder = data_dir(a.data)
    det = Path(a.detector)
    if not det.is_file():
        raise SystemExit(f"--detector {det}: file not found")
    photos = list_photos(folder, a.include, a.exclude)
    if not photos:
        raise SystemExit(f"no photos in {folder}")
    out = Path(a.out)
    det_sha = hashlib.sha256(det.read_bytes()).hexdigest()
    version = TASKS[a.task].version
    seg = segmenter() if TASKS[a.task].uses_segmenter else None
    if TASKS[a.task].uses_segmenter:
        if seg is None:
            raise SystemExit(f"--task {a.task}: the lens-defect segmenter (camheal_lens.onnx) "
                             "is missing or cannot be loaded")
        version += "-" + seg.name.rsplit("@", 1)[-1]  # its features are the segmenter's
    tag = f"{a.task}-{version}-{det_sha[:8]}-s{a.seed}-n{a.per_photo}-{len(photos)}"
    train = make_samples(a.task, photos, str(det), a.per_photo, a.seed, a.workers,
                         out / f"samples-{tag}.npz", not a.no_progress)
    val = None
    if a.val_include:
        vp = list_photos(folder, a.val_include)
        if not vp:
            raise SystemExit(f"--val-include {a.val_include}: no photos in {folder}")
        val = make_samples(a.task, vp, str(det), 40, a.seed + 1000, a.workers,
                           out / f"val-{a.task}-{version}-{det_sha[:8]}-s{a.seed}-{len(vp)}.npz",
                           not a.no_progress)
    model = fit(train, a, val)
    temperature = calibrate_temperature(model, val) if val is not None else 1.0
    logger.info("logit temperature %.3f", temperature)
    import torch

    torch.save(model.state_dict(), out / "last.pt")
    report = {"train": metrics(model, train)}
    if val is not None:
        report["val"] = metrics(model, val)
    print(json.dumps(report, indent=2))
    if a.export:
        export(model, a.task, Path(a.export), {
            "task": a.task, "detector_sha256": det_sha,
            **({"segmenter": seg.name} if seg is not None else {}),
            "samples": int(len(train["label"])),
            "photos": len(photos), "per_photo": a.per_photo, "steps": a.steps,
            "seed": a.seed, "temperature": round(temperature, 4), "metrics": report,
            "command": "python -m camheal_train.stacked_train " + " ".join(
                argv if argv is not None else sys.argv[1:])})
        print(f"wrote {a.export}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
