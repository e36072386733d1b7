# -*- coding: utf-8 -*-
# Copyright: contributors to ebpf.deploy
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private to ebpf.deploy: the manager behind ``ebpf.deploy.bpf_program`` (plan -> act -> report).

Every run reads the current state from the bpffs and the kernel (pins, the ``current`` symlink,
the pinned maps' specs), compares it with the requested object and options, and only then acts:

* ``none``   the requested version is current and every pin is there: nothing is loaded;
* ``switch`` the requested version is already pinned: only ``current`` moves (instant rollback);
* ``load``   the object is loaded beside the running version with the verifier log captured,
             compatible pinned maps are reused (``bpf_map__reuse_fd``) so their contents survive,
             except a PROG_ARRAY the object initialises (``.values``): libbpf writes its slots at
             load, so it is created anew and pinned under the version (the running version's
             tail calls keep their callees until the switch, and a rollback finds them untouched),
             pins go to a staging directory inside the deployment and are renamed into place,
             then ``current`` is switched and versions beyond ``keep_versions`` are unpinned.

In check mode a ``load`` still loads into the kernel to get the verifier's verdict and statistics,
then closes everything: nothing is pinned. A failure at any step leaves the previous version
pinned and current, and no new pin behind.

No Ansible here: the module passes its params in and gets a result dict back.
"""
from __future__ import annotations

import contextlib
import errno as _errno
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from ansible_collections.ebpf.deploy.plugins.module_utils import _libbpf as libbpf
from ansible_collections.ebpf.deploy.plugins.module_utils import _objects as objects
from ansible_collections.ebpf.deploy.plugins.module_utils import _uapi as uapi
from ansible_collections.ebpf.deploy.plugins.module_utils import _version_tables as version_tables
from ansible_collections.ebpf.deploy.plugins.module_utils._errors import (
    EbpfDeployError,
    InvalidInput,
    MapConflict,
    PreflightRefused,
    SyscallError,
    UnsupportedFeature,
    VerifierRejected,
)
from ansible_collections.ebpf.deploy.plugins.module_utils._lock import deployment_lock
from ansible_collections.ebpf.deploy.plugins.module_utils._pins import (
    DEFAULT_BPFFS_ROOT,
    STATE_DIR,
    Deployment,
    is_bpffs,
    remove_tree,
    validate_name,
    validate_path,
    validate_version,
)
from ansible_collections.ebpf.deploy.plugins.module_utils._request import known_params
from ansible_collections.ebpf.deploy.plugins.module_utils._result import Result

MAP_CONFLICT_CHOICES = ("fail", "recreate")
MAX_LOG_SIZE = 256 << 20
BPF_OBJ_NAME_MAX = libbpf.BPF_OBJ_NAME_LEN - 1


# Program types a locked-down kernel refuses to load even for root (the rest of the EPERM hint,
# capabilities and memory limits, does not apply then).
LOCKDOWN_REFUSED = {uapi.PROG_TYPES["tracing"]: "tracing (fentry/fexit)", uapi.PROG_TYPES["lsm"]: "lsm",
                    uapi.PROG_TYPES["ext"]: "ext (freplace)"}
EXT = uapi.PROG_TYPES["ext"]
# What libbpf says when a CO-RE object meets a kernel without (readable) vmlinux BTF.
NO_KERNEL_BTF = "failed to find valid kernel BTF"


def no_kernel_btf(messages: List[str], errno: int, label: str) -> Optional[EbpfDeployError]:
    """libbpf found no kernel BTF to relocate the object against, said as such (None otherwise)."""
    if not any(NO_KERNEL_BTF in line for line in messages):
        return None
    from ansible_collections.ebpf.deploy.plugins.module_utils._hook_tracing import VMLINUX_BTF  # pylint: disable=import-outside-toplevel
    return UnsupportedFeature(
        f"object '{label}' not loaded: it needs the kernel's BTF (CO-RE relocations or BTF-typed programs) "
        f"and this kernel has none readable at {VMLINUX_BTF} (libbpf: {NO_KERNEL_BTF})",
        requires="a kernel built with CONFIG_DEBUG_INFO_BTF", errno=errno, errno_name=_errno.errorcode.get(errno),
        syscall="bpf_object__load", libbpf_messages=messages, object=label)


def lockdown_refusal(program: str, prog_type: Optional[int], label: str) -> Optional[EbpfDeployError]:
    """The EPERM of a tracing/LSM load on a locked-down kernel, said as such (None otherwise)."""
    kind = LOCKDOWN_REFUSED.get(prog_type)
    if kind is None:
        return None
    from ansible_collections.ebpf.deploy.plugins.module_utils._hook_tracing import lockdown_mode  # pylint: disable=import-outside-toplevel
    mode = lockdown_mode()
    if not mode:
        return None
    return UnsupportedFeature(
        f"program '{program}' not loaded: kernel lockdown ({mode}) refuses {kind} programs, to root too "
        "(BPF_PROG_LOAD: EPERM); use a tracepoint or raw_tracepoint program here, or a host booted without "
        "lockdown", requires="a kernel without lockdown", program=program, lockdown=mode, errno=_errno.EPERM,
        errno_name="EPERM", syscall="BPF_PROG_LOAD", object=label)


def freplace_functions(programs: List[Tuple[str, int, str]], attach_program: Optional[str], *, label: str,
                       allowed: bool = True) -> Dict[str, str]:
    """{program: the function its section names} of the freplace (EXT) programs among the wanted
    ``(name, type, section)`` (pure). Refused in one line, before anything is loaded: an EXT program
    without ``attach_program`` (any EXT program where not ``allowed``: bpf_deployment), ``attach_program``
    for an object that loads none, a section that names no function."""
    ext = [(name, section) for name, prog_type, section in programs if prog_type == EXT]
    if ext and not allowed:
        name, section = ext[0]
        raise InvalidInput(f"program '{name}' (section {section}) is an freplace program: freplace programs are "
                           "deployed with bpf_program and bpf_attach; bpf_deployment does not load them (the program "
                           "they replace a function of is another deployment's); nothing was loaded", program=name)
    if ext and not attach_program:
        name, section = ext[0]
        raise InvalidInput(f"program '{name}' (section {section}) is an freplace program: give attach_program, the "
                           "bpffs pin of the loaded program whose function it replaces; nothing was loaded", program=name)
    if attach_program and not ext:
        names = ", ".join(name for name, _type, _section in programs)
        raise InvalidInput(f"attach_program is for freplace programs and {label} loads none (programs: {names}); "
                           "nothing was loaded", attach_program=attach_program)
    functions = {}
    for name, section in ext:
        prefix, _slash, function = section.partition("/")
        if prefix != "freplace" or not function:
            raise InvalidInput(f"program '{name}': section {section!r} names no function to replace (write "
                               "SEC(\"freplace/<function>\")); nothing was loaded", program=name)
        functions[name] = function
    return functions


@dataclass
class AttachProgram:
    """The loaded program whose functions the object's freplace programs replace: its fd is held
    open from the checks until the load has finished (libbpf reads its BTF at load)."""
    pin: str
    fd: int
    id: int
    name: str

    def close(self) -> None:
        libbpf.close(self.fd)


def _verifier():
    """The verifier log reader, imported only when there is a log to read (a failed load, or
    stats in check mode / with verifier_log_level): its patterns cost a run that needs none."""
    from ansible_collections.ebpf.deploy.plugins.module_utils import _verifier as verifier  # pylint: disable=import-outside-toplevel
    return verifier


def _globals():
    """The load-time globals (and the BTF reader under them), imported by a run that sets some."""
    from ansible_collections.ebpf.deploy.plugins.module_utils import _globals as globals_  # pylint: disable=import-outside-toplevel
    return globals_


# --------------------------------------------------------------------------- request
PREFLIGHT_FAIL_ON = ("error", "warning", "info")
PREVIOUS = "previous"   # version keyword: the version that was current before the current one


@dataclass
class Request:
    """The module's parameters, validated."""
    name: str
    state: str = "present"
    src: Optional[str] = None
    content: Optional[str] = None   # the object itself, base64 (sent inline by the action plugin)
    programs: Optional[List[str]] = None
    bpffs_root: str = DEFAULT_BPFFS_ROOT
    checksum: Optional[str] = None
    program_type: Optional[str] = None
    keep_versions: int = 1
    map_conflict: str = "fail"
    verifier_log_level: int = 0
    version: Optional[str] = None
    globals: Optional[Dict[str, Any]] = None   # {name: value} set in the data sections before load
    attach_program: Optional[str] = None   # freplace: the pin of the program whose function is replaced
    lock_timeout: float = 60.0
    preflight_fail_on: Optional[str] = None   # run preflight before a load; refuse at this severity
    source: Optional[str] = None   # what the user called the object (for metadata and messages)
    # an OpenSSH signature the object must carry (see _signature); *_content: sent by the action plugin
    signature: Optional[str] = None
    allowed_signers: Optional[str] = None
    signature_namespace: Optional[str] = None
    signature_content: Optional[str] = None
    allowed_signers_content: Optional[str] = None

    @classmethod
    def from_params(cls, params: dict) -> "Request":
        req = cls(**known_params(cls, params))
        req.validate()
        return req

    def validate(self) -> None:
        validate_name(self.name, "name")
        if self.src is not None:
            validate_path(self.src, "src")
        if self.state not in ("present", "absent"):
            raise InvalidInput(f"state must be present or absent, got {self.state!r}")
        if self.map_conflict not in MAP_CONFLICT_CHOICES:
            raise InvalidInput(f"map_conflict must be one of {', '.join(MAP_CONFLICT_CHOICES)}")
        if self.keep_versions < 0:
            raise InvalidInput("keep_versions must be >= 0")
        if self.verifier_log_level not in (0, 1, 2):
            raise InvalidInput("verifier_log_level must be 0, 1 or 2")
        if self.version is not None and self.version != PREVIOUS:
            validate_version(self.version)
        if self.version == PREVIOUS and self.src:
            raise InvalidInput("version=previous switches back without loading; it cannot be combined with src")
        if self.version == PREVIOUS and self.content:
            raise InvalidInput("version=previous switches back without loading; it cannot be combined with content")
        if self.globals is not None and not isinstance(self.globals, dict):
            raise InvalidInput(f"globals must be a mapping of global name to value, got {type(self.globals).__name__}")
        if self.globals and self.state == "present" and not self.has_object:
            raise InvalidInput("globals are set when an object is loaded: give src with them (a pinned version "
                               "keeps the values it was loaded with)")
        if self.attach_program is not None:
            if not str(self.attach_program).startswith("/"):
                raise InvalidInput(f"attach_program must be the absolute bpffs pin of a loaded program, "
                                   f"got {self.attach_program!r}")
            if self.state == "present" and not self.has_object:
                raise InvalidInput("attach_program is used when an object is loaded: give src with it (a pinned "
                                   "version keeps the program it was loaded for)")
        if self.state == "present" and not self.has_object and not self.version:
            raise InvalidInput("state=present needs src (an object to deploy) or version "
                               "(an already pinned version to switch to)")
        for program in self.programs or []:
            validate_name(program, "program name")
        twice = sorted({p for p in self.programs or [] if (self.programs or []).count(p) > 1})
        if twice:
            raise InvalidInput(f"programs lists {', '.join(map(repr, twice))} more than once")
        if self.preflight_fail_on not in (None,) + PREFLIGHT_FAIL_ON:
            raise InvalidInput(f"preflight_fail_on must be one of {', '.join(PREFLIGHT_FAIL_ON)}, "
                               f"got {self.preflight_fail_on!r}")

    @property
    def has_object(self) -> bool:
        return bool(self.src or self.content)

    def signed(self) -> "Optional[_signature.Signed]":
        """What the object must be signed with: the texts the action plugin sent, else the files on
        the host (remote_src); None when no allowed_signers is given."""
        if not (self.allowed_signers_content is not None or self.allowed_signers or self.signature
                or self.signature_content):
            return None   # the common case: _signature is not even imported
        from ansible_collections.ebpf.deploy.plugins.module_utils import _signature  # pylint: disable=import-outside-toplevel
        if self.allowed_signers_content is not None:
            return _signature.Signed(self.signature_content, self.allowed_signers_content,
                                     self.signature_namespace or _signature.DEFAULT_NAMESPACE)
        if self.signature_content:
            raise InvalidInput("signature is given without allowed_signers to verify it against")
        return _signature.wanted(allowed_signers=self.allowed_signers, signature=self.signature, src=self.src,
                                 namespace=self.signature_namespace, missing="does not exist on the host",
                                 locate=lambda path: path if os.path.lexists(path) else None)

    @property
    def label(self) -> str:
        """What the user called the object, for metadata and messages."""
        return self.source or os.path.basename(self.src or "") or "object"

    @property
    def load_options(self) -> dict:
        """The options that change what the kernel gets (part of the version digest)."""
        return {"programs": sorted(self.programs) if self.programs else None,
                "program_type": self.program_type}


# --------------------------------------------------------------------------- pure planning
@dataclass
class MapPlan:
    """What happens to one map of the object."""
    name: str
    wanted: objects.MapSpec
    pinned: Optional[objects.MapSpec] = None
    pinned_id: Optional[int] = None
    action: str = "create"          # create | reuse | recreate | repin | internal | per_version
    changes: List[Tuple[str, str, str]] = field(default_factory=list)
    live_id: Optional[int] = None   # for repin: a live map (found via a program) to pin again

    @property
    def reused(self) -> bool:
        return self.action in ("reuse", "repin")

    @property
    def needs_pin(self) -> bool:
        """Pinned under the deployment's maps/ (a per_version map is pinned with its version)."""
        return self.action in ("create", "recreate", "repin")


def plan_map(wanted: objects.MapSpec, pinned: Optional[objects.MapSpec], *, pinned_id: Optional[int],
             live: Optional[Tuple[int, objects.MapSpec]], map_conflict: str) -> MapPlan:
    """Decide one map: reuse a matching pin, refuse/recreate a conflicting one, re-pin or create."""
    if wanted.internal:
        return MapPlan(wanted.name, wanted, action="internal")
    if wanted.per_version:
        # never reused: libbpf would write this version's callees into the running version's table
        return MapPlan(wanted.name, wanted, action="per_version")
    if pinned is not None:
        changes = objects.diff_map_spec(pinned, wanted)
        if not changes:
            return MapPlan(wanted.name, wanted, pinned, pinned_id, "reuse")
        if map_conflict != "recreate":
            raise MapConflict(
                f"{objects.describe_map_conflict(wanted.name, changes)} (the pinned map differs from the "
                "object; set map_conflict=recreate to replace it and lose its contents)",
                map=wanted.name, pinned=pinned.as_dict(), wanted=wanted.as_dict(),
                changes=[{"field": f, "pinned": b, "wanted": a} for f, b, a in changes])
        return MapPlan(wanted.name, wanted, pinned, pinned_id, "recreate", changes)
    if live is not None and not objects.diff_map_spec(live[1], wanted):
        return MapPlan(wanted.name, wanted, action="repin", live_id=live[0])
    return MapPlan(wanted.name, wanted, action="create")


def decide(*, wanted_version: str, wanted_programs: List[str], current_version: Optional[str],
           pinned_programs: Dict[str, List[str]], map_plans: List[MapPlan]) -> str:
    """``none`` | ``switch`` | ``load`` from the requested version and what is pinned.

    ``pinned_programs`` maps each pinned version to the programs pinned under it.
    """
    complete = set(wanted_programs) <= set(pinned_programs.get(wanted_version, ()))
    maps_ok = all(plan.action in ("reuse", "internal", "per_version") for plan in map_plans)
    if complete and maps_ok:
        return "none" if wanted_version == current_version else "switch"
    return "load"


@dataclass
class LoadPlan:
    """What a run with an object decided before anything changes (``_plan_load``)."""
    version: str
    current: Optional[str]
    action: str                      # none | switch | load (``decide``)
    programs: List[str]              # the programs wanted from the object
    options: dict                    # the load options, as part of the version digest
    map_plans: List[MapPlan]
    pinned_programs: Dict[str, List[str]]
    prune: List[str]                 # versions to unpin after the switch
    before: dict                     # the diff's before side
    lost_tables: list = field(default_factory=list)   # _version_tables.LostTable: pinned again


def versioned_options(options: dict, globals_values: Optional[dict]) -> dict:
    """The load options a version digest covers, with the globals' values when there are some (a
    version without globals keeps the digest it always had)."""
    return dict(options, globals=globals_values) if globals_values else dict(options)


def versions_to_prune(by_activation: List[str], *, new_current: str, old_current: Optional[str],
                      keep: int) -> List[str]:
    """Versions to unpin so that ``keep`` besides the current one stay (most recently current)."""
    others = [v for v in by_activation if v not in (new_current, old_current)]
    if old_current and old_current != new_current and old_current in by_activation:
        others.append(old_current)  # it was current until now: the most recent of the others
    return others[:-keep] if keep > 0 else others


def prune_versions(dep: Deployment, *, keep: int, current: str, previous: Optional[str],
                   protect: Tuple[str, ...] = ()) -> List[str]:
    """Unpin versions beyond ``keep`` besides ``current`` (bpf_deployment, at commit); never the
    current one nor one in ``protect``."""
    removed = []
    for version in versions_to_prune(dep.versions_by_activation(), new_current=current, old_current=previous,
                                     keep=keep):
        if version in protect or version == dep.current_version():
            continue
        dep.remove_version(version)
        removed.append(version)
    return removed


def state_view(version: Optional[str], programs: List[str], maps: Dict[str, dict],
               versions: List[str], globals_values: Optional[dict] = None) -> dict:
    """One side of the diff (with the version's globals when it has some)."""
    if version is None and not programs and not maps and not versions:
        return {}
    view = {"version": version, "programs": sorted(programs), "maps": maps, "versions": versions}
    if globals_values:
        view["globals"] = globals_values
    return view


def version_globals(meta: dict) -> Optional[dict]:
    """The globals a version was loaded with, from its metadata (None: it has none)."""
    return (meta.get("options") or {}).get("globals") or None


# --------------------------------------------------------------------------- the result
@dataclass
class ProgramResult(Result):
    """One bpf_program run; ``extra`` holds maps, versions and verifier."""
    version: Optional[str] = None
    previous_version: Optional[str] = None
    action: Optional[str] = None               # none | switch | load; None for state=absent
    digest: Optional[str] = None
    programs: List[dict] = field(default_factory=list)
    removed_versions: Optional[List[str]] = None
    preflight: Optional[dict] = None
    globals: Optional[Dict[str, Any]] = None   # the version's globals, when it has some

    keep_none = ("version", "previous_version", "digest")

    def as_dict(self, *, with_diff: bool = True) -> dict:
        out = super().as_dict(with_diff=with_diff)
        if self.action is None:   # state=absent returns neither an action nor a digest
            out.pop("digest", None)
        return out


# --------------------------------------------------------------------------- the manager
class ProgramManager:
    """Plan, act and report one ``bpf_program`` task."""

    def __init__(self, request: Request, *, check_mode: bool = False, diff_mode: bool = False,
                 state_dir: str = STATE_DIR, on_switch: Optional[Callable[[str, Optional[str]], None]] = None,
                 defer_prune: bool = False, freplace: bool = True) -> None:
        self.req = request
        self.freplace = freplace   # False: freplace programs are refused (bpf_deployment)
        self.attach_target: Optional[AttachProgram] = None
        self.check_mode = check_mode
        self.diff_mode = diff_mode
        # bpf_deployment's transaction: told before `current` moves, and prunes only at commit
        self.on_switch = on_switch
        self.defer_prune = defer_prune
        self.object_data: Optional[bytes] = None
        self.signed: "Optional[_signature.Signed]" = None
        self.dep = Deployment(request.bpffs_root, request.name, state_dir=state_dir)
        self.warnings: List[str] = []
        self.preflight_report: Optional[dict] = None

    # ---- entry point
    def run(self) -> ProgramResult:
        if not is_bpffs(self.dep.root):
            # pins cannot live there, and state=absent would delete an ordinary directory
            raise InvalidInput(f"bpffs_root {self.dep.root} is not on a bpf filesystem "
                               "(mount -t bpf bpf /sys/fs/bpf)", bpffs_root=str(self.dep.root))
        with deployment_lock(self.req.name, self.req.lock_timeout):
            self._clean_staging()
            if self.req.state == "absent":
                return self._absent()
            if not self.req.has_object:
                return self._switch_only(self._resolve_version(self.req.version))
            return self._present()

    def _resolve_version(self, version: str) -> str:
        """`previous` names the version that was current before the current one."""
        if version != PREVIOUS:
            return version
        previous = self.dep.previous_version()
        if previous is None:
            raise InvalidInput(f"deployment {self.req.name!r} has no previous version to switch back to "
                               f"(current: {self.dep.current_version() or 'none'})")
        return previous

    def _clean_staging(self) -> None:
        """Staging dirs of a killed run (we hold the lock, so none is in use)."""
        if self.check_mode:
            return
        for leftover in self.dep.staging_dirs():
            remove_tree(leftover)

    # ---- reading the current state
    def _pinned_map_specs(self) -> Dict[str, Tuple[int, objects.MapSpec]]:
        out = {}
        for name, path in self.dep.pinned_maps().items():
            try:
                with libbpf.closing_fd(libbpf.obj_get(str(path))) as fd:
                    if libbpf.fd_kind(fd) != "map":
                        continue
                    info = libbpf.map_info(fd)
            except SyscallError:
                continue
            spec = objects.map_spec_from_info(info)
            out[name] = (info.id, objects.MapSpec(**{**spec.__dict__, "name": name}))
        return out

    def _pinned_program_infos(self, version: str) -> Dict[str, libbpf.ProgramInfo]:
        """Programs pinned under a version that really are programs (checked in the kernel)."""
        out = {}
        for name, path in self.dep.pinned_programs(version).items():
            try:
                with libbpf.closing_fd(libbpf.obj_get(str(path))) as fd:
                    if libbpf.fd_kind(fd) == "prog":
                        out[name] = libbpf.prog_info(fd)
            except SyscallError:
                continue
        return out

    def _live_maps(self, version: Optional[str]) -> Dict[str, Tuple[int, objects.MapSpec]]:
        """Maps still used by a version's pinned programs, by kernel name (for re-pinning)."""
        found: Dict[str, Tuple[int, objects.MapSpec]] = {}
        if not version:
            return found
        for info in self._pinned_program_infos(version).values():
            for map_id in info.map_ids:
                try:
                    with libbpf.closing_fd(libbpf.map_fd_by_id(map_id)) as fd:
                        minfo = libbpf.map_info(fd)
                except SyscallError:
                    continue
                found.setdefault(minfo.name, (minfo.id, objects.map_spec_from_info(minfo)))
        return found

    def _current_view(self) -> dict:
        current = self.dep.current_version()
        programs = sorted(self.dep.pinned_programs(current)) if current else []
        maps = {name: spec.as_dict() for name, (_id, spec) in self._pinned_map_specs().items()}
        globals_values = version_globals(self.dep.read_metadata(current)) if current else None
        return state_view(current, programs, maps, self.dep.versions(), globals_values)

    # ---- state: absent
    def _absent(self) -> ProgramResult:
        self.dep.check_ours()
        before = self._current_view()
        exists = (self.dep.exists() or self.dep.meta_dir.exists() or self.dep.pointer_file.exists())
        changed = bool(exists)
        if changed and not self.check_mode:
            self.dep.remove_all()
        return ProgramResult(changed=changed, version=None, previous_version=before.get("version"), programs=[],
                             extra={"maps": [], "versions": []},
                             diff={"before": before, "after": {}} if self.diff_mode else None)

    # ---- state: present, switch to a pinned version only
    def _switch_only(self, version: str) -> ProgramResult:
        pinned = self.dep.pinned_versions()
        if version not in pinned:
            raise InvalidInput(f"version {version} of deployment '{self.req.name}' is not pinned "
                               f"(pinned: {', '.join(self.dep.versions()) or 'none'})",
                               pinned_versions=self.dep.versions())
        if not self._pinned_program_infos(version):
            raise InvalidInput(f"version {version} of deployment '{self.req.name}' has no pinned "
                               "program left; deploy it again from src")
        meta = self.dep.read_metadata(version)
        lost_tables = self._lost_version_tables(version, meta.get("per_version_maps") or {})
        before = self._current_view()
        old = self.dep.current_version()
        action = "none" if old == version else "switch"
        prune = [] if self.defer_prune else versions_to_prune(
            self.dep.versions_by_activation(), new_current=version, old_current=old, keep=self.req.keep_versions)
        self._repin_version_tables(version, lost_tables)
        if not self.check_mode:
            if action == "switch":
                self._before_switch(version, old)
                self.dep.set_current(version)
            for stale in prune:
                self.dep.remove_version(stale)
        programs = self._program_results(version, list(self._pinned_program_infos(version)))
        return self._result(action=action, version=version, old=old, before=before, prune=prune,
                            repaired=version_tables.describe(self.dep, version, lost_tables),
                            programs=programs, maps=self._map_results([]), digest=meta.get("digest"),
                            program_names=[p["name"] for p in programs], globals_values=version_globals(meta))

    # ---- state: present with an object
    def _present(self) -> ProgramResult:
        req = self.req
        label = req.label
        self.dep.check_ours()
        data = objects.read_source(req.src, req.content, label=label)
        digest = objects.verify_checksum(data, req.checksum, source=label)
        self.signed = req.signed()
        if self.signed is not None:
            from ansible_collections.ebpf.deploy.plugins.module_utils import _signature  # pylint: disable=import-outside-toplevel
            _signature.verify(data, self.signed, source=label)
        self.object_data = data   # bpf_deployment keeps it in the host's record (with its signature)
        self._log_size: Optional[int] = None
        while True:
            obj, spec = objects.open_object(data, name=_object_name(label), source=label)
            try:
                return self._present_with(obj, spec, data, digest, label)
            except _RetryWithBiggerLog as retry:  # nothing was changed yet: the load comes first
                self._log_size = retry.size
            finally:
                obj.close()
                if self.attach_target is not None:
                    self.attach_target.close()
                    self.attach_target = None

    def _select_programs(self, spec: objects.ObjectSpec, label: str) -> List[str]:
        if not spec.programs:
            raise InvalidInput(f"{label} has no BPF program")
        wanted = list(self.req.programs or spec.program_names)
        missing = [p for p in wanted if spec.program(p) is None]
        if missing:
            raise InvalidInput(f"program {', '.join(repr(m) for m in missing)} not found in {label} "
                               f"(it has: {', '.join(spec.program_names)})", missing_programs=missing)
        for name in wanted:
            validate_name(name, "program name")
        return wanted

    def _present_with(self, obj, spec: objects.ObjectSpec, data: bytes, digest: str, label: str) -> "ProgramResult":
        the_plan = self._plan_load(obj, spec, data, label)
        programs, verifier_stats = self._act_load(obj, spec, data, digest, label, the_plan)
        if not programs:
            programs = self._program_results(the_plan.version, the_plan.programs)
        return self._result(action=the_plan.action, version=the_plan.version, old=the_plan.current,
                            before=the_plan.before, prune=the_plan.prune, programs=programs,
                            repaired=version_tables.describe(self.dep, the_plan.version, the_plan.lost_tables),
                            maps=self._map_results(the_plan.map_plans, the_plan.version), digest=digest,
                            program_names=the_plan.programs, map_plans=the_plan.map_plans,
                            verifier_stats=verifier_stats, globals_values=the_plan.options.get("globals"))

    def _plan_load(self, obj, spec: objects.ObjectSpec, data: bytes, label: str) -> "LoadPlan":
        """Read what is pinned and decide (none | switch | load), the maps and the versions to prune."""
        req = self.req
        wanted_programs = self._select_programs(spec, label)
        self._configure(obj, spec, wanted_programs)
        self.attach_target = self._configure_freplace(obj, wanted_programs, label)
        options = versioned_options(dict(req.load_options, programs=sorted(wanted_programs)),
                                    self._set_globals(obj, label))
        if self.attach_target is not None:
            # the programs are bound to that program at load: a reloaded target is a new version
            options.update(attach_program=self.attach_target.pin, attach_program_id=self.attach_target.id)
        version = objects.compute_version(data, options)
        if req.version and req.version != version:
            raise InvalidInput(f"src {label} is version {version}, not the requested version {req.version}")

        current = self.dep.current_version()
        before = self._current_view()
        pinned_maps = self._pinned_map_specs()
        live = self._live_maps(current) if any(
            m.name not in pinned_maps for m in spec.maps if not (m.internal or m.per_version)) else {}
        map_plans = [
            plan_map(m, pinned_maps.get(m.name, (None, None))[1], pinned_id=pinned_maps.get(m.name, (None,))[0],
                     live=live.get(m.name[:BPF_OBJ_NAME_MAX]), map_conflict=req.map_conflict)
            for m in spec.maps]
        pinned_programs = {v: list(self._pinned_program_infos(v)) for v in self.dep.pinned_versions()}
        recorded = self.dep.read_metadata(version).get("per_version_maps") or {}
        lost_tables = self._lost_version_tables(version, {p.name: recorded.get(p.name) for p in map_plans
                                                          if p.action == "per_version"}) \
            if pinned_programs.get(version) else []
        action = decide(wanted_version=version, wanted_programs=wanted_programs, current_version=current,
                        pinned_programs=pinned_programs, map_plans=map_plans)
        if self.defer_prune:
            prune: List[str] = []
        else:
            prune = versions_to_prune(self.dep.versions_by_activation(), new_current=version,
                                      old_current=current, keep=req.keep_versions)
            stale = self._versions_using(pinned_programs, {p.pinned_id for p in map_plans if p.action == "recreate"},
                                         exclude=version)
            prune = sorted(set(prune) | set(stale), key=lambda v: (v not in stale, v))
        return LoadPlan(version=version, current=current, action=action, programs=wanted_programs,
                        options=options, map_plans=map_plans, pinned_programs=pinned_programs, prune=prune,
                        before=before, lost_tables=lost_tables)

    def _act_load(self, obj, spec: objects.ObjectSpec, data: bytes, digest: str, label: str,
                  the_plan: "LoadPlan") -> Tuple[List[dict], Dict[str, dict]]:
        """Load (in check mode too: the verifier's verdict), pin, switch ``current``, prune.
        Returns the programs as a check-mode load saw them ([] otherwise) and the verifier stats."""
        req = self.req
        version, action = the_plan.version, the_plan.action
        verifier_stats: Dict[str, dict] = {}
        programs: List[dict] = []
        tables: Optional[Dict[str, Dict[str, str]]] = None   # recorded when this run loads them
        if action == "load" and req.preflight_fail_on:
            self._preflight(data, spec, label)
        self._repin_version_tables(version, the_plan.lost_tables)
        if action == "load":
            self._load(obj, the_plan.map_plans, label)
            verifier_stats = self._verifier_stats(obj, the_plan.programs)
            if self.check_mode:
                programs = [self._program_result(info=libbpf.prog_info(obj.program(n).fd), name=n,
                                                 pin=str(self.dep.progs_dir(version) / n), dry_run=True)
                            for n in the_plan.programs]
            else:
                self._pin_and_commit(obj, version, the_plan.programs, the_plan.map_plans,
                                     the_plan.pinned_programs.get(version, []))
                tables = self._recorded_tables(obj, the_plan.map_plans, the_plan.programs)
        if not self.check_mode and action in ("switch", "load"):
            self._before_switch(version, the_plan.current)
            self.dep.set_current(version)
            meta = self.dep.read_metadata(version)
            meta.update(digest=digest, source=label, options=the_plan.options, object_size=len(data),
                        programs=the_plan.programs, license=spec.license)
            if tables is not None:
                meta["per_version_maps"] = tables
            meta.setdefault("deployed_at", time.strftime("%Y-%m-%dT%H:%M:%S%z"))
            self.dep.write_metadata(version, meta)
        if not self.check_mode:
            for stale_version in the_plan.prune:
                if stale_version != self.dep.current_version():
                    self.dep.remove_version(stale_version)
            self.dep.mark()
        return programs, verifier_stats

    def unpin_new(self, version: str, *, maps_before: set) -> List[str]:
        """bpf_deployment's undo of a load: unpin ``version`` and the maps pinned since
        ``maps_before`` (no older version uses them). Returns what was done, a line each."""
        self.dep.remove_version(version)
        steps = [f"version {version} unpinned"]
        for name, pin in sorted(self.dep.pinned_maps().items()):
            if name not in maps_before:
                pin.unlink()
                steps.append(f"new map {name} unpinned")
        return steps

    # ---- a version's own tables (statically initialised PROG_ARRAY, map of maps): _version_tables
    def _lost_version_tables(self, version: str, recorded: Dict[str, Optional[Dict[str, str]]]) -> list:
        return version_tables.find_lost(self.dep, version, recorded, self._live_maps(version) if any(
            not os.path.lexists(self.dep.version_map_pin(version, name)) for name in recorded) else {},
            deployment=self.req.name)

    def _repin_version_tables(self, version: str, lost: list) -> None:
        if not self.check_mode:
            version_tables.pin_again(self.dep, version, lost)

    def _recorded_tables(self, obj, map_plans: List[MapPlan], programs: List[str]) -> Dict[str, Dict[str, str]]:
        """A loaded version's own tables and their slots, for its metadata (``per_version_maps``)."""
        ids = {libbpf.prog_info(obj.program(name).fd).id: name for name in programs}
        return {plan.name: version_tables.recorded_slots(obj.map(plan.name).fd, plan.wanted.max_entries, ids)
                if plan.wanted.type == version_tables.PROG_ARRAY else {}
                for plan in map_plans if plan.action == "per_version"}

    def _before_switch(self, version: str, old: Optional[str]) -> None:
        if self.on_switch is not None and version != old:
            self.on_switch(version, old)

    def _preflight(self, data: bytes, spec: objects.ObjectSpec, label: str) -> None:
        """What bpf_preflight checks, in this run and before anything is loaded: refuse at
        req.preflight_fail_on or worse; otherwise keep the report for the result."""
        from ansible_collections.ebpf.deploy.plugins.module_utils import _preflight as preflight  # pylint: disable=import-outside-toplevel

        if self.req.program_type:   # what the load will use (libbpf < 1.3 cannot type a tcx/ section)
            prog_type = libbpf.prog_type_from_name(self.req.program_type)[0]
            spec = replace(spec, programs=tuple(
                replace(p, type=prog_type, type_name=self.req.program_type) for p in spec.programs))
        report = preflight.run(data, source=label, bpffs_root=str(self.dep.root), deployment=self.req.name,
                               spec=spec)
        # a pinned map with another spec is map_conflict's to decide (recreate may be asked for)
        findings = [f for f in report["_findings"] if f.check != "pinned_map"]
        blocking = preflight.at_or_above(findings, self.req.preflight_fail_on)
        self.preflight_report = {
            "passed": not blocking,
            "counts": preflight.count_by_severity(findings),
            "findings": [f.to_dict() for f in findings],
        }
        if blocking:
            raise PreflightRefused(f"preflight refused {label} ({self.req.preflight_fail_on} or worse): "
                                   f"{preflight.summarize(findings)}", preflight=self.preflight_report)

    def _versions_using(self, pinned_programs: Dict[str, List[str]], map_ids: set, *, exclude: str) -> List[str]:
        """Pinned versions whose programs use one of ``map_ids`` (they go when the map is recreated)."""
        map_ids.discard(None)
        if not map_ids:
            return []
        out = []
        for version in pinned_programs:
            if version == exclude:
                continue
            infos = self._pinned_program_infos(version).values()
            if any(set(info.map_ids) & map_ids for info in infos):
                out.append(version)
        return out

    # ---- configuring and loading
    def _set_globals(self, obj, label: str) -> Dict[str, Any]:
        """Check the requested globals against the object's BTF and write them into the initial
        values of its data sections (libbpf's copy: nothing is loaded yet, in check mode neither).
        Returns the values as they will read back, for the digest and the result."""
        if not self.req.globals:
            return {}
        globals_ = _globals()
        writes = globals_.resolve_in(obj, self.req.globals, label=label)
        for section, items in writes.sections.items():
            bpf_map = obj.section_map(section)
            bpf_map.set_initial_value(globals_.patched(bpf_map.initial_value(), items))
        return writes.values

    def _configure(self, obj, spec: objects.ObjectSpec, wanted: List[str]) -> None:
        override = None
        if self.req.program_type:
            try:
                override = libbpf.prog_type_from_name(self.req.program_type)
            except SyscallError:
                raise InvalidInput(f"unknown program_type {self.req.program_type!r} (known: "
                                   f"{', '.join(libbpf.known_prog_type_names())})") from None
        for prog in obj.programs():
            if prog.name not in wanted:
                prog.set_autoload(False)
                continue
            if override is not None:
                prog.set_type(override[0])
                if override[1]:
                    prog.set_expected_attach_type(override[1])
            elif prog.type == libbpf.BPF_PROG_TYPE_UNSPEC:
                raise InvalidInput(f"program '{prog.name}' in section '{prog.section}': libbpf cannot tell its "
                                   "type from the section name; set program_type (e.g. xdp, sched_cls)")

    def _configure_freplace(self, obj, wanted: List[str], label: str) -> Optional[AttachProgram]:
        """freplace programs: the pinned program (``attach_program``) checked to be a program with BTF
        whose BTF has each function their sections name, and set as their attach target (its fd
        open until the load has finished). None when the object loads no freplace program."""
        programs = [(prog.name, prog.type, prog.section) for prog in obj.programs() if prog.name in wanted]
        functions = freplace_functions(programs, self.req.attach_program, label=label, allowed=self.freplace)
        if not functions:
            return None
        from ansible_collections.ebpf.deploy.plugins.module_utils import _hook_tracing as tracing  # pylint: disable=import-outside-toplevel
        pin = os.path.normpath(self.req.attach_program)
        fd, info = tracing.open_target_program(libbpf, pin, what="attach_program")
        try:
            blob = libbpf.btf_raw(info.btf_id)
            for name, function in functions.items():
                try:
                    tracing.replaced_function(blob, function,
                                              program=f"attach_program {pin} (program {info.name!r}, id {info.id})")
                except InvalidInput as err:
                    raise InvalidInput(f"{err.msg}; program '{name}' (section freplace/{function}) replaces it, "
                                       "nothing was loaded", **err.details) from None
                obj.program(name).set_attach_target(fd)
        except BaseException:
            libbpf.close(fd)
            raise
        return AttachProgram(pin=pin, fd=fd, id=info.id, name=info.name)

    def _load(self, obj, map_plans: List[MapPlan], label: str) -> None:
        """Load with reuse of pinned/live maps; turn failures into explaining errors."""
        for plan in map_plans:
            fd = None
            if plan.action == "reuse":
                fd = libbpf.obj_get(str(self.dep.map_pin(plan.name)))
            elif plan.action == "repin":
                fd = libbpf.map_fd_by_id(plan.live_id)
            if fd is not None:
                with libbpf.closing_fd(fd):
                    obj.map(plan.name).reuse_fd(fd)
        log_size = getattr(self, "_log_size", None)
        try:
            obj.load(log_level=self.req.verifier_log_level, log_size=log_size)
        except libbpf.ObjectLoadError as exc:
            if exc.errno == _errno.ENOSPC and exc.program and (log_size or 0) < MAX_LOG_SIZE:
                raise _RetryWithBiggerLog((log_size or libbpf.VERBOSE_LOG_SIZE) * 8) from None
            prog_type = obj.program(exc.program).type if exc.program else None
            raise self._explain_load_error(exc, map_plans, label, prog_type=prog_type) from None

    def _explain_load_error(self, exc: "libbpf.ObjectLoadError", map_plans: List[MapPlan],
                            label: str, *, prog_type: Optional[int] = None) -> EbpfDeployError:
        if exc.program and exc.errno == _errno.EPERM and not exc.verifier_log.strip():
            locked = lockdown_refusal(exc.program, prog_type, label)
            if locked is not None:
                return locked
        missing_btf = None if exc.program else no_kernel_btf(exc.messages, exc.errno, label)
        if missing_btf is not None:
            return missing_btf
        if exc.program and exc.verifier_log.strip():
            verifier = _verifier()
            finding = verifier.classify_rejection(exc.verifier_log)
            return VerifierRejected(
                verifier.one_line_message(exc.program, finding), program=exc.program,
                error_kind=finding.error_kind, insn=finding.insn, verifier_log=exc.verifier_log,
                reason=finding.reason, verifier_summary=finding.summary, errno=exc.errno,
                object=label)
        if exc.map_name and exc.errno in (_errno.ENOMEM, _errno.E2BIG, _errno.EPERM):
            # the memory model explains a refused map only: a run that loads is spared compiling it
            from ansible_collections.ebpf.deploy.plugins.module_utils import _limits  # pylint: disable=import-outside-toplevel
            plan = next((p for p in map_plans if p.name == exc.map_name), None)
            estimate = _limits.map_spec_memory(plan.wanted, _limits.possible_cpus()) if plan else None
            size = estimate["bytes"] if estimate else None
            what = ""
            if plan:
                what = (f"{plan.wanted.type_name} map needs about {size} bytes ({_limits.human_bytes(size)}: "
                        f"{estimate['formula']}); ")
            cgroup = _limits.memory_cgroup()
            limits = {"memlock": _limits.memlock()["soft"], "memlock_applies": _limits.memlock_applies(),
                      "cgroup": cgroup["path"], "cgroup_memory_limit": cgroup["limit"]}
            limit_text = "host limits: " + ", ".join(name for name, _bytes in _limits.memory_limits())
            return SyscallError("BPF_MAP_CREATE", exc.errno, f"map '{exc.map_name}'", detail=what + limit_text,
                                map=exc.map_name, map_size_bytes=size, limits=limits,
                                libbpf_messages=exc.messages)
        return exc

    def _verifier_stats(self, obj, wanted: List[str]) -> Dict[str, dict]:
        if not (self.check_mode or self.req.verifier_log_level):
            return {}
        stats = {}
        for name in wanted:
            prog = obj.program(name)
            info = libbpf.prog_info(prog.fd)
            entry = {"verified_insns": info.verified_insns, "xlated_len": info.xlated_prog_len,
                     "jited_len": info.jited_prog_len, "insn_cnt": prog.insn_cnt}
            entry.update(_verifier().parse_stats(prog.log))
            if self.req.verifier_log_level:
                entry["log"] = prog.log
            stats[name] = entry
        return stats

    # ---- pinning
    def _pin_and_commit(self, obj, version: str, wanted: List[str], map_plans: List[MapPlan],
                        already_pinned: List[str]) -> None:
        """Pin into a staging dir in the bpffs, then rename into place; undo on failure."""
        dep = self.dep
        created_root = not dep.root.exists()
        created_dep = not dep.exists()
        staging = dep.new_staging_dir()
        committed: List[Path] = []
        version_dir = dep.path / version
        created_version_dir = False
        try:
            staged_progs = staging / "version" / "progs"
            staged_progs.mkdir(parents=True)
            staged_maps = staging / "maps"
            staged_maps.mkdir()
            to_pin = [name for name in wanted if name not in already_pinned]
            for name in to_pin:
                libbpf.obj_pin(obj.program(name).fd, str(staged_progs / name))
            map_moves = [p for p in map_plans if p.needs_pin]
            for plan in map_moves:
                libbpf.obj_pin(obj.map(plan.name).fd, str(staged_maps / validate_name(plan.name, "map name")))
            own_maps = [p.name for p in map_plans if p.action == "per_version"
                        and not dep.version_map_pin(version, p.name).exists()]
            if own_maps:
                (staging / "version" / "maps").mkdir()
            for name in own_maps:
                libbpf.obj_pin(obj.map(name).fd, str(staging / "version" / "maps" / validate_name(name, "map name")))
            dep.maps_dir.mkdir(parents=True, exist_ok=True)
            for plan in map_moves:
                target = dep.map_pin(plan.name)
                os.rename(staged_maps / plan.name, target)
                if plan.action != "recreate":
                    committed.append(target)
            if not version_dir.exists():
                os.rename(staging / "version", version_dir)
                created_version_dir = True
            else:
                (version_dir / "progs").mkdir(exist_ok=True)
                if own_maps:
                    (version_dir / "maps").mkdir(exist_ok=True)
                moves = [("progs", name) for name in to_pin] + [("maps", name) for name in own_maps]
                for kind, name in moves:
                    target = version_dir / kind / name
                    os.rename(staging / "version" / kind / name, target)
                    committed.append(target)
        except BaseException:
            if created_version_dir:
                remove_tree(version_dir)
            for path in committed:
                remove_tree(path)
            remove_tree(staging)
            if created_dep:
                remove_tree(dep.path)
            if created_root:
                with contextlib.suppress(OSError):
                    os.rmdir(dep.root)
            raise
        remove_tree(staging)

    # ---- reporting
    def _program_result(self, *, info: Optional[libbpf.ProgramInfo], name: str, pin: str,
                        dry_run: bool = False) -> dict:
        if info is None:
            return {"name": name, "pin": pin, "id": None}
        return {
            "name": name, "id": None if dry_run else info.id, "tag": info.tag, "type": info.type_name,
            "pin": pin, "verified_insns": info.verified_insns, "xlated_len": info.xlated_prog_len,
            "jited_len": info.jited_prog_len, "map_ids": [] if dry_run else list(info.map_ids),
            "kernel_name": info.name,
        }

    def _program_results(self, version: str, names: List[str]) -> List[dict]:
        infos = self._pinned_program_infos(version) if self.dep.exists() else {}
        return [self._program_result(info=infos.get(name), name=name,
                                     pin=str(self.dep.progs_dir(version) / name)) for name in names]

    def _map_results(self, map_plans: List[MapPlan], version: Optional[str] = None) -> List[dict]:
        pinned = self._pinned_map_specs()
        plans = {p.name: p for p in map_plans}
        names = [p.name for p in map_plans if p.action != "internal"] or sorted(pinned)
        out = []
        for name in names:
            plan = plans.get(name)
            spec = plan.wanted if plan else pinned[name][1]
            map_id = pinned[name][0] if name in pinned else None
            if self.check_mode and plan is not None and plan.action in ("create", "recreate"):
                map_id = None
            per_version = plan is not None and plan.action == "per_version"
            pin = self.dep.version_map_pin(version, name) if per_version else self.dep.map_pin(name)
            if per_version:
                map_id = None if self.check_mode else _pinned_id(pin)
            entry = spec.as_dict()
            entry.update(name=name, id=map_id, pin=str(pin), reused=plan.reused if plan else True,
                         per_version=per_version)
            out.append(entry)
        return out

    def _result(self, *, action: str, version: str, old: Optional[str], before: dict, prune: List[str],
                programs: List[dict], maps: List[dict], digest: Optional[str], program_names: List[str],
                map_plans: Optional[List[MapPlan]] = None, verifier_stats: Optional[dict] = None,
                globals_values: Optional[dict] = None, repaired: Optional[List[str]] = None) -> "ProgramResult":
        changed = action != "none" or bool(prune) or bool(repaired)
        if self.check_mode or action == "none":
            previous = old if action != "none" else self.dep.previous_version()
            pinned_after = [v for v in self.dep.versions() if v not in prune]
            if version not in pinned_after:
                pinned_after.append(version)
        else:
            previous = self.dep.previous_version()
            pinned_after = self.dep.versions()
        result = ProgramResult(changed=changed, version=version, previous_version=previous, action=action,
                               digest=digest, programs=programs, removed_versions=prune,
                               preflight=self.preflight_report, globals=globals_values or None,
                               extra={"maps": maps, "versions": pinned_after})
        if verifier_stats:
            result.extra["verifier"] = verifier_stats
        if repaired:
            result.extra["repaired"] = repaired
        if self.diff_mode:
            after_maps = {}
            for entry in maps:
                spec = {k: entry[k] for k in ("name", "type", "key_size", "value_size", "max_entries", "map_flags")}
                plan = next((p for p in map_plans or [] if p.name == entry["name"]), None)
                if plan is not None and plan.action == "recreate":
                    changes = objects.describe_map_conflict(plan.name, plan.changes)
                    spec["state"] = f"recreated, contents lost ({changes})"
                elif plan is not None and plan.action == "create":
                    spec["state"] = "new"
                after_maps[entry["name"]] = spec
            for name, spec in before.get("maps", {}).items():
                after_maps.setdefault(name, spec)
            after = state_view(version, program_names, after_maps, pinned_after, globals_values)
            if repaired:
                after["repaired"] = repaired
            result.diff = {"before": before, "after": after}
        return result


class _RetryWithBiggerLog(Exception):
    """The verifier log did not fit: open the object again with a bigger buffer."""

    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.size = size


def _pinned_id(pin: Path) -> Optional[int]:
    """The kernel id of the map pinned at ``pin`` (None when nothing is pinned there)."""
    try:
        with libbpf.closing_fd(libbpf.obj_get(str(pin))) as fd:
            return libbpf.map_info(fd).id
    except SyscallError:
        return None


def _object_name(label: str) -> str:
    base = os.path.basename(label)
    for suffix in (".bpf.o", ".o"):
        if base.endswith(suffix):
            base = base[: -len(suffix)]
    return "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in base)[:32] or "object"


def run(params: dict, *, check_mode: bool = False, diff_mode: bool = False) -> ProgramResult:
    """The module's entry: validate, plan, act, report (raises EbpfDeployError on failure)."""
    request = Request.from_params(params)
    return ProgramManager(request, check_mode=check_mode, diff_mode=diff_mode).run()
