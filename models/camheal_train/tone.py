"""Global photometric degradations: under/over-exposure, low contrast, colour cast.

Functions take HxWx3 float32 sRGB in [0, 1] and a numpy Generator and return
(image, severity in [0, 1], kind). Exposure and white balance act in linear light
(kornia.color sRGB conversions), as a camera's would.
"""

from __future__ import annotations

import cv2
import numpy as np

from camheal_train._k import linear_to_srgb, srgb_to_linear

_LUMA = np.array([0.2126, 0.7152, 0.0722], np.float32)


def luma(img: np.ndarray) -> np.ndarray:
    """HxW luminance-like weighted sum of an RGB image."""
    return img @ _LUMA


def underexposed(img: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, float, str]:
    """Exposure too short: linear gain chosen so the mean lands at 0.02..0.2 (gain <= 0.5)."""
    target = rng.uniform(0.02, 0.2)
    cur = max(float(luma(img).mean()), 1e-3)
    gain = min((target / cur) ** 2.2, 0.5)
    kind = str(rng.choice(["gain", "gain", "gamma", "srgb_scale"]))
    if kind == "gain":
        out = linear_to_srgb(srgb_to_linear(img) * gain)
    elif kind == "gamma":  # a too-steep tone curve
        gamma = float(np.clip(np.log(target) / np.log(min(cur, 0.95)), 1.8, 4.0))
        out = img**gamma
        gain = max(float(luma(out).mean()) / cur, 1e-3) ** 2.2
    else:  # scaling the encoded values
        out = img * min(target / cur, 0.55)
        gain = min(target / cur, 0.55) ** 2.2
    if rng.random() < 0.3:  # crushed blacks from a bad black level
        kind = "crushed"
        b = rng.uniform(0.01, 0.05)
        out = np.clip((out - b) / (1 - b), 0, 1)
    sev = float(np.clip(np.log2(1 / gain) / 5.0, 0.15, 1.0))
    return out.astype(np.float32), sev, kind


def overexposed(img: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, float, str]:
    """Exposure too long: linear gain 1.8..8 with sensor clipping, optional soft shoulder."""
    lin = srgb_to_linear(img)
    cur = max(float(luma(img).mean()), 1e-3)
    target = rng.uniform(0.62, 0.92)
    gain = max((target / cur) ** 2.2, 1.8)
    gain = min(gain, 12.0)
    kind = str(rng.choice(["clip", "clip", "shoulder", "gamma", "srgb_scale"]))
    if kind in ("clip", "shoulder"):
        lin = lin * gain
        if kind == "shoulder":
            lin = 1 - np.exp(-lin * rng.uniform(1.0, 1.6))
        out = linear_to_srgb(lin)
    elif kind == "gamma":  # a too-flat tone curve lifting everything
        gamma = float(np.clip(np.log(target) / np.log(min(max(cur, 0.05), 0.95)), 0.2, 0.55))
        out = img**gamma
    else:  # scaling the encoded values, then clipping
        out = np.clip(img * max(target / cur, 1.5) + rng.uniform(0, 0.1), 0, 1)
    sev = float(np.clip(np.log2(gain) / 3.0, 0.15, 1.0))
    return out.astype(np.float32), sev, kind


def low_contrast(img: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, float, str]:
    """Haze, flare veil or washed-out tone: contrast reduced to 25..65 % of the original."""
    kind = str(rng.choice(["haze", "veil", "washed", "blend_grey"]))
    k = rng.uniform(0.25, 0.65)
    h, w = img.shape[:2]
    if kind == "haze":
        a = rng.uniform(0.6, 1.0) * (1 + rng.normal(0, 0.04, 3))
        out = img * k + (1 - k) * a.astype(np.float32)
    elif kind == "veil":
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        cx, cy = rng.uniform(-0.3, 1.3) * w, rng.uniform(-0.3, 1.3) * h
        d = np.hypot(xx - cx, yy - cy) / max(h, w)
        glow = np.exp(-((d / rng.uniform(0.4, 1.5)) ** 2))
        glow = (1 - k) * (0.6 + 0.4 * glow / max(glow.max(), 1e-6))
        tint = (1 + rng.normal(0, 0.05, 3)).astype(np.float32)
        out = img * (1 - glow[..., None]) + glow[..., None] * tint * rng.uniform(0.75, 1.0)
    elif kind == "blend_grey":  # PIL ImageEnhance.Contrast style: towards the mean grey
        out = img * k + (1 - k) * float(luma(img).mean())
    else:
        m = float(img.mean())
        pivot = rng.uniform(min(m, 0.5), 0.7)
        out = (img - m) * k + pivot
        gray = luma(out)[..., None]
        out = gray + (out - gray) * rng.uniform(0.5, 1.0)
    sev = float(np.clip((1 - k) / 0.75, 0.15, 1.0))
    return np.clip(out, 0, 1).astype(np.float32), sev, kind


def cast_gains(rng: np.random.Generator, lo: float, hi: float) -> np.ndarray:
    """Per-channel linear gains whose log deviation from grey has norm in [lo, hi]."""
    d = rng.normal(0, 1, 3)
    d -= d.mean()
    d /= max(np.linalg.norm(d), 1e-6)
    return np.exp(d * rng.uniform(lo, hi)).astype(np.float32)


def color_cast(img: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, float, str]:
    """Wrong white balance (per-channel gains in linear light) or a tinted colour matrix."""
    lin = srgb_to_linear(img)
    kind = str(rng.choice(["white_balance", "white_balance", "matrix", "srgb_gain", "overlay"]))
    if kind in ("srgb_gain", "overlay"):  # casts made on the encoded values
        tint = cast_gains(rng, 0.25, 0.8)
        if kind == "srgb_gain":
            out = img * tint / tint.max() * rng.uniform(1.0, 1.15)
        else:
            a = rng.uniform(0.15, 0.4)
            color = np.clip(tint / tint.max(), 0, 1) * rng.uniform(0.6, 1.0)
            out = img * (1 - a) + a * color * luma(img)[..., None] * 2
        mag = float(np.linalg.norm(np.log(tint) - np.log(tint).mean()))
        sev = float(np.clip(mag / 1.0, 0.15, 1.0))
        return np.clip(out, 0, 1).astype(np.float32), sev, kind
    if kind == "white_balance":
        if rng.random() < 0.5:  # along the warm/cool (Planckian-ish) axis
            t = rng.choice([-1, 1]) * rng.uniform(0.25, 0.8)
            g = np.exp(np.array([t, 0.15 * t, -t]) + rng.normal(0, 0.05, 3)).astype(np.float32)
        else:
            g = cast_gains(rng, 0.3, 0.9)
        mag = float(np.linalg.norm(np.log(g) - np.log(g).mean()))
        out = lin * g / g.mean()
    else:
        tint = cast_gains(rng, 0.4, 1.0)
        m = np.eye(3, dtype=np.float32) * rng.uniform(0.6, 0.9)
        m += (1 - m[0, 0]) * np.outer(tint / tint.sum(), np.ones(3)).astype(np.float32)
        out = lin @ (m * tint[:, None]).T
        mag = float(np.linalg.norm(np.log(tint) - np.log(tint).mean()))
    sev = float(np.clip(mag / 1.0, 0.15, 1.0))
    return linear_to_srgb(out).astype(np.float32), sev, kind


def clean_jitter(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Harmless variations a good camera makes (+-0.3 EV, slight WB, contrast, sharpening).

    Used on "clean" samples so the detector learns where normal ends.
    """
    out = img
    if rng.random() < 0.5:
        g = np.exp(rng.normal(0, 0.03, 3)).astype(np.float32)
        out = linear_to_srgb(srgb_to_linear(out) * g * rng.uniform(0.8, 1.25))
    if rng.random() < 0.3:
        k = rng.uniform(0.9, 1.12)
        out = (out - out.mean()) * k + out.mean()
    if rng.random() < 0.2:
        blur = cv2.GaussianBlur(out, (0, 0), 1.0)
        out = out + rng.uniform(0.2, 0.8) * (out - blur)
    return np.clip(out, 0, 1).astype(np.float32)
