from __future__ import annotations

from pathlib import Path

import pytest

import camheald
from camheald import config as cfg
from camheald.errors import ConfigError


def test_shipped_default_file_is_valid_and_complete():
    shipped = Path(camheald.__file__).parent / "camheald.toml"
    loaded = cfg.load(shipped)
    assert loaded == cfg.validate(cfg.Config())  # the file shows every default
    text = shipped.read_text()
    for section in (cfg.DaemonConfig, cfg.ModelConfig, cfg.SamplesConfig):
        for f in section.__dataclass_fields__:
            assert f"\n{f} =" in text, f"{f} is not documented in camheald.toml"


def test_cameras_and_types(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text('[daemon]\nanalyze_fps = 2\n[[camera]]\nid = "a"\nsource = "demo"\n'
                 '[[camera]]\nid = "b"\nsource = "demo"\nanalyze_fps = 1.5\ncorrect = false\n')
    c = cfg.load(p)
    assert c.daemon.analyze_fps == 2.0
    assert [(x.id, x.correct, x.analyze_fps) for x in c.camera] == [("a", True, None),
                                                                    ("b", False, 1.5)]


@pytest.mark.parametrize("text, needle", [
    ("[daemon]\nfoo = 1\n", "daemon: unknown key 'foo'"),
    ("[deamon]\n", "unknown section 'deamon'"),
    ("[daemon]\nanalyze_fps = 'fast'\n", "daemon.analyze_fps: expected float"),
    ("[daemon]\nanalyze_fps = true\n", "expected float, got a boolean"),
    ("[daemon]\nbus = 'user'\n", "daemon.bus"),
    ("[model]\nthreads = 0\n", "model.threads"),
    ("[model]\nestimators = 'no'\n", "model.estimators: expected bool"),
    ("[[camera]]\nsource = 'demo'\n", "missing key 'id'"),
    ("[[camera]]\nid = 'a b'\nsource = 'demo'\n", "camera[0].id"),
    ("[[camera]]\nid = 'a'\nsource = 'demo'\n[[camera]]\nid = 'a'\nsource = 'demo'\n",
     "duplicate id"),
    ("camera = 3\n", "array of tables"),
    ("[daemon]\nmax_cameras = 0\n", "daemon.max_cameras: must be between 1 and 256"),
    ("[daemon]\nmax_cameras = 1\n" + "".join(f"[[camera]]\nid = 'c{i}'\nsource = 'demo'\n"
                                              for i in range(2)),
     "camera: 2 cameras configured, more than daemon.max_cameras"),
    ("[daemon\n", "invalid TOML"),
])
def test_invalid_configs_name_the_key(tmp_path, text, needle):
    p = tmp_path / "c.toml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=needle.replace("[", r"\[").replace("]", r"\]")):
        cfg.load(p)


def test_unreadable_files(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        cfg.load(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match="is a directory"):
        cfg.load(tmp_path)
    p = tmp_path / "bin.toml"
    p.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ConfigError, match="not UTF-8"):
        cfg.load(p)


def test_a_byte_order_mark_is_accepted(tmp_path):
    p = tmp_path / "bom.toml"
    p.write_bytes(b"\xef\xbb\xbf" + b'[daemon]\nbus = "session"\n[[camera]]\nid = "c"\n'
                  b'source = "demo"\n')
    config = cfg.load(p)
    assert config.daemon.bus == "session" and config.camera[0].id == "c"


def test_an_endless_or_huge_file_is_refused_after_1_mib(tmp_path):
    with pytest.raises(ConfigError, match=r"^config /dev/zero: larger than 1 MiB"):
        cfg.load("/dev/zero")  # would never end: read is bounded
    big = tmp_path / "big.toml"
    big.write_text("# padding\n" * 110_000)  # valid TOML, 1.1 MB
    with pytest.raises(ConfigError, match="larger than 1 MiB"):
        cfg.load(big)
    ok = tmp_path / "ok.toml"
    ok.write_text("# padding\n" * 100_000 + '[daemon]\nbus = "session"\n')  # just under
    assert cfg.load(ok).daemon.bus == "session"
