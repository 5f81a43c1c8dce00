"""Safe still-image reading and atomic writing for the offline tools (OpenCV codecs).

Image dimensions are read from the file header before anything is decoded, so a tiny file
announcing 50000x50000 pixels is refused instead of allocating gigabytes.
"""

from __future__ import annotations

import os
import stat
import struct
from pathlib import Path

import cv2
import numpy as np

from camheal.files import write_atomic

MAX_PIXELS = 80_000_000
MAX_BYTES = 512 * 1024 * 1024

# format family -> file extensions OpenCV writes for it
FAMILIES = {"png": (".png",), "jpeg": (".jpg", ".jpeg", ".jpe"), "bmp": (".bmp",),
            "tiff": (".tif", ".tiff"), "webp": (".webp",), "pnm": (".ppm", ".pgm", ".pnm")}
# the largest side each encoder takes (OpenCV's WebP and libjpeg refuse more)
MAX_SIDE = {"webp": 16383, "jpeg": 65500}


class ImageError(Exception):
    """An input image is missing, unreadable, unsupported, truncated or too large."""


def _png(b: bytes) -> tuple[int, int]:
    if len(b) < 33 or b[12:16] != b"IHDR":
        raise ImageError("truncated PNG header")
    w, h = struct.unpack(">II", b[16:24])
    return w, h


def _jpeg(b: bytes) -> tuple[int, int]:
    i = 2
    while i + 9 < len(b):
        if b[i] != 0xFF:
            raise ImageError("corrupt JPEG header")
        marker = b[i + 1]
        if marker == 0xFF:
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        seg = struct.unpack(">H", b[i + 2 : i + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE,
                      0xCF):
            h, w = struct.unpack(">HH", b[i + 5 : i + 9])
            return w, h
        i += 2 + seg
    raise ImageError("truncated JPEG file (no frame header)")


def _bmp(b: bytes) -> tuple[int, int]:
    if len(b) < 26:
        raise ImageError("truncated BMP header")
    w, h = struct.unpack("<ii", b[18:26])
    return abs(w), abs(h)


def _webp(b: bytes) -> tuple[int, int]:
    if len(b) < 30:
        raise ImageError("truncated WebP header")
    kind = b[12:16]
    if kind == b"VP8 ":
        w, h = struct.unpack("<HH", b[26:30])
        return w & 0x3FFF, h & 0x3FFF
    if kind == b"VP8L":
        v = int.from_bytes(b[21:25], "little")
        return (v & 0x3FFF) + 1, ((v >> 14) & 0x3FFF) + 1
    if kind == b"VP8X":
        return int.from_bytes(b[24:27], "little") + 1, int.from_bytes(b[27:30], "little") + 1
    raise ImageError("unsupported WebP variant")


def _tiff(b: bytes) -> tuple[int, int]:
    end = "<" if b[:2] == b"II" else ">"
    try:
        (off,) = struct.unpack(end + "I", b[4:8])
        (n,) = struct.unpack(end + "H", b[off : off + 2])
        dims = {}
        for k in range(n):
            e = b[off + 2 + 12 * k : off + 14 + 12 * k]
            tag, typ = struct.unpack(end + "HH", e[:4])
            if tag in (256, 257):
                dims[tag] = struct.unpack(end + ("H" if typ == 3 else "I"), e[8 : 10 if typ == 3
                                                                                 else 12])[0]
        return dims[256], dims[257]
    except (struct.error, KeyError):
        raise ImageError("truncated or corrupt TIFF header") from None


def _pnm(b: bytes) -> tuple[int, int]:
    toks: list[bytes] = []
    for line in b[:1024].split(b"\n"):
        toks += line.split(b"#")[0].split()
        if len(toks) >= 3:
            if not (toks[1].isdigit() and toks[2].isdigit()):
                size = b" ".join(toks[1:3]).decode("ascii", "replace")
                raise ImageError(f"corrupt PNM header (size {size!r})")
            return int(toks[1]), int(toks[2])
    raise ImageError("truncated PNM header")


def sniff(data: bytes) -> tuple[str, int, int]:
    """(format family, width, height) from an image file's first bytes.

    Raises:
        ImageError: unknown format or broken header.
    """
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return ("png", *_png(data))
    if data.startswith(b"\xff\xd8"):
        return ("jpeg", *_jpeg(data))
    if data.startswith(b"BM"):
        return ("bmp", *_bmp(data))
    if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        return ("webp", *_webp(data))
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return ("tiff", *_tiff(data))
    if data[:2] in (b"P5", b"P6"):
        return ("pnm", *_pnm(data))
    raise ImageError("not a supported image (PNG, JPEG, BMP, WebP, TIFF, PPM, PGM)")


def _jpeg_ends(b: bytes) -> bool:
    """Whether a JPEG file's end-of-image marker follows its first scan.

    The headers before the scan are skipped by their lengths, so that the end marker of an
    EXIF thumbnail does not count; in the entropy-coded data no 0xFF 0xD9 can occur.
    """
    i = 2
    while i + 4 <= len(b):
        marker = b[i + 1]
        if b[i] != 0xFF or marker == 0xDA:  # the scan (or stray bytes: search from there)
            return b.find(b"\xff\xd9", i) >= 0
        if marker == 0xFF:
            i += 1
        elif marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
        else:
            i += 2 + struct.unpack(">H", b[i + 2 : i + 4])[0]
    return False


def check_complete(family: str, data: bytes) -> None:
    """Raise ImageError when a PNG/JPEG file ends before its end marker (decoders would pad
    it). Data after the marker is allowed: a Motion Photo is a JPEG with a video after it."""
    # a PNG's IEND chunk: length 0, then its type
    if family == "png" and data.find(b"\x00\x00\x00\x00IEND", 33) < 0:
        raise ImageError("truncated PNG file (no IEND chunk)")
    if family == "jpeg" and not _jpeg_ends(data):
        raise ImageError("truncated JPEG file (no end-of-image marker)")


def read_file(path: str | os.PathLike) -> bytes:
    """An image file's bytes, read once: a regular file, not empty, at most MAX_BYTES.

    Raises:
        ImageError: with a short human-readable reason.
    """
    p = Path(path)
    try:
        st = p.stat()
        if stat.S_ISDIR(st.st_mode):
            raise ImageError("is a directory")
        if not stat.S_ISREG(st.st_mode):  # a device or pipe: no size to check (/dev/zero)
            raise ImageError("not a regular file")
        if st.st_size > MAX_BYTES:
            raise ImageError(f"file too large ({st.st_size} bytes)")
        with p.open("rb") as f:
            data = f.read(MAX_BYTES + 1)  # (it may have grown since)
        if len(data) > MAX_BYTES:
            raise ImageError(f"file too large (over {MAX_BYTES} bytes)")
    except FileNotFoundError:
        raise ImageError("no such file") from None
    except PermissionError:
        raise ImageError("permission denied") from None
    except OSError as e:
        raise ImageError(e.strerror or str(e)) from None
    if not data:
        raise ImageError("empty file")
    return data


def decode_rgb(data: bytes, max_pixels: int = MAX_PIXELS) -> tuple[np.ndarray, str]:
    """An image file's bytes as HxWx3 uint8 RGB, its header checked before decoding.

    Returns:
        (rgb, format family)

    Raises:
        ImageError: with a short human-readable reason.
    """
    family, w, h = sniff(data)
    if w <= 0 or h <= 0:
        raise ImageError(f"invalid image size {w}x{h}")
    if w * h > max_pixels:
        raise ImageError(f"image too large ({w}x{h} pixels, limit {max_pixels})")
    check_complete(family, data)
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ImageError(f"cannot decode {family.upper()} data (corrupt or truncated)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), family


def read_rgb(path: str | os.PathLike, max_pixels: int = MAX_PIXELS) -> tuple[np.ndarray, str]:
    """Read an image file as HxWx3 uint8 RGB, checking its header first.

    Returns:
        (rgb, format family)

    Raises:
        ImageError: with a short human-readable reason.
    """
    return decode_rgb(read_file(path), max_pixels)


def family_of(path: str | os.PathLike) -> str | None:
    """Format family implied by a file name's extension, or None."""
    ext = Path(path).suffix.lower()
    return next((f for f, exts in FAMILIES.items() if ext in exts), None)


def output_family(path: str | os.PathLike, width: int = 0, height: int = 0) -> str:
    """The format family an output file name asks for, checked before any work is done.

    Raises:
        ImageError: the extension names no format written here, or the image
            (``width`` x ``height``, when given) is larger than that format allows.
    """
    fam = family_of(path)
    if fam is None:
        ext = Path(path).suffix.lower() or "(none)"
        known = ", ".join(e for exts in FAMILIES.values() for e in exts)
        raise ImageError(f"unsupported output type {ext} (use {known})")
    check_size(fam, width, height)
    return fam


def check_size(family: str, width: int, height: int) -> None:
    """Raise ImageError when a ``width`` x ``height`` image is too large for ``family``."""
    side = MAX_SIDE.get(family)
    if side is not None and max(width, height) > side:
        raise ImageError(f"{width}x{height} is too large for {family.upper()} "
                         f"(at most {side} pixels a side)")


def encode(ext: str, image: np.ndarray, quality: int = 95) -> bytes:
    """Encode an HxWx3 RGB or HxW grey uint8 image as the format of ``ext`` (".png", ...).

    A ".pgm" file is grey (the luma of an RGB image), a ".ppm" file RGB.
    """
    fam = family_of(f"x{ext}") or "png"
    check_size(fam, image.shape[1], image.shape[0])
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY if ext == ".pgm" else cv2.COLOR_RGB2BGR)
    elif ext in (".ppm", ".pnm"):
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if fam == "jpeg" else []
    ok, buf = cv2.imencode(ext, image, params)
    if not ok:
        raise ImageError(f"cannot encode as {fam.upper()}")
    return buf.tobytes()


def copyable(path: str | os.PathLike, family: str, data: bytes) -> bool:
    """Whether an image file of ``family`` (its bytes ``data``) can be copied unchanged to
    ``path``: that name's extension names no format or this one (for PNM, ".pgm" grey P5,
    ".ppm"/".pnm" RGB P6, as ``write_rgb`` writes them)."""
    fam = family_of(path)
    if fam is None or fam != family:
        return fam is None
    return fam != "pnm" or (Path(path).suffix.lower() == ".pgm") == data.startswith(b"P5")


def write_rgb(path: str | os.PathLike, rgb: np.ndarray, family: str | None = None) -> None:
    """Encode and write an RGB image atomically (temp file in the same folder + rename).

    The format follows the file extension (".pgm": grey); ``family`` is used when the
    extension names no format.
    """
    p = Path(path)
    ext = p.suffix.lower() if family_of(p) is not None else FAMILIES[family or "png"][0]
    write_bytes_atomic(p, encode(ext, rgb))


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file and rename (never a partial file),
    with the modes of a normally created file."""
    write_atomic(path, data, sync=False)
