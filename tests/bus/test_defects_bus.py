"""Persistent lens defects through the running daemon: signals, Health, mask, bursts."""

from __future__ import annotations

import os
import threading

import cv2
import numpy as np
from dbus_fast import Variant

from camheal import Client
from camheal import constants as C
from camheal.aio import unpack
from camheald.capture import inject

SOURCE = "inject:demo?size=320x180&fps=15#schedule=crack&phase=600"


def test_crack_is_found_reported_and_filled(start_daemon, bus_address, tmp_path):
    conf = tmp_path / "c.toml"
    conf.write_text(f'[daemon]\nbus = "session"\nanalyze_fps = 10\n[[camera]]\nid = "cam0"\n'
                    f'source = "{SOURCE}"\n')
    d = start_daemon("--config", str(conf))
    seen: list[tuple[str, dict]] = []
    got = threading.Event()
    with Client(bus_address, timeout=20) as client:
        def on_event(cam_id: str, kind: str, payload: dict) -> None:
            seen.append((kind, payload))
            if kind == "health" and payload.get("defects"):
                got.set()

        client.on_health(on_event)
        cam = client.camera()
        assert got.wait(40), f"no persistent defect reported; events: {seen[-5:]}"
        health = cam.health()
        defects = health["defects"]
        assert defects and defects[0]["kind"] in ("crack", "dirt")
        # a standing persistent defect is what makes the lens count as obstructed
        assert "obstruction" in health["detected"]
        x, y, w, h = defects[0]["bbox"]
        assert 0 <= x < 320 and 0 <= y < 180 and w > 0 and h > 0
        # the mask, as PNG
        fd, meta = client._run(client._aio.call(cam.path, C.CAMERA_IFACE, "GetDefectMask",
                                                "a{sv}", [{}]))
        meta = unpack(meta)
        data = os.pread(fd, meta["size"], 0)
        os.close(fd)
        mask = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
        assert mask.shape == (180, 320) and 0.001 < meta["coverage"] < 0.5
        # a burst: every frame corrected, the defect filled in
        fds, report = client._run(client._aio.call(
            cam.path, C.CAMERA_IFACE, "CaptureBurst", "ua{sv}",
            [4, {"format": Variant("s", "rgb")}]))
        report = unpack(report)
        try:
            assert len(fds) == 4 and report["count"] == 4
            assert report["seqs"] == sorted(report["seqs"])
            assert "inpaint" in report["actions"] and report["defects"]
            assert not report["restored"]  # (the D-Bus default; the SDK asks for it)
            frames = []
            for fd, fm in zip(fds, report["frames"], strict=True):
                buf = os.pread(fd, fm["size"], 0)
                frames.append(np.frombuffer(buf, np.uint8).reshape(fm["height"], fm["width"], 3))
        finally:
            for fd in fds:
                os.close(fd)
        raw = cam.capture(corrected=False).image
        inside = mask > 0
        # the crack is dark: filled pixels are brighter than the raw ones on average
        assert frames[0][inside].mean() > raw[inside].mean() + 5
        # the same through the SDK helpers
        shots, rep = cam.capture_burst(2)
        assert len(shots) == 2 and shots[0].image.shape == (180, 320, 3)
        assert "inpaint" in rep["actions"]
        # the tracker keeps learning while the scene moves behind the crack: how much the
        # mask changes meanwhile depends on how many updates ran (the machine's load; under a
        # busy second core it kept 48-99 % of itself and measured 0.57-2.8 times its area),
        # so the check is that it still lies on the crack and keeps much of what it showed
        again = cam.defect_mask() > 0
        truth = inject.crack(320, 180).mask > 127  # the demo's crack (inject.make)
        kept = (again & inside).sum() / inside.sum()
        on_crack = (again & truth).sum() / truth.sum()
        assert kept > 0.3 and on_crack > 0.25, f"kept {kept:.2f}, covers {on_crack:.2f}"
    kinds = [k for k, _ in seen]
    assert "health" in kinds and "defect_detected" in kinds
    assert "Traceback" not in d.log()
