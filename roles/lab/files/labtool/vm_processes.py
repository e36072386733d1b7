"""A lab's qemu processes (found by recorded PID and checked before they are ended), SSH
banners and free loopback ports.

Part of the lab tool (package docstring: the whole picture). Standard library only.
"""
from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path

QEMU = "qemu-system-x86_64"


def _cmdline(pid: int) -> list[str]:
    try:
        return [a.decode(errors="replace") for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if a]
    except OSError:
        return []


def is_our_qemu(pid: int | None, name: str, vm_dir: Path) -> bool:
    """PID is a live qemu started by the lab for this VM (its -name and its files in the command line)."""
    if not pid or pid <= 1:
        return False
    try:
        exe = os.path.basename(os.readlink(f"/proc/{pid}/exe"))
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    argv = _cmdline(pid)
    return (exe.startswith("qemu-system") and state != "Z" and f"guest={name}" in argv
            and any(str(vm_dir) in a for a in argv))


def vm_pids(name: str, vm_dir: Path, recorded: int | None) -> list[int]:
    """This VM's qemu processes: the recorded PID, the pidfile's, and (for a lab-up killed before it
    wrote its state) any qemu whose command line names this VM and its directory."""
    found = set()
    candidates = [recorded]
    with contextlib.suppress(OSError, ValueError):
        candidates.append(int((vm_dir / "qemu.pid").read_text().split()[0]))
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            argv = _cmdline(int(entry.name))
            if argv and f"guest={name}" in argv:
                candidates.append(int(entry.name))
    for pid in candidates:
        if is_our_qemu(pid, name, vm_dir):
            found.add(pid)
    return sorted(found)


def ssh_banner(port: int, *, timeout: float) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.settimeout(timeout)
            return s.recv(64).startswith(b"SSH-")
    except OSError:
        return False


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
