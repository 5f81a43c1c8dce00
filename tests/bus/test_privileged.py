"""Privileged members end to end: persisted settings and the sample store through camheald."""

from __future__ import annotations

import io
import os
import tarfile
import time

import pytest

from camheal import AsyncClient
from camheal import constants as C
from camheal.aio import unpack

pytestmark = pytest.mark.skipif(os.geteuid() != 0,
                                reason="without polkit only root passes: run as root")
SOURCE = "inject:demo?size=160x120&fps=15#schedule=underexposed&phase=60"


async def test_settings_persist_and_samples_are_kept_exported_purged(start_daemon, bus_address,
                                                                    tmp_path):
    conf = tmp_path / "c.toml"
    conf.write_text(f'[daemon]\nbus = "session"\nanalyze_fps = 10\n[samples]\n'
                    f'min_interval_s = 0.2\n[[camera]]\nid = "cam0"\nsource = "{SOURCE}"\n')
    d = start_daemon("--config", str(conf))
    async with AsyncClient(bus_address) as client:
        assert await client.get_property(C.MANAGER_PATH, C.MANAGER_IFACE,
                                         "DataCollection") is False
        await client.call(C.MANAGER_PATH, C.MANAGER_IFACE, "SetDataCollection", "b", [True])
        cam = await client.camera()
        await client.call(cam.path, C.CAMERA_IFACE, "SetCorrectionEnabled", "b", [False])
        assert (await cam.properties())["Corrections"] == []
        deadline = time.monotonic() + 20
        info = {}
        while time.monotonic() < deadline:
            fd, info = await client.call(C.MANAGER_PATH, C.MANAGER_IFACE, "ExportSamples")
            info = unpack(info)
            if info["count"] >= 2:
                break
            os.close(fd)
            time.sleep(0.5)
        assert info["count"] >= 2, "no anomalous frame was kept while collection was on"
        data = os.pread(fd, info["bytes"], 0)
        os.close(fd)
        names = tarfile.open(fileobj=io.BytesIO(data)).getnames()
        assert any(n.endswith(".png") for n in names) and any(n.endswith(".json") for n in names)
    assert d.stop() == 0
    # both settings survive a restart
    start_daemon("--config", str(conf))
    async with AsyncClient(bus_address) as client:
        assert await client.get_property(C.MANAGER_PATH, C.MANAGER_IFACE, "DataCollection")
        cam = await client.camera()
        assert (await cam.properties())["CorrectionEnabled"] is False
        (purged,) = await client.call(C.MANAGER_PATH, C.MANAGER_IFACE, "PurgeSamples")
        assert purged >= 2
        await client.call(C.MANAGER_PATH, C.MANAGER_IFACE, "SetDataCollection", "b", [False])
        assert not await client.get_property(C.MANAGER_PATH, C.MANAGER_IFACE,
                                             "DataCollection")
