"""Board profiles: ready-made configuration files (same TOML schema as camheald.toml) per board.

``camheald --profile NAME`` and ``camheal hil --profile NAME`` look a profile up here. A
profile names the camera source (with its resolution and frame rate), the analysis rate and the
model threads that fit the board.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from camheald.errors import ConfigError

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


def search_path() -> list[Path]:
    """Where profiles are looked for, first match wins.

    ``$CAMHEAL_PROFILE_DIR``, then ``/etc/camheal/profiles`` (local copies an operator edits),
    then ``/usr/share/camheal/profiles``, then the checkout's ``hardware/profiles``.
    """
    dirs = [Path(d) for d in os.environ.get("CAMHEAL_PROFILE_DIR", "").split(":") if d]
    dirs += [Path("/etc/camheal/profiles"), Path("/usr/share/camheal/profiles")]
    dirs.append(Path(__file__).resolve().parents[3] / "hardware" / "profiles")
    return dirs


def available() -> list[str]:
    """Names of every profile on the search path."""
    names: set[str] = set()
    for d in search_path():
        if d.is_dir():
            names.update(p.stem for p in d.glob("*.toml"))
    return sorted(names)


def find(name: str) -> Path:
    """The file of profile ``name`` (or ``name`` itself when it is a path to a .toml file)."""
    if name.endswith(".toml") and os.sep in name:
        path = Path(name)
        if not path.is_file():
            raise ConfigError(f"profile {name}: no such file")
        return path
    if not _NAME.match(name):
        raise ConfigError(f"profile {name!r}: a name is 1-64 of [a-z0-9_-] (or give a path to "
                          "a .toml file)")
    for d in search_path():
        path = d / f"{name}.toml"
        if path.is_file():
            return path
    known = ", ".join(available()) or "none found"
    raise ConfigError(f"profile {name!r} not found (available: {known})")
