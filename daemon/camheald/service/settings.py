"""Runtime settings changed through D-Bus, persisted atomically to a small JSON state file.

The config file (/etc/camheal/camheald.toml) is the administrator's; this state file
(/var/lib/camheal/settings.json by default) holds what privileged callers changed at run time,
so that it survives a restart. Writes are atomic: a temp file in the same folder, fsync,
rename over the old file, fsync of the folder. A missing file means defaults; a corrupt one
is logged in one line, moved aside, and replaced by defaults: never a crash.

All methods do blocking file I/O: call them from an executor, not the event loop.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import re
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

DEFAULT_PATH = Path("/var/lib/camheal/settings.json")
VERSION = 1
_CAMERA_ID = re.compile(r"^[A-Za-z0-9_]{1,32}$")
_MAX_BYTES = 1 << 20  # a settings file is a few hundred bytes; refuse to parse a huge one


def atomic_write(path: Path, data: bytes, mode: int = 0o640) -> None:
    """Replace ``path`` with ``data`` atomically and durably (temp, fsync, rename, fsync dir).

    Readers see either the old content or the new one, never a mix, even across a power cut.
    """
    folder = path.parent
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(folder)


def fsync_dir(folder: Path) -> None:
    """fsync a folder so that a rename or unlink in it is durable."""
    dfd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


@dataclass
class Settings:
    """What can be changed at run time.

    ``correct`` holds per-camera overrides of ``[[camera]] correct`` from the config file;
    a camera without an entry uses its configured value.
    """

    collect_samples: bool = False
    correct: dict[str, bool] = field(default_factory=dict)

    def to_json(self) -> bytes:
        body = {"version": VERSION, **dataclasses.asdict(self)}
        return (json.dumps(body, indent=2, sort_keys=True) + "\n").encode()


def _parse(data: Any, where: Path) -> Settings:
    """Settings from a decoded JSON document; raise ValueError naming the first problem."""
    if not isinstance(data, dict):
        raise ValueError("top level is not an object")
    if data.get("version") != VERSION:
        raise ValueError(f"version {data.get('version')!r} (expected {VERSION})")
    unknown = sorted(set(data) - {"version", "collect_samples", "correct"})
    if unknown:  # written by a newer daemon: keep what we understand
        logger.warning("state %s: ignoring unknown key %r", where, unknown[0])
    settings = Settings()
    collect = data.get("collect_samples", False)
    if not isinstance(collect, bool):
        raise ValueError("collect_samples is not a boolean")
    settings.collect_samples = collect
    correct = data.get("correct", {})
    if not isinstance(correct, dict):
        raise ValueError("correct is not an object")
    for cid, value in correct.items():
        if not _CAMERA_ID.match(cid) or not isinstance(value, bool):
            raise ValueError(f"correct[{cid!r}] is not a camera id mapped to a boolean")
        settings.correct[cid] = value
    return settings


class SettingsStore:
    """The persisted runtime settings; ``settings`` is the current value (treat as read-only).

    Every setter writes the file first and changes ``settings`` only when the write succeeded,
    so what the daemon does always matches what it would come back with after a restart.
    """

    def __init__(self, path: str | Path = DEFAULT_PATH) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()  # setters may run on several executor threads
        self.settings = Settings()

    def load(self) -> Settings:
        """Read the state file; missing → defaults, corrupt → one log line, defaults."""
        try:
            with open(self.path, "rb") as f:
                raw = f.read(_MAX_BYTES + 1)
            if len(raw) > _MAX_BYTES:
                raise ValueError(f"larger than {_MAX_BYTES} bytes")
            self.settings = _parse(json.loads(raw), self.path)
        except FileNotFoundError:
            self.settings = Settings()
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            aside = self.path.with_name(self.path.name + ".corrupt")
            logger.error("state %s is corrupt (%s); using defaults, old file kept as %s",
                         self.path, str(exc).splitlines()[0], aside.name)
            with contextlib.suppress(OSError):
                os.replace(self.path, aside)
            self.settings = Settings()
        except OSError as exc:
            logger.error("state %s cannot be read (%s); using defaults", self.path,
                         exc.strerror)
            self.settings = Settings()
        return self.settings

    def correct_for(self, camera_id: str, configured: bool) -> bool:
        """Whether ``camera_id`` corrects frames: the runtime override, else the config value."""
        return self.settings.correct.get(camera_id, configured)

    def set_collect_samples(self, enabled: bool) -> None:
        self._update(collect_samples=bool(enabled))

    def set_correct(self, camera_id: str, enabled: bool) -> None:
        if not _CAMERA_ID.match(camera_id):
            raise ValueError(f"invalid camera id {camera_id!r}")
        with self._lock:
            correct = {**self.settings.correct, camera_id: bool(enabled)}
            self._write(dataclasses.replace(self.settings, correct=correct))

    def _update(self, **changes: Any) -> None:
        with self._lock:
            self._write(dataclasses.replace(self.settings, **changes))

    def _write(self, new: Settings) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
        atomic_write(self.path, new.to_json())
        self.settings = new
        logger.info("state %s saved", self.path)
