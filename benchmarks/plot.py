"""Small horizontal bar charts drawn with OpenCV (no plotting library needed)."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

FONT = cv2.FONT_HERSHEY_SIMPLEX
COLOURS = [(180, 119, 31), (14, 127, 255), (44, 160, 44), (40, 39, 214)]  # BGR, tab10-like
S = 2  # drawn at 2x, then shrunk (anti-aliasing)


def _text(img: np.ndarray, text: str, org: tuple[int, int], scale: float = 0.5,
          colour: tuple[int, int, int] = (30, 30, 30), thick: int = 1) -> None:
    cv2.putText(img, text, (org[0] * S, org[1] * S), FONT, scale * S, colour, thick * S,
                cv2.LINE_AA)


def _width(text: str, scale: float = 0.5) -> int:
    return cv2.getTextSize(text, FONT, scale * S, S)[0][0] // S


def hbars(path: Path, title: str, labels: list[str], series: dict[str, list[float | None]],
          unit: str, width: int = 900, marker: tuple[str, float] | None = None) -> Path:
    """Grouped horizontal bars: one group per label, one bar per series (None = no bar).

    ``marker`` draws a dashed vertical line at a value, with a legend entry.
    """
    names = list(series)
    bar_h, gap = 14, 10
    label_w = max(_width(label) for label in labels) + 20
    top, bottom, right = 50, 50, 70
    group_h = bar_h * len(names) + gap
    height = top + group_h * len(labels) + bottom
    vmax = max([v for vals in series.values() for v in vals if v is not None and
                math.isfinite(v)] + ([marker[1]] if marker else []) + [1e-9]) * 1.08
    plot_w = width - label_w - right
    img = np.full((height * S, width * S, 3), 255, np.uint8)

    def x_of(v: float) -> int:
        return label_w + int(plot_w * v / vmax)

    _text(img, title, (10, 22), 0.6, thick=1)
    # grid and axis
    step = 10 ** math.floor(math.log10(vmax / 2)) if vmax > 0 else 1
    while vmax / step > 8:
        step *= 2
    v = 0.0
    while v <= vmax:
        x = x_of(v)
        cv2.line(img, (x * S, top * S), (x * S, (height - bottom) * S), (225, 225, 225), S)
        _text(img, f"{v:g}", (x - _width(f"{v:g}", 0.4) // 2, height - bottom + 16), 0.4)
        v += step
    _text(img, unit, (label_w + plot_w // 2 - _width(unit, 0.45) // 2, height - 12), 0.45)
    for gi, label in enumerate(labels):
        y0 = top + gi * group_h
        _text(img, label, (label_w - 12 - _width(label), y0 + group_h // 2 + 2), 0.5)
        for si, name in enumerate(names):
            value = series[name][gi]
            if value is None or not math.isfinite(value):
                continue
            y = y0 + si * bar_h
            cv2.rectangle(img, (label_w * S, y * S), (x_of(value) * S, (y + bar_h - 2) * S),
                          COLOURS[si % len(COLOURS)], -1)
            _text(img, f"{value:.1f}", (x_of(value) + 4, y + bar_h - 4), 0.38)
    if marker is not None:
        x = x_of(marker[1])
        for yy in range(top, height - bottom, 8):
            cv2.line(img, (x * S, yy * S), (x * S, (yy + 4) * S), (60, 60, 60), S)
    # legend
    lx = label_w
    entries = [*names, *([marker[0]] if marker else [])]
    for i, name in enumerate(entries):
        colour = COLOURS[i % len(COLOURS)] if i < len(names) else (60, 60, 60)
        cv2.rectangle(img, (lx * S, 32 * S), ((lx + 12) * S, 42 * S), colour, -1)
        _text(img, name, (lx + 16, 42), 0.42)
        lx += _width(name, 0.42) + 36
    small = cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), small, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    return path
