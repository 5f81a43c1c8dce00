"""Lens obstructions: dirt, smudge, finger, scratch, crack, raindrops.

Each function takes HxWx3 float32 RGB in [0, 1] and a numpy Generator and returns
(image, alpha) where alpha is an HxW float32 map in [0, 1] of how much of the scene is hidden.
"""

from __future__ import annotations

import cv2
import numpy as np


def _feather(mask: np.ndarray, sigma: float) -> np.ndarray:
    if sigma <= 0.3:
        return mask
    return cv2.GaussianBlur(mask, (0, 0), sigma)


def blob_polygon(rng: np.random.Generator, cx: float, cy: float, radius: float,
                 aspect: float = 1.0) -> np.ndarray:
    """Closed random smooth blob outline (N x 2 int32, 1/16 px fixed point)."""
    theta = np.linspace(0, 2 * np.pi, 48, endpoint=False)
    r = np.ones_like(theta)
    for k in range(2, 6):
        r += rng.uniform(0, 0.25 / k * 2) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    rot = rng.uniform(0, np.pi)
    x = radius * r * np.cos(theta) * aspect
    y = radius * r * np.sin(theta) / aspect
    xr = cx + x * np.cos(rot) - y * np.sin(rot)
    yr = cy + x * np.sin(rot) + y * np.cos(rot)
    return (np.stack([xr, yr], 1) * 16).astype(np.int32)


def noise_region(rng: np.random.Generator, h: int, w: int, coverage: float) -> np.ndarray:
    """Organic region covering about ``coverage`` of the frame (thresholded smooth noise)."""
    g = int(rng.integers(3, 9))
    low = rng.random((g, g)).astype(np.float32)
    field = cv2.resize(low, (w, h), interpolation=cv2.INTER_CUBIC)
    thr = np.quantile(field, 1.0 - coverage)
    return (field > thr).astype(np.float32)


def _composite(img: np.ndarray, layer: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    a = alpha[..., None]
    return img * (1.0 - a) + layer * a


def dirt(img: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Specks and spots of dirt: dark, semi-opaque, out-of-focus blobs."""
    h, w = img.shape[:2]
    s = min(h, w)
    alpha = np.zeros((h, w), np.float32)
    for _ in range(int(rng.integers(1, 25))):
        poly = blob_polygon(rng, rng.uniform(0, w), rng.uniform(0, h),
                            s * rng.uniform(0.012, 0.08), rng.uniform(0.6, 1.6))
        layer = np.zeros_like(alpha)
        cv2.fillPoly(layer, [poly], float(rng.uniform(0.5, 1.0)), cv2.LINE_AA, shift=4)
        alpha = np.maximum(alpha, layer)
    alpha = _feather(alpha, rng.uniform(0.5, 0.02 * s))
    color = rng.uniform(0.02, 0.4) * np.array([1.0, rng.uniform(0.8, 1.0), rng.uniform(0.6, 1.0)])
    return _composite(img, color.astype(np.float32), alpha), alpha


def smudge(img: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Greasy smear: a region where the scene is strongly blurred and veiled."""
    h, w = img.shape[:2]
    region = noise_region(rng, h, w, rng.uniform(0.08, 0.5))
    alpha = _feather(region, rng.uniform(2, 0.05 * min(h, w))) * rng.uniform(0.75, 1.0)
    sigma = rng.uniform(4, 14)
    layer = cv2.GaussianBlur(img, (0, 0), sigma)
    veil = rng.uniform(0.05, 0.35)
    layer = layer * (1 - veil) + veil * rng.uniform(0.7, 1.0)
    return _composite(img, layer.astype(np.float32), alpha), alpha


def finger(img: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A fingertip over part of the lens: a large, very soft blob entering from an edge."""
    h, w = img.shape[:2]
    s = min(h, w)
    side = int(rng.integers(4))
    t = rng.uniform(0, 1)
    cx, cy = [(t * w, -0.05 * h), (t * w, 1.05 * h), (-0.05 * w, t * h), (1.05 * w, t * h)][side]
    alpha = np.zeros((h, w), np.float32)
    poly = blob_polygon(rng, cx, cy, s * rng.uniform(0.25, 0.65), rng.uniform(0.7, 1.4))
    cv2.fillPoly(alpha, [poly], 1.0, cv2.LINE_AA, shift=4)
    alpha = _feather(alpha, s * rng.uniform(0.02, 0.1)) * rng.uniform(0.9, 1.0)
    base = np.array([rng.uniform(0.25, 0.7), rng.uniform(0.12, 0.45), rng.uniform(0.08, 0.35)])
    base *= rng.uniform(0.2, 1.2)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    shade = 1.0 - 0.5 * np.clip(np.hypot(xx - cx, yy - cy) / s, 0, 1)
    layer = np.clip(shade[..., None] * base.astype(np.float32), 0, 1)
    return _composite(img, layer, alpha), alpha


def _bezier(rng: np.random.Generator, p0: np.ndarray, p1: np.ndarray, n: int = 40) -> np.ndarray:
    ctrl = (p0 + p1) / 2 + rng.normal(0, 0.25, 2) * np.linalg.norm(p1 - p0)
    t = np.linspace(0, 1, n)[:, None]
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * ctrl + t**2 * p1


def scratch(img: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Scratches on the lens: thin long bright or dark curves."""
    h, w = img.shape[:2]
    s = min(h, w)
    alpha = np.zeros((h, w), np.float32)
    for _ in range(int(rng.integers(1, 6))):
        p0 = rng.uniform(0, 1, 2) * [w, h]
        ang = rng.uniform(0, 2 * np.pi)
        p1 = p0 + rng.uniform(0.3, 1.0) * s * np.array([np.cos(ang), np.sin(ang)])
        pts = (_bezier(rng, p0, p1) * 16).astype(np.int32)
        cv2.polylines(alpha, [pts], False, float(rng.uniform(0.6, 1.0)),
                      int(rng.integers(1, 4)), cv2.LINE_AA, shift=4)
    alpha = _feather(alpha, rng.uniform(0.0, 1.0))
    color = np.float32(rng.uniform(0.75, 1.0) if rng.random() < 0.7 else rng.uniform(0, 0.15))
    return _composite(img, np.full(3, color, np.float32), alpha), alpha


def crack(img: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Cracked cover glass: branching jagged bright lines from an impact point."""
    h, w = img.shape[:2]
    s = min(h, w)
    alpha = np.zeros((h, w), np.float32)
    origin = rng.uniform(0.1, 0.9, 2) * [w, h]
    stack = [(origin, rng.uniform(0, 2 * np.pi), 0) for _ in range(int(rng.integers(3, 9)))]
    while stack:
        p, ang, depth = stack.pop()
        pts = [p]
        for _ in range(int(rng.integers(4, 14))):
            ang += rng.normal(0, 0.35)
            p = p + rng.uniform(0.02, 0.07) * s * np.array([np.cos(ang), np.sin(ang)])
            pts.append(p)
            if depth < 2 and rng.random() < 0.12:
                stack.append((p, ang + rng.choice([-1, 1]) * rng.uniform(0.4, 1.2), depth + 1))
        poly = (np.array(pts) * 16).astype(np.int32)
        cv2.polylines(alpha, [poly], False, float(rng.uniform(0.6, 1.0)),
                      int(rng.integers(1, 3)), cv2.LINE_AA, shift=4)
    color = np.float32(rng.uniform(0.8, 1.0))
    return _composite(img, np.full(3, color, np.float32), alpha), alpha


def raindrops(img: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Water drops on the lens: round blobs showing a blurred, flipped bit of the scene."""
    h, w = img.shape[:2]
    s = min(h, w)
    alpha = np.zeros((h, w), np.float32)
    for _ in range(int(rng.integers(2, 40))):
        poly = blob_polygon(rng, rng.uniform(0, w), rng.uniform(0, h),
                            s * rng.uniform(0.015, 0.09), rng.uniform(0.7, 1.3))
        cv2.fillPoly(alpha, [poly], 1.0, cv2.LINE_AA, shift=4)
    alpha = _feather(alpha, rng.uniform(0.5, 2.5))
    layer = cv2.GaussianBlur(img[::-1], (0, 0), rng.uniform(2, 8))
    layer = np.clip(layer * rng.uniform(0.8, 1.25) + rng.uniform(-0.05, 0.1), 0, 1)
    rim = np.clip(alpha - cv2.erode(alpha, np.ones((5, 5), np.uint8)), 0, 1)
    layer = np.clip(layer - 0.4 * rim[..., None], 0, 1).astype(np.float32)
    return _composite(img, layer, alpha * rng.uniform(0.85, 1.0)), alpha


def patch(img: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Opaque occluders (tape, sticker, debris): hard-edged rectangles, ellipses, polygons."""
    h, w = img.shape[:2]
    s = min(h, w)
    alpha = np.zeros((h, w), np.float32)
    layer = np.zeros_like(img)
    for _ in range(int(rng.integers(1, 4))):
        m = np.zeros((h, w), np.uint8)
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        r = s * rng.uniform(0.05, 0.3)
        kind = rng.integers(3)
        if kind == 0:
            cv2.rectangle(m, (int(cx - r), int(cy - r * rng.uniform(0.3, 1.5))),
                          (int(cx + r), int(cy + r * rng.uniform(0.3, 1.5))), 1, -1)
        elif kind == 1:
            cv2.ellipse(m, (int(cx), int(cy)), (int(r), int(r * rng.uniform(0.4, 1.0))),
                        rng.uniform(0, 180), 0, 360, 1, -1)
        else:
            pts = np.stack([cx + rng.uniform(-r, r, 5), cy + rng.uniform(-r, r, 5)], 1)
            cv2.fillPoly(m, [pts.astype(np.int32)], 1)
        sel = m > 0
        layer[sel] = rng.uniform(0, 1, 3) * (rng.uniform(0, 0.4) if rng.random() < 0.6 else 1)
        alpha[sel] = rng.uniform(0.85, 1.0)
    alpha = _feather(alpha, rng.uniform(0.0, 1.5))
    return _composite(img, layer, alpha), alpha


KINDS = {"patch": patch, "dirt": dirt, "smudge": smudge, "finger": finger, "scratch": scratch,
         "crack": crack, "raindrops": raindrops}


def obstruct(img: np.ndarray, rng: np.random.Generator
             ) -> tuple[np.ndarray, np.ndarray, float, str]:
    """Random obstruction; returns (image, alpha HxW, severity, kind)."""
    kind = str(rng.choice(list(KINDS)))
    for _ in range(4):
        out, alpha = KINDS[kind](img, rng)
        cover = float((alpha > 0.25).mean())
        if cover > 0.002:
            break
    sev = float(np.clip(np.sqrt(cover / 0.4), 0.1, 1.0))
    return np.clip(out, 0, 1).astype(np.float32), alpha.astype(np.float32), sev, kind


def obstruction_mask(kind: str, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """Only the HxW float32 alpha map in [0, 1] of one obstruction kind (for hole masks)."""
    _, alpha = KINDS[kind](np.full((h, w, 3), 0.5, np.float32), rng)
    return alpha.astype(np.float32)
