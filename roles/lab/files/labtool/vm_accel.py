"""KVM when it works here (probed once), else TCG.

Part of the lab tool (package docstring: the whole picture). Standard library only.
"""
from __future__ import annotations

import contextlib
import os
import subprocess
import time
from pathlib import Path

from labtool.errors import VmError
from labtool.vm_processes import QEMU

KVM_PROBE_SECONDS = 8.0
# Under TCG a plain x86-64 model runs a guest about a third faster than "max" (measured here): with
# "max" the guest's glibc picks AVX2 code paths that TCG emulates at length.
TCG_CPU = "qemu64"


def probe_kvm(kernel: Path, work_dir: Path, *, timeout: float = KVM_PROBE_SECONDS) -> tuple[bool, str]:
    """Whether KVM really runs a guest here: boot the image's kernel under KVM (no disk) and wait for
    its first console line. A guest that hangs in the firmware prints nothing; it is ended by PID."""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False, "no usable /dev/kvm"
    log = work_dir / "kvm-probe.log"
    with contextlib.suppress(FileNotFoundError):
        log.unlink()
    argv = [QEMU, "-name", "guest=ebpfd-kvm-probe", "-accel", "kvm", "-cpu", "host", "-m", "256M",
            "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot", "-serial", f"file:{log}",
            "-kernel", str(kernel), "-append", "console=ttyS0 panic=-1"]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    ok = False
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            with contextlib.suppress(OSError):
                if b"Linux version" in log.read_bytes():
                    ok = True
                    break
            time.sleep(0.1)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        with contextlib.suppress(FileNotFoundError):
            log.unlink()
    if ok:
        return True, "KVM runs guests"
    return False, f"a KVM guest printed nothing in {timeout:.0f} s"


def choose_accel(wanted: str, kernel: Path, work_dir: Path) -> tuple[str, str | None]:
    """(accel, notice): 'kvm' only when asked for or when the probe boots a guest; else TCG."""
    if wanted == "tcg":
        return "tcg", None
    ok, why = probe_kvm(kernel, work_dir)
    if ok:
        return "kvm", None
    if wanted == "kvm":
        raise VmError(f"KVM was asked for but {why}")
    return "tcg", f"KVM unusable ({why}): VMs run with TCG (software emulation, slower)"
