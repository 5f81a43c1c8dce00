"""A refused thread de-prioritisation is said once, as a warning naming the likely cause."""

from __future__ import annotations

import platform
import subprocess
import sys
import textwrap

import pytest

# setpriority's syscall number, for the seccomp filter below
SETPRIORITY = {"x86_64": 141, "aarch64": 140}.get(platform.machine())

# Deny setpriority with EPERM, as systemd's SystemCallFilter=~@resources does, then lower the
# priority of three analysis-like threads.
SCRIPT = textwrap.dedent("""
    import ctypes, logging, sys, threading

    class Insn(ctypes.Structure):
        _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8),
                    ("k", ctypes.c_uint32)]

    class Prog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(Insn))]

    nr = int(sys.argv[1])
    insns = (Insn * 4)(Insn(0x20, 0, 0, 0),             # A = seccomp_data.nr
                       Insn(0x15, 0, 1, nr),            # A == setpriority?
                       Insn(0x06, 0, 0, 0x00050000 | 1),  # errno EPERM
                       Insn(0x06, 0, 0, 0x7FFF0000))    # allow
    libc = ctypes.CDLL(None, use_errno=True)
    prog = Prog(4, insns)
    if libc.prctl(38, 1, 0, 0, 0) or libc.prctl(22, 2, ctypes.byref(prog), 0, 0):
        print("no seccomp", flush=True)
        sys.exit(0)
    logging.basicConfig(level=logging.DEBUG, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    from camheald.service.camera import lower_thread_priority

    threads = [threading.Thread(target=lower_thread_priority, args=(10,)) for _ in range(3)]
    for t in threads:
        t.start()
        t.join()
    print("done", flush=True)
""")


@pytest.mark.skipif(SETPRIORITY is None, reason="seccomp filter written for x86_64/aarch64")
def test_a_refused_setpriority_is_one_warning_naming_the_syscall_filter():
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(SETPRIORITY)], capture_output=True,
                         text=True, timeout=60)
    if out.stdout.strip() == "no seccomp":
        pytest.skip("this kernel or sandbox refuses a seccomp filter")
    assert out.returncode == 0 and out.stdout.strip() == "done", out.stderr
    lines = [ln for ln in out.stderr.splitlines() if "priority" in ln]
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("WARNING camheald.service.camera:")
    assert "setpriority" in lines[0] and "SystemCallFilter" in lines[0]
