"""SIGTERM while a call is in progress: the caller gets an answer, the daemon exits at once."""

from __future__ import annotations

import threading
import time

from camheal import Client
from camheal.errors import CamhealError, NotReady

# blurred frames: restoring a burst of them takes tens of seconds in one executor thread
# (the daemon is gone a moment after SIGTERM, so the test costs a few seconds of CPU)
INJECT = "inject:demo:?size=480x270&fps=15#schedule=blur"


def test_sigterm_during_a_restoring_burst(start_daemon, bus_address):
    d = start_daemon("--source", INJECT)
    outcome: list[BaseException | object] = []
    started = threading.Event()

    def burst() -> None:
        try:
            with Client(bus_address) as client:
                cam = client.camera()
                started.set()
                outcome.append(cam.capture_burst(16, restore=True))
        except CamhealError as exc:
            outcome.append(exc)

    caller = threading.Thread(target=burst, daemon=True)
    caller.start()
    assert started.wait(10)
    time.sleep(2.0)  # 16 frames at 15 fps are in: the burst is being restored
    assert not outcome, f"the burst ended before SIGTERM: {outcome}"
    t0 = time.monotonic()
    rc = d.stop()
    took = time.monotonic() - t0
    caller.join(5)
    log = d.log()
    assert rc == 0, log
    assert took < 4.0, f"exit took {took:.1f} s after SIGTERM\n{log}"
    assert "Traceback" not in log and "Exception in callback" not in log, log
    assert len(outcome) == 1 and isinstance(outcome[0], NotReady), outcome
    assert str(outcome[0]) == "camheald is shutting down"
