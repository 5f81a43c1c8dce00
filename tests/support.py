"""Helpers shared by test modules (import as ``support``)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np

BIN = Path(sys.executable).parent


def run_cli(*args: str, env: dict[str, str], timeout: float = 60.0,
            exe: str = "camheal") -> subprocess.CompletedProcess[str]:
    """Run a console script of this environment and capture its output."""
    return subprocess.run([str(BIN / exe), *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))



def make_photo(seed: int = 0, h: int = 240, w: int = 320) -> np.ndarray:
    """A photo-like HxWx3 uint8 RGB image: gradient sky, textured shapes, edges, mid-tones."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    top, bottom = rng.uniform(0.3, 0.8, 3), rng.uniform(0.2, 0.6, 3)
    img = (top * (1 - yy / h)[..., None] + bottom * (yy / h)[..., None]).astype(np.float32)
    for _ in range(12):
        color = rng.uniform(0.05, 0.95, 3).tolist()
        c = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        axes = (int(rng.integers(w // 20, w // 4)), int(rng.integers(h // 20, h // 4)))
        cv2.ellipse(img, c, axes, float(rng.uniform(0, 180)), 0, 360, color, -1, cv2.LINE_AA)
    tex = cv2.GaussianBlur(rng.standard_normal((h, w)).astype(np.float32), (0, 0), 1.2)
    img += 0.06 * tex[..., None]
    for _ in range(6):
        p0 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        p1 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        cv2.line(img, p0, p1, rng.uniform(0, 1, 3).tolist(), 2, cv2.LINE_AA)
    lo, hi = np.percentile(img.mean(axis=2), [1, 99])  # full tonal range, like a good photo
    img = 0.03 + 0.94 * (img - lo) / max(hi - lo, 1e-3)
    return np.rint(np.clip(img, 0, 1) * 255).astype(np.uint8)


def detailed_photo(seed: int = 0, h: int = 480, w: int = 640) -> np.ndarray:
    """A photo-like frame with detail at every scale (``make_photo``'s shapes over
    multi-scale texture), inside 30..225: a blur of it stays a linear blur (no clipping)."""
    rng = np.random.default_rng(seed)
    img = make_photo(seed, h, w).astype(np.float32)
    for cells, amp in ((40, 25.0), (160, 15.0)):
        small = rng.normal(0, 1, (cells * h // w, cells, 3)).astype(np.float32)
        img += amp * cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    return np.clip(30 + 0.76 * img, 0, 255).astype(np.uint8)


def copy_detector(dest: Path) -> Path:
    """Copy the shipped detector, its sidecar and the estimators it names into ``dest``;
    returns the copied detector's path."""
    import shutil

    from camheald.vision.detector import read_sidecar, shipped_weights

    src = shipped_weights()
    for name in (src.name, *read_sidecar(src).get("estimators", {}).values()):
        for f in (src.parent / name, (src.parent / name).with_suffix(".json")):
            shutil.copy(f, dest / f.name)
    return dest / src.name


def wait_for(pred, timeout: float = 10.0) -> bool:
    """Poll ``pred()`` every 20 ms until it is true (True) or ``timeout`` s pass (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    return False
