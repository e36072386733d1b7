# -*- coding: utf-8 -*-
# Copyright: contributors to ebpf.deploy
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private to ebpf.deploy: tracing links: tracepoint, raw_tracepoint, kprobe/kretprobe,
uprobe/uretprobe, fentry/fexit, lsm and freplace.

- tracepoint: the id from tracefs (``events/<category>/<name>/id``; tracefs is mounted at
  ``/sys/kernel/tracing`` when it is not, never in check mode), ``perf_event_open(2)`` of it and a
  ``BPF_LINK_CREATE`` (BPF_PERF_EVENT) on the event (kernel >= 5.15). The link holds the event.
- raw_tracepoint: ``BPF_RAW_TRACEPOINT_OPEN`` by name; the name is checked against the kernel's
  BTF (every raw tracepoint has a ``btf_trace_<name>`` type) so check mode can tell too.
- kprobe/kretprobe: ``perf_event_open(2)`` on the kprobe PMU (its type and retprobe bit from
  ``/sys/bus/event_source/devices/kprobe``) of ``function`` or ``function+offset``, then the same
  BPF_PERF_EVENT link. The function is looked up in /proc/kallsyms first (check mode too).
- uprobe/uretprobe: the same on the uprobe PMU for ``/abs/binary:symbol``; the symbol's file
  offset comes from the binary's ``.symtab`` or ``.dynsym`` through its PT_LOAD headers (``_elf``).
- fentry/fexit/lsm: libbpf resolved the BTF target at load from the section; the link is
  ``BPF_RAW_TRACEPOINT_OPEN`` with no name (kernel >= 5.5, lsm >= 5.7), which attaches the
  program where it was loaded for. So the section must be known and a ``target`` that disagrees
  with it is refused. lsm also needs ``bpf`` among the active LSMs (/sys/kernel/security/lsm).
- freplace: an EXT program loaded (bpf_program's ``attach_program``) for a global function of a
  loaded program; ``target`` is ``/pin/of/that/program:function``. resolve() reads the program's
  BTF for the FUNC (its BTF id) and holds the function to the section's; the link is
  ``BPF_LINK_CREATE`` with the target program's fd and that BTF id (kernel >= 5.10), not the
  no-name BPF_RAW_TRACEPOINT_OPEN: the kernel allows that once per EXT program (it consumes the
  target recorded at load), so a link created again (a repair, a put-back) names its target.
- Tracing links have no BPF_LINK_UPDATE and no detach: an upgrade attaches the new link first and
  then releases the old (``overlap``: both run for a moment); state absent releases the link by
  unpinning it. freplace cannot overlap (a function takes one extension: EBUSY), so the old link is
  released first and the new one attached when the kernel has let go of it (``detach_attach``).
- What the kernel lacks is named before anything else happens: no kprobe (or uprobe) PMU,
  lockdown (fentry/fexit/lsm/freplace programs cannot load), no BPF LSM.

No Ansible here.
"""
from __future__ import annotations

import errno as _errno
import os
import re
import struct
import time
from typing import List, Optional, Tuple

from ansible_collections.ebpf.deploy.plugins.module_utils import _process
from ansible_collections.ebpf.deploy.plugins.module_utils._errors import (
    EbpfDeployError,
    InvalidInput,
    SyscallError,
    UnsupportedFeature,
)
from ansible_collections.ebpf.deploy.plugins.module_utils import _elf as elf
from ansible_collections.ebpf.deploy.plugins.module_utils._hook_base import Anchor, HookFamily, Target
from ansible_collections.ebpf.deploy.plugins.module_utils._pins import encode_component
from ansible_collections.ebpf.deploy.plugins.module_utils._procfs import read_int, read_text

TRACEFS = "/sys/kernel/tracing"
DEBUGFS_TRACING = "/sys/kernel/debug/tracing"
VMLINUX_BTF = "/sys/kernel/btf/vmlinux"
PMU_DIR = "/sys/bus/event_source/devices"
LOCKDOWN = "/sys/kernel/security/lockdown"
LSM_LIST = "/sys/kernel/security/lsm"
KALLSYMS = "/proc/kallsyms"
PROBES = ("kprobe", "kretprobe", "uprobe", "uretprobe")     # perf events on the kprobe/uprobe PMU
BTF_LINKED = ("fentry", "fexit", "lsm")                      # attached where they were loaded for
FREPLACE = "freplace"
LOCKED_DOWN = BTF_LINKED + (FREPLACE,)                       # a locked-down kernel refuses their load
FREPLACE_RELEASE_WAIT = 10.0    # s: an unpinned link leaves the function after an RCU grace period (slow in a TCG guest)
_SYMBOL = re.compile(r"[A-Za-z_][A-Za-z0-9_.$]*")
_C_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


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


def parse_function(target: Optional[str], *, hook: str) -> Tuple[str, int]:
    """``__x64_sys_getpid`` or ``do_unlinkat+0x10`` -> (function, offset) (pure)."""
    name, plus, offset = (target or "").partition("+")
    try:
        value = int(offset, 0) if plus else 0
    except ValueError:
        value = -1
    if not _SYMBOL.fullmatch(name) or value < 0:
        raise InvalidInput(f"{hook} target must be a function or function+offset (e.g. __x64_sys_getpid), "
                           f"not {target!r}", target=target)
    return name, value


def parse_uprobe(target: Optional[str], *, hook: str) -> Tuple[str, str, int]:
    """``/usr/lib/x86_64-linux-gnu/libc.so.6:getpid`` -> (binary, symbol, offset into it) (pure)."""
    binary, _colon, symbol = (target or "").rpartition(":")
    if not binary.startswith("/") or not symbol:
        raise InvalidInput(f"{hook} target must be /absolute/binary:symbol (e.g. "
                           f"/usr/lib/x86_64-linux-gnu/libc.so.6:getpid), not {target!r}", target=target)
    name, offset = parse_function(symbol, hook=hook)
    return os.path.normpath(binary), name, offset


def parse_freplace(target: Optional[str]) -> Tuple[str, str]:
    """``/sys/fs/bpf/ebpf_deploy/app/current/progs/fr_getpid:ebpfd_policy`` -> (the pin of the program
    whose function is replaced, the function) (pure)."""
    pin, _colon, function = (target or "").rpartition(":")
    if not pin.startswith("/") or not _C_NAME.fullmatch(function):
        raise InvalidInput("freplace target must be /pin/of/the/program:function (the bpffs pin of the loaded "
                           "program and its global function, e.g. /sys/fs/bpf/ebpf_deploy/app/current/progs/"
                           f"main:policy), not {target!r}", target=target)
    return os.path.normpath(pin), function


def replaced_function(btf_blob: bytes, function: str, *, program: str) -> int:
    """The BTF id of the global FUNC ``function`` in a loaded program's BTF (pure): the function an
    freplace program takes the place of. InvalidInput naming both when there is none, or it is not global."""
    # only freplace reads BTF here: the other hooks' runs do not import the reader
    from ansible_collections.ebpf.deploy.plugins.module_utils._btf import FUNC_LINKAGE, Btf, BtfError  # pylint: disable=import-outside-toplevel
    try:
        btf = Btf(btf_blob)
    except BtfError as exc:
        raise InvalidInput(f"{program}: its BTF cannot be read ({exc})", function=function) from None
    func = btf.function(function)
    if func is None:
        known = sorted(t.name for t in btf.types.values() if t.kind_name == "FUNC" and t.vlen == 1)
        raise InvalidInput(f"{program} has no function {function!r} in its BTF (its global functions: "
                           f"{', '.join(known) or 'none'})", function=function)
    if func.vlen != 1:
        raise InvalidInput(f"function {function!r} of {program} is {FUNC_LINKAGE.get(func.vlen, func.vlen)}; "
                           "freplace replaces global functions only (not static, and __noinline)", function=function)
    return func.type_id


def open_target_program(lib, pin: str, *, what: str) -> Tuple[int, object]:
    """(fd, prog_info) of the program pinned at ``pin`` whose function an freplace program replaces;
    InvalidInput when nothing is pinned there, it is no program, or it has no BTF. The caller
    closes the fd."""
    try:
        fd = lib.obj_get(pin)
    except SyscallError as exc:
        raise InvalidInput(f"{what}: no pinned program at {pin} (bpf_obj_get: "
                           f"{_errno.errorcode.get(exc.errno, exc.errno)})", pin=pin) from None
    try:
        kind = lib.fd_kind(fd)
        if kind != "prog":
            raise InvalidInput(f"{what}: {pin} is a pinned {kind}, not a program", pin=pin)
        info = lib.prog_info(fd)
        if not info.btf_id:
            raise InvalidInput(f"{what}: program {info.name!r} (id {info.id}) at {pin} has no BTF, and freplace "
                               "finds the function it replaces there (build its object with -g)", pin=pin)
    except BaseException:
        lib.close(fd)
        raise
    return fd, info


def kallsyms_has(text: str, name: str) -> bool:
    """Does /proc/kallsyms (``addr type name[\\t[module]]`` lines) list ``name``? (pure; a
    substring search, not a regex: the file has 10^5 lines and a TCG guest reads it slowly)"""
    text += "\n"
    return f" {name}\n" in text or f" {name}\t" in text


def format_bit(text: Optional[str]) -> Optional[int]:
    """A PMU format file such as ``config:0`` -> 0 (pure; None when it says no single bit)."""
    match = re.fullmatch(r"config:(\d+)", (text or "").strip())
    return int(match.group(1)) if match else None


def btf_has_raw_tracepoint(name: str, btf_blob: bytes) -> bool:
    """Every raw tracepoint has a ``btf_trace_<name>`` typedef in vmlinux BTF (pure)."""
    return b"\0btf_trace_" + name.encode() + b"\0" in btf_blob


def lockdown_mode() -> Optional[str]:
    """The active lockdown mode (``integrity``/``confidentiality``) when securityfs shows it, else
    what the kernel log said at boot ("Kernel is locked down from ..."), else None."""
    text = _read_securityfs(LOCKDOWN, must_contain="[")
    if text is None:
        return _lockdown_from_log()
    start, end = text.find("["), text.find("]")
    mode = text[start + 1:end] if 0 <= start < end else None
    return None if mode in (None, "none") else mode


def active_lsms() -> Optional[List[str]]:
    """The active LSMs in order (``lockdown,capability,...,bpf``), or None when securityfs cannot
    be read (then the kernel's refusal at attach is what the run reports)."""
    text = _read_securityfs(LSM_LIST)
    return [name for name in text.strip().split(",") if name] if text is not None else None


def _read_securityfs(path: str, *, must_contain: str = "") -> Optional[str]:
    """A securityfs file's text. securityfs is often not mounted; then it is mounted in a mount
    namespace of its own (gone with the process, so the host's mounts stay as they are) and read
    there (its output kept only when it holds ``must_contain``)."""
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except OSError:
        pass
    try:
        proc = _process.run(["unshare", "--mount", "sh", "-c",
                             f"mount -t securityfs securityfs {os.path.dirname(path)} && cat {path}"],
                            timeout=10)
    except (OSError, _process.SubprocessError):
        return None
    found = proc.returncode == 0 and proc.stdout.strip() and must_contain in proc.stdout
    return proc.stdout if found else None


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

    def __init__(self, hook, request, lib=None) -> None:
        super().__init__(hook, request, lib)
        # freplace links are released by unpinning only, and a function takes one at a time
        self.can_detach = hook.name != FREPLACE

    def check_kernel(self) -> None:
        super().check_kernel()
        name = self.hook.name
        if name in ("kprobe", "kretprobe") and not os.path.isdir(os.path.join(PMU_DIR, "kprobe")):
            raise UnsupportedFeature(f"hook {name}: this kernel has no kprobes (no kprobe PMU in {PMU_DIR}; "
                                     "CONFIG_KPROBES is off)", requires="a kernel built with CONFIG_KPROBES",
                                     hook=name)
        if name in ("uprobe", "uretprobe") and not os.path.isdir(os.path.join(PMU_DIR, "uprobe")):
            raise UnsupportedFeature(f"hook {name}: this kernel has no uprobes (no uprobe PMU in {PMU_DIR}; "
                                     "CONFIG_UPROBE_EVENTS is off)", requires="a kernel built with CONFIG_UPROBE_EVENTS",
                                     hook=name)
        if name in LOCKED_DOWN:
            mode = lockdown_mode()
            if mode:
                raise UnsupportedFeature(f"hook {name}: kernel lockdown ({mode}) refuses {name} programs "
                                         "(BPF_PROG_LOAD: EPERM)", requires="a kernel without lockdown",
                                         hook=name, lockdown=mode)
        if name == "lsm":
            lsms = active_lsms()
            if lsms is not None and "bpf" not in lsms:
                raise UnsupportedFeature(f"hook lsm: the BPF LSM is not active on this kernel (active LSMs: "
                                         f"{','.join(lsms)}; boot with lsm={','.join(lsms)},bpf)",
                                         requires="CONFIG_BPF_LSM and bpf in the kernel's lsm= list", hook=name,
                                         lsms=lsms)

    def resolve(self, *, check_mode: bool) -> Target:
        target = self.request.target
        name = self.hook.name
        if name == "tracepoint":
            return self._tracepoint(target, check_mode=check_mode)
        if name in ("kprobe", "kretprobe"):
            return self._kprobe(target)
        if name in ("uprobe", "uretprobe"):
            return self._uprobe(target)
        if name == FREPLACE:
            return self._freplace(target)
        if name in BTF_LINKED:
            return self._loaded_target(target)
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

    def _kprobe(self, target: Optional[str]) -> Target:
        hook = self.hook.name
        function, offset = parse_function(target, hook=hook)
        symbols = read_text(KALLSYMS)
        if symbols is not None and not kallsyms_has(symbols, function):
            raise InvalidInput(f"{hook}: no kernel function {function!r} on this kernel (not in {KALLSYMS})",
                               target=target)
        return Target(key=encode_component(target), label=f"{hook} {target}",
                      data={"target": target, "_name": function, "_offset": offset})

    def _uprobe(self, target: Optional[str]) -> Target:
        hook = self.hook.name
        binary, symbol, extra = parse_uprobe(target, hook=hook)
        try:
            with open(binary, "rb") as handle:
                data = handle.read()
        except OSError as exc:
            raise InvalidInput(f"{hook}: cannot read binary {binary} ({exc.strerror})", target=target) from None
        try:
            offset = elf.symbol_file_offset(data, symbol)
        except (elf.ElfError, struct.error, IndexError) as exc:
            raise InvalidInput(f"{hook}: {binary} is not an ELF64 executable or library ({exc})",
                               target=target) from None
        if offset is None:
            raise InvalidInput(f"{hook}: no function {symbol!r} in {binary} (neither .symtab nor .dynsym "
                               "defines it)", target=target)
        return Target(key=encode_component(target), label=f"{hook} {target}",
                      data={"target": target, "_name": binary, "_offset": offset + extra})

    def _loaded_target(self, target: Optional[str]) -> Target:
        """fentry/fexit/lsm go where the program was loaded for: the target its section names."""
        hook = self.hook.name
        loaded = getattr(self.request, "loaded_target", None)
        if not loaded:
            raise InvalidInput(f"hook {hook}: give section (the program's ELF section, e.g. {hook}/"
                               f"{target or 'do_unlinkat'}): the kernel attaches a {hook} program where it was "
                               "loaded for, and its section says where that is", target=target)
        if target != loaded:
            raise InvalidInput(f"hook {hook}: target {target!r} disagrees with {loaded!r}, the target the program "
                               f"was loaded for (section {hook}/{loaded}); a {hook} program attaches only there",
                               target=target, loaded_target=loaded)
        what = "LSM hook" if hook == "lsm" else "function"
        return Target(key=encode_component(target), label=f"{hook} {what} {target}", data={"target": target})

    def _freplace(self, target: Optional[str]) -> Target:
        """The program pinned at the target's path, its BTF's FUNC for the function, and the
        function the program was loaded for (its section) agreeing with it."""
        pin, function = parse_freplace(target)
        text = f"{pin}:{function}"
        if getattr(self.request, "state", "present") == "absent":
            # our link pin is named by the target alone; the program there may be gone already (the link holds it)
            return Target(key=encode_component(text), label=f"function {function} of the program at {pin}",
                          data={"target": text, "_pin": pin})
        fd, info = open_target_program(self.lib, pin, what="hook freplace")
        try:
            program = f"program {info.name!r} (id {info.id}) at {pin}"
            btf_id = replaced_function(self.lib.btf_raw(info.btf_id), function, program=program)
        finally:
            self.lib.close(fd)
        loaded = getattr(self.request, "loaded_target", None)
        if not loaded:
            raise InvalidInput(f"hook freplace: give section (the program's ELF section, freplace/{function}): an "
                               "freplace program was loaded for one function, and its section says which", target=target)
        if function != loaded:
            raise InvalidInput(f"hook freplace: function {function!r} disagrees with {loaded!r}, the function the "
                               f"program was loaded for (section freplace/{loaded})", target=target, loaded_target=loaded)
        return Target(key=encode_component(text), label=f"function {function} of program id {info.id}",
                      data={"target": text, "_pin": pin, "_prog_id": info.id, "_btf_id": btf_id})

    def _link_freplace(self, prog_fd: int, target: Target) -> int:
        """BPF_LINK_CREATE on the target program's fd and its function's BTF id. A function takes one
        extension at a time: after our old link was released (``detach_attach``) the kernel lets go
        of it after an RCU grace period, so EBUSY is tried again for up to FREPLACE_RELEASE_WAIT."""
        fd, info = open_target_program(self.lib, target.data["_pin"], what="hook freplace")
        deadline = time.monotonic() + FREPLACE_RELEASE_WAIT
        try:
            if info.id != target.data["_prog_id"]:
                raise EbpfDeployError(f"the program pinned at {target.data['_pin']} changed while this run worked "
                                      f"(id {target.data['_prog_id']} -> {info.id}); nothing was attached, run again")
            while True:
                try:
                    return self.lib.link_create_hook(prog_fd, fd, 0, target_btf_id=target.data["_btf_id"],
                                                     target_label=target.label)
                except SyscallError as exc:
                    if exc.errno != _errno.EBUSY or time.monotonic() >= deadline:
                        raise self.freplace_refused(exc, target) from None
                time.sleep(0.05)
        finally:
            self.lib.close(fd)

    def freplace_refused(self, exc: SyscallError, target: Target) -> EbpfDeployError:
        if exc.errno == _errno.EBUSY:
            return EbpfDeployError(f"the kernel refused to attach freplace on {target.label} (BPF_LINK_CREATE: EBUSY): "
                                   "another freplace program (or an fentry/fexit program) holds that function",
                                   hook=FREPLACE, errno=exc.errno)
        return self.refused(exc, target)

    def attach(self, prog_fd: int, target: Target, *, anchor: Optional[Anchor] = None) -> int:
        if anchor is not None:
            raise InvalidInput(f"before/after order programs on tcx hooks only, not on {self.hook.name}")
        name = self.hook.name
        if name == "raw_tracepoint":
            try:
                return self.lib.raw_tracepoint_open(target.data["target"], prog_fd)
            except SyscallError as exc:
                if exc.errno == _errno.ENOENT:
                    raise InvalidInput(f"no raw tracepoint {target.data['target']!r} in this kernel") from None
                raise self.refused(exc, target) from None
        if name == FREPLACE:
            return self._link_freplace(prog_fd, target)
        if name in BTF_LINKED:
            try:
                return self.lib.tracing_link_open(prog_fd, label=target.label)
            except SyscallError as exc:
                raise self.refused(exc, target) from None
        if name in PROBES:
            return self._link_perf_event(prog_fd, self._open_probe(target), target)
        if "_tp_id" not in target.data:   # resolved in check mode before tracefs was there
            target = self._tracepoint(target.data["target"], check_mode=False)
        return self._link_perf_event(prog_fd, self.lib.perf_event_open_tracepoint(target.data["_tp_id"],
                                                                                  label=target.label), target)

    def _open_probe(self, target: Target) -> int:
        """The perf event of a kprobe/uprobe (return probes with the PMU's retprobe bit)."""
        name = self.hook.name
        pmu = "kprobe" if name in ("kprobe", "kretprobe") else "uprobe"
        pmu_type = read_int(os.path.join(PMU_DIR, pmu, "type"))
        bit = None
        if name.endswith("retprobe"):
            bit = format_bit(read_text(os.path.join(PMU_DIR, pmu, "format", "retprobe")))
            if bit is None:
                raise UnsupportedFeature(f"hook {name}: the {pmu} PMU has no retprobe bit "
                                         f"({os.path.join(PMU_DIR, pmu, 'format', 'retprobe')})",
                                         requires=f"a {pmu} PMU with return probes", hook=name)
        if pmu_type is None:
            raise UnsupportedFeature(f"hook {name}: cannot read the {pmu} PMU type ({PMU_DIR}/{pmu}/type)",
                                     requires=f"a kernel with the {pmu} PMU", hook=name)
        try:
            return self.lib.perf_event_open_probe(pmu_type, target.data["_name"], target.data["_offset"],
                                                  retprobe_bit=bit, label=target.label)
        except SyscallError as exc:
            if exc.errno in (_errno.ENOENT, _errno.EINVAL):
                raise InvalidInput(f"the kernel cannot place {target.label} ({exc.syscall}: "
                                   f"{_errno.errorcode.get(exc.errno, exc.errno)}): no such function or offset "
                                   "there, or it cannot be probed", target=target.data["target"],
                                   errno=exc.errno) from None
            raise

    def _link_perf_event(self, prog_fd: int, perf_fd: int, target: Target) -> int:
        """A BPF_PERF_EVENT link on the event; the link holds the event, so its fd is closed."""
        try:
            return self.lib.link_create_hook(prog_fd, perf_fd, self.lib.BPF_PERF_EVENT, target_label=target.label)
        except SyscallError as exc:
            raise self.refused(exc, target) from None
        finally:
            os.close(perf_fd)

    def update(self, link_fd: int, new_fd: int, old_fd: int, target: Target) -> None:
        raise AssertionError("tracing links have no update; _attach overlaps them")
