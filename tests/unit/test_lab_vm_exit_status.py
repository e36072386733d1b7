"""How a lab VM's qemu ended, as `wait_booted` reports it when the guest dies during boot, and that
a child still running is running whatever /proc shows of it."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "roles/lab/files"))

from labtool.vm_machine import exit_status  # noqa: E402  (the lab tool is not a package on the path)

VM_DIR = Path("/nonexistent/ebpfd-vm")


def _started(argv: list[str]) -> subprocess.Popen:
    proc = subprocess.Popen(argv)
    proc.returncode = 0  # reaped by exit_status, as the lab's detached qemu is
    return proc


def _ended(argv: list[str]) -> int:
    proc = _started(argv)
    deadline = time.monotonic() + 10
    while Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
        assert time.monotonic() < deadline, "the child did not end"
        time.sleep(0.01)
    return proc.pid


def test_a_signal_is_named():
    assert exit_status(_ended(["sh", "-c", "kill -9 $$"]), "ebpfd-v1", VM_DIR) == "killed by signal 9"


def test_an_exit_status_is_given():
    assert exit_status(_ended(["sh", "-c", "exit 3"]), "ebpfd-v1", VM_DIR) == "exit status 3"


def test_a_running_child_is_running_though_proc_does_not_show_that_qemu():
    proc = _started(["sleep", "30"])   # not qemu-system, not ebpfd-v1: is_our_qemu says no
    try:
        assert exit_status(proc.pid, "ebpfd-v1", VM_DIR) is None
    finally:
        # by PID: Popen.kill() skips a process whose returncode is set, as _started sets it
        os.kill(proc.pid, signal.SIGKILL)
        os.waitpid(proc.pid, 0)


def test_a_pid_that_is_not_a_child_and_not_that_qemu_is_said_so():
    assert exit_status(1, "ebpfd-v1", VM_DIR) == "not a child of this process: status unknown"
