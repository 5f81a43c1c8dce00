"""The on-device store of anomalous frames kept for model adaptation: off unless enabled.

Privacy rules this module enforces:

- Nothing is kept unless collection was enabled by a privileged caller (``enabled`` starts
  False; the daemon restores it from the persisted settings).
- Each sample is a PNG re-encoded from the decoded pixels alone, so no EXIF, GPS, ICC
  profile, comment or any other metadata of the source survives, plus a JSON sidecar with
  exactly four keys: ``camera``, ``time``, ``scores``, ``detected``.
- The store is bounded by size, age and count; the oldest samples go first.
- Samples leave the store only through ``export_memfd`` (a tar handed to an authorized local
  caller over D-Bus) and are removed by ``purge``. The daemon has no upload code: its only
  network connections are those that read frames from the network cameras named in its
  config (RTSP/HTTP sources, through FFmpeg). It never sends samples, or anything else,
  off the device.

All methods do blocking file I/O and image encoding: call them from an executor or a
pipeline thread, never from the event loop.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import logging
import math
import os
import re
import tarfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from camheald.service.frames import (
    F_ADD_SEALS,
    F_SEAL_GROW,
    F_SEAL_SEAL,
    F_SEAL_SHRINK,
    F_SEAL_WRITE,
)
from camheald.service.settings import fsync_dir

logger = logging.getLogger(__name__)

DEFAULT_ROOT = Path("/var/lib/camheal/samples")
SIDECAR_KEYS = ("camera", "time", "scores", "detected")
_NAME = re.compile(r"^(\d{19})-([A-Za-z0-9_]{1,32})(?:-(\d+))?$")
_CAMERA_ID = re.compile(r"^[A-Za-z0-9_]{1,32}$")
_MAX_NAMES = 64  # scores/detected entries kept per sample; anomaly vocabulary is 7 names


@dataclass
class _Sample:
    name: str
    time_ns: int
    size: int


@dataclass
class SampleStore:
    """A bounded folder of (PNG, JSON) sample pairs.

    Args:
        root: the folder (created 0700; files 0600). Only the daemon's user reads it.
        max_bytes: total size limit of all samples (PNG + JSON), bytes.
        max_age_s: samples older than this are deleted (on add, on ``prune``, on export).
        max_count: most samples kept.
        min_interval_s: at most one sample per camera this often (0: no rate limit).
    """

    root: Path
    max_bytes: int
    max_age_s: float
    max_count: int
    min_interval_s: float = 0.0
    enabled: bool = False
    _index: list[_Sample] | None = field(default=None, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _last_add: dict[str, float] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        if self.max_bytes <= 0 or self.max_count <= 0 or not self.max_age_s > 0:
            raise ValueError("sample store limits must be positive")

    # -- adding ---------------------------------------------------------------------------
    def add(self, rgb: np.ndarray, info: dict[str, Any]) -> str | None:
        """Keep one frame if collection is enabled; returns the sample name, or None.

        Args:
            rgb: HxWx3 uint8 RGB pixels (any source; only the pixels are used).
            info: ``camera`` (id), ``scores`` ({anomaly: probability}), ``detected``
                ([anomaly]), optional ``time`` (unix seconds). Other keys are ignored
                and never stored.
        """
        if not self.enabled:
            return None
        sidecar = _sidecar(info)
        camera = sidecar["camera"]
        now = time.monotonic()
        if self.min_interval_s and now - self._last_add.get(camera, -math.inf) \
                < self.min_interval_s:
            return None
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"expected HxWx3 uint8 RGB, got {rgb.shape} {rgb.dtype}")
        ok, png = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        if not ok:
            raise ValueError("PNG encoding failed")
        meta = json.dumps(sidecar, sort_keys=True).encode()
        size = len(png) + len(meta)
        if size > self.max_bytes:
            logger.warning("sample of %d bytes exceeds the store limit %d; not kept",
                           size, self.max_bytes)
            return None
        with self._lock:
            index = self._load()
            name = self._new_name(camera)
            self._write_pair(name, png.tobytes(), meta)
            index.append(_Sample(name, int(name[:19]), size))
            self._last_add[camera] = now
            self._enforce(index)
        logger.debug("kept sample %s (%d bytes)", name, size)
        return name

    def _new_name(self, camera: str) -> str:
        base = f"{time.time_ns():019d}-{camera}"
        name, n = base, 0
        while (self.root / f"{name}.json").exists() or (self.root / f"{name}.png").exists():
            n += 1
            name = f"{base}-{n}"
        return name

    def _write_pair(self, name: str, png: bytes, meta: bytes) -> None:
        """PNG and JSON in temp files, both fsynced, renamed PNG first, folder fsynced.

        The JSON is what makes a sample exist: a crash before its rename leaves a PNG
        without a sidecar (or temp files), which ``_load`` deletes.
        """
        temps: list[tuple[Path, Path]] = []
        try:
            for data, suffix in ((png, ".png"), (meta, ".json")):
                tmp = self.root / f".{name}{suffix}.tmp"
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
                temps.append((tmp, self.root / f"{name}{suffix}"))
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
            for tmp, final in temps:
                os.replace(tmp, final)
        except BaseException:
            for tmp, final in temps:
                for p in (tmp, final):
                    with contextlib.suppress(OSError):
                        p.unlink()
            raise
        fsync_dir(self.root)

    # -- limits ---------------------------------------------------------------------------
    def prune(self) -> int:
        """Apply the limits now (age matters even when nothing is added); returns removed."""
        with self._lock:
            return self._enforce(self._load())

    def _enforce(self, index: list[_Sample]) -> int:
        index.sort(key=lambda s: s.name)
        cutoff = time.time_ns() - int(self.max_age_s * 1e9)
        total = sum(s.size for s in index)
        drop = 0
        while drop < len(index) and (index[drop].time_ns < cutoff
                                     or len(index) - drop > self.max_count
                                     or total > self.max_bytes):
            total -= index[drop].size
            drop += 1
        for sample in index[:drop]:
            self._remove(sample.name)
        del index[:drop]
        if drop:
            fsync_dir(self.root)
            logger.info("sample store: removed %d oldest sample(s) to stay within limits", drop)
        return drop

    def _remove(self, name: str) -> None:
        for suffix in (".json", ".png"):  # sidecar first: a half-removed sample is an orphan
            with contextlib.suppress(FileNotFoundError):
                (self.root / f"{name}{suffix}").unlink()

    def _load(self) -> list[_Sample]:
        """Index the folder once: create it, delete temp files and incomplete pairs."""
        if self._index is not None:
            return self._index
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        pngs: dict[str, int] = {}
        metas: dict[str, int] = {}
        stray: list[Path] = []
        for entry in os.scandir(self.root):
            path = Path(entry.path)
            stem, suffix = path.stem, path.suffix
            if suffix in (".png", ".json") and _NAME.match(stem) and entry.is_file():
                (pngs if suffix == ".png" else metas)[stem] = entry.stat().st_size
            else:
                stray.append(path)
        index = []
        for stem in sorted(set(pngs) | set(metas)):
            if stem in pngs and stem in metas:
                index.append(_Sample(stem, int(stem[:19]), pngs[stem] + metas[stem]))
            else:
                stray.extend(self.root / f"{stem}{s}" for s in (".png", ".json"))
        for path in stray:  # our own leftovers (temp files, half pairs) and nothing else
            if path.name.endswith(".tmp") or _NAME.match(path.stem):
                with contextlib.suppress(OSError):
                    path.unlink()
            else:
                logger.warning("sample store: ignoring unexpected file %s", path.name)
        self._index = index
        return index

    # -- reading out ----------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """``enabled``, ``count``, ``bytes``, ``oldest`` (unix seconds, 0 when empty)."""
        with self._lock:
            index = self._load()
            return {"enabled": self.enabled, "count": len(index),
                    "bytes": sum(s.size for s in index),
                    "oldest": index[0].time_ns / 1e9 if index else 0.0}

    def export_to(self, fileobj: Any) -> dict[str, Any]:
        """Write every sample as an uncompressed tar (``samples/<name>.png|.json``).

        Returns ``{"count": n, "bytes": tar size}``. Owner and group in the tar are 0/empty.
        """
        with self._lock:
            self._enforce(self._load())
            names = [s.name for s in self._index or ()]
        count = 0
        with tarfile.open(fileobj=fileobj, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for name in names:
                try:  # purge may run meanwhile: a sample gone is skipped, never half-written
                    files = [(s, (self.root / f"{name}{s}").read_bytes())
                             for s in (".png", ".json")]
                except FileNotFoundError:
                    continue
                mtime = int(name[:19]) / 1e9
                for suffix, data in files:
                    member = tarfile.TarInfo(f"samples/{name}{suffix}")
                    member.size, member.mtime, member.mode = len(data), mtime, 0o644
                    tar.addfile(member, io.BytesIO(data))
                count += 1
        return {"count": count, "bytes": fileobj.tell()}

    def export_memfd(self) -> tuple[int, dict[str, Any]]:
        """The tar in a sealed memfd; returns (read-only fd, info). The caller owns the fd."""
        fd = os.memfd_create("camheal-samples.tar", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            with os.fdopen(os.dup(fd), "w+b") as f:
                info = self.export_to(f)
            fcntl.fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL)
            ro = os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_CLOEXEC)
        finally:
            os.close(fd)
        logger.info("exported %d sample(s), %d bytes", info["count"], info["bytes"])
        return ro, info

    def purge(self) -> int:
        """Delete every sample (and leftovers); returns how many samples were removed."""
        with self._lock:
            index = self._load()
            for sample in index:
                self._remove(sample.name)
            count = len(index)
            index.clear()
            self._index = None
            self._load()  # sweeps temp files and anything half-written
            fsync_dir(self.root)
        logger.info("purged %d sample(s)", count)
        return count


def _sidecar(info: dict[str, Any]) -> dict[str, Any]:
    """The four keys a sample keeps, validated; everything else in ``info`` is dropped."""
    camera = info.get("camera")
    if not isinstance(camera, str) or not _CAMERA_ID.match(camera):
        raise ValueError(f"invalid camera id {camera!r}")
    when = info.get("time", time.time())
    if isinstance(when, bool) or not isinstance(when, (int, float)) or not math.isfinite(when):
        raise ValueError("time must be unix seconds")
    scores = {str(k): float(v) for k, v in list(dict(info.get("scores", {})).items())
              [:_MAX_NAMES]}
    detected = [str(d) for d in list(info.get("detected", []))[:_MAX_NAMES]]
    return {"camera": camera, "time": float(when), "scores": scores, "detected": detected}
