# -*- coding: utf-8 -*-
# Copyright: contributors to ebpf.deploy
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private to ebpf.deploy: the attachment manager behind bpf_attach, for every hook.

``AttachManager(request, check_mode=..., diff_mode=...).run() -> AttachResult`` is read → plan → act → report, like
``XdpManager``; the hook decides the family (``_hook_tcx``, ``_hook_cgroup``, ``_hook_tracing``,
``_hook_netfilter``) that talks to the kernel, everything else is shared. Two hooks have no link
of this shape and run their own flow after the hook is decided: ``xdp`` runs ``_xdp.XdpManager``
(``xdp_manager()``, the code xdp_attach runs: modes, link or netlink method), and ``tc_ingress``/
``tc_egress`` a filter under clsact (``_hook_tc.TcAttachment``). Options another hook's family takes
(``mode`` on tcx, ``priority`` on XDP) are refused first (``_hooks.check_options_apply``).

- hook:  the ``hook`` option, else the program's ELF section (``section``, or ``sections`` in the
         version's metadata) through ``_hooks.parse_section``, which also gives the target.
- read:  our link pin ``<root>/<deployment>/links/<target>:<hook>`` (live, defunct or absent),
         the program it runs, whether that program is ours (pinned under the bpffs root, or the
         one our last run attached), the hook's program list where the kernel has one (tcx, cgroup).
- plan:  ``plan()`` is pure: one action, the diff, drift and refusals. Unit-tested.
- act:   attach (link + pin), update (BPF_LINK_UPDATE with the expected old program: atomic),
         overlap (hooks without update: the new link is created and pinned by rename over the old
         pin first, then the old link is released: both run for a moment, none is missing), move
         (a tcx program to another place: tcx holds a program once per hook, so detach, then attach
         in place), detach_attach (netfilter: no update and one link per priority; freplace, whose
         links cannot be detached: the old pin released first), reattach (a defunct pin replaced),
         detach, unpin.
- report: the module's return values (diff included).

No Ansible here. libbpf only through ``_libbpf``, netlink only through ``_netlink``.
"""
from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass, replace
from typing import Callable, Optional, Tuple

from ansible_collections.ebpf.deploy.plugins.module_utils import _hooks as hooks
from ansible_collections.ebpf.deploy.plugins.module_utils._errors import (
    EbpfDeployError,
    InvalidInput,
    SyscallError,
    UnsupportedFeature,
)
from ansible_collections.ebpf.deploy.plugins.module_utils._hook_base import Anchor, Target
from ansible_collections.ebpf.deploy.plugins.module_utils._uapi import PROG_TYPE_NAMES
from ansible_collections.ebpf.deploy.plugins.module_utils._request import known_params
from ansible_collections.ebpf.deploy.plugins.module_utils._result import ActionPlan, Result

DEFAULT_BPFFS_ROOT = "/sys/fs/bpf/ebpf_deploy"
STATE_DIR = "/run/ebpf_deploy/attach"
STAGING_PREFIX = "_staging-"


# --- values --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Prog:
    id: int
    name: str = ""
    type: int = 0
    pin: Optional[str] = None


@dataclass(frozen=True)
class Current:
    """Our link pin as the kernel has it."""

    pin_state: str = "none"          # none | live | defunct
    link_id: Optional[int] = None
    prog_id: Optional[int] = None
    prog_name: str = ""
    owned: bool = False              # the link's program is ours
    last: Optional[dict] = None      # note of our last run: prog_id
    chain: Optional[Tuple[int, ...]] = None   # programs on the hook in run order (tcx, cgroup)


@dataclass(frozen=True)
class Desired:
    state: str
    link_pin: str
    prog: Optional[Prog] = None
    anchor: Optional[Anchor] = None
    force: bool = False
    updatable: bool = True
    overlap: bool = True          # two links may hold the target at once


class Plan(ActionPlan):
    """action: none | attach | update | overlap | move | detach_attach | reattach | detach | unpin.

    overlap: hooks without update (and a new program that must also change place): the new link
             first, then the old one detached. move: the same program to another place in a tcx
             list (the kernel holds a program once per hook): detached, then attached in place.
    detach_attach: a new program on a hook without update that takes one link at a time
             (netfilter: one per pf, hook and priority): detached, then the new one attached.
    """


# --- planning (pure) ---------------------------------------------------------------------------
def describe(current: Current, *, hook: str, target: dict, link_pin: str) -> dict:
    attached = current.pin_state == "live"
    return dict(target, hook=hook, prog_id=current.prog_id if attached else None,
                prog_name=(current.prog_name or None) if attached else None,
                link_pin=link_pin if current.pin_state != "none" else None,
                link_state=current.pin_state)


def detect_drift(current: Current, link_pin: str) -> Optional[str]:
    last = current.last
    if current.pin_state == "defunct":
        return f"the link pinned at {link_pin} was detached by hand (or its target went away)"
    if not last:
        return None
    if current.pin_state == "none":
        return f"the link pinned at {link_pin} (program id {last.get('prog_id')}) was removed by hand"
    if last.get("prog_id") and current.prog_id != last.get("prog_id"):
        return f"program id {last.get('prog_id')} on the link was replaced by hand with program id {current.prog_id}"
    return None


def order_ok(chain: Optional[Tuple[int, ...]], prog_id: int, anchor: Optional[Anchor]) -> Optional[bool]:
    """Is ``prog_id`` before/after the anchor in the hook's list? None when it cannot be told."""
    if anchor is None or chain is None or prog_id not in chain or anchor.prog_id not in chain:
        return None
    mine, theirs = chain.index(prog_id), chain.index(anchor.prog_id)
    return mine < theirs if anchor.relation == "before" else mine > theirs


def plan(desired: Desired, current: Current, *, hook: str, target: dict, label: str) -> Plan:
    """Desired vs current → the action and the diff. Raises EbpfDeployError for refusals."""
    pin = desired.link_pin
    before = describe(current, hook=hook, target=target, link_pin=pin)
    drift = detect_drift(current, pin)
    gone = dict(before, prog_id=None, prog_name=None, link_pin=None, link_state="none")

    if desired.state == "absent":
        if current.pin_state == "defunct":
            return Plan("unpin", before, gone, drift)
        if current.pin_state == "none":
            return Plan("none", before, before, drift)
        if not current.owned and not desired.force:
            return Plan("none", before, before, drift, warnings=[
                f"{label}: the link pinned at {pin} runs program id {current.prog_id} that ebpf.deploy did not "
                "deploy; left in place (force: true detaches it)"])
        return Plan("detach", before, gone, drift)

    prog = desired.prog
    if prog is None:
        raise InvalidInput("state: present needs a program (deployment + program, or pin)")
    anchor = desired.anchor
    if anchor is not None:
        if anchor.prog_id == prog.id:
            raise InvalidInput(f"{anchor.label} is the program being attached; it cannot run {anchor.relation} itself")
        if current.chain is not None and anchor.prog_id not in current.chain:
            raise InvalidInput(f"{anchor.label} is not attached to {label}; cannot run {anchor.relation} it",
                               **{anchor.relation: anchor.prog_id})
    after = dict(before, prog_id=prog.id, prog_name=prog.name or None, link_pin=pin, link_state="live")
    if anchor is not None:
        after[anchor.relation] = anchor.prog_id

    if current.pin_state == "none":
        return Plan("attach", before, after, drift)
    if current.pin_state == "defunct":
        return Plan("reattach", before, after, drift)

    if current.prog_id != prog.id and not current.owned and not desired.force:
        raise InvalidInput(
            f"{label}: the link pinned at {pin} runs program id {current.prog_id} "
            f"({current.prog_name or 'no name'}) that ebpf.deploy did not deploy; refusing to replace it "
            "(force: true takes it over)", foreign_prog_id=current.prog_id, link_pin=pin)
    placed = order_ok(current.chain, current.prog_id, anchor)
    if current.prog_id == prog.id:
        if placed is False:
            return Plan("move", before, after, drift, warnings=[
                f"{label}: program id {prog.id} is not {anchor.relation} {anchor.label}; tcx cannot move a link and "
                "holds a program once per hook, so it is detached and attached again in its place (packets in "
                "between pass the other programs without it)"])
        return Plan("none", before, before, drift)
    if desired.updatable and placed is not False:
        return Plan("update", before, after, drift)
    why = ("the kernel cannot swap the program of this link" if not desired.updatable
           else f"program id {current.prog_id} is not {anchor.relation} {anchor.label}")
    if not desired.overlap:
        between = ("calls in between run the function itself" if hook == "freplace"
                   else "packets in between pass without either")
        return Plan("detach_attach", before, after, drift, warnings=[
            f"{label}: {why} and takes one link there at a time: the old program is detached and the new one "
            f"attached ({between})"])
    return Plan("overlap", before, after, drift, warnings=[
        f"{label}: {why}: the new program is attached first and the old one detached after "
        "(both run for a moment, none is missing)"])


# --- notes: what our last run attached (cleared on reboot, like the bpffs) ---------------------
def _note_path(bpffs_root: str, link_pin: str) -> str:
    scope = bpffs_root.strip("/").replace("/", "_")
    rel = os.path.relpath(link_pin, bpffs_root).replace("/", "_")
    return os.path.join(STATE_DIR, scope, rel + ".json")


def read_note(bpffs_root: str, link_pin: str) -> Optional[dict]:
    try:
        with open(_note_path(bpffs_root, link_pin), encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def notes_in_root(bpffs_root: str) -> list:
    """Every note kept for links (and tc filters) under this bpffs root (what bpf_facts lists tc from)."""
    scope = os.path.join(STATE_DIR, bpffs_root.strip("/").replace("/", "_"))
    try:
        names = sorted(name for name in os.listdir(scope) if name.endswith(".json"))
    except OSError:
        return []
    notes = []
    for name in names:
        try:
            with open(os.path.join(scope, name), encoding="utf-8") as handle:
                data = json.load(handle)
        except (OSError, ValueError):
            continue
        if isinstance(data, dict):
            notes.append(data)
    return notes


def write_note(bpffs_root: str, link_pin: str, note: Optional[dict]) -> None:
    path = _note_path(bpffs_root, link_pin)
    if note is None:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(note, handle)
    os.replace(tmp, path)


# --- the request -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Request:
    hook: Optional[str] = None
    section: Optional[str] = None
    target: Optional[str] = None
    interface: Optional[str] = None
    netns: Optional[str] = None
    cgroup: Optional[str] = None
    pf: Optional[str] = None
    hooknum: Optional[str] = None
    priority: Optional[int] = None
    before: Optional[str] = None
    after: Optional[str] = None
    mode: Optional[str] = None        # XDP only
    method: str = "link"              # XDP only
    deployment: Optional[str] = None
    program: Optional[str] = None
    pin: Optional[str] = None
    bpffs_root: str = DEFAULT_BPFFS_ROOT
    state: str = "present"
    force: bool = False
    lock_timeout: float = 60.0

    @classmethod
    def from_params(cls, params: dict) -> "Request":
        values = known_params(cls, params)
        for key in ("before", "after"):
            if key in values:
                values[key] = str(values[key])
        return cls(**values)

    def validate(self) -> None:
        if self.state not in ("present", "absent"):
            raise InvalidInput(f"state must be present or absent, not {self.state!r}")
        if self.before and self.after:
            raise InvalidInput("give before or after, not both")
        if self.pin and self.program:
            raise InvalidInput("give either pin or deployment + program, not both")
        if self.program and not self.deployment:
            raise InvalidInput("program needs deployment")
        if self.state == "present" and not self.pin and not (self.deployment and self.program):
            raise InvalidInput("state: present needs deployment + program, or pin")
        if self.state == "absent" and not self.deployment and not self.pin:
            raise InvalidInput("state: absent needs the deployment (or pin) whose link to remove")
        if self.hook is not None:
            hooks.hook(self.hook)


def family_for(hook_row: hooks.Hook):
    """The family class for a hook (imported on demand: one file per family)."""
    # pylint: disable=import-outside-toplevel
    if hook_row.family == "tcx":
        from ansible_collections.ebpf.deploy.plugins.module_utils._hook_tcx import TcxFamily
        return TcxFamily
    if hook_row.family == "cgroup":
        from ansible_collections.ebpf.deploy.plugins.module_utils._hook_cgroup import CgroupFamily
        return CgroupFamily
    if hook_row.family == "tracing":
        from ansible_collections.ebpf.deploy.plugins.module_utils._hook_tracing import TracingFamily
        return TracingFamily
    if hook_row.family == "netfilter":
        from ansible_collections.ebpf.deploy.plugins.module_utils._hook_netfilter import NetfilterFamily
        return NetfilterFamily
    if hook_row.family == "tc":
        from ansible_collections.ebpf.deploy.plugins.module_utils._hook_tc import TcFamily
        return TcFamily
    # xdp: AttachManager.run hands it to xdp_manager() before a family is asked for
    raise UnsupportedFeature(f"hook {hook_row.name} has no bpf_link family", hook=hook_row.name)


def xdp_manager(params: dict, **kwargs):
    """The XdpManager for bpf_attach's (or xdp_attach's) options: one code path for hook xdp."""
    from ansible_collections.ebpf.deploy.plugins.module_utils import _xdp  # pylint: disable=import-outside-toplevel
    return _xdp.XdpManager(_xdp.Request.from_params(params), **kwargs)


# --- the manager ---------------------------------------------------------------------------------
@dataclass
class AttachResult(Result):
    """One bpf_attach run; ``extra`` holds hook, target, prog_id, link_pin, link_id, chain and drift."""
    action: str = "none"
    previous_prog_id: Optional[int] = None

    keep_none = ("previous_prog_id",)


class AttachManager:
    """read → plan → act → report for one hook and target."""

    def __init__(self, request: Request, *, check_mode: bool = False, diff_mode: bool = False, bpf=None,
                 before_change: Optional[Callable[[dict, object], None]] = None):
        request.validate()
        self.request = request
        self.check_mode = check_mode
        self.diff_mode = diff_mode   # the diff is returned either way: Ansible shows it in diff mode
        self._bpf = bpf
        # bpf_deployment's record: told what held the link (its program id, or None) before a change
        self.before_change = before_change
        self.warnings: list = []

    @property
    def bpf(self):
        if self._bpf is None:
            from ansible_collections.ebpf.deploy.plugins.module_utils._xdp import Bpf  # pylint: disable=import-outside-toplevel
            self._bpf = Bpf()
        return self._bpf

    # --- inputs -----------------------------------------------------------------------------------
    def _deployment(self, name: str):
        from ansible_collections.ebpf.deploy.plugins.module_utils._pins import Deployment  # pylint: disable=import-outside-toplevel
        return Deployment(self.request.bpffs_root, name)

    def resolve_hook(self) -> Tuple[hooks.Hook, Optional[str]]:
        """The hook and the target the section names (the options win over the section)."""
        req = self.request
        section = req.section or self._recorded_section()
        if req.hook:
            row = hooks.hook(req.hook)
            if req.target or not section:
                return row, req.target
            try:
                parsed = hooks.parse_section(section)
            except InvalidInput:
                return row, None
            return row, parsed.target if parsed.hook == row.name else None
        from_section = hooks.parse_section(section) if section else None
        if from_section is None:
            raise InvalidInput("cannot tell the hook: set hook (or section, the program's ELF section such as "
                               "tcx/ingress or tracepoint/syscalls/sys_enter_getpid)")
        return hooks.hook(from_section.hook), req.target or from_section.target

    def section_target(self, hook_row: hooks.Hook) -> Optional[str]:
        """The target the program's section names for this hook (fentry/fexit/lsm programs were
        loaded for it), None without a section or when it names another hook."""
        section = self.request.section or self._recorded_section()
        try:
            parsed = hooks.parse_section(section) if section else None
        except InvalidInput:
            return None
        return parsed.target if parsed is not None and parsed.hook == hook_row.name else None

    def _recorded_section(self) -> Optional[str]:
        """``sections: {program: section}`` in the current version's metadata, when bpf_program keeps it."""
        req = self.request
        if not (req.deployment and req.program):
            return None
        dep = self._deployment(req.deployment)
        version = dep.current_version()
        if version is None:
            return None
        sections = dep.read_metadata(version).get("sections")
        return sections.get(req.program) if isinstance(sections, dict) else None

    def resolve_program(self, hook_row: hooks.Hook) -> Prog:
        req = self.request
        if req.pin:
            path = req.pin
            if not os.path.exists(path):
                raise InvalidInput(f"no pinned program at {path}", pin=path)
        else:
            dep = self._deployment(req.deployment)
            if dep.current_version() is None:
                raise InvalidInput(f"deployment {req.deployment!r} has no current version under {req.bpffs_root} "
                                   "(deploy it with ebpf.deploy.bpf_program first)", deployment=req.deployment)
            path = str(dep.program_pin(req.program))
            if not os.path.exists(path):
                raise InvalidInput(f"deployment {req.deployment!r} has no program {req.program!r} (no pin at {path})",
                                   deployment=req.deployment, program=req.program, pin=path)
        kind, info = self.bpf.pinned_kind(path)
        if kind != "prog":
            raise InvalidInput(f"{path} is not a pinned program", pin=path)
        hooks.check_prog_type(hook_row, info.type, prog_label=f"{info.name!r} (id {info.id}) at {path}",
                              type_name=PROG_TYPE_NAMES.get(info.type, f"type {info.type}"))
        return Prog(id=info.id, name=info.name, type=info.type, pin=path)

    def resolve_anchor(self, hook_row: hooks.Hook, target: Target) -> Optional[Anchor]:
        req = self.request
        relation = "before" if req.before else "after" if req.after else None
        if relation is None:
            return None
        if hook_row.family != "tcx":
            raise InvalidInput(f"before/after order programs on tcx hooks only, not on {hook_row.name}")
        value = (req.before or req.after).strip()
        if value.isdigit():
            return Anchor(relation, int(value), f"program id {value}")
        name, _sep, program = value.partition("/")
        dep = self._deployment(name)
        if program:
            if dep.current_version() is None:
                raise InvalidInput(f"{relation}: deployment {name!r} has no current version", **{relation: value})
            path = str(dep.program_pin(program))
            kind, info = self.bpf.pinned_kind(path)
            if kind != "prog":
                raise InvalidInput(f"{relation}: deployment {name!r} has no program {program!r} (no pin at {path})",
                                   **{relation: value})
            return Anchor(relation, info.id, f"program {value} (id {info.id})")
        path = str(dep.links_dir / f"{target.key}:{hook_row.name}")
        kind, info = self.bpf.pinned_kind(path)
        if kind != "link" or not info.get("prog_id"):
            raise InvalidInput(f"{relation}: deployment {name!r} has no link on {target.label} (no {path})",
                               **{relation: value})
        return Anchor(relation, info["prog_id"], f"deployment {name} (program id {info['prog_id']})")

    def link_pin_path(self, hook_row: hooks.Hook, target: Target) -> str:
        req = self.request
        name = f"{target.key}:{hook_row.name}"
        if len(name.encode()) > 255:
            raise InvalidInput(f"the link pin name for {target.label} is longer than 255 bytes")
        if req.deployment:
            return str(self._deployment(req.deployment).links_dir / name)
        return os.path.join(req.bpffs_root, "links", name)

    # --- reading -----------------------------------------------------------------------------------
    def read_current(self, family, target: Target, link_pin: str) -> Current:
        req = self.request
        last = read_note(req.bpffs_root, link_pin)
        chain = family.chain(target) if target.exists else None
        if not os.path.lexists(link_pin):
            return Current(last=last, chain=chain)
        kind, info = self.bpf.pinned_kind(link_pin)
        if kind != "link":
            raise InvalidInput(f"{link_pin} is in the way of the link pin: it is not a bpf_link", link_pin=link_pin)
        fd = self.bpf.obj_get(link_pin)
        try:
            alive = family.live(fd, target)
        finally:
            self.bpf.close(fd)
        if not alive:
            return Current(pin_state="defunct", link_id=info["id"], last=last, chain=chain)
        prog = self.bpf.prog_by_id(info["prog_id"])
        owned = info["prog_id"] == (last or {}).get("prog_id")
        if not owned:
            owned = info["prog_id"] in self._pinned_programs()
        return Current(pin_state="live", link_id=info["id"], prog_id=info["prog_id"],
                       prog_name=prog.name if prog else "", owned=owned, last=last, chain=chain)

    def _pinned_programs(self) -> set:
        """Ids of the programs pinned (as programs, not through links) under the bpffs root."""
        ids = set()
        root = self.request.bpffs_root
        if not os.path.isdir(root):
            return ids
        for dirpath, _dirs, files in os.walk(root):
            for name in files:
                kind, info = self.bpf.pinned_kind(os.path.join(dirpath, name))
                if kind == "prog":
                    ids.add(info.id)
        return ids

    # --- run ---------------------------------------------------------------------------------------
    def run(self) -> Result:
        hook_row, _target = self.resolve_hook()
        hooks.check_options_apply(hook_row, {name: getattr(self.request, name) for name in hooks.OPTION_FAMILIES})
        if hook_row.family == "xdp":
            return self._run_xdp()
        hook_row, family = self._family()
        with self._lock(hook_row):
            if hook_row.family == "tc":
                from ansible_collections.ebpf.deploy.plugins.module_utils._hook_tc import TcAttachment  # pylint: disable=import-outside-toplevel
                return TcAttachment(self, hook_row, family).run()
            return self._run(hook_row, family)

    def _run_xdp(self) -> Result:
        """hook xdp: xdp_attach's manager on this request's options (its lock, its guarantees)."""
        req = self.request
        if req.before or req.after:
            raise InvalidInput("before/after order programs on tcx hooks only, not on xdp")
        if not req.interface:
            raise InvalidInput("hook xdp needs interface", hook="xdp")
        names = ("interface", "netns", "deployment", "program", "pin", "bpffs_root", "mode", "method", "state",
                 "force", "lock_timeout")
        params = {name: getattr(req, name) for name in names}
        result = xdp_manager(params, check_mode=self.check_mode, diff_mode=self.diff_mode,
                             bpf=self._bpf, before_change=self.before_change).run()
        result.extra["hook"] = "xdp"
        return result

    def planned_target(self) -> Tuple[str, dict]:
        """``<target>:<hook>``, the name of the link pin, and the result's ``target``, from the options
        alone (a missing target, an unknown one or a kernel without the hook refused in one line;
        nothing is changed)."""
        hook_row, family = self._family()
        if (self.request.before or self.request.after) and hook_row.family != "tcx":
            raise InvalidInput(f"before/after order programs on tcx hooks only, not on {hook_row.name}")
        target = family.resolve(check_mode=True)
        return os.path.basename(self.link_pin_path(hook_row, target)), target.describe()

    def _family(self):
        hook_row, target_opt = self.resolve_hook()
        family = family_for(hook_row)(hook_row, _WithTarget(self.request, target_opt,
                                                            loaded_target=self.section_target(hook_row)))
        family.check_kernel()
        return hook_row, family

    def _lock(self, hook_row: hooks.Hook):
        from ansible_collections.ebpf.deploy.plugins.module_utils._lock import deployment_lock  # pylint: disable=import-outside-toplevel
        req = self.request
        name = req.deployment or ("attach-" + "".join(ch if ch.isalnum() or ch in "_-" else "_"
                                                      for ch in f"{hook_row.name}-{req.pin}")[-120:])
        return deployment_lock(name, req.lock_timeout)

    def _run(self, hook_row: hooks.Hook, family) -> AttachResult:
        req = self.request
        if (req.before or req.after) and hook_row.family != "tcx":
            raise InvalidInput(f"before/after order programs on tcx hooks only, not on {hook_row.name}")
        target = family.resolve(check_mode=self.check_mode)
        self.warnings.extend(target.warnings)
        prog = self.resolve_program(hook_row) if req.state == "present" else None
        link_pin = self.link_pin_path(hook_row, target)
        anchor = self.resolve_anchor(hook_row, target) if req.state == "present" else None
        current = self.read_current(family, target, link_pin)
        desired = Desired(state=req.state, link_pin=link_pin, prog=prog, anchor=anchor, force=req.force,
                          updatable=hook_row.updatable, overlap=hook_row.overlap)
        the_plan = plan(desired, current, hook=hook_row.name, target=target.describe(), label=target.label)
        self.warnings.extend(the_plan.warnings)
        link_id = current.link_id if current.pin_state == "live" else None
        if the_plan.changed and not self.check_mode:
            if self.before_change is not None:
                self.before_change({"prog_id": current.prog_id if current.pin_state == "live" else None}, self.bpf)
            link_id = self._act(the_plan, family, target, desired, current)
        return self._report(the_plan, family, target, desired, current, link_id)

    def _act(self, the_plan: Plan, family, target: Target, desired: Desired, current: Current) -> Optional[int]:
        action, pin = the_plan.action, desired.link_pin
        if action in ("attach", "reattach"):
            return self._attach_new(family, target, desired, replace_pin=action == "reattach")
        if action == "update":
            link_fd = self.bpf.obj_get(pin)
            try:
                new_fd = self.bpf.obj_get(desired.prog.pin)
                old_fd = None
                try:
                    old_fd = self.bpf.prog_fd(current.prog_id)
                    family.update(link_fd, new_fd, old_fd, target)
                finally:
                    self.bpf.close(new_fd)
                    self.bpf.close(old_fd)
                return self.bpf.link_info(link_fd)["id"]
            finally:
                self.bpf.close(link_fd)
        if action == "overlap":
            old_fd = self.bpf.obj_get(pin)   # keeps the old link until the new one is in place
            try:
                link_id = self._attach_new(family, target, desired, replace_pin=True)
                family.detach(old_fd, target)
            finally:
                self.bpf.close(old_fd)
            return link_id
        if action == "detach_attach" and not family.can_detach:
            return self._release_attach(family, target, desired, current)
        if action in ("move", "detach_attach"):
            old_fd = self.bpf.obj_get(pin)
            try:
                family.detach(old_fd, target)
                try:
                    return self._attach_new(family, target, desired, replace_pin=True)
                except EbpfDeployError as err:
                    self._put_back(family, target, desired, self._old_prog(current), err)
                    raise
            finally:
                self.bpf.close(old_fd)
        if action == "detach":
            fd = self.bpf.obj_get(pin)
            try:
                family.detach(fd, target)
            finally:
                self.bpf.close(fd)
            os.unlink(pin)
            return None
        if action == "unpin":
            os.unlink(pin)
            return None
        raise AssertionError(f"unknown action {action}")

    def _release_attach(self, family, target: Target, desired: Desired, current: Current) -> int:
        """detach_attach on a hook whose links cannot be detached (freplace): our pin is the old
        link's reference, so unpinning releases it; the new program is attached (the family waits
        for the kernel to let go of the old), or the old one is put back."""
        os.unlink(desired.link_pin)
        try:
            return self._attach_new(family, target, desired, replace_pin=True)
        except EbpfDeployError as err:
            self._put_back(family, target, desired, self._old_prog(current), err)
            raise

    def _put_back(self, family, target: Target, desired: Desired, old: "Prog", err: EbpfDeployError) -> None:
        """A move whose attach failed: the old program goes back on the hook (tcx: at its end)."""
        try:
            self._attach_new(family, target, replace(desired, anchor=None, prog=old), replace_pin=True)
        except EbpfDeployError as undo:
            raise EbpfDeployError(f"{err.msg}; putting program id {old.id} back failed too, it is not "
                                  f"attached to {target.label}: {undo.msg}", **err.details) from None

    def _old_prog(self, current: Current) -> Prog:
        """The program our link ran, as a pin-less Prog (its fd comes from its id)."""
        return Prog(id=current.prog_id, name=current.prog_name)

    def _attach_new(self, family, target: Target, desired: Desired, *, replace_pin: bool) -> int:
        """A new link pinned at the link pin: pinned beside it first, then renamed over it, so the
        pin always names a link (the old one until the rename)."""
        pin = desired.link_pin
        os.makedirs(os.path.dirname(pin), exist_ok=True)
        prog = desired.prog
        prog_fd = self.bpf.obj_get(prog.pin) if prog.pin else self.bpf.prog_fd(prog.id)
        try:
            link_fd = family.attach(prog_fd, target, anchor=desired.anchor)
        finally:
            self.bpf.close(prog_fd)
        try:
            staging = os.path.join(os.path.dirname(pin), f"{STAGING_PREFIX}{os.getpid()}-{secrets.token_hex(3)}")
            self.bpf.pin(link_fd, staging)   # if pinning fails, closing link_fd releases the new link
            try:
                if os.path.lexists(pin) and not replace_pin:
                    raise EbpfDeployError(f"{pin} appeared while this run worked; nothing was overwritten, run again")
                os.rename(staging, pin)
            except BaseException:
                os.unlink(staging)
                raise
            return self.bpf.link_info(link_fd)["id"]
        finally:
            self.bpf.close(link_fd)

    def _report(self, the_plan: Plan, family, target: Target, desired: Desired, current: Current,
                link_id: Optional[int]) -> AttachResult:
        req = self.request
        after = the_plan.after
        chain = current.chain
        if the_plan.changed and not self.check_mode:
            chain = family.chain(target)
            if req.state == "present":
                write_note(req.bpffs_root, desired.link_pin, {"prog_id": desired.prog.id, "link_id": link_id})
            else:
                write_note(req.bpffs_root, desired.link_pin, None)
        elif req.state == "present" and not self.check_mode and current.pin_state == "live" and current.last is None:
            write_note(req.bpffs_root, desired.link_pin, {"prog_id": current.prog_id, "link_id": link_id})
        present = req.state == "present"
        result = AttachResult(changed=the_plan.changed, action=the_plan.action,
                              previous_prog_id=current.prog_id if current.pin_state == "live" else None,
                              diff={"before": the_plan.before, "after": after}, warnings=list(self.warnings),
                              extra={"hook": after["hook"], "target": target.describe(),
                                     "prog_id": after.get("prog_id"),
                                     "link_pin": desired.link_pin if present else None,
                                     "link_id": link_id if present else None,
                                     "chain": list(chain) if chain is not None else None})
        if the_plan.drift:
            result.extra["drift"] = the_plan.drift
            result.diff["before_header"] = f"drift: {the_plan.drift}"
        return result


class _WithTarget:
    """The request as a family sees it: ``target`` filled from the section when not given, and
    ``loaded_target`` the one the section names (where fentry/fexit/lsm programs were loaded for)."""

    def __init__(self, request: Request, target: Optional[str], *, loaded_target: Optional[str] = None) -> None:
        self._request = request
        self.target = target
        self.loaded_target = loaded_target

    def __getattr__(self, name: str):
        return getattr(self._request, name)


__all__ = ["AttachManager", "AttachResult", "Request", "plan", "Current", "Desired", "Plan", "Prog", "SyscallError"]
