"""Train CamhealNet on one CPU or many processes (``torchrun``, DDP with gloo/nccl).

    python -m camheal_train.train --cache runs/cache --out runs/small --steps 4000
    torchrun --nproc_per_node 2 -m camheal_train.train --data DIR --out runs/x ...
    python -m camheal_train.train --data DIR --out runs/gpu --device cuda --workers 14 \
        --batch 128 --replay 8 --time-limit 7 --epoch-samples 5000000

On a GPU the data (degraded on the fly by CPU workers) is the bottleneck, so ``--replay K``
keeps the last ``--buffer`` samples on the device and takes K optimisation steps per fresh
batch (the fresh batch first, then K-1 batches drawn from the buffer). ``--time-limit``
makes the learning-rate schedule follow elapsed time and ends the run, with a checkpoint,
when the limit is reached.

Checkpoints (``last.pt``) are written every ``--ckpt-every`` steps and at the end; rerunning
the same command resumes from ``last.pt``.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler

from camheal.constants import ANOMALIES
from camheal_train.data import CachedDataset, SyntheticDataset, data_dir, list_photos
from camheal_train.losses import compute_losses
from camheal_train.net import CONFIGS, CamhealNet

logger = logging.getLogger(__name__)


def _anomaly_weight(text: str) -> tuple[str, float]:
    """Parse ANOMALY=W (a name of the shared vocabulary, W > 0)."""
    name, sep, val = text.partition("=")
    try:
        w = float(val)
    except ValueError:
        w = -1.0
    if not sep or name not in ANOMALIES or not (w > 0 and math.isfinite(w)):
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected ANOMALY=W with ANOMALY one of {', '.join(ANOMALIES)} and W > 0")
    return name, w


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    ap = argparse.ArgumentParser(prog="python -m camheal_train.train", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--cache", action="append",
                     help="cache folder built by camheal_train.data (repeatable)")
    src.add_argument("--data", help="photo folder (default $CAMHEAL_DATA); degrade on the fly")
    ap.add_argument("--exclude", action="append", default=None,
                    help="photo name prefix to hold out (default: kodak24-, val20-)")
    ap.add_argument("--epoch-samples", type=int, default=8000, help="on-the-fly epoch length")
    ap.add_argument("--out", required=True, help="run folder (checkpoints, log)")
    ap.add_argument("--arch", default="small", choices=sorted(CONFIGS))
    ap.add_argument("--steps", type=int, default=4000)
    ap.add_argument("--batch", type=int, default=32, help="per-process batch size")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--weight-decay", type=float, default=1e-4)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--workers", type=int, default=1, help="DataLoader workers per process")
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads per process")
    ap.add_argument("--ckpt-every", type=int, default=250)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--w-cls", type=float, default=1.0, help="classification loss weight")
    ap.add_argument("--w-img", type=float, default=8.0, help="corrected-image L1 loss weight")
    ap.add_argument("--mask-pos-weight", type=float, default=1.0,
                    help="weight of obstructed pixels in the mask loss")
    ap.add_argument("--w-class", action="append", default=[], type=_anomaly_weight,
                    metavar="ANOMALY=W", help="weight of one anomaly's classification term "
                    "(repeatable; the others weigh 1)")
    ap.add_argument("--focus", action="append", default=[], type=_anomaly_weight,
                    metavar="ANOMALY=W", help="on-the-fly data: draw this anomaly W times as "
                    "often as the others (repeatable)")
    ap.add_argument("--init", help="start from this checkpoint's weights (fresh optimiser)")
    ap.add_argument("--init-onnx", metavar="ONNX",
                    help="start from an exported detector's weights (implies --freeze-bn)")
    ap.add_argument("--freeze-bn", action="store_true",
                    help="keep BatchNorm layers in eval mode (fixed statistics) while training")
    ap.add_argument("--init-skip", action="append", default=[], metavar="PREFIX",
                    help="with --init: leave parameters starting with PREFIX freshly initialised")
    ap.add_argument("--train-only", action="append", default=[], metavar="PREFIX",
                    help="train only the parameters starting with PREFIX (repeatable; e.g. "
                    "obs. for the obstruction branch); the rest stays frozen, its BatchNorm "
                    "layers in eval mode")
    ap.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    ap.add_argument("--replay", type=int, default=1,
                    help="optimisation steps per fresh batch (buffer on the device)")
    ap.add_argument("--buffer", type=int, default=40000, help="replay buffer size, samples")
    ap.add_argument("--time-limit", type=float, default=None, metavar="MINUTES",
                    help="stop (with a checkpoint) after this much training time")
    ap.add_argument("--log-every", type=int, default=100)
    ap.add_argument("--no-progress", action="store_true")
    a = ap.parse_args(argv)
    if a.cache and a.focus:
        ap.error("--focus needs on-the-fly data (--data), not --cache")
    return a


def lr_factor(step: int, progress: float, warmup: int, floor: float = 0.02) -> float:
    """Learning-rate multiplier: linear warm-up over the first ``warmup`` steps, times a
    cosine from 1 to ``floor`` over ``progress`` (0..1, the share of the run done)."""
    w = min(1.0, (step + 1) / max(1, warmup))
    t = min(1.0, max(0.0, progress))
    return w * (floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * t)))


def save_atomic(path: Path, payload: dict) -> None:
    """``torch.save`` to a temporary file beside ``path``, then rename (never half-written)."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def _class_weights(a: argparse.Namespace) -> torch.Tensor | None:
    """The (7,) classification weights of ``--w-class`` (None when not given)."""
    if not a.w_class:
        return None
    weights = dict(a.w_class)
    return torch.tensor([weights.get(n, 1.0) for n in ANOMALIES])


def _trained(name: str, a: argparse.Namespace) -> bool:
    """Whether parameter or module ``name`` is trained (``--train-only``)."""
    return not a.train_only or name.startswith(tuple(a.train_only))


def _train_step(ddp: torch.nn.Module, model: CamhealNet, opt: torch.optim.Optimizer,
                batch: dict[str, torch.Tensor], a: argparse.Namespace,
                class_weights: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    model.train()
    for name, m in model.named_modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            # with --train-only the trained part learns its statistics, even when the rest
            # came from an exported network (--init-onnx implies --freeze-bn)
            frozen = not _trained(f"{name}.", a) if a.train_only else a.freeze_bn
            if frozen:
                m.eval()
    losses = compute_losses(ddp(*_model_inputs(batch)), batch,
                            {"cls": a.w_cls, "img": a.w_img}, a.mask_pos_weight, class_weights)
    opt.zero_grad(set_to_none=True)
    losses["total"].backward()
    torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 5.0)
    opt.step()
    return losses


class Replay:
    """A ring of recent samples kept on the training device, sampled uniformly."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.data: dict[str, torch.Tensor] = {}
        self.size = 0
        self.pos = 0

    def add(self, batch: dict[str, torch.Tensor]) -> None:
        """Store a batch (tensors already on the device), overwriting the oldest samples."""
        n = batch["labels"].shape[0]
        if not self.data:
            self.data = {k: torch.empty((self.capacity, *v.shape[1:]), dtype=v.dtype,
                                        device=v.device) for k, v in batch.items()}
        idx = (torch.arange(n, device=batch["labels"].device) + self.pos) % self.capacity
        for k, v in batch.items():
            self.data[k][idx] = v
        self.pos = (self.pos + n) % self.capacity
        self.size = min(self.capacity, self.size + n)

    def sample(self, n: int) -> dict[str, torch.Tensor]:
        """``n`` samples drawn uniformly (with replacement) from what is stored."""
        idx = torch.randint(0, self.size, (n,), device=self.data["labels"].device)
        return {k: v[idx] for k, v in self.data.items()}


def _augment(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Random horizontal flip of every spatial tensor of the batch (labels unchanged)."""
    if torch.rand(()) < 0.5:
        return batch
    out = dict(batch)
    for k in ("thumb", "crops", "loss_in", "loss_target", "mask"):
        out[k] = batch[k].flip(-1)
    return out


def _model_inputs(batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
    return (batch["thumb"].float() / 255.0, batch["crops"].float() / 255.0, batch["hist"])


def train(a: argparse.Namespace) -> Path:
    """Run (or resume) training; returns the path of the final checkpoint."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if world > 1:
        dist.init_process_group("nccl" if a.device.startswith("cuda") else "gloo")
    torch.set_num_threads(a.threads)
    if a.workers > 0:
        # one OpenCV thread, set before any OpenCV work so the forked DataLoader workers
        # inherit it (calling this inside a forked worker can deadlock OpenCV's pool)
        import cv2

        cv2.setNumThreads(1)
    torch.manual_seed(a.seed + rank)
    device = torch.device(a.device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    if device.type == "cuda":
        torch.cuda.set_device(device)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    if a.cache:
        ds = CachedDataset(a.cache)
    else:
        exclude = a.exclude if a.exclude is not None else ["kodak24-", "val20-"]
        ds = SyntheticDataset(list_photos(data_dir(a.data), exclude=exclude), a.epoch_samples,
                              seed=a.seed, focus=dict(a.focus))
    sampler = (DistributedSampler(ds, world, rank, shuffle=True, seed=a.seed) if world > 1
               else RandomSampler(ds))
    loader = DataLoader(ds, batch_size=a.batch, sampler=sampler, num_workers=a.workers,
                        drop_last=True, persistent_workers=a.workers > 0,
                        pin_memory=device.type == "cuda",
                        prefetch_factor=4 if a.workers > 0 else None)
    cfg = CONFIGS[a.arch]
    model = CamhealNet(cfg).to(device)
    for name, p in model.named_parameters():
        p.requires_grad_(_trained(name, a))
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise SystemExit(f"--train-only {' '.join(a.train_only)}: no such parameters in "
                         f"--arch {a.arch}")
    opt = torch.optim.AdamW(params, lr=a.lr, weight_decay=a.weight_decay)
    step, epoch, elapsed0 = 0, 0, 0.0
    ckpt = out / "last.pt"
    if ckpt.exists():
        state = torch.load(ckpt, map_location=device, weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        step, epoch = state["step"], state["epoch"]
        elapsed0 = float(state.get("elapsed", 0.0))
        logger.info("resumed from %s at step %d", ckpt, step)
    elif a.init:
        init = torch.load(a.init, map_location=device, weights_only=False)["model"]
        init = {k: v for k, v in init.items() if not k.startswith(tuple(a.init_skip))}
        missing, _ = model.load_state_dict(init, strict=False)
        logger.info("initialised from %s (%d tensors fresh)", a.init, len(missing))
    elif a.init_onnx:
        from camheal_train.export import load_onnx_weights

        try:
            load_onnx_weights(model, a.init_onnx)
        except ValueError:
            if not cfg.obs:
                raise
            # an exported network without the branch: the branch starts fresh (zero outputs)
            base = load_onnx_weights(CamhealNet(cfg.without_obs()), a.init_onnx)
            model.load_state_dict(base.state_dict(), strict=False)
        logger.info("initialised from %s", a.init_onnx)
    if a.init_onnx:
        a.freeze_bn = True
    ddp = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    replay = Replay(a.buffer) if a.replay > 1 else None
    limit_s = a.time_limit * 60 if a.time_limit else None
    bar = None
    if rank == 0 and not a.no_progress:
        from tqdm import tqdm

        bar = tqdm(total=a.steps, initial=step, desc="train", mininterval=5)
    running: dict[str, float] = {}
    t0 = time.time()

    def elapsed() -> float:
        return elapsed0 + time.time() - t0

    def done() -> bool:
        return step >= a.steps or (limit_s is not None and elapsed() >= limit_s)

    class_weights = _class_weights(a)
    if class_weights is not None:
        class_weights = class_weights.to(device)
    while not done():
        if isinstance(sampler, DistributedSampler):
            sampler.set_epoch(epoch)
        if isinstance(ds, SyntheticDataset):
            ds.set_epoch(epoch)
        for fresh in loader:
            fresh = {k: v.to(device, non_blocking=True) for k, v in fresh.items()}
            if replay is not None:
                replay.add(fresh)
            for r in range(a.replay):
                if done():
                    break
                batch = fresh if r == 0 else replay.sample(a.batch)
                progress = (step - a.warmup) / max(1, a.steps - a.warmup)
                if limit_s is not None:
                    progress = max(progress, elapsed() / limit_s)
                for g in opt.param_groups:
                    g["lr"] = a.lr * lr_factor(step, progress, a.warmup)
                losses = _train_step(ddp, model, opt, _augment(batch), a, class_weights)
                step += 1
                if step % 10 == 0 or step == 1:
                    for k, v in losses.items():
                        fv = float(v.detach())
                        running[k] = 0.9 * running.get(k, fv) + 0.1 * fv
                if bar is not None:
                    bar.update(1)
                    if step % 20 == 0:
                        bar.set_postfix({k: f"{v:.4f}" for k, v in running.items()})
                if rank == 0 and (step % a.log_every == 0 or done()):
                    logger.info("step %d %s (%.0fs)", step,
                                " ".join(f"{k}={v:.4f}" for k, v in running.items()), elapsed())
                if rank == 0 and (step % a.ckpt_every == 0 or done()):
                    _save(ckpt, model, opt, step, epoch, a, elapsed())
            if done():
                break
        epoch += 1
    if bar is not None:
        bar.close()
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return ckpt


def _save(path: Path, model: CamhealNet, opt: torch.optim.Optimizer, step: int, epoch: int,
          a: argparse.Namespace, elapsed: float) -> None:
    save_atomic(path, {"model": model.state_dict(), "opt": opt.state_dict(), "step": step,
                       "epoch": epoch, "config": model.cfg.to_dict(), "arch": a.arch,
                       "args": vars(a), "elapsed": elapsed})


def load_model(path: str | os.PathLike) -> CamhealNet:
    """A trained network (eval mode) from a checkpoint written by ``train``."""
    from camheal_train.net import NetConfig

    state = torch.load(path, map_location="cpu", weights_only=False)
    model = CamhealNet(NetConfig.from_dict(state["config"]))
    model.load_state_dict(state["model"])
    return model.eval()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    path = train(parse_args(argv))
    if int(os.environ.get("RANK", "0")) == 0:
        logger.info("checkpoint: %s", path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
