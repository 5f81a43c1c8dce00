"""Atomic file writing with the modes of a normally created file (CLI and offline tools)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def _umask() -> int:
    """The process's umask, read without changing it where Linux shows it (setting it for
    a moment would race with other threads creating files)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # (elsewhere reading it means setting it: put it back at once)
    os.umask(mask)
    return mask


def public(path: str | os.PathLike) -> None:
    """Give a temporary file or folder (0600/0700 from mkstemp/mkdtemp) and, for a folder, the
    files in it the modes ``open``/``mkdir`` would have given them (0644/0755 with umask 022).
    """
    p = Path(path)
    mask = _umask()
    if p.is_dir():
        for child in p.iterdir():
            child.chmod(0o666 & ~mask)
        p.chmod(0o777 & ~mask)
    else:
        p.chmod(0o666 & ~mask)


def write_atomic(path: str | os.PathLike, data: bytes, sync: bool = True) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder and a rename, so
    that ``path`` is never left half-written; the file gets the umask's modes."""
    p = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if sync:
                f.flush()
                os.fsync(f.fileno())
        public(tmp)
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def identity(path: str | os.PathLike) -> tuple[int, int] | None:
    """(device, inode) of an existing file, else None: hard links, symlinks and other names
    of one file compare equal (the check that an output would not replace an input)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino
