"""`camheald`: the service's command line."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from dbus_fast.errors import AuthError, DBusError, InvalidAddressError

from camheal.constants import VERSION
from camheald import config as cfg
from camheald.errors import CamhealError

logger = logging.getLogger("camheald")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="camheald", description="camheal camera-pipeline daemon (D-Bus service)")
    p.add_argument("--bus", choices=("session", "system"), help="bus to serve on "
                   "(default: from the config, else system)")
    p.add_argument("--source", action="append", default=[], metavar="URI",
                   help="camera source URI (repeatable); overrides the config's cameras")
    p.add_argument("--demo", action="store_true", help="add the procedural demo camera")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--config", metavar="FILE",
                       help=f"TOML configuration file (default: {cfg.DEFAULT_PATH} when it "
                            "exists, else built-in defaults)")
    where.add_argument("--profile", metavar="NAME",
                       help="board profile instead of --config: generic-usb, rpi5, "
                       "jetson-orin-nano, demo (hardware/profiles/NAME.toml) or a .toml path")
    p.add_argument("--inject", nargs="?", const="", metavar="OPTIONS",
                   help="wrap every camera source in inject: (known defects on a schedule, "
                   "for camheal hil); OPTIONS as after '#' in an inject: URI, e.g. "
                   "'phase=10&schedule=clean,blur'")
    p.add_argument("--log-level", choices=cfg.LOG_LEVELS, help="logging verbosity")
    p.add_argument("--backend", choices=("auto", "onnxruntime", "tensorrt", "torch"),
                   help="inference backend for the detector (default: from the config, "
                        "else auto = the fastest available)")
    p.add_argument("--check-config", action="store_true",
                   help="validate the configuration and sources, then exit")
    p.add_argument("--version", action="version", version=f"camheald {VERSION}")
    return p


def resolve(args: argparse.Namespace) -> cfg.Config:
    """The effective configuration: file, then flags on top."""
    if args.profile:
        from camheald.capture import profiles

        args.config = str(profiles.find(args.profile))  # SIGHUP re-reads the profile
    if args.config is None and cfg.DEFAULT_PATH.is_file():
        args.config = str(cfg.DEFAULT_PATH)
    config = cfg.load(args.config)
    if args.bus:
        config.daemon.bus = args.bus
    if args.log_level:
        config.daemon.log_level = args.log_level
    if args.backend:
        config.model.backend = args.backend
    if args.source:
        config.camera = [cfg.CameraConfig(id=f"cam{i}", source=uri)
                         for i, uri in enumerate(args.source)]
    if args.demo:
        taken = {c.id for c in config.camera}
        cam_id = "demo" if "demo" not in taken else f"demo{len(taken)}"
        config.camera.append(cfg.CameraConfig(id=cam_id, source="demo"))
    if args.inject is not None:
        for cam in config.camera:
            if cam.source.lower().startswith("inject:"):
                if args.inject:
                    raise cfg.ConfigError(f"camera {cam.id} already uses inject:; give its "
                                          "options after '#' in its source URI")
            else:
                cam.source = f"inject:{cam.source}" + (f"#{args.inject}" if args.inject else "")
    return cfg.validate(config)


def check_backend(backend: str) -> None:
    """Refuse, as starting would, an explicitly requested backend that cannot run here.

    Only its runtime is looked for: no model is loaded (a TensorRT engine build takes
    minutes). ``auto`` and ``onnxruntime`` always start (without a model, if need be).
    """
    from camheald.inference import backends, tensorrt

    try:
        if backend == "tensorrt":
            tensorrt.import_trt()
        elif backend not in ("auto", "onnxruntime"):
            # refused by name before any model is read, as Detector.load would refuse it
            backends.create(Path(os.devnull), b"", backend)
    except (backends.BackendError, tensorrt.TensorRTUnavailable) as exc:
        raise cfg.ConfigError(f"backend {backend}: {exc}") from None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = resolve(args)
        logging.basicConfig(
            level=config.daemon.log_level.upper(), stream=sys.stderr,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        from camheald.bus.server import Server, serve
        from camheald.service.manager import CameraManager

        manager = CameraManager(config)  # parses every source URI: bad ones fail here
        if not manager.cameras:
            logger.warning("no camera configured: use --source URI, --demo or [[camera]]")
        if args.check_config:
            check_backend(config.model.backend)
            print(f"camheald: configuration OK ({len(manager.cameras)} camera(s))")
            return 0
        return serve(Server(manager, config.daemon.bus, args.config,
                            cameras_from_file=not (args.source or args.demo)))
    except CamhealError as exc:
        print(f"camheald: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0
    except (OSError, DBusError, InvalidAddressError, AuthError) as exc:
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        print(f"camheald: error: cannot use the D-Bus {args.bus or 'configured'} bus: {detail}",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
