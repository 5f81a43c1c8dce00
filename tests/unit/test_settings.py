"""Runtime settings: atomic persistence, reload, corrupt state files."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from camheald.service import settings as S
from camheald.service.settings import Settings, SettingsStore


def test_missing_file_gives_defaults_and_collection_off(tmp_path: Path) -> None:
    store = SettingsStore(tmp_path / "state" / "settings.json")
    assert store.load() == Settings(collect_samples=False, correct={})
    assert not (tmp_path / "state").exists()  # loading never writes
    assert store.correct_for("cam0", True) is True


def test_changes_persist_and_reload(tmp_path: Path) -> None:
    path = tmp_path / "state" / "settings.json"
    store = SettingsStore(path)
    store.load()
    store.set_collect_samples(True)
    store.set_correct("cam0", False)
    assert json.loads(path.read_text()) == {"version": 1, "collect_samples": True,
                                            "correct": {"cam0": False}}
    assert oct(path.stat().st_mode & 0o777) == oct(0o640)
    again = SettingsStore(path).load()
    assert again == Settings(collect_samples=True, correct={"cam0": False})
    store2 = SettingsStore(path)
    store2.load()
    assert store2.correct_for("cam0", True) is False
    assert store2.correct_for("cam1", True) is True
    assert [p.name for p in path.parent.iterdir()] == ["settings.json"]  # no temp left


def test_write_is_fsynced_then_renamed_then_folder_fsynced(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "settings.json"
    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append("fsync-dir" if os.path.isdir(f"/proc/self/fd/{fd}") else "fsync-file")
        real_fsync(fd)

    def replace(src, dst) -> None:
        events.append("rename")
        real_replace(src, dst)

    monkeypatch.setattr(S.os, "fsync", fsync)
    monkeypatch.setattr(S.os, "replace", replace)
    SettingsStore(path).set_collect_samples(True)
    assert events == ["fsync-file", "rename", "fsync-dir"]


def test_failed_write_keeps_old_file_and_old_value(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "settings.json"
    store = SettingsStore(path)
    store.set_collect_samples(True)
    before = path.read_bytes()

    def boom(src, dst) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(S.os, "replace", boom)
    with pytest.raises(OSError):
        store.set_collect_samples(False)
    assert store.settings.collect_samples is True  # memory matches disk
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["settings.json"]  # temp removed


def test_invalid_camera_id_is_refused(tmp_path: Path) -> None:
    store = SettingsStore(tmp_path / "settings.json")
    with pytest.raises(ValueError, match="invalid camera id"):
        store.set_correct("../etc", True)
    assert not (tmp_path / "settings.json").exists()


@pytest.mark.parametrize("content", [
    b"",
    b"{",
    b"\xff\xfe garbage",
    b"[]",
    b'{"version": 1, "collect_samples": "yes"}',
    b'{"version": 1, "correct": {"cam 0": true}}',
    b'{"version": 1, "correct": {"cam0": 1}}',
    b'{"version": 99, "collect_samples": true}',
    b"[" * 100_000,
    b'{"version": 1, "pad": "' + b"x" * (2 << 20) + b'"}',
], ids=["empty", "truncated", "binary", "list", "bad-bool", "bad-id", "bad-value",
        "future-version", "deep", "huge"])
def test_corrupt_file_gives_defaults_and_one_log_line(tmp_path: Path, caplog,
                                                     content: bytes) -> None:
    path = tmp_path / "settings.json"
    path.write_bytes(content)
    store = SettingsStore(path)
    with caplog.at_level(logging.ERROR, logger=S.__name__):
        assert store.load() == Settings()
    [record] = caplog.records
    message = record.getMessage()
    assert "corrupt" in message and "\n" not in message and len(message) < 300
    assert (tmp_path / "settings.json.corrupt").read_bytes() == content  # kept for a human
    store.set_collect_samples(True)  # and the daemon can save again
    assert SettingsStore(path).load().collect_samples is True


def test_unreadable_path_gives_defaults(tmp_path: Path, caplog) -> None:
    (tmp_path / "settings.json").mkdir()
    with caplog.at_level(logging.ERROR, logger=S.__name__):
        assert SettingsStore(tmp_path / "settings.json").load() == Settings()
    assert "cannot be read" in caplog.text


def test_unknown_keys_from_a_newer_daemon_are_ignored(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    path.write_text('{"version": 1, "collect_samples": true, "future": 3}')
    assert SettingsStore(path).load() == Settings(collect_samples=True)
