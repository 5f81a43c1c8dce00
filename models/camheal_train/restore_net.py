"""RestoreNet: a small U-Net for local restoration (deblur + denoise, and inpainting).

Provenance: the encoder-decoder with skip connections is U-Net (Ronneberger et al. 2015,
arXiv:1505.04597); the lossless pixel-(un)shuffle stem and head follow ESPCN (Shi et al.
2016, arXiv:1609.05158); the block (depthwise conv, 1x1 expansion, gate, 1x1 projection, no
normalisation) is a reduced NAFNet block (Chen et al. 2022, arXiv:2204.04676, code
MIT-licensed) without its channel attention and with a sigmoid gate (GLU, Dauphin et al.
2017, arXiv:1612.08083) instead of NAFNet's product of two linear halves: without NAFNet's
LayerNorm that product let activations grow without bound, and a first trained network
overflowed to NaN on an out-of-distribution image. The zero-initialised residual scale per
block is ReZero/SkipInit (Bachlechner et al. 2020, arXiv:2003.04887; De & Smith 2020).
Conditioning a restoration network on the degradation level through constant input planes
follows FFDNet (Zhang et al. 2018, arXiv:1710.04026). No code was copied from those works.

The network has no global operation (no pooling over the image, no normalisation layer), so
a pixel depends only on a bounded neighbourhood and big images can be processed in tiles.

Tasks (``RestoreConfig.task``):

* ``restore``: input (B,5,H,W): RGB in [0,1], then two constant planes with the blur and the
  noise severity in [0,1] (the detector's scale, ``camheal_train.blur``/``noise``), or -1
  where unknown (the network then has to judge by itself); output (B,3,H,W) restored RGB
  (input + a deblurring residual switched on by the blur severity + a denoising residual
  switched on by the noise severity: fully on from 0.05, and when unknown; untrained, the
  network is the identity, and told "no blur, no noise" it stays so). Trained blind, or with
  the severities only as input planes, the network learnt to denoise but never to sharpen:
  sharpening costs on the noisy and clean images it could not tell apart.
* ``inpaint``: input (B,4,H,W): RGB in [0,1] with the masked pixels zeroed, then the mask (1 =
  hole); output (B,3,H,W): the input outside the mask, the network's fill inside it. The
  network refines a smooth push-pull fill (the pyramid interpolation of Gortler et al. 1996,
  "The Lumigraph"), which is also its input inside the hole.

H and W must be multiples of ``RestoreConfig.multiple`` (2 ** number of levels); the runtime
pads. Outputs are not clipped.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

TASKS = ("restore", "inpaint")


@dataclass(frozen=True)
class RestoreConfig:
    """Task and widths; level ``i`` works at 1/2**(i+1) of the input resolution."""

    task: str = "restore"
    widths: tuple[int, ...] = (16, 32, 48, 64)
    enc_blocks: tuple[int, ...] = (1, 1, 2, 4)  # the last level is the bottleneck
    dec_blocks: tuple[int, ...] = (1, 1, 1)  # one entry per level except the last
    kernels: tuple[int, ...] = (3, 5, 5, 7)  # depthwise kernel size per level

    def __post_init__(self) -> None:
        n = len(self.widths)
        if self.task not in TASKS:
            raise ValueError(f"unknown task {self.task!r} (known: {', '.join(TASKS)})")
        if n < 1 or len(self.enc_blocks) != n or len(self.kernels) != n \
                or len(self.dec_blocks) != n - 1:
            raise ValueError("widths, enc_blocks and kernels need one entry per level, "
                             "dec_blocks one fewer")

    @property
    def in_channels(self) -> int:
        """5 (RGB + blur and noise severity) for restore, 4 (RGB + mask) for inpaint."""
        return 4 if self.task == "inpaint" else 5

    @property
    def multiple(self) -> int:
        """Input height and width must be multiples of this."""
        return 2 ** len(self.widths)

    def to_dict(self) -> dict:
        """Plain dict (for checkpoints and ONNX metadata)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> RestoreConfig:
        """Inverse of ``to_dict``."""
        return cls(str(d["task"]), *(tuple(int(v) for v in d[k])
                                     for k in ("widths", "enc_blocks", "dec_blocks", "kernels")))


CONFIGS = {
    "restore": RestoreConfig("restore"),
    "inpaint": RestoreConfig("inpaint", (24, 48, 64, 96), (1, 2, 2, 4), (1, 1, 1), (3, 5, 5, 7)),
    "tiny-restore": RestoreConfig("restore", (4, 8), (1, 1), (1,), (3, 3)),
    "tiny-inpaint": RestoreConfig("inpaint", (4, 8), (1, 1), (1,), (3, 3)),
}


class GateBlock(nn.Module):
    """x + beta * proj(a * sigmoid(b)), (a, b) = the halves of expand(dwconv(x))."""

    def __init__(self, c: int, k: int):
        super().__init__()
        self.dw = nn.Conv2d(c, c, k, 1, k // 2, groups=c)
        self.expand = nn.Conv2d(c, 2 * c, 1)
        self.proj = nn.Conv2d(c, c, 1)
        self.beta = nn.Parameter(torch.zeros(1, c, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.expand(self.dw(x)).chunk(2, dim=1)
        return x + self.beta * self.proj(a * torch.sigmoid(b))


def push_pull(rgb: torch.Tensor, valid: torch.Tensor, levels: int) -> torch.Tensor:
    """Smooth fill of the invalid pixels: a pyramid of valid-weighted 2x2 means ("push"),
    then coarse-to-fine blending of each level's mean over its upsampled coarser fill by
    coverage ("pull"); at the coarsest level, empty cells take their neighbours' mean a few
    times over first, and what is still unreached gets mid-grey. Local (no global operation)."""
    pyr = []
    c, w = rgb * valid, valid
    for _ in range(levels):
        pyr.append((c, w))
        c, w = F.avg_pool2d(c, 2), F.avg_pool2d(w, 2)
    for _ in range(4):  # spread into coarse cells no known pixel falls in (big holes)
        cn = F.avg_pool2d(c, 3, 1, 1, count_include_pad=False)
        wn = F.avg_pool2d(w, 3, 1, 1, count_include_pad=False)
        c, w = torch.where(w > 0, c, cn), torch.where(w > 0, w, wn)
    fill = torch.where(w > 0, c / w.clamp_min(1e-6), torch.full_like(c, 0.5))
    for c, w in reversed(pyr):
        up = F.interpolate(fill, scale_factor=2.0, mode="bilinear", align_corners=False)
        fill = c / w.clamp_min(1e-6) * w + up * (1.0 - w)
    return fill


class RestoreNet(nn.Module):
    """U-Net over pixel-unshuffled input; see the module docstring for inputs and outputs."""

    def __init__(self, cfg: RestoreConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or CONFIGS["restore"]
        w, n = cfg.widths, len(cfg.widths)
        self.stem = nn.Conv2d(4 * cfg.in_channels, w[0], 3, 1, 1)
        self.enc = nn.ModuleList(nn.Sequential(*(GateBlock(w[i], cfg.kernels[i])
                                                 for _ in range(cfg.enc_blocks[i])))
                                 for i in range(n))
        self.down = nn.ModuleList(nn.Conv2d(w[i], w[i + 1], 2, 2) for i in range(n - 1))
        self.up = nn.ModuleList(nn.Conv2d(w[i + 1], 4 * w[i], 1) for i in range(n - 1))
        self.dec = nn.ModuleList(nn.Sequential(*(GateBlock(w[i], cfg.kernels[i])
                                                 for _ in range(cfg.dec_blocks[i])))
                                 for i in range(n - 1))
        # restore: one residual for blur and one for noise, each switched by its severity
        self.head = nn.Conv2d(w[0], 24 if cfg.task == "restore" else 12, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.cfg.task == "inpaint":
            hole = x[:, 3:4]
            rgb = x[:, :3] * (1.0 - hole)
            base = push_pull(rgb, 1.0 - hole, len(self.cfg.widths))
            feats = torch.cat([rgb + hole * base - 0.5, hole], 1)
        else:
            rgb = x[:, :3]
            feats = torch.cat([rgb - 0.5, x[:, 3:]], 1)
        h = self.stem(F.pixel_unshuffle(feats, 2))
        skips = []
        for i, enc in enumerate(self.enc):
            h = enc(h)
            if i < len(self.down):
                skips.append(h)
                h = self.down[i](h)
        for i in reversed(range(len(self.dec))):
            h = self.dec[i](F.pixel_shuffle(self.up[i](h), 2) + skips[i])
        r = F.pixel_shuffle(self.head(h), 2)
        if self.cfg.task == "inpaint":
            return rgb + hole * (base + r)
        sev = x[:, 3:5]
        on = torch.where(sev < 0, torch.ones_like(sev), torch.clamp(sev * 20.0, 0.0, 1.0))
        return rgb + on[:, 0:1] * r[:, 0:3] + on[:, 1:2] * r[:, 3:6]


def build(arch: str | RestoreConfig = "restore") -> RestoreNet:
    """A RestoreNet by config name (see ``CONFIGS``) or config."""
    return RestoreNet(CONFIGS[arch] if isinstance(arch, str) else arch)


def macs_per_pixel(model: RestoreNet) -> float:
    """Multiply-accumulates per input pixel (convolutions only), from the layer shapes."""
    total = 0.0
    for name, mod in model.named_modules():
        if not isinstance(mod, nn.Conv2d):
            continue
        part, _, rest = name.partition(".")
        level = 0 if part in ("stem", "head", "enc", "dec") else int(rest.split(".")[0]) + 1
        if part in ("enc", "dec"):
            level = int(rest.split(".")[0])
        k = mod.kernel_size[0] * mod.kernel_size[1] * mod.in_channels // mod.groups
        total += k * mod.out_channels * 4.0 ** -(level + 1)  # output positions per pixel
    return total
