"""Single source of the detector's input preprocessing and correction-parameter layout.

Shared by training (``camheal_train`` imports this module) and the daemon runtime, so the
network sees exactly the same thumbnail, crops and histogram in both places. numpy/OpenCV only.

Layout of one model input (batch dimension first, float32):
    thumb: (B, 3, THUMB, THUMB) RGB in [0, 1], the whole frame squeezed to a square.
    crops: (B, N_CROPS, 3, CROP, CROP) RGB in [0, 1], native-resolution patches taken where the
        thumbnail has the most texture (mild blur and sensor noise vanish when shrinking).
    hist: (B, HIST_FEATURES) per-channel histograms of the thumbnail, each summing to 1.

Model outputs (ONNX names in OUTPUTS):
    logits: (B, N_ANOMALIES) multi-label logits in ANOMALIES order.
    severity: (B, N_ANOMALIES) severity estimate in [0, 1].
    curves: (B, 3, N_KNOTS) per-channel tone-curve values at CURVE_X (then clipped to [0, 1]).
    matrix: (B, 3, 3) colour matrix applied after the curves (rows: output R, G, B).
    mask: (B, 1, MASK, MASK) obstruction logits at 1/8 of the thumbnail.
"""

from __future__ import annotations

import cv2
import numpy as np

from camheal.constants import ANOMALIES

THUMB = 256
CROP = 64
N_CROPS = 4
CROP_GRID = 4
MASK = THUMB // 8
N_KNOTS = 33
CURVE_X = np.linspace(0.0, 1.0, N_KNOTS, dtype=np.float32)
HIST_BINS = 32
HIST_FEATURES = 3 * HIST_BINS
N_ANOMALIES = len(ANOMALIES)
MIN_SIDE = 16

# Anomalies that the global correction (curves + matrix) is meant to fix.
GLOBAL_ANOMALIES: tuple[str, ...] = ("underexposed", "overexposed", "low_contrast", "color_cast")

INPUTS: tuple[str, ...] = ("thumb", "crops", "hist")
OUTPUTS: tuple[str, ...] = ("logits", "severity", "curves", "matrix", "mask")


def thumbnail(rgb: np.ndarray) -> np.ndarray:
    """Squeeze a frame into the model's square thumbnail.

    Two steps (bilinear to 2*THUMB, then area to THUMB) cost < 1 ms on a 1080p frame yet
    keep most of the anti-aliasing of a full area resize.

    Args:
        rgb: HxWx3 uint8 RGB, any size.

    Returns:
        THUMBxTHUMBx3 uint8 RGB (C-contiguous).
    """
    mid = cv2.resize(rgb, (2 * THUMB, 2 * THUMB), interpolation=cv2.INTER_LINEAR)
    return cv2.resize(mid, (THUMB, THUMB), interpolation=cv2.INTER_AREA)


def cell_texture(thumb: np.ndarray) -> np.ndarray:
    """Mean gradient energy (|d/dx| + |d/dy| of grey) of each CROP_GRID x CROP_GRID cell of
    the thumbnail, row-major (CROP_GRID**2 float32)."""
    gray = cv2.cvtColor(thumb, cv2.COLOR_RGB2GRAY).astype(np.float32)
    gx = cv2.Sobel(gray, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(gray, cv2.CV_32F, 0, 1, ksize=3)
    energy = np.abs(gx) + np.abs(gy)
    cell = THUMB // CROP_GRID
    return energy.reshape(CROP_GRID, cell, CROP_GRID, cell).mean(axis=(1, 3)).ravel()


def cell_origins(cells, height: int, width: int) -> list[tuple[int, int]]:
    """Top-left (y, x) corners of CROP x CROP crops centred on the given grid cells (row-major
    indices) of a frame of ``height`` x ``width`` (>= CROP), clamped inside it."""
    out = []
    for idx in cells:
        cy, cx = divmod(int(idx), CROP_GRID)
        yc = (cy + 0.5) / CROP_GRID * height
        xc = (cx + 0.5) / CROP_GRID * width
        y0 = min(max(round(yc - CROP / 2), 0), height - CROP)
        x0 = min(max(round(xc - CROP / 2), 0), width - CROP)
        out.append((y0, x0))
    return out


def crop_origins(thumb: np.ndarray, height: int, width: int,
                 texture: np.ndarray | None = None) -> list[tuple[int, int]]:
    """Top-left corners of the N_CROPS native crops, in the most textured grid cells.

    Args:
        thumb: THUMBxTHUMBx3 uint8 thumbnail of the frame.
        height, width: native frame size (>= CROP after padding, see ``crops``).
        texture: ``cell_texture(thumb)`` when already computed.

    Returns:
        N_CROPS (y, x) corners, distinct cells, in descending texture order.
    """
    texture = cell_texture(thumb) if texture is None else texture
    order = np.argsort(-texture, kind="stable")[:N_CROPS]
    return cell_origins(order, height, width)


def crops(rgb: np.ndarray, thumb: np.ndarray, texture: np.ndarray | None = None
          ) -> np.ndarray:
    """Native-resolution crops of a frame.

    Args:
        rgb: HxWx3 uint8 RGB frame (frames smaller than CROP are reflect-padded).
        thumb: its thumbnail (``thumbnail(rgb)``).

    Returns:
        N_CROPS x CROP x CROP x 3 uint8.
    """
    h, w = rgb.shape[:2]
    if h < CROP or w < CROP:
        ph, pw = max(0, CROP - h), max(0, CROP - w)
        rgb = cv2.copyMakeBorder(rgb, 0, ph, 0, pw, cv2.BORDER_REFLECT_101)
        h, w = rgb.shape[:2]
    out = np.empty((N_CROPS, CROP, CROP, 3), np.uint8)
    for i, (y, x) in enumerate(crop_origins(thumb, h, w, texture)):
        out[i] = rgb[y : y + CROP, x : x + CROP]
    return out


def histogram(thumb: np.ndarray) -> np.ndarray:
    """Per-channel normalised histograms of the thumbnail.

    Args:
        thumb: THUMBxTHUMBx3 uint8.

    Returns:
        HIST_FEATURES float32, R bins then G then B, each channel summing to 1.
    """
    counts = np.concatenate([cv2.calcHist([thumb], [c], None, [HIST_BINS], [0, 256]).ravel()
                             for c in range(3)])
    return (counts / np.float32(thumb.shape[0] * thumb.shape[1])).astype(np.float32)


def too_small(width: int, height: int, what: str = "frame") -> str:
    """Why a ``width`` x ``height`` image (called ``what`` in the message) cannot be
    analysed: the detector and the defect tracker need MIN_SIDE pixels a side; "" when it
    can. The one wording of this rule: callers raise it as their own error."""
    if width >= MIN_SIDE and height >= MIN_SIDE:
        return ""
    return f"{what} must be at least {MIN_SIDE}x{MIN_SIDE} to be analysed, got {width}x{height}"


def validate_frame(rgb: np.ndarray) -> None:
    """Raise ValueError unless ``rgb`` is an HxWx3 uint8 frame of at least MIN_SIDE pixels."""
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8:
        raise ValueError("frame must be a uint8 numpy array")
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"frame must be HxWx3, got shape {rgb.shape}")
    why = too_small(rgb.shape[1], rgb.shape[0])
    if why:
        raise ValueError(why)


def prepare(rgb: np.ndarray) -> dict[str, np.ndarray]:
    """Model inputs for one frame, as uint8/float32 arrays without the batch dimension.

    Args:
        rgb: HxWx3 uint8 RGB frame, at least MIN_SIDE on each side.

    Returns:
        {"thumb": THUMBxTHUMBx3 uint8, "crops": N_CROPSxCROPxCROPx3 uint8,
         "hist": HIST_FEATURES float32, "texture": CROP_GRID**2 float32 (``cell_texture``,
         which picked the crops; not a model input)}
    """
    validate_frame(rgb)
    rgb = np.ascontiguousarray(rgb)
    th = thumbnail(rgb)
    texture = cell_texture(th)
    return {"thumb": th, "crops": crops(rgb, th, texture), "hist": histogram(th),
            "texture": texture}


def to_model_inputs(prep: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Batch-of-one float32 tensors (layout in the module docstring) from ``prepare``'s output."""
    scale = np.float32(1.0 / 255.0)
    thumb = prep["thumb"].transpose(2, 0, 1)[None].astype(np.float32) * scale
    crop = prep["crops"].transpose(0, 3, 1, 2)[None].astype(np.float32) * scale
    return {"thumb": thumb, "crops": crop, "hist": prep["hist"][None].astype(np.float32)}
