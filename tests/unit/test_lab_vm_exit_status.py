"""How a lab VM's qemu ended, as `wait_booted` reports it when the guest dies during boot."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "roles/lab/files"))

from labtool.vm_machine import _exit_status  # noqa: E402  (the lab tool is not a package on the path)


def _ended(argv: list[str]) -> int:
    proc = subprocess.Popen(argv)
    proc.returncode = 0  # reaped by _exit_status, as the lab's detached qemu is
    deadline = time.monotonic() + 10
    while Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
        assert time.monotonic() < deadline, "the child did not end"
        time.sleep(0.01)
    return proc.pid


def test_a_signal_is_named():
    assert _exit_status(_ended(["sh", "-c", "kill -9 $$"])) == "killed by signal 9"


def test_an_exit_status_is_given():
    assert _exit_status(_ended(["sh", "-c", "exit 3"])) == "exit status 3"


def test_a_pid_that_is_not_a_child_is_said_so():
    assert _exit_status(1) == "not a child of this process: status unknown"
