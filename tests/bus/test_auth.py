"""Authorization against a real dbus-daemon: python-dbusmock's polkitd answering yes/no/errors."""

from __future__ import annotations

import asyncio
import contextlib
import grp
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from dbus_fast import Message, MessageType
from dbus_fast.aio import MessageBus

from camheald.bus import auth
from camheald.bus.auth import AUTH, PUBLIC, Authorizer, fallback_allows
from camheald.errors import NotAllowed

MOCK_IFACE = "org.freedesktop.DBus.Mock"
PRIVILEGED = "Manager.SetDataCollection"

try:
    import dbusmock  # noqa: F401
    HAVE_DBUSMOCK = True
except ImportError:  # pragma: no cover - depends on the dev environment
    HAVE_DBUSMOCK = False

needs_dbusmock = pytest.mark.skipif(
    not HAVE_DBUSMOCK, reason="python-dbusmock is not installed (pip install python-dbusmock)")


async def _owned(bus: MessageBus, name: str) -> bool:
    reply = await bus.call(Message(
        destination="org.freedesktop.DBus", path="/org/freedesktop/DBus",
        interface="org.freedesktop.DBus", member="NameHasOwner", signature="s", body=[name]))
    return bool(reply.body[0])


async def _until(bus: MessageBus, owned: bool, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 15
    while await _owned(bus, auth.POLKIT_NAME) != owned:
        if owned and proc.poll() is not None:
            raise AssertionError(f"dbusmock exited with {proc.returncode}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{auth.POLKIT_NAME} still {'absent' if owned else 'owned'}")
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def _mock(address: str, *args: str) -> AsyncIterator[subprocess.Popen]:
    """python-dbusmock on ``address`` (as org.freedesktop.PolicyKit1), gone again after."""
    env = dict(os.environ, DBUS_SESSION_BUS_ADDRESS=address)
    proc = subprocess.Popen([sys.executable, "-m", "dbusmock", "--session", *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    watcher = await MessageBus(bus_address=address).connect()
    try:
        await _until(watcher, True, proc)
        yield proc
    finally:
        proc.terminate()
        await asyncio.get_running_loop().run_in_executor(None, proc.wait, 10)
        # the next test asks whether polkit is there: let the bus drop the name first
        await _until(watcher, False, proc)
        watcher.disconnect()


@pytest.fixture()
async def polkitd(bus_address: str) -> AsyncIterator[subprocess.Popen]:
    """python-dbusmock's polkitd template on the private bus; denies everything by default."""
    if not HAVE_DBUSMOCK:
        pytest.skip("python-dbusmock is not installed (pip install python-dbusmock)")
    async with _mock(bus_address, "--template", "polkitd") as proc:
        yield proc


@pytest.fixture()
async def buses(bus_address: str) -> AsyncIterator[tuple[MessageBus, MessageBus]]:
    """(daemon, caller): two connections to the private bus."""
    daemon = await MessageBus(bus_address=bus_address).connect()
    client = await MessageBus(bus_address=bus_address).connect()
    yield daemon, client
    client.disconnect()
    daemon.disconnect()


async def _add_check_method(bus: MessageBus, out_signature: str, code: str) -> None:
    """Give a bare dbusmock object a CheckAuthorization that runs ``code``."""
    reply = await bus.call(Message(
        destination=auth.POLKIT_NAME, path=auth.POLKIT_PATH, interface=MOCK_IFACE,
        member="AddMethod", signature="sssss",
        body=[auth.POLKIT_IFACE, "CheckAuthorization", "(sa{sv})sa{ss}us", out_signature,
              code]))
    assert reply.message_type == MessageType.METHOD_RETURN, reply.body


async def _mock_call(bus: MessageBus, member: str, signature: str, body: list) -> None:
    reply = await bus.call(Message(destination=auth.POLKIT_NAME, path=auth.POLKIT_PATH,
                                   interface=MOCK_IFACE, member=member, signature=signature,
                                   body=body))
    assert reply.message_type == MessageType.METHOD_RETURN, reply.body


# -- the table ------------------------------------------------------------------------------
def test_table_covers_every_method_and_writable_property() -> None:
    from camheald.bus.interfaces import CameraInterface, ManagerInterface

    missing = []
    for cls, short in ((ManagerInterface, "Manager"), (CameraInterface, "Camera")):
        for name in dir(cls):
            members = getattr(getattr(cls, name), "__dict__", {})
            if "__DBUS_METHOD" in members:
                key = f"{short}.{members['__DBUS_METHOD'].name}"
            elif "__DBUS_PROPERTY" in members and getattr(cls, name).access.writable():
                key = f"{short}.{getattr(cls, name).name}"
            else:
                continue
            if key not in AUTH:
                missing.append(key)
    assert not missing, f"members without an authorization entry: {missing}"
    assert set(AUTH.values()) <= {PUBLIC, auth.ACTION_CONFIGURE, auth.ACTION_COLLECT,
                                  auth.ACTION_EXPORT}


def test_table_actions_are_shipped_in_the_polkit_policy() -> None:
    policy = Path(__file__).parents[2] / "systemd" / "io.camheal.Camheal1.policy"
    text = policy.read_text()
    for action in set(AUTH.values()) - {PUBLIC}:
        assert f'<action id="{action}">' in text


# -- polkit present ---------------------------------------------------------------------------
async def test_public_member_needs_no_polkit(buses) -> None:
    daemon, client = buses
    await Authorizer(daemon).check(client.unique_name, "Camera.CaptureFrame")


async def test_unknown_member_is_refused(buses) -> None:
    daemon, client = buses
    with pytest.raises(NotAllowed, match="not in the authorization table"):
        await Authorizer(daemon).check(client.unique_name, "Manager.Reboot")


@needs_dbusmock
async def test_polkit_yes_allows(polkitd, buses) -> None:
    daemon, client = buses
    await _mock_call(daemon, "SetAllowed", "as", [[auth.ACTION_COLLECT]])
    await Authorizer(daemon).check(client.unique_name, PRIVILEGED)
    # allowed for that action only
    with pytest.raises(NotAllowed, match="polkit denies io.camheal.Camheal1.export-data"):
        await Authorizer(daemon).check(client.unique_name, "Manager.PurgeSamples")


@needs_dbusmock
async def test_polkit_no_denies(polkitd, buses) -> None:
    daemon, client = buses
    for member in ("Manager.SetDataCollection", "Manager.ExportSamples",
                   "Camera.SetCorrectionEnabled"):
        with pytest.raises(NotAllowed, match=member):
            await Authorizer(daemon).check(client.unique_name, member)


@needs_dbusmock
async def test_polkit_that_hangs_is_a_denial(polkitd, buses) -> None:
    daemon, client = buses
    await _mock_call(daemon, "AllowUnknown", "b", [True])
    await _mock_call(daemon, "SimulateHang", "b", [True])
    t0 = time.monotonic()
    with pytest.raises(NotAllowed, match="timed out"):
        await Authorizer(daemon, timeout_s=0.5).check(client.unique_name, PRIVILEGED)
    assert time.monotonic() - t0 < 5


BARE = (auth.POLKIT_NAME, auth.POLKIT_PATH, auth.POLKIT_IFACE)


@needs_dbusmock
@pytest.mark.parametrize(("out_signature", "code"), [
    ("", "raise dbus.exceptions.DBusException('no', name='org.freedesktop.PolicyKit1.Error')"),
    ("s", "ret = 'yes'"),
    ("(b)", "ret = (True,)"),
], ids=["error-reply", "wrong-signature", "wrong-shape"])
async def test_polkit_error_or_malformed_reply_is_a_denial(bus_address, buses, out_signature,
                                                           code) -> None:
    daemon, client = buses
    async with _mock(bus_address, *BARE):
        await _add_check_method(daemon, out_signature, code)
        with pytest.raises(NotAllowed, match="authorization check failed"):
            await Authorizer(daemon).check(client.unique_name, PRIVILEGED)


@needs_dbusmock
async def test_interactive_flag_is_passed_to_polkit(bus_address, buses) -> None:
    daemon, client = buses
    async with _mock(bus_address, *BARE):
        # allows only when AllowUserInteraction (flags == 1) was asked for
        await _add_check_method(daemon, "(bba{ss})", "ret = (args[3] == 1, args[3] != 1, {})")
        authz = Authorizer(daemon)
        with pytest.raises(NotAllowed, match="requires authentication"):
            await authz.check(client.unique_name, PRIVILEGED)
        await authz.check(client.unique_name, PRIVILEGED, interactive=True)


# -- polkit absent ----------------------------------------------------------------------------
async def test_polkit_absent_root_passes(buses) -> None:
    if os.geteuid() != 0:
        pytest.skip("the caller connection must belong to root for this test")
    daemon, client = buses
    await Authorizer(daemon).check(client.unique_name, PRIVILEGED)


async def test_polkit_absent_unknown_sender_is_refused(buses) -> None:
    daemon, _client = buses
    with pytest.raises(NotAllowed, match="cannot identify"):
        await Authorizer(daemon).check(":1.999999", PRIVILEGED)


def test_fallback_decision() -> None:
    assert fallback_allows(0, [], None)
    assert fallback_allows(1000, [100, 4242], 4242)
    assert not fallback_allows(1000, [100], 4242)
    assert not fallback_allows(1000, [100], None)  # no admin group on this system


def test_user_gids_from_passwd() -> None:
    assert 0 in auth.user_gids(0)
    assert auth.user_gids(2**31 - 7) == set()


# -- real unprivileged callers (root only) ----------------------------------------------------
SYSTEM_PY = shutil.which("python3", path="/usr/bin:/bin")
CHILD = textwrap.dedent("""
    import sys
    import dbus
    bus = dbus.bus.BusConnection(sys.argv[1])
    print(bus.get_unique_name(), flush=True)
    sys.stdin.read()
""")


def _system_python_has_dbus() -> bool:
    if SYSTEM_PY is None:
        return False
    return subprocess.run([SYSTEM_PY, "-c", "import dbus"], capture_output=True).returncode == 0


@pytest.fixture(scope="module")
def system_like_bus() -> Iterator[str]:
    """A dbus-daemon any local user may connect to (like the system bus), socket in a 0755 dir."""
    if os.geteuid() != 0:
        pytest.skip("needs root to create unprivileged test users")
    if shutil.which("useradd") is None or shutil.which("dbus-daemon") is None:
        pytest.skip("needs useradd and dbus-daemon")
    if not _system_python_has_dbus():
        pytest.skip("unprivileged clients need /usr/bin/python3 with dbus-python "
                    "(the venv under /root is not readable by them)")
    tmp = Path(tempfile.mkdtemp(prefix="camheal-auth-"))
    tmp.chmod(0o755)
    (tmp / "bus.conf").write_text(textwrap.dedent(f"""\
        <!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
         "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
        <busconfig>
          <type>system</type>
          <listen>unix:path={tmp}/bus</listen>
          <auth>EXTERNAL</auth>
          <policy context="default">
            <allow user="*"/>
            <allow send_destination="*" eavesdrop="true"/>
            <allow eavesdrop="true"/>
            <allow own="*"/>
          </policy>
        </busconfig>
    """))
    proc = subprocess.Popen(["dbus-daemon", f"--config-file={tmp}/bus.conf", "--nofork",
                             "--nopidfile", "--print-address=1"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    address = proc.stdout.readline().strip()
    try:
        assert address, "dbus-daemon did not start"
        yield address
    finally:
        proc.terminate()
        proc.wait(10)
        proc.stdout.close()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def test_users() -> Iterator[dict[str, str]]:
    """Two throw-away users: one plain, one in camheal-admin (group created if missing)."""
    if os.geteuid() != 0 or shutil.which("useradd") is None:
        pytest.skip("needs root and useradd to create unprivileged test users")
    tag = uuid.uuid4().hex[:6]
    users = {"plain": f"chtest{tag}p", "admin": f"chtest{tag}a"}
    made_group = False
    try:
        grp.getgrnam(auth.ADMIN_GROUP)
    except KeyError:
        subprocess.run(["groupadd", "--system", auth.ADMIN_GROUP], check=True)
        made_group = True
    try:
        subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin",
                        users["plain"]], check=True)
        subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin",
                        "-G", auth.ADMIN_GROUP, users["admin"]], check=True)
        yield users
    finally:
        for name in users.values():
            subprocess.run(["userdel", name], capture_output=True)
        if made_group:
            subprocess.run(["groupdel", auth.ADMIN_GROUP], capture_output=True)


@contextlib.contextmanager
def _client_as(user: str, address: str) -> Iterator[str]:
    """A dbus-python client running as ``user``; yields its unique bus name."""
    pw = pwd.getpwnam(user)
    # user= alone keeps root's supplementary groups: set them the way a login would
    proc = subprocess.Popen([SYSTEM_PY, "-c", CHILD, address], user=pw.pw_uid,
                            group=pw.pw_gid, extra_groups=os.getgrouplist(user, pw.pw_gid),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd="/")
    try:
        assert proc.stdout is not None
        name = proc.stdout.readline().strip()
        assert name.startswith(":"), f"client as {user} failed: {proc.stderr.read()}"
        yield name
    finally:
        proc.kill()
        proc.communicate()


async def test_unprivileged_users_without_polkit(system_like_bus, test_users) -> None:
    daemon = await MessageBus(bus_address=system_like_bus).connect()
    try:
        authz = Authorizer(daemon)
        with _client_as(test_users["plain"], system_like_bus) as plain:
            await authz.check(plain, "Camera.CaptureFrame")  # PUBLIC
            with pytest.raises(NotAllowed, match="only for root and group camheal-admin"):
                await authz.check(plain, PRIVILEGED)
        with _client_as(test_users["admin"], system_like_bus) as admin:
            await authz.check(admin, PRIVILEGED)
            await authz.check(admin, "Manager.ExportSamples")
    finally:
        daemon.disconnect()


@needs_dbusmock
async def test_unprivileged_user_with_polkit(system_like_bus, test_users) -> None:
    daemon = await MessageBus(bus_address=system_like_bus).connect()
    try:
        async with _mock(system_like_bus, "--template", "polkitd"):
            with _client_as(test_users["admin"], system_like_bus) as admin:
                # polkit's answer wins over group membership when polkit is running
                with pytest.raises(NotAllowed, match="polkit denies"):
                    await Authorizer(daemon).check(admin, PRIVILEGED)
                await _mock_call(daemon, "SetAllowed", "as", [[auth.ACTION_COLLECT]])
                await Authorizer(daemon).check(admin, PRIVILEGED)
    finally:
        daemon.disconnect()
