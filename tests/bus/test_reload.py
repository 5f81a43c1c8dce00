"""SIGHUP: cameras added, changed and removed without dropping the clients of the others."""

from __future__ import annotations

import signal
import time

from camheal import Client
from camheal.errors import UnknownCamera

CAM0 = '[[camera]]\nid = "cam0"\nsource = "demo:?size=160x120&fps=15"\n'
CAM1 = '[[camera]]\nid = "cam1"\nsource = "demo:?size={size}&fps=10"\n'


def wait_for(pred, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if pred():
                return True
        except UnknownCamera:  # a changed camera is briefly gone while it restarts
            pass
        time.sleep(0.1)
    return False


def test_sighup_applies_camera_changes_and_keeps_other_streams(start_daemon, bus_address,
                                                               tmp_path):
    conf = tmp_path / "c.toml"
    head = '[daemon]\nbus = "session"\n'
    conf.write_text(head + CAM0)
    d = start_daemon("--config", str(conf))
    with Client(bus_address) as client:
        cam0 = client.camera("cam0")
        with cam0.stream() as frames:
            first = frames.read().seq
            conf.write_text(head + CAM0 + CAM1.format(size="96x64"))
            d.proc.send_signal(signal.SIGHUP)
            assert wait_for(lambda: [c.id for c in client.cameras()] == ["cam0", "cam1"])
            assert wait_for(lambda: client.camera("cam1").stats()["frames"] > 2)
            assert client.camera("cam1").capture().image.shape == (64, 96, 3)
            # the untouched camera's stream never stopped
            later = frames.read()
            assert later is not None and later.seq > first
            assert frames.stats["dropped"] < 10
            # a changed camera is restarted with its new settings
            conf.write_text(head + CAM0 + CAM1.format(size="128x96"))
            d.proc.send_signal(signal.SIGHUP)
            assert wait_for(lambda: client.camera("cam1").properties()["Width"] == 128)
            # a broken file changes nothing
            conf.write_text(head + CAM0 + '[[camera]]\nid = "cam2"\nsource = "bogus:x"\n')
            d.proc.send_signal(signal.SIGHUP)
            time.sleep(1.0)
            assert [c.id for c in client.cameras()] == ["cam0", "cam1"]
            # removed
            conf.write_text(head + CAM0)
            d.proc.send_signal(signal.SIGHUP)
            assert wait_for(lambda: [c.id for c in client.cameras()] == ["cam0"])
            assert frames.read() is not None
    assert d.proc.poll() is None
    log = d.log()
    assert "Traceback" not in log and "keeping the running cameras" in log


def test_stop_during_a_reload_is_clean(start_daemon, tmp_path):
    # SIGTERM right after SIGHUP: the reload that is still starting a camera finishes (or
    # is skipped) before the cameras are stopped; no traceback, exit status 0.
    conf = tmp_path / "c.toml"
    head = '[daemon]\nbus = "session"\n'
    conf.write_text(head + CAM0)
    for i in range(3):
        d = start_daemon("--config", str(conf))
        conf.write_text(head + CAM0 + CAM1.format(size=f"{96 + 32 * i}x64"))
        d.proc.send_signal(signal.SIGHUP)
        time.sleep(0.05 * i)
        d.proc.send_signal(signal.SIGTERM)
        assert d.proc.wait(timeout=20) == 0
        log = d.log()
        assert "Traceback" not in log and "terminate called" not in log, log[-3000:]
        conf.write_text(head + CAM0)


def test_a_reload_with_a_bad_camera_changes_nothing_not_even_the_log_level(start_daemon,
                                                                          bus_address,
                                                                          tmp_path):
    import cv2
    import numpy as np

    folder = tmp_path / "frames"
    folder.mkdir()
    cv2.imwrite(str(folder / "0.png"), np.full((48, 64, 3), 90, np.uint8))
    text = tmp_path / "notes.avi"
    text.write_text("not a video\n" * 20)
    conf = tmp_path / "c.toml"
    cam0 = f'[[camera]]\nid = "cam0"\nsource = "file:{folder}?fps=20"\n'
    conf.write_text('[daemon]\nbus = "session"\n' + cam0)
    d = start_daemon("--config", str(conf))
    with Client(bus_address) as client:
        assert wait_for(lambda: client.camera("cam0").stats()["frames"] > 2)
        conf.write_text('[daemon]\nbus = "session"\nlog_level = "error"\n' + cam0
                        + f'[[camera]]\nid = "cam1"\nsource = "file:{text}"\n')
        d.proc.send_signal(signal.SIGHUP)
        assert wait_for(lambda: "keeping the running cameras" in d.log())
        assert [c.id for c in client.cameras()] == ["cam0"]
        # still at "info": the camera's warning when its images go away is logged
        (folder / "0.png").unlink()
        assert wait_for(lambda: "camera cam0: " in d.log() and "no images" in d.log())
    log = d.log()
    assert "notes.avi is not a readable video" in log and "SIGHUP: reloaded" not in log
    assert "keeping the running cameras and log level" in log
    assert "Traceback" not in log
