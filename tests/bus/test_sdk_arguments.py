"""The SDK refuses bad arguments with its own InvalidArgument, before sending anything."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from camheal import constants as C
from camheal.aio import AsyncCamera, AsyncClient
from camheal.errors import CamhealError, InvalidArgument

DEMO = "demo:?size=160x120&fps=10"
BAD_CALLS = {
    "burst -1": lambda cam: cam.capture_burst(-1),
    "burst 2**40": lambda cam: cam.capture_burst(2**40),
    "burst 1.5": lambda cam: cam.capture_burst(1.5),
    "burst '2'": lambda cam: cam.capture_burst("2"),
    "burst True": lambda cam: cam.capture_burst(True),
    "burst restore 'no'": lambda cam: cam.capture_burst(2, restore="no"),
    "capture corrected 'no'": lambda cam: cam.capture(corrected="no"),
    "capture timeout -1": lambda cam: cam.capture(timeout_ms=-1),
    "capture timeout 2**40": lambda cam: cam.capture(timeout_ms=2**40),
    "encoded fmt 3": lambda cam: cam.capture_encoded(3),
    "encoded quality 9.5": lambda cam: cam.capture_encoded("png", quality=9.5),
    "subscribe corrected None": lambda cam: cam.subscribe(None),
}


@pytest.mark.parametrize("case", list(BAD_CALLS))
async def test_bad_arguments_are_invalid_argument_without_a_bus(case: str) -> None:
    # checked before any connection: this client's bus does not even exist
    cam = AsyncCamera(AsyncClient("unix:path=/nonexistent/bus"), "cam0")
    with pytest.raises(InvalidArgument) as err:
        await BAD_CALLS[case](cam)
    assert "\n" not in str(err.value)


async def test_flags_and_counts_accept_numpy_scalars() -> None:
    from camheal.aio import _flag, _integer

    assert _flag("x", np.bool_(True)) is True
    assert _integer("count", np.int64(3), 1, 16) == 3


async def test_a_raw_call_with_a_body_that_does_not_match_is_invalid_argument(bus_address):
    async with AsyncClient(bus_address) as client:
        with pytest.raises(InvalidArgument, match="CaptureBurst"):
            await client.call(C.camera_path("cam0"), C.CAMERA_IFACE, "CaptureBurst", "ua{sv}",
                              [-1, {}])
        with pytest.raises(InvalidArgument):
            await client.call(C.MANAGER_PATH, C.MANAGER_IFACE, "Version", "u", ["x"])


def test_blocking_client_bad_arguments_then_works_and_leaves_no_stray_errors(
        start_daemon, bus_env) -> None:
    # A real app as a subprocess: each bad call is InvalidArgument, the connection still
    # works afterwards, and closing it prints nothing (no "Future exception was never
    # retrieved" of a reply that never came)
    start_daemon("--source", DEMO)
    script = textwrap.dedent("""
        from camheal import Client
        from camheal.errors import InvalidArgument
        with Client("session") as client:
            cam = client.camera()
            for call in (lambda: cam.capture_burst(-1), lambda: cam.capture_burst(2**40),
                         lambda: cam.capture_burst(1.5), lambda: cam.capture_burst("2"),
                         lambda: cam.capture(corrected="no")):
                try:
                    call()
                except InvalidArgument as e:
                    print("InvalidArgument", e)
            print("version", client.version())
            print("frame", cam.capture().image.shape)
    """)
    r = subprocess.run([sys.executable, "-c", script], env=bus_env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert [x.split()[0] for x in lines] == ["InvalidArgument"] * 5 + ["version", "frame"], \
        r.stdout
    assert lines[-1] == "frame (120, 160, 3)"
    assert r.stderr == "", r.stderr


def test_invalid_argument_is_a_camheal_error() -> None:
    assert issubclass(InvalidArgument, CamhealError)
