"""CamhealNet: a small multi-head CNN (anomaly logits, severities, global correction, mask).

Provenance: depthwise-separable convolutions follow MobileNet (Howard et al. 2017,
arXiv:1704.04861) and the patchify stem follows ConvNeXt (Liu et al. 2022, arXiv:2201.03545,
code MIT-licensed); predicting a global colour/tone transform to apply at full resolution
is the idea of HDRNet (Gharbi et al. 2017) and of CURL (Moran et al. 2020, arXiv:1911.07911),
reduced here to per-channel curves plus a 3x3 matrix. The optional obstruction branch adds
a second look at the thumbnail whose outputs are residuals on the main network's (zero-
initialised, as in ControlNet's zero convolutions, Zhang et al. 2023, arXiv:2302.05543,
Apache-2.0 code; nothing copied), so it can be trained alone on a frozen network.
No code was copied from those works.

Inputs/outputs follow ``camheald.vision.spec`` (the layout is documented there).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import torch
from torch import nn

from camheal.constants import ANOMALIES
from camheald.vision import spec

_OBSTRUCTION = ANOMALIES.index("obstruction")


@dataclass(frozen=True)
class NetConfig:
    """Channel widths of the three branches and the head; ``obs``: widths of the optional
    obstruction branch (:class:`ObstructionBranch`; empty: none)."""

    thumb: tuple[int, int, int, int, int] = (16, 24, 40, 64, 96)
    crop: tuple[int, int, int, int] = (12, 24, 32, 48)
    hist: int = 64
    head: int = 192
    obs: tuple[int, ...] = ()

    def to_dict(self) -> dict:
        """Plain dict (for checkpoints and ONNX metadata)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> NetConfig:
        """Inverse of ``to_dict`` (configs written before ``obs`` existed have none)."""
        return cls(tuple(d["thumb"]), tuple(d["crop"]), int(d["hist"]), int(d["head"]),
                   tuple(d.get("obs", ())))

    def without_obs(self) -> NetConfig:
        """The same network without the obstruction branch."""
        return replace(self, obs=())


CONFIGS = {
    "small": NetConfig(),
    "medium": NetConfig((16, 32, 56, 96, 144), (16, 32, 48, 64), 96, 256),
    "tiny": NetConfig((4, 4, 8, 8, 8), (4, 4, 8, 8), 8, 16),
    "small-obs": NetConfig(obs=(12, 16, 24, 32)),
    "tiny-obs": NetConfig((4, 4, 8, 8, 8), (4, 4, 8, 8), 8, 16, (4, 4, 8, 8)),
}


def _cbr(cin: int, cout: int, k: int, s: int, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, s, k // 2 if k % 2 else 0, groups=groups,
                                   bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class DSBlock(nn.Module):
    """Depthwise 3x3 (optionally strided) + pointwise 1x1, residual when shapes match."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.dw = _cbr(cin, cin, 3, stride, groups=cin)
        self.pw = _cbr(cin, cout, 1, 1)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.pw(self.dw(x))
        return x + y if self.residual else y


class ObstructionBranch(nn.Module):
    """A second look for lens obstructions (dirt, smudges, cracks, fingers), trained alone.

    Reads the thumbnail through a patchify stem of its own (1/4 resolution), joins the main
    network's 1/8-resolution stage-1 features and its head vector as context,
    and returns residuals for the main network's obstruction logit and mask logits. Both
    output layers start at zero, so a network with a fresh branch computes exactly what it
    computed without one.

    forward(thumb (B,3,T,T), f8 (B,C8,T/8,T/8), head (B,H)) returns
    (logit residual (B,1), mask residual (B,1,T/8,T/8)).
    """

    def __init__(self, widths: tuple[int, ...], f8_channels: int, head: int):
        super().__init__()
        w = widths
        self.stem = _cbr(3, w[0], 4, 4)
        self.down = nn.Sequential(DSBlock(w[0], w[1]), DSBlock(w[1], w[2], 2))
        self.mix = nn.Sequential(_cbr(w[2] + f8_channels, w[3], 1, 1), DSBlock(w[3], w[3]),
                                 DSBlock(w[3], w[3]))
        self.ctx = nn.Sequential(DSBlock(w[3], w[3], 2), DSBlock(w[3], w[3]))
        self.ctx_proj = nn.Linear(2 * w[3] + head, w[3])
        self.mask_out = nn.Sequential(DSBlock(w[3], w[3]), nn.Conv2d(w[3], 1, 1))
        feat = 4 * w[3] + 2 + head
        self.cls = nn.Sequential(nn.LayerNorm(feat), nn.Linear(feat, 48), nn.SiLU(),
                                 nn.Linear(48, 1))
        for layer in (self.mask_out[1], self.cls[3]):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, thumb: torch.Tensor, f8: torch.Tensor, head: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.mix(torch.cat([self.down(self.stem(thumb)), f8], 1))
        c = self.ctx(x)
        pooled = torch.cat([c.mean(dim=(2, 3)), c.amax(dim=(2, 3))], 1)
        ctx = self.ctx_proj(torch.cat([pooled, head], 1))
        mask = self.mask_out(x + ctx[:, :, None, None])
        g = torch.cat([x.mean(dim=(2, 3)), x.amax(dim=(2, 3)), pooled,
                       mask.mean(dim=(2, 3)), mask.amax(dim=(2, 3)), head], 1)
        return self.cls(g), mask


class CamhealNet(nn.Module):
    """Detector + global-correction network.

    forward(thumb (B,3,T,T), crops (B,N,3,C,C), hist (B,F)) in [0,1] returns the tuple
    (logits (B,7), severity (B,7) in [0,1], curves (B,3,K), matrix (B,3,3),
    mask logits (B,1,T/8,T/8)).
    """

    def __init__(self, cfg: NetConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or NetConfig()
        t = cfg.thumb
        self.stem = _cbr(3, t[0], 4, 4)
        self.stage1 = nn.Sequential(DSBlock(t[0], t[1]), DSBlock(t[1], t[2], 2),
                                    DSBlock(t[2], t[2]))
        self.stage2 = nn.Sequential(DSBlock(t[2], t[3], 2), DSBlock(t[3], t[3]),
                                    DSBlock(t[3], t[4], 2), DSBlock(t[4], t[4]))
        c = cfg.crop
        self.crop_net = nn.Sequential(_cbr(6, c[0], 3, 1), DSBlock(c[0], c[1], 2),
                                      DSBlock(c[1], c[2], 2), DSBlock(c[2], c[3], 2))
        # SiLU in the fully connected parts: with ReLU most head units died early in training
        # (a first run lost 167 of 192 and never learned obstruction or colour cast).
        self.hist_net = nn.Sequential(nn.Linear(spec.HIST_FEATURES, cfg.hist), nn.SiLU())
        feat = 2 * t[4] + 4 * c[3] + cfg.hist
        self.head = nn.Sequential(nn.LayerNorm(feat), nn.Linear(feat, cfg.head), nn.SiLU())
        n = spec.N_ANOMALIES
        self.out_cls = nn.Linear(cfg.head, 2 * n)
        self.out_curve = nn.Linear(cfg.head, 3 * spec.N_KNOTS + 9)
        self.mask_ctx = nn.Linear(cfg.head, t[2])
        self.mask_head = nn.Sequential(_cbr(t[2], t[2], 3, 1), nn.Conv2d(t[2], 1, 1))
        nn.init.zeros_(self.out_curve.weight)
        nn.init.zeros_(self.out_curve.bias)
        self.obs = ObstructionBranch(cfg.obs, t[2], cfg.head) if cfg.obs else None
        self.register_buffer("curve_x", torch.from_numpy(spec.CURVE_X.copy()), persistent=False)

    def _crops(self, crops: torch.Tensor) -> torch.Tensor:
        b, n = crops.shape[:2]
        x = crops.reshape(b * n, *crops.shape[2:])
        mean = x.mean(dim=(2, 3), keepdim=True)
        centred = x - mean
        std = centred.pow(2).mean(dim=(1, 2, 3), keepdim=True).sqrt()
        f = self.crop_net(torch.cat([centred, centred / (std + 0.02)], 1))
        f = torch.cat([f.mean(dim=(2, 3)), f.amax(dim=(2, 3))], 1).reshape(b, n, -1)
        return torch.cat([f.mean(1), f.amax(1)], 1)

    def forward(self, thumb: torch.Tensor, crops: torch.Tensor, hist: torch.Tensor):
        f8 = self.stage1(self.stem(thumb))
        f = self.stage2(f8)
        g = torch.cat([f.mean(dim=(2, 3)), f.amax(dim=(2, 3)), self._crops(crops),
                       self.hist_net(hist)], 1)
        h = self.head(g)
        n = spec.N_ANOMALIES
        cls = self.out_cls(h)
        logits, severity = cls[:, :n], torch.sigmoid(cls[:, n:])
        cm = self.out_curve(h)
        curves = self.curve_x + cm[:, : 3 * spec.N_KNOTS].reshape(-1, 3, spec.N_KNOTS)
        matrix = torch.eye(3, device=h.device) + 0.5 * cm[:, 3 * spec.N_KNOTS :].reshape(-1, 3, 3)
        mask = self.mask_head(f8 + self.mask_ctx(h)[:, :, None, None])
        if self.obs is not None:
            extra, extra_mask = self.obs(thumb, f8, h)
            i = _OBSTRUCTION
            logits = torch.cat([logits[:, :i], logits[:, i : i + 1] + extra,
                                logits[:, i + 1 :]], 1)
            mask = mask + extra_mask
        return logits, severity, curves, matrix, mask


def build(arch: str | NetConfig = "small") -> CamhealNet:
    """A CamhealNet by config name ("small", "tiny", "small-obs", ...) or config."""
    return CamhealNet(CONFIGS[arch] if isinstance(arch, str) else arch)
