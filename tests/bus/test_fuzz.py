"""Fuzz every method and property of the running service with random and boundary arguments."""

from __future__ import annotations

import os

import pytest
from dbus_fast import Message, MessageType, Variant
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from camheal import Client
from camheal import constants as C

EXAMPLES = int(os.environ.get("CAMHEAL_FUZZ_EXAMPLES", "1000"))
KEYS = ["corrected", "format", "quality", "timeout_ms", "raw", "", "x" * 300]
INTS = st.one_of(st.sampled_from([0, -1, 1, 2**31 - 1, -(2**31), 100, 101, 30001]),
                 st.integers(-(2**31), 2**31 - 1))
TEXT = st.one_of(st.sampled_from(["png", "jpeg", "rgb", "gif", "", "PNG", "x" * 10_000]),
                 st.text(max_size=50).filter(lambda s: "\0" not in s))
VARIANTS = st.one_of(
    st.booleans().map(lambda v: Variant("b", v)),
    INTS.map(lambda v: Variant("i", v)),
    st.integers(0, 2**64 - 1).map(lambda v: Variant("t", v)),
    st.floats(allow_nan=True).map(lambda v: Variant("d", v)),
    TEXT.map(lambda v: Variant("s", v)),
    st.lists(st.text(max_size=8).filter(lambda s: "\0" not in s), max_size=5).map(
        lambda v: Variant("as", v)),
    st.binary(max_size=64).map(lambda v: Variant("ay", v)),
)
OPTIONS = st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=20).filter(
    lambda s: "\0" not in s)), VARIANTS,
                          max_size=20)
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])


@pytest.fixture()
def service(start_daemon, bus_address):
    d = start_daemon("--source", "demo:?size=96x64&fps=15")
    client = Client(bus_address, timeout=10)
    cam = client.camera()
    yield d, client, cam.path
    client.close()
    fds = len(os.listdir(f"/proc/{d.proc.pid}/fd"))
    assert d.proc.poll() is None, "the daemon died"
    assert fds < 64, f"the daemon holds {fds} fds after fuzzing"
    log = d.log()
    assert "Traceback" not in log, log[-4000:]


def call(client: Client, path: str, iface: str, member: str, sig: str, body: list,
         fds: list[int] | None = None) -> Message:
    bus = client._aio._bus
    msg = Message(destination=C.BUS_NAME, path=path, interface=iface, member=member,
                  signature=sig, body=body, unix_fds=fds or [])
    reply = client._run(bus.call(msg))
    assert reply is not None, f"{member}: no reply"
    if reply.message_type == MessageType.ERROR:
        text = str(reply.body[0]) if reply.body else ""
        assert "Traceback" not in text and 'File "' not in text, text
        assert reply.error_name.startswith(C.ERROR_PREFIX) or \
            reply.error_name.startswith("org.freedesktop.DBus.Error."), reply.error_name
    else:
        for fd in reply.unix_fds:
            os.close(fd)
    return reply


def test_fuzz_capture_frame(service):
    _d, client, path = service

    @FUZZ
    @given(OPTIONS)
    def run(options):
        call(client, path, C.CAMERA_IFACE, "CaptureFrame", "a{sv}", [options])
    run()


def test_fuzz_subscribe_unsubscribe(service):
    _d, client, path = service

    @FUZZ
    @given(OPTIONS, INTS.map(lambda v: v & 0xFFFFFFFF))
    def run(options, sub_id):
        reply = call(client, path, C.CAMERA_IFACE, "Subscribe", "a{sv}", [options])
        if reply.message_type == MessageType.METHOD_RETURN:
            sub_id = int(reply.body[2]["id"].value)
        call(client, path, C.CAMERA_IFACE, "Unsubscribe", "u", [sub_id])
    run()


def test_fuzz_correct_image(service):
    _d, client, _path = service
    header = st.sampled_from([b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"BM", b"P6\n",
                              b"RIFF\0\0\0\0WEBP", b"II*\x00"])

    @FUZZ
    @given(header, st.binary(max_size=2048), OPTIONS)
    def run(head, tail, options):
        fd = os.memfd_create("fuzz", os.MFD_CLOEXEC)
        try:
            os.write(fd, head + tail)
            call(client, C.MANAGER_PATH, C.MANAGER_IFACE, "CorrectImage", "ha{sv}",
                 [0, options], fds=[fd])
        finally:
            os.close(fd)
    run()


def test_fuzz_properties_and_manager(service):
    _d, client, path = service
    names = st.one_of(st.sampled_from(["Id", "Source", "Width", "Height", "Fps", "Health",
                                       "Stats", "Corrections", "", "Nope"]),
                      st.text(max_size=30).filter(lambda s: "\0" not in s))
    ifaces = st.sampled_from([C.CAMERA_IFACE, C.MANAGER_IFACE, "", "org.example.X"])

    @FUZZ
    @given(ifaces, names, VARIANTS)
    def run(iface, name, value):
        props = "org.freedesktop.DBus.Properties"
        call(client, path, props, "Get", "ss", [iface, name])
        call(client, path, props, "Set", "ssv", [iface, name, value])
        call(client, path, props, "GetAll", "s", [iface])
        call(client, C.MANAGER_PATH, C.MANAGER_IFACE, "ListCameras", "", [])
        call(client, C.MANAGER_PATH, C.MANAGER_IFACE, "Version", "", [])
    run()
