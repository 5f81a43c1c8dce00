"""Frames as handed out: the published frame record, and sealed read-only memfds (plus plain
metadata) for one caller."""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass, field
from functools import cached_property

import cv2
import numpy as np

from camheald.errors import InvalidArgument
from camheald.vision.correct import Correction, apply_global
from camheald.vision.restore import apply_stream_ops

F_ADD_SEALS = getattr(fcntl, "F_ADD_SEALS", 1033)
F_SEAL_SEAL = getattr(fcntl, "F_SEAL_SEAL", 0x1)
F_SEAL_SHRINK = getattr(fcntl, "F_SEAL_SHRINK", 0x2)
F_SEAL_GROW = getattr(fcntl, "F_SEAL_GROW", 0x4)
F_SEAL_WRITE = getattr(fcntl, "F_SEAL_WRITE", 0x8)

FORMATS = ("rgb", "png", "jpeg")


@dataclass(frozen=True, eq=False)
class PublishedFrame:
    """A frame as handed to consumers: never modified after publication.

    ``pixels`` are the frame as the source delivered it: RGB, or BGR when ``bgr`` is set
    (OpenCV's decoders produce BGR; converting on the decoding thread would slow the thread
    that sets the frame rate, so the conversion is folded into whatever writes the final
    pixels). :attr:`image` is always RGB.

    A corrected frame is published *pending*: ``correction`` holds the global correction
    still to apply, ``restore`` the cheap local restorations after it. Consumers that need
    corrected pixels render them where they need them (:meth:`Camera.render` straight into a
    ring slot, :meth:`Camera.snapshot` into a private array), so nothing is corrected or
    converted that nobody reads.
    """

    pixels: np.ndarray  # HxWx3 uint8, RGB (BGR when ``bgr``), before ``correction``
    seq: int
    timestamp_ns: int  # CLOCK_MONOTONIC capture time
    corrected: bool
    scores: dict[str, float] = field(default_factory=dict)
    actions: tuple[str, ...] = ()
    correction: Correction | None = None  # still to apply to ``pixels``; None: nothing to do
    bgr: bool = False  # ``pixels`` are in BGR order
    #: local restorations still to apply after the correction: ("denoise"|"sharpen", severity)
    restore: tuple[tuple[str, float], ...] = ()

    @cached_property
    def image(self) -> np.ndarray:
        """HxWx3 uint8 RGB pixels before the pending correction (converted once, on first use,
        when the source delivered BGR)."""
        return to_rgb(self.pixels) if self.bgr else self.pixels

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def pending(self) -> bool:
        """Whether rendering changes the pixels (a correction or a restoration to apply)."""
        return self.correction is not None or bool(self.restore)

    def render(self, out: np.ndarray | None = None) -> np.ndarray:
        """The final RGB pixels (correction and restorations applied, channels in RGB
        order), written into ``out`` (HxWx3 uint8, C-contiguous) when given, else into a new
        array."""
        if out is None:
            out = np.empty(self.pixels.shape, np.uint8)
        if self.correction is None and not self.bgr:
            np.copyto(out, self.pixels)
        else:
            apply_global(self.pixels, self.correction, out, bgr=self.bgr)
        if self.restore:
            apply_stream_ops(out, self.restore)
        return out


def to_rgb(bgr: np.ndarray) -> np.ndarray:
    """A BGR frame in RGB order (a new array)."""
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def sealed_memfd(data: memoryview | bytes, name: str = "camheal-frame") -> int:
    """A memfd holding ``data``, sealed so nobody (us included) can change or resize it.

    Returns a read-only fd (the writable one is closed), ready to pass to a client.
    """
    fd = os.memfd_create(name, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        view = memoryview(data).cast("B")
        written = 0
        while written < len(view):
            written += os.write(fd, view[written:])
        fcntl.fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL)
        ro = os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(fd)
    return ro


def encode(image: np.ndarray, fmt: str, quality: int = 90) -> tuple[bytes | memoryview, dict]:
    """Encode an HxWx3 uint8 RGB image as raw RGB24, PNG or JPEG; returns (bytes, layout)."""
    h, w = image.shape[:2]
    layout = {"width": w, "height": h, "format": fmt}
    if fmt == "rgb":
        contiguous = np.ascontiguousarray(image)
        layout.update(stride=w * 3, pixel_format="RGB24")
        return memoryview(contiguous).cast("B"), layout
    if fmt not in FORMATS:
        raise InvalidArgument(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    ext = ".png" if fmt == "png" else ".jpg"
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if fmt == "jpeg" else []
    ok, buf = cv2.imencode(ext, cv2.cvtColor(image, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise InvalidArgument(f"could not encode the frame as {fmt}")
    return buf.tobytes(), layout


def package(frame: PublishedFrame, fmt: str = "rgb", quality: int = 90) -> tuple[int, dict]:
    """Put one published frame into a sealed memfd; returns (fd, metadata).

    A frame still pending its correction (see :class:`PublishedFrame`) is corrected first.
    """
    image = frame.render() if frame.pending else frame.image
    data, layout = encode(image, fmt, quality)
    fd = sealed_memfd(data)
    meta = dict(layout)
    meta.update(size=len(data), seq=frame.seq, timestamp_ns=frame.timestamp_ns,
                corrected=frame.corrected, scores=dict(frame.scores),
                actions=list(frame.actions))
    return fd, meta


def package_mask(mask: np.ndarray, fmt: str = "png") -> tuple[int, dict]:
    """A defect mask (HxW uint8, 255 = defect) as PNG or raw 8-bit grey in a sealed memfd."""
    h, w = mask.shape[:2]
    if fmt == "png":
        ok, buf = cv2.imencode(".png", mask)
        if not ok:
            raise InvalidArgument("could not encode the mask as PNG")
        data: bytes | memoryview = buf.tobytes()
    else:
        data = memoryview(np.ascontiguousarray(mask)).cast("B")
    fd = sealed_memfd(data, "camheal-mask")
    return fd, {"width": w, "height": h, "size": len(data), "format": fmt,
                "coverage": float((mask > 0).mean()) if mask.size else 0.0}
