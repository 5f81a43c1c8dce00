"""Typed daemon configuration: a TOML file plus command-line overrides; unknown keys rejected."""

from __future__ import annotations

import dataclasses
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from camheald.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 (JetPack 6)
    import tomli as tomllib

LOG_LEVELS = ("debug", "info", "warning", "error")
DEFAULT_PATH = Path("/etc/camheal/camheald.toml")
_CAMERA_ID = re.compile(r"^[A-Za-z0-9_]{1,32}$")
#: a config file is a few KiB; anything past this is not one
MAX_BYTES = 1024 * 1024


@dataclass
class CameraConfig:
    """One camera: ``id`` becomes its object path, ``source`` a URI (see capture.uri)."""

    id: str
    source: str
    correct: bool = True
    analyze_fps: float | None = None
    #: with ``correct``: also denoise / sharpen the corrected stream when the detector finds
    #: noise / blur (cheap filters, a few ms per frame, only while it is detected)
    restore: bool = True


@dataclass
class ModelConfig:
    path: str = ""  # empty: the shipped detector
    threads: int = 1
    backend: str = "auto"
    engine_cache: str = "/var/cache/camheal/engines"
    estimators: bool = True  # the stacked colour-cast / contrast estimators the sidecar names
    lens: bool = False  # the lens-defect segmenter voting in the defect tracker (fixed views)


@dataclass
class DaemonConfig:
    bus: str = "system"
    log_level: str = "info"
    analyze_fps: float = 5.0
    max_clients_per_camera: int = 32
    max_cameras: int = 32  # each runs its own model instances and threads (tens of MB)
    state_dir: str = ""  # empty: /var/lib/camheal (system bus) or ~/.local/state/camheal


@dataclass
class SamplesConfig:
    """Limits of the on-device sample store (collection itself is off until enabled)."""

    max_bytes: int = 512 * 1024 * 1024
    max_age_days: float = 30.0
    max_count: int = 5000
    min_interval_s: float = 60.0


@dataclass
class Config:
    daemon: DaemonConfig = field(default_factory=DaemonConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    samples: SamplesConfig = field(default_factory=SamplesConfig)
    camera: list[CameraConfig] = field(default_factory=list)

    def state_path(self) -> Path:
        """Folder for persisted settings and collected samples."""
        if self.daemon.state_dir:
            return Path(self.daemon.state_dir)
        if self.daemon.bus == "system":
            return Path("/var/lib/camheal")
        base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
        return Path(base) / "camheal"


def _check_type(where: str, value: Any, annotation: str) -> Any:
    kinds = {"str": str, "bool": bool, "int": int, "float": (int, float),
             "float | None": (int, float)}
    expected = kinds[annotation]
    if isinstance(value, bool) and annotation != "bool":
        raise ConfigError(f"{where}: expected {annotation}, got a boolean")
    if not isinstance(value, expected):
        raise ConfigError(f"{where}: expected {annotation}, got {type(value).__name__}")
    return float(value) if annotation.startswith("float") else value


def _build(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a table")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} "
                          f"(known: {', '.join(fields)})")
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _check_type(f"{where}.{name}", value, str(fields[name].type))
    missing = [n for n, f in fields.items() if n not in data
               and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ConfigError(f"{where}: missing key {missing[0]!r}")
    return cls(**kwargs)


def validate(config: Config) -> Config:
    d = config.daemon
    if d.bus not in ("session", "system"):
        raise ConfigError(f"daemon.bus: must be 'session' or 'system', got {d.bus!r}")
    if d.log_level not in LOG_LEVELS:
        raise ConfigError(f"daemon.log_level: must be one of {', '.join(LOG_LEVELS)}")
    if not 0.1 <= d.analyze_fps <= 120:
        raise ConfigError("daemon.analyze_fps: must be between 0.1 and 120")
    if not 1 <= d.max_clients_per_camera <= 1024:
        raise ConfigError("daemon.max_clients_per_camera: must be between 1 and 1024")
    if not 1 <= d.max_cameras <= 256:
        raise ConfigError("daemon.max_cameras: must be between 1 and 256")
    if len(config.camera) > d.max_cameras:
        raise ConfigError(f"camera: {len(config.camera)} cameras configured, more than "
                          f"daemon.max_cameras ({d.max_cameras}); raise it if this board "
                          "has the memory (each camera runs its own models and threads)")
    sm = config.samples
    if not (0 < sm.max_bytes and 0 < sm.max_age_days and 0 < sm.max_count
            and sm.min_interval_s >= 0):
        raise ConfigError("samples: limits must be positive (min_interval_s may be 0)")
    from camheald.inference.backends import BACKENDS

    if config.model.backend not in BACKENDS:
        raise ConfigError(f"model.backend: must be one of {', '.join(BACKENDS)}, "
                          f"got {config.model.backend!r}")
    if not 1 <= config.model.threads <= 64:
        raise ConfigError("model.threads: must be between 1 and 64")
    seen: set[str] = set()
    for i, cam in enumerate(config.camera):
        if not _CAMERA_ID.match(cam.id):
            raise ConfigError(f"camera[{i}].id: {cam.id!r} must be 1-32 of [A-Za-z0-9_]")
        if cam.id in seen:
            raise ConfigError(f"camera[{i}].id: duplicate id {cam.id!r}")
        seen.add(cam.id)
        if cam.analyze_fps is not None and not 0.1 <= cam.analyze_fps <= 120:
            raise ConfigError(f"camera[{i}].analyze_fps: must be between 0.1 and 120")
    return config


def load(path: str | Path | None) -> Config:
    """Read and validate a TOML config file; None gives the defaults."""
    if path is None:
        return validate(Config())
    p = Path(path)
    try:
        with open(p, "rb") as f:
            raw = f.read(MAX_BYTES + 1)  # bounded: /dev/zero or a huge file never ends
        if len(raw) > MAX_BYTES:
            raise ConfigError(f"config {p}: larger than {MAX_BYTES >> 20} MiB; "
                              "not a camheald config")
        # utf-8-sig: a byte-order mark (as some Windows editors save) is not an error
        data = tomllib.loads(raw.decode("utf-8-sig"))
    except FileNotFoundError:
        raise ConfigError(f"config {p}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(f"config {p}: is a directory") from None
    except PermissionError:
        raise ConfigError(f"config {p}: permission denied") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config {p}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config {p}: invalid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"config {p}: cannot read: {exc.strerror}") from None
    unknown = sorted(set(data) - {"daemon", "model", "samples", "camera"})
    if unknown:
        raise ConfigError(f"config {p}: unknown section {unknown[0]!r} "
                          "(known: daemon, model, samples, camera)")
    cameras = data.get("camera", [])
    if not isinstance(cameras, list):
        raise ConfigError(f"config {p}: [[camera]] must be an array of tables")
    config = Config(
        daemon=_build(DaemonConfig, data.get("daemon", {}), "daemon"),
        model=_build(ModelConfig, data.get("model", {}), "model"),
        samples=_build(SamplesConfig, data.get("samples", {}), "samples"),
        camera=[_build(CameraConfig, c, f"camera[{i}]") for i, c in enumerate(cameras)],
    )
    return validate(config)
