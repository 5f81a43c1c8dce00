"""Train a RestoreNet (``--task restore`` deblur + denoise, or ``--task inpaint``).

    python -m camheal_train.restore_train --task restore --data DIR --out runs/restore \
        --device cuda --workers 7 --batch 32 --time-limit 7

Pairs are made on the fly by DataLoader workers (``camheal_train.restore_data``). AdamW with
a linear warm-up and a cosine decay over ``progress = max(step / steps, elapsed / limit)``, so
a ``--time-limit`` run anneals fully and stops, with a checkpoint, shortly before the limit.
``last.pt`` is written atomically every ``--ckpt-every`` steps, at the end and on SIGTERM or
SIGINT; rerunning the same command resumes from it (elapsed time carries over).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import signal
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from camheal_train.data import data_dir, list_photos
from camheal_train.restore_data import RESTORE_P, RestoreDataset, worker_init
from camheal_train.restore_net import CONFIGS, RestoreConfig, RestoreNet, macs_per_pixel
from camheal_train.train import lr_factor, save_atomic

logger = logging.getLogger(__name__)
VAL_SEED = 1_000_003  # validation pairs come from another random stream than training pairs


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    ap = argparse.ArgumentParser(prog="python -m camheal_train.restore_train",
                                 description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", required=True, choices=("restore", "inpaint"))
    ap.add_argument("--data", help="photo folder (default $CAMHEAL_DATA)")
    ap.add_argument("--exclude", action="append", default=None,
                    help="photo name prefix to hold out (default: kodak24-, val20-)")
    ap.add_argument("--out", required=True, help="run folder (last.pt, train.log)")
    ap.add_argument("--arch", help="config name (default: the task's; tiny-* for tests)")
    ap.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    ap.add_argument("--bf16", action="store_true", help="bfloat16 autocast (CUDA only)")
    ap.add_argument("--steps", type=int, default=20000, help="step budget (schedule length)")
    ap.add_argument("--time-limit", type=float, help="minutes of training, resume included")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--crop", type=int, help="crop side (default 160 restore, 192 inpaint)")
    ap.add_argument("--mix", type=_mix, help="restore: degradation shares, e.g. "
                    "clean=0.12,blur=0.34,noise=0.3,both=0.24 (the default)")
    ap.add_argument("--saturated", type=_share, default=0.0,
                    help="restore: share of crops given stronger colours first (0..1)")
    ap.add_argument("--init-onnx", help="start from the weights of an exported network of "
                    "the same architecture (ignored when the run folder has a checkpoint)")
    ap.add_argument("--loss", choices=sorted(LOSSES), default="mse",
                    help="mse (default: what PSNR measures) or charbonnier (smooth L1)")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--min-lr-frac", type=float, default=0.02)
    ap.add_argument("--weight-decay", type=float, default=1e-4)
    ap.add_argument("--warmup", type=int, default=200, help="linear warm-up steps")
    ap.add_argument("--workers", type=int, default=2, help="DataLoader worker processes")
    ap.add_argument("--threads", type=int, default=1, help="torch threads of this process")
    ap.add_argument("--ckpt-every", type=int, default=500)
    ap.add_argument("--log-every", type=int, default=100)
    ap.add_argument("--val", type=int, default=64, help="fixed validation pairs (0: none)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-progress", action="store_true", help="no tqdm bar")
    a = ap.parse_args(argv)
    if a.bf16 and a.device == "cpu":
        ap.error("--bf16 needs --device cuda")
    return a


def _share(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        v = -1.0
    if not 0.0 <= v <= 1.0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a share between 0 and 1")
    return v


def _mix(text: str) -> dict[str, float]:
    out = {}
    for part in text.split(","):
        k, _, v = part.partition("=")
        if k not in RESTORE_P:
            raise argparse.ArgumentTypeError(f"unknown share {k!r} (use {', '.join(RESTORE_P)})")
        out[k] = float(v)
    if sum(out.values()) <= 0:
        raise argparse.ArgumentTypeError("the shares must not all be zero")
    return out


def charbonnier(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None,
                eps: float = 1e-3) -> torch.Tensor:
    """Mean sqrt(d^2 + eps^2) (a smooth L1), optionally weighted per pixel."""
    d = torch.sqrt((pred.float() - target.float()) ** 2 + eps * eps)
    if weight is None:
        return d.mean()
    return (d * weight).sum() / (weight.sum() * pred.shape[1]).clamp_min(1.0)


def mse(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None
        ) -> torch.Tensor:
    """Mean squared error, optionally weighted per pixel."""
    d = (pred.float() - target.float()) ** 2
    if weight is None:
        return d.mean()
    return (d * weight).sum() / (weight.sum() * pred.shape[1]).clamp_min(1.0)


LOSSES = {"mse": mse, "charbonnier": charbonnier}


def task_loss(task: str, pred: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
              kind: str = "mse") -> torch.Tensor:
    """``kind`` over the image (restore) or over the hole only (inpaint)."""
    return LOSSES[kind](pred, y, x[:, 3:4] if task == "inpaint" else None)


class _Range(Sampler[int]):
    """Indices start, start+1, ... (resuming continues the stream where it stopped)."""

    def __init__(self, start: int, count: int):
        self.start, self.count = start, count

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.start, self.start + self.count))

    def __len__(self) -> int:
        return self.count


class _Stop:
    """Turns SIGTERM/SIGINT into a flag so that the loop can save and leave cleanly."""

    def __init__(self) -> None:
        self.requested = False
        self._old: dict[int, object] = {}

    def __enter__(self) -> _Stop:
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, _frame) -> None:
        logger.warning("signal %d: stopping after this step", signum)
        self.requested = True

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


def _device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device available")
    return torch.device(name)


def _check_kornia() -> None:
    try:
        import kornia  # noqa: F401
    except ImportError:
        raise SystemExit("kornia is needed by the degradations (camheal_train.blur/noise: "
                         "Gaussian and motion blur, chroma noise, JPEG): pip install kornia"
                         ) from None


@torch.no_grad()
def validate(model: RestoreNet, val: list[tuple[torch.Tensor, torch.Tensor]],
             device: torch.device) -> tuple[float, float]:
    """(PSNR of the inputs, PSNR of the outputs) in dB over the validation pairs (hole only
    for inpainting, where the input PSNR is that of the zero fill)."""
    model.eval()
    inp, out = [], []
    for x, y in val:
        x, y = x[None].to(device), y[None].to(device)
        p = model(x).clamp(0, 1)
        w = x[:, 3:4].expand_as(y) if model.cfg.task == "inpaint" else torch.ones_like(y)
        n = w.sum().clamp_min(1.0)
        inp.append(float((((x[:, :3] - y) ** 2) * w).sum() / n))
        out.append(float((((p - y) ** 2) * w).sum() / n))
    model.train()
    return (10 * math.log10(1 / max(np.mean(inp), 1e-10)),
            10 * math.log10(1 / max(np.mean(out), 1e-10)))


def save_checkpoint(path: Path, model: RestoreNet, opt: torch.optim.Optimizer, step: int,
                    elapsed: float, a: argparse.Namespace) -> None:
    """Write ``path`` atomically (temporary file + rename)."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    save_atomic(path, {"model": state, "opt": opt.state_dict(), "step": step,
                       "elapsed": elapsed, "config": model.cfg.to_dict(), "args": vars(a)})


def load_model(path: str | os.PathLike) -> RestoreNet:
    """A trained network (CPU, eval mode) from a checkpoint written by ``train``."""
    state = torch.load(path, map_location="cpu", weights_only=False)
    model = RestoreNet(RestoreConfig.from_dict(state["config"]))
    model.load_state_dict(state["model"])
    return model.eval()


def load_onnx_weights(model: RestoreNet, path: str | os.PathLike) -> RestoreNet:
    """Load the weights of an exported network (``restore_export``) back into ``model``.

    The exporter keeps every parameter as a named initializer (there is no normalisation to
    fold), so names and shapes must match exactly; SystemExit with one line otherwise.
    """
    from camheal_train.export import onnx_arrays

    try:
        _, arrays = onnx_arrays(path)
    except Exception as e:  # missing file, not an ONNX protobuf
        raise SystemExit(f"--init-onnx {path}: cannot read ({str(e).splitlines()[0][:120]})"
                         ) from None
    state = model.state_dict()
    bad = [k for k, v in state.items()
           if k not in arrays or tuple(arrays[k].shape) != tuple(v.shape)]
    if bad:
        raise SystemExit(f"--init-onnx {path}: not this architecture ({len(bad)} of "
                         f"{len(state)} tensors missing or of another shape, e.g. {bad[0]})")
    model.load_state_dict({k: torch.from_numpy(arrays[k].copy()) for k in state})
    return model


def train(a: argparse.Namespace) -> Path:
    """Run (or resume) training; returns the checkpoint path."""
    start = time.monotonic()
    _check_kornia()
    torch.set_num_threads(max(1, a.threads))
    torch.manual_seed(a.seed)
    device = _device(a.device)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    log_file = logging.FileHandler(out / "train.log")
    log_file.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    log_file.setLevel(logging.INFO)
    logger.addHandler(log_file)
    logger.setLevel(logging.INFO)  # the run's log file gets the progress lines in any case
    try:
        return _train(a, device, out, start)
    finally:
        logger.removeHandler(log_file)
        log_file.close()


def _train(a: argparse.Namespace, device: torch.device, out: Path, start: float) -> Path:
    exclude = a.exclude if a.exclude is not None else ["kodak24-", "val20-"]
    photos = list_photos(data_dir(a.data), exclude=exclude)
    if not photos:
        raise SystemExit(f"no photos in {data_dir(a.data)}")
    crop = a.crop or (160 if a.task == "restore" else 192)
    cfg = CONFIGS[a.arch or a.task]
    if cfg.task != a.task:
        raise SystemExit(f"--arch {a.arch} is a {cfg.task} network, not {a.task}")
    if crop % cfg.multiple:
        raise SystemExit(f"--crop must be a multiple of {cfg.multiple}")
    model = RestoreNet(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=a.weight_decay)
    ckpt = out / "last.pt"
    step, elapsed0 = 0, 0.0
    if ckpt.exists():
        state = torch.load(ckpt, map_location="cpu", weights_only=False)
        if RestoreConfig.from_dict(state["config"]) != cfg:
            raise SystemExit(f"{ckpt} holds another network ({state['config']}); "
                             "use a new --out")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        step, elapsed0 = int(state["step"]), float(state.get("elapsed", 0.0))
        logger.info("resumed from %s at step %d (%.0f s trained)", ckpt, step, elapsed0)
    elif a.init_onnx:
        load_onnx_weights(model, a.init_onnx)
        logger.info("weights from %s", a.init_onnx)
    model.to(device)
    for group in opt.state.values():  # optimiser moments follow the model to the device
        for k, v in group.items():
            if torch.is_tensor(v) and k != "step":
                group[k] = v.to(device)
    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = True
    limit = a.time_limit * 60.0 if a.time_limit else None
    ds = RestoreDataset(photos, a.task, crop, a.seed, mix=a.mix, saturated=a.saturated)
    val_ds = RestoreDataset(photos, a.task, crop, VAL_SEED, mix=a.mix, saturated=a.saturated)
    val = [val_ds[i] for i in range(a.val)]
    logger.info("task %s: %d photos, crop %d, batch %d, %d params, %.2f GFLOP/MP, device %s",
                a.task, len(photos), crop, a.batch, sum(p.numel() for p in model.parameters()),
                2e-3 * macs_per_pixel(model), device)
    remaining = max(0, a.steps - step)
    loader = DataLoader(ds, batch_size=a.batch, sampler=_Range(step * a.batch,
                                                               remaining * a.batch),
                        num_workers=a.workers, worker_init_fn=worker_init, drop_last=True,
                        pin_memory=cuda, prefetch_factor=4 if a.workers > 0 else None,
                        # Fresh worker processes: a fork inherits OpenCV's and OpenMP's thread
                        # pools half-alive and hung here now and then after the parent used
                        # them (making the validation pairs).
                        multiprocessing_context="spawn" if a.workers > 0 else None)
    bar = None
    if not a.no_progress:
        from tqdm import tqdm

        bar = tqdm(total=a.steps, initial=step, desc=a.task, mininterval=10, smoothing=0.05)
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if a.bf16
                else contextlib.nullcontext())
    # Stop early enough to write the checkpoint and shut the workers down inside the limit.
    margin = 8.0
    running, t_log, s_log, step_time, skipped = None, time.monotonic(), step, 0.0, 0
    elapsed = elapsed0
    model.train()
    with _Stop() as stop:
        it = iter(loader)
        while step < a.steps:
            elapsed = elapsed0 + time.monotonic() - start
            progress = step / a.steps
            if limit is not None:
                if elapsed + margin + step_time >= limit:
                    logger.info("time limit: stopping at step %d", step)
                    break
                progress = max(progress, elapsed / limit)
            if stop.requested:
                break
            t_step = time.monotonic()
            try:
                x, y = next(it)
            except StopIteration:
                break
            x = x.to(device, non_blocking=True)
            y = y.to(device, non_blocking=True)
            for g in opt.param_groups:
                g["lr"] = a.lr * lr_factor(step, progress, a.warmup, a.min_lr_frac)
            with autocast:
                pred = model(x)
            loss = task_loss(a.task, pred, x, y, a.loss)
            opt.zero_grad(set_to_none=True)
            lv = float(loss.detach())  # syncs the device once a step: fine at this size
            if math.isfinite(lv):
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                running = lv if running is None else 0.98 * running + 0.02 * lv
            else:  # a rare blown-up output: skip the batch rather than poison the moments
                skipped += 1
                logger.warning("step %d: non-finite loss (max |output| %.3g), batch skipped",
                               step, float(pred.detach().float().abs().max()))
            step += 1
            step_time = 0.9 * step_time + 0.1 * (time.monotonic() - t_step) if step_time \
                else time.monotonic() - t_step
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{running:.4f}", refresh=False)
            if step % a.log_every == 0:
                now = time.monotonic()
                logger.info("step %d loss %.5f lr %.2e %.1f samples/s elapsed %.0fs", step,
                            running, opt.param_groups[0]["lr"],
                            (step - s_log) * a.batch / max(now - t_log, 1e-6),
                            elapsed0 + now - start)
                t_log, s_log = now, step
            if step % a.ckpt_every == 0:
                save_checkpoint(ckpt, model, opt, step, elapsed0 + time.monotonic() - start, a)
        elapsed = elapsed0 + time.monotonic() - start
        save_checkpoint(ckpt, model, opt, step, elapsed, a)
        del it
    if bar is not None:
        bar.close()
    if val:
        pin, pout = validate(model, val, device)
        logger.info("validation (%d pairs, training photos, other crops): input %.2f dB -> "
                    "net %.2f dB", len(val), pin, pout)
    logger.info("step %d, %.0f s trained, loss %s, %d batches skipped, checkpoint %s", step,
                elapsed, "n/a" if running is None else f"{running:.5f}", skipped, ckpt)
    return ckpt


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    train(parse_args(argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
