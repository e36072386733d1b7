"""Ending processes by PID: SIGTERM, then SIGKILL for those that outlive the timeout.
Nothing is ever ended by name.

Part of the lab tool (package docstring: the whole picture). Standard library only.
"""
from __future__ import annotations

import contextlib
import os
import signal
import time


def pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError, ProcessLookupError):
        return False


def kill_pids(pids: list[int], *, timeout: float = 3.0) -> list[int]:
    """SIGTERM, wait, then SIGKILL; returns the PIDs still alive at the end (should be none).

    Also waits (briefly, without failing) for their zombies to be reaped by their new parent, so
    that a process list taken right afterwards no longer shows them.
    """
    pids = [p for p in pids if p != os.getpid()]
    try:
        return _kill_pids(pids, timeout)
    finally:
        deadline = time.monotonic() + 2.0
        while pids and time.monotonic() < deadline:
            pids = [p for p in pids if os.path.exists(f"/proc/{p}")]
            if pids:
                time.sleep(0.02)


def _signal_and_wait(pids: list[int], sig: int, timeout: float) -> list[int]:
    """Send sig to every pid; the ones still alive after timeout."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
    deadline = time.monotonic() + timeout
    while pids and time.monotonic() < deadline:
        time.sleep(0.02)
        pids = [p for p in pids if pid_alive(p)]
    return pids


def _kill_pids(pids: list[int], timeout: float) -> list[int]:
    survivors = _signal_and_wait(pids, signal.SIGTERM, timeout)
    return _signal_and_wait(survivors, signal.SIGKILL, timeout) if survivors else []
