"""The shipped systemd unit, D-Bus policy and install target."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "systemd" / "camheald.service"


def exposure(unit: Path) -> float:
    res = subprocess.run(["systemd-analyze", "security", "--offline=true", str(unit)],
                         capture_output=True, text=True, timeout=60)
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", res.stdout + res.stderr)
    assert m, res.stdout + res.stderr
    return float(m.group(1))


def with_dropin(tmp_path: Path, platform: str) -> Path:
    """The unit with a platform drop-in folded in (what systemd would run)."""
    text = UNIT.read_text()
    for conf in sorted((ROOT / "systemd" / platform / "camheald.service.d").glob("*.conf")):
        body = conf.read_text().split("[Service]", 1)[1]
        text = text.replace("[Install]", body + "\n[Install]")
    out = tmp_path / "camheald.service"
    out.write_text(text)
    return out


@pytest.fixture(autouse=True)
def _need_systemd_analyze():
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")


def test_exposure_at_most_2(tmp_path):
    score = exposure(UNIT)
    print(f"systemd-analyze security exposure: {score}")
    assert score <= 2.0
    for platform in ("jetson", "rpi"):
        folder = tmp_path / platform
        folder.mkdir()
        assert exposure(with_dropin(folder, platform)) <= 2.0, platform


def test_unit_verifies_clean(tmp_path):
    # verify needs ExecStart to exist: point it at this environment's camheald
    exe = Path(sys.executable).parent / "camheald"
    text = UNIT.read_text().replace("/usr/local/bin/camheald", str(exe))
    unit = tmp_path / "camheald.service"
    unit.write_text(text)
    res = subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit)],
                         capture_output=True, text=True, timeout=60)
    problems = [ln for ln in (res.stdout + res.stderr).splitlines()
                if "camheald.service" in ln and "dbus" not in ln.lower()]
    assert res.returncode == 0 or not problems, res.stdout + res.stderr
    assert not problems, problems


def test_unit_essentials():
    text = UNIT.read_text()
    for line in ("Type=notify", "BusName=io.camheal.Camheal1", "WatchdogSec=",
                 "Restart=on-failure", "User=camheal", "ProtectSystem=strict", "ProtectHome=yes",
                 "PrivateTmp=yes", "NoNewPrivileges=yes", "CapabilityBoundingSet=\n",
                 "DevicePolicy=closed", "DeviceAllow=char-video4linux rw", "UMask=0077"):
        assert line in text, line
    assert "\nDynamicUser=" not in text and "MemoryDenyWriteExecute=yes" not in text


def _expand(name: str) -> set[str]:
    """The system calls of a systemd syscall group (nested groups expanded) or of one name."""
    if not name.startswith("@"):
        return {name}
    res = subprocess.run(["systemd-analyze", "syscall-filter", name], capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    calls: set[str] = set()
    for line in res.stdout.splitlines()[1:]:
        item = line.strip()
        if item and not item.startswith("#"):
            calls |= _expand(item)
    return calls


def _allowed_syscalls(text: str) -> tuple[set[str], list[str]]:
    """(the allow-list the unit's SystemCallFilter= lines build, the groups denied).

    systemd.exec(5): the first line sets the mode (here an allow-list); later ``~`` lines
    remove their calls from it and later plain lines add theirs back, in order.
    """
    allowed: set[str] = set()
    denied: list[str] = []
    lines = re.findall(r"^SystemCallFilter=(.*)$", text, re.M)
    assert lines and not lines[0].startswith("~"), "expected an allow-list"
    for value in lines:
        deny = value.startswith("~")
        names = value.lstrip("~").split()
        for name in names:
            if deny:
                allowed -= _expand(name)
                denied.append(name)
            else:
                allowed |= _expand(name)
    return allowed, denied


# System calls of the denied groups that the daemon needs, and why.
NEEDED = {"setpriority": "lower_thread_priority() raises the analysis threads' nice value"}


@pytest.mark.parametrize("platform", ["generic", "jetson", "rpi"])
def test_syscall_filter_allows_what_the_daemon_needs_and_no_more(tmp_path, platform):
    unit = UNIT if platform == "generic" else with_dropin(tmp_path, platform)
    allowed, denied = _allowed_syscalls(unit.read_text())
    assert set(NEEDED) <= allowed
    assert "@resources" in denied and "@privileged" in denied
    for group in denied:
        leaked = (_expand(group) - set(NEEDED)) & allowed
        assert not leaked, (group, sorted(leaked))
    # the rest of @resources stays refused: nice can only be raised, never lowered or pinned
    for call in ("nice", "setrlimit", "sched_setscheduler", "sched_setattr", "ioprio_set"):
        assert call not in allowed, call


def test_the_engine_cache_is_writable_under_the_unit():
    from camheald.config import ModelConfig
    from camheald.inference.tensorrt import DEFAULT_CACHE

    text = UNIT.read_text()
    assert "ProtectSystem=strict" in text
    dirs = [d for v in re.findall(r"^CacheDirectory=(.*)$", text, re.M) for d in v.split()]
    writable = {Path("/var/cache") / d for d in dirs}
    assert DEFAULT_CACHE in writable and Path(ModelConfig().engine_cache) in writable
    # the parents of a nested CacheDirectory= are root's unless listed too
    assert DEFAULT_CACHE.parent in writable


def test_install_system_into_a_staging_root(tmp_path):
    res = subprocess.run(["make", "-s", "install-system", f"DESTDIR={tmp_path}", "NO_VENV=1",
                          "PLATFORM=jetson"], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    for rel in ("etc/systemd/system/camheald.service",
                "etc/systemd/system/camheald.service.d/10-jetson.conf",
                "usr/share/dbus-1/system.d/io.camheal.Camheal1.conf",
                "usr/share/dbus-1/system-services/io.camheal.Camheal1.service",
                "usr/lib/sysusers.d/camheal.conf", "usr/lib/tmpfiles.d/camheal.conf",
                "usr/share/polkit-1/actions/io.camheal.Camheal1.policy",
                "etc/camheal/camheald.toml"):
        assert (tmp_path / rel).is_file(), rel
    conf = tmp_path / "etc/camheal/camheald.toml"
    conf.write_text("# edited by the admin\n")
    res = subprocess.run(["make", "-s", "install-system", f"DESTDIR={tmp_path}", "NO_VENV=1"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and conf.read_text() == "# edited by the admin\n"
    res = subprocess.run(["make", "-s", "uninstall-system", f"DESTDIR={tmp_path}"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert not (tmp_path / "etc/systemd/system/camheald.service").exists()
    assert conf.exists()  # configuration is kept
