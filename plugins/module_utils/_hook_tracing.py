# -*- coding: utf-8 -*-
# Copyright: contributors to ebpf.deploy
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private to ebpf.deploy: tracing links: tracepoint, raw_tracepoint, and the hooks this family
accepts but a host may refuse (kprobe/kretprobe, uprobe/uretprobe, fentry/fexit, lsm).

- tracepoint: the id from tracefs (``events/<category>/<name>/id``; tracefs is mounted at
  ``/sys/kernel/tracing`` when it is not, never in check mode), ``perf_event_open(2)`` of it and a
  ``BPF_LINK_CREATE`` (BPF_PERF_EVENT) on the event (kernel >= 5.15). The link holds the event.
- raw_tracepoint: ``BPF_RAW_TRACEPOINT_OPEN`` by name; the name is checked against the kernel's
  BTF (every raw tracepoint has a ``btf_trace_<name>`` type) so check mode can tell too.
- Tracing links have no BPF_LINK_UPDATE and no detach: an upgrade attaches the new link first and
  then releases the old (``overlap``: both run for a moment); state absent releases the link by
  unpinning it.
- kprobe/uprobe/fentry/fexit/lsm: what the kernel lacks is named before anything else happens (no
  kprobe PMU, lockdown); attaching them is left to VM lab hosts (see the module notes).

No Ansible here.
"""
from __future__ import annotations

import errno as _errno
import os
from typing import Optional

from ansible_collections.ebpf.deploy.plugins.module_utils import _process
from ansible_collections.ebpf.deploy.plugins.module_utils._errors import (
    InvalidInput,
    SyscallError,
    UnsupportedFeature,
)
from ansible_collections.ebpf.deploy.plugins.module_utils._hook_base import Anchor, HookFamily, Target
from ansible_collections.ebpf.deploy.plugins.module_utils._pins import encode_component

TRACEFS = "/sys/kernel/tracing"
DEBUGFS_TRACING = "/sys/kernel/debug/tracing"
VMLINUX_BTF = "/sys/kernel/btf/vmlinux"
PMU_DIR = "/sys/bus/event_source/devices"
LOCKDOWN = "/sys/kernel/security/lockdown"


def tracefs_root() -> Optional[str]:
    """Where tracefs is mounted with its events (None when it is not)."""
    for root in (TRACEFS, DEBUGFS_TRACING):
        if os.path.isdir(os.path.join(root, "events")):
            return root
    return None


def mount_tracefs() -> str:
    """Mount tracefs at /sys/kernel/tracing (what `mount -t tracefs tracefs /sys/kernel/tracing` does)."""
    proc = _process.run(["mount", "-t", "tracefs", "tracefs", TRACEFS])
    if proc.returncode != 0 or not os.path.isdir(os.path.join(TRACEFS, "events")):
        raise UnsupportedFeature(f"tracepoints need tracefs and mounting it at {TRACEFS} failed: "
                                 f"{(proc.stderr or proc.stdout).strip() or 'no events directory'}",
                                 requires="tracefs (CONFIG_TRACING)")
    return TRACEFS


def parse_tracepoint(target: Optional[str]) -> tuple:
    """``syscalls/sys_enter_getpid`` -> (category, name) (pure)."""
    parts = (target or "").split("/")
    if len(parts) != 2 or not all(parts) or any(p in (".", "..") for p in parts):
        raise InvalidInput(f"tracepoint target must be category/name (e.g. syscalls/sys_enter_getpid), "
                           f"not {target!r}", target=target)
    return parts[0], parts[1]


def btf_has_raw_tracepoint(name: str, btf_blob: bytes) -> bool:
    """Every raw tracepoint has a ``btf_trace_<name>`` typedef in vmlinux BTF (pure)."""
    return b"\0btf_trace_" + name.encode() + b"\0" in btf_blob


def lockdown_mode() -> Optional[str]:
    """The active lockdown mode (``integrity``/``confidentiality``) when securityfs shows it, else
    what the kernel log said at boot ("Kernel is locked down from ..."), else None."""
    try:
        with open(LOCKDOWN, encoding="utf-8") as handle:
            text = handle.read()
    except OSError:
        text = _lockdown_in_private_securityfs()
    if text is None:
        return _lockdown_from_log()
    start, end = text.find("["), text.find("]")
    mode = text[start + 1:end] if 0 <= start < end else None
    return None if mode in (None, "none") else mode


def _lockdown_in_private_securityfs() -> Optional[str]:
    """securityfs is often not mounted; mount it in a mount namespace of its own (gone with the
    process, so the host's mounts stay as they are) and read the lockdown file there."""
    try:
        proc = _process.run(["unshare", "--mount", "sh", "-c",
                             f"mount -t securityfs securityfs {os.path.dirname(LOCKDOWN)} && cat {LOCKDOWN}"],
                            timeout=10)
    except (OSError, _process.SubprocessError):
        return None
    return proc.stdout if proc.returncode == 0 and "[" in proc.stdout else None


def _lockdown_from_log() -> Optional[str]:
    # the boot line scrolls out of the ring buffer on a busy host: the last resort
    try:
        proc = _process.run(["dmesg"], timeout=10)
    except (OSError, _process.SubprocessError):
        return None
    for line in proc.stdout.splitlines():
        at = line.find("Kernel is locked down")
        if at >= 0:
            return line[at:].split(";")[0].strip()
    return None


class TracingFamily(HookFamily):
    family = "tracing"

    def check_kernel(self) -> None:
        super().check_kernel()
        name = self.hook.name
        if name in ("kprobe", "kretprobe") and not os.path.isdir(os.path.join(PMU_DIR, "kprobe")):
            raise UnsupportedFeature(f"hook {name}: this kernel has no kprobes (no kprobe PMU in {PMU_DIR}; "
                                     "CONFIG_KPROBES is off)", requires="a kernel built with CONFIG_KPROBES",
                                     hook=name)
        if name in ("fentry", "fexit", "lsm"):
            mode = lockdown_mode()
            if mode:
                raise UnsupportedFeature(f"hook {name}: kernel lockdown ({mode}) refuses {name} programs "
                                         "(BPF_PROG_LOAD: EPERM)", requires="a kernel without lockdown",
                                         hook=name, lockdown=mode)
        if name in ("uprobe", "uretprobe", "kprobe", "kretprobe", "fentry", "fexit", "lsm"):
            raise UnsupportedFeature(
                f"hook {name} is not attached by this version of ebpf.deploy.bpf_attach yet (it is proven on "
                "VM lab hosts first); on this host use tracepoint or raw_tracepoint", hook=name)

    def resolve(self, *, check_mode: bool) -> Target:
        target = self.request.target
        if self.hook.name == "tracepoint":
            return self._tracepoint(target, check_mode=check_mode)
        if not target or "/" in target:
            raise InvalidInput(f"raw_tracepoint target must be a raw tracepoint name (e.g. sys_enter), "
                               f"not {target!r}", target=target)
        try:
            with open(VMLINUX_BTF, "rb") as handle:
                blob = handle.read()
        except OSError:
            blob = None
        if blob is not None and not btf_has_raw_tracepoint(target, blob):
            raise InvalidInput(f"no raw tracepoint {target!r} in this kernel (no btf_trace_{target} in "
                               f"{VMLINUX_BTF})", target=target)
        return Target(key=encode_component(target), label=f"raw tracepoint {target}", data={"target": target})

    def _tracepoint(self, target: Optional[str], *, check_mode: bool) -> Target:
        category, name = parse_tracepoint(target)
        root = tracefs_root()
        warnings = ()
        if root is None:
            if check_mode:
                warnings = (f"tracefs is not mounted: the run would mount it at {TRACEFS}; tracepoint "
                            f"{target} could not be checked",)
                return Target(key=encode_component(target), label=f"tracepoint {target}",
                              data={"target": target}, warnings=warnings)
            root = mount_tracefs()
            warnings = (f"mounted tracefs at {TRACEFS} (tracepoints need it)",)
        id_path = os.path.join(root, "events", category, name, "id")
        try:
            with open(id_path, encoding="utf-8") as handle:
                tp_id = int(handle.read().strip())
        except (OSError, ValueError):
            raise InvalidInput(f"no tracepoint {target} in this kernel (no {id_path})", target=target) from None
        return Target(key=encode_component(target), label=f"tracepoint {target}",
                      data={"target": target, "_tp_id": tp_id}, warnings=warnings)

    def attach(self, prog_fd: int, target: Target, *, anchor: Optional[Anchor] = None) -> int:
        if anchor is not None:
            raise InvalidInput(f"before/after order programs on tcx hooks only, not on {self.hook.name}")
        if self.hook.name == "raw_tracepoint":
            try:
                return self.lib.raw_tracepoint_open(target.data["target"], prog_fd)
            except SyscallError as exc:
                if exc.errno == _errno.ENOENT:
                    raise InvalidInput(f"no raw tracepoint {target.data['target']!r} in this kernel") from None
                raise self.refused(exc, target) from None
        if "_tp_id" not in target.data:   # resolved in check mode before tracefs was there
            target = self._tracepoint(target.data["target"], check_mode=False)
        perf_fd = self.lib.perf_event_open_tracepoint(target.data["_tp_id"], label=target.label)
        try:
            return self.lib.link_create_hook(prog_fd, perf_fd, self.lib.BPF_PERF_EVENT, target_label=target.label)
        except SyscallError as exc:
            raise self.refused(exc, target) from None
        finally:
            os.close(perf_fd)

    def update(self, link_fd: int, new_fd: int, old_fd: int, target: Target) -> None:
        raise AssertionError("tracing links have no update; _attach overlaps them")
