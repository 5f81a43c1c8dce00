"""The privacy-respecting sample store: off by default, metadata stripped, bounded, atomic."""

from __future__ import annotations

import fcntl
import io
import json
import os
import struct
import tarfile
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from camheald.service import store as store_mod
from camheald.service.frames import F_SEAL_WRITE
from camheald.service.images import decode
from camheald.service.store import SampleStore

F_GET_SEALS = getattr(fcntl, "F_GET_SEALS", 1034)
INFO = {"camera": "cam0", "scores": {"blur": 0.91, "noise": 0.1}, "detected": ["blur"]}
SECRETS = (b"GPS-SECRET", b"ICC-SECRET", b"COMMENT-SECRET", b"Exif", b"ICC_PROFILE")


def image(seed: int = 0, size: tuple[int, int] = (48, 64)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)


def make_store(tmp_path: Path, **kw) -> SampleStore:
    args = {"max_bytes": 10 << 20, "max_age_s": 3600.0, "max_count": 100, "enabled": True}
    args.update(kw)
    return SampleStore(tmp_path / "samples", **args)


def png_chunks(data: bytes) -> list[bytes]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, i = [], 8
    while i < len(data):
        length, kind = struct.unpack(">I4s", data[i:i + 8])
        chunks.append(kind)
        i += 12 + length
    return chunks


def jpeg_with_metadata(rgb: np.ndarray) -> bytes:
    """A JPEG carrying EXIF (with a GPS IFD), an ICC profile and a comment."""
    ok, jpg = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    jpg = jpg.tobytes()
    # TIFF: IFD0 with a GPSInfo pointer -> GPS IFD with GPSLatitudeRef "N"; a marker after it
    tiff = (b"MM\x00\x2a" + struct.pack(">I", 8)
            + struct.pack(">H", 1) + struct.pack(">HHII", 0x8825, 4, 1, 26) + struct.pack(">I", 0)
            + struct.pack(">H", 1) + struct.pack(">HHI", 0x0001, 2, 2) + b"N\x00\x00\x00"
            + struct.pack(">I", 0) + b"GPS-SECRET 48.85N 2.35E")
    exif = b"Exif\x00\x00" + tiff
    icc = b"ICC_PROFILE\x00\x01\x01" + b"ICC-SECRET" * 20
    com = b"COMMENT-SECRET shot at home"

    def seg(marker: int, payload: bytes) -> bytes:
        return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload

    return jpg[:2] + seg(0xE1, exif) + seg(0xE2, icc) + seg(0xFE, com) + jpg[2:]


def test_off_by_default_keeps_nothing(tmp_path: Path) -> None:
    store = SampleStore(tmp_path / "samples", max_bytes=1 << 20, max_age_s=60, max_count=10)
    assert store.enabled is False
    assert store.add(image(), INFO) is None
    assert not (tmp_path / "samples").exists()


def test_limits_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        SampleStore(tmp_path, max_bytes=0, max_age_s=60, max_count=10)


def test_metadata_does_not_survive(tmp_path: Path) -> None:
    rgb = image(1)
    jpeg = jpeg_with_metadata(rgb)
    for secret in SECRETS:  # the input really carries them
        assert secret in jpeg
    decoded, family = decode(jpeg)  # the daemon's normal decoding path
    assert family == "jpeg"
    store = make_store(tmp_path)
    name = store.add(decoded, {**INFO, "source": "rtsp://user:pw@10.0.0.5/", "exif": jpeg[:64]})
    png = (store.root / f"{name}.png").read_bytes()
    sidecar = (store.root / f"{name}.json").read_bytes()
    assert set(png_chunks(png)) <= {b"IHDR", b"IDAT", b"IEND"}
    for blob in (png, sidecar):
        for secret in SECRETS:
            assert secret not in blob
    again = cv2.cvtColor(cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR),
                         cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(again, decoded)  # lossless: pixels only, all of them


def test_sidecar_has_exactly_four_keys(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    name = store.add(image(), {**INFO, "time": 1700000000.5, "source": "v4l2:/dev/video0",
                               "seq": 12, "user": "alice"})
    meta = json.loads((store.root / f"{name}.json").read_text())
    assert meta == {"camera": "cam0", "time": 1700000000.5,
                    "scores": {"blur": 0.91, "noise": 0.1}, "detected": ["blur"]}
    assert (store.root / f"{name}.png").stat().st_mode & 0o777 == 0o600
    assert store.root.stat().st_mode & 0o777 == 0o700
    with pytest.raises(ValueError, match="camera id"):
        store.add(image(), {"camera": "../../etc"})


def test_count_limit_drops_oldest(tmp_path: Path) -> None:
    store = make_store(tmp_path, max_count=3)
    names = [store.add(image(i), INFO) for i in range(5)]
    assert sorted(p.stem for p in store.root.glob("*.json")) == names[2:]
    assert sorted(p.stem for p in store.root.glob("*.png")) == names[2:]
    assert store.stats()["count"] == 3


def test_size_limit_drops_oldest_and_refuses_oversize(tmp_path: Path) -> None:
    probe = make_store(tmp_path / "probe")
    one = probe.add(image(0), INFO)
    size = probe.stats()["bytes"]
    assert one and size > 0
    store = make_store(tmp_path, max_bytes=int(size * 2.5))
    names = [store.add(image(0), INFO) for _ in range(4)]
    stats = store.stats()
    assert stats["count"] == 2 and stats["bytes"] <= size * 2.5
    assert sorted(p.stem for p in store.root.glob("*.json")) == names[2:]
    big = image(1, (400, 400))
    assert store.add(big, INFO) is None  # bigger than the whole store: not kept
    assert store.stats()["count"] == 2


def test_age_limit(tmp_path: Path) -> None:
    store = make_store(tmp_path, max_age_s=0.3)
    store.add(image(), INFO)
    assert store.prune() == 0
    time.sleep(0.4)
    assert store.prune() == 1
    assert list(store.root.iterdir()) == []


def test_rate_limit_per_camera(tmp_path: Path) -> None:
    store = make_store(tmp_path, min_interval_s=60)
    assert store.add(image(), INFO)
    assert store.add(image(), INFO) is None
    assert store.add(image(), {**INFO, "camera": "cam1"})


def test_samples_survive_a_restart(tmp_path: Path) -> None:
    name = make_store(tmp_path).add(image(), INFO)
    again = make_store(tmp_path)
    assert again.stats()["count"] == 1
    assert again.purge() == 1
    assert not (again.root / f"{name}.png").exists()


def test_write_order_fsync_then_rename(tmp_path: Path, monkeypatch) -> None:
    store = make_store(tmp_path)
    store.stats()  # create the folder
    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append("fsync-dir" if os.path.isdir(f"/proc/self/fd/{fd}") else "fsync")
        real_fsync(fd)

    def replace(src, dst) -> None:
        events.append("rename " + Path(dst).suffix)
        real_replace(src, dst)

    monkeypatch.setattr(store_mod.os, "fsync", fsync)
    monkeypatch.setattr(store_mod.os, "replace", replace)
    store.add(image(), INFO)
    assert events[:5] == ["fsync", "fsync", "rename .png", "rename .json", "fsync-dir"]


def test_failed_write_leaves_nothing(tmp_path: Path, monkeypatch) -> None:
    store = make_store(tmp_path)
    kept = store.add(image(0), INFO)
    real_replace = os.replace

    def replace(src, dst) -> None:
        if str(dst).endswith(".json"):
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(store_mod.os, "replace", replace)
    with pytest.raises(OSError):
        store.add(image(1), INFO)
    assert sorted(p.name for p in store.root.iterdir()) == [f"{kept}.json", f"{kept}.png"]
    assert store.stats()["count"] == 1


def test_crash_leftovers_are_swept_on_start(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    kept = store.add(image(0), INFO)
    root = store.root
    (root / ".1700000000000000000-cam0.png.tmp").write_bytes(b"half")
    (root / "1700000000000000001-cam0.png").write_bytes(b"no sidecar")  # crash before JSON
    (root / "1700000000000000002-cam0.json").write_text("{}")  # half-removed
    (root / "README").write_text("not ours")
    again = make_store(tmp_path)
    assert again.stats()["count"] == 1
    assert sorted(p.name for p in root.iterdir()) == sorted(
        ["README", f"{kept}.json", f"{kept}.png"])


def test_export_tar_and_purge(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    names = [store.add(image(i), {**INFO, "time": 1.0 + i}) for i in range(3)]
    fd, info = store.export_memfd()
    try:
        assert info["count"] == 3
        assert os.fstat(fd).st_size == info["bytes"]
        assert fcntl.fcntl(fd, F_GET_SEALS) & F_SEAL_WRITE  # nobody can change it
        with pytest.raises(OSError):
            os.write(fd, b"x")
        with os.fdopen(os.dup(fd), "rb") as f, tarfile.open(fileobj=f) as tar:
            members = {m.name: m for m in tar.getmembers()}
            assert sorted(members) == sorted(f"samples/{n}{s}" for n in names
                                             for s in (".png", ".json"))
            assert all(m.uid == 0 and m.uname == "" and m.isfile() for m in members.values())
            for i, name in enumerate(names):
                png = tar.extractfile(members[f"samples/{name}.png"]).read()
                bgr = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
                np.testing.assert_array_equal(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), image(i))
                meta = json.load(tar.extractfile(members[f"samples/{name}.json"]))
                assert meta["time"] == 1.0 + i
    finally:
        os.close(fd)
    assert store.purge() == 3
    assert list(store.root.iterdir()) == []
    assert store.stats()["count"] == 0
    buf = io.BytesIO()
    assert store.export_to(buf)["count"] == 0
    assert store.purge() == 0


def test_export_skips_samples_purged_meanwhile(tmp_path: Path, monkeypatch) -> None:
    store = make_store(tmp_path)
    first, second = store.add(image(0), INFO), store.add(image(1), INFO)
    real_read = Path.read_bytes

    def read_bytes(self: Path) -> bytes:
        if self.stem == first:
            raise FileNotFoundError(self)
        return real_read(self)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    buf = io.BytesIO()
    assert store.export_to(buf)["count"] == 1
    buf.seek(0)
    with tarfile.open(fileobj=buf) as tar:
        assert {Path(n).stem for n in tar.getnames()} == {second}
