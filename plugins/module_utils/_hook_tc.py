# -*- coding: utf-8 -*-
# Copyright: contributors to ebpf.deploy
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private to ebpf.deploy: tc_ingress/tc_egress, a ``bpf`` filter under the clsact qdisc (kernels before tcx).

There is no bpf_link to pin: the attachment is one ``cls_bpf`` filter in direct-action mode at a
place the manager owns - the clsact parent of the direction (ffff:fff2 ingress, ffff:fff3 egress),
priority ``priority`` (default 1) and handle 1. The program stays pinned under its deployment; what
our last run put there is the note ``_attach.write_note`` keeps (``prog_id``, and ``created_qdisc``:
whether this collection created clsact), keyed by the link pin name the hook would have.

- read:   the qdisc, our filter at (priority, handle) and the other filters on both clsact parents.
- plan:   ``plan()`` is pure (unit-tested): none | attach | update | detach. A filter at our place
          whose program is not ours (not the note's, not pinned under the bpffs root) is refused
          without ``force``; our filter missing or running another program is drift, repaired.
- act:    attach creates clsact when absent, then the filter (NLM_F_EXCL: one that appeared
          meanwhile is not overwritten); update replaces the filter in place (NLM_F_REPLACE on the
          same priority and handle: cls_bpf swaps its program under RCU, so every packet meets the
          old program or the new one); detach removes our filter only, and the qdisc only when we
          created it and no filter is left on either parent.

Netlink only through ``_netlink``; no Ansible here.
"""
from __future__ import annotations

import errno as _errno
import os
from dataclasses import dataclass
from typing import Optional, Tuple

from ansible_collections.ebpf.deploy.plugins.module_utils._attach import (
    AttachResult,
    Plan,
    Prog,
    notes_in_root,
    read_note,
    write_note,
)
from ansible_collections.ebpf.deploy.plugins.module_utils._errors import EbpfDeployError, InvalidInput, SyscallError
from ansible_collections.ebpf.deploy.plugins.module_utils._hook_base import HookFamily, Target
from ansible_collections.ebpf.deploy.plugins.module_utils._hook_tcx import interface_target

HANDLE = 1
DEFAULT_PRIORITY = 1
MAX_PRIORITY = 0xFFFF   # the priority is the upper 16 bits of tcm_info; 0 lets the kernel choose, never ours


def netlink():
    from ansible_collections.ebpf.deploy.plugins.module_utils import _netlink  # pylint: disable=import-outside-toplevel
    return _netlink


# --- values --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Filter:
    """The filter at our place as the kernel has it."""

    prog_id: Optional[int]
    prog_name: str = ""
    kind: str = "bpf"


@dataclass(frozen=True)
class TcCurrent:
    clsact: bool = False
    ours: Optional[Filter] = None       # the filter at (priority, handle), whoever put it there
    owned: bool = False                 # its program is ours
    others: int = 0                     # other filters on clsact's ingress and egress
    last: Optional[dict] = None         # note of our last run: prog_id, created_qdisc
    chain: Tuple[int, ...] = ()         # bpf programs on the direction, in priority order


# --- planning (pure) ---------------------------------------------------------------------------
def describe(current: TcCurrent, *, hook: str, target: dict) -> dict:
    ours = current.ours
    return dict(target, hook=hook, prog_id=ours.prog_id if ours else None,
                prog_name=(ours.prog_name or None) if ours else None,
                filter_state="present" if ours else "none", clsact=current.clsact)


def detect_drift(current: TcCurrent, where: str) -> Optional[str]:
    last = current.last
    if not last:
        return None
    if current.ours is None:
        return f"the tc filter at {where} (program id {last.get('prog_id')}) was removed by hand"
    if last.get("prog_id") and current.ours.prog_id != last.get("prog_id"):
        return (f"program id {last.get('prog_id')} in the tc filter at {where} was replaced by hand with "
                f"program id {current.ours.prog_id}")
    return None


def plan(state: str, prog: Optional[Prog], current: TcCurrent, *, force: bool, hook: str, target: dict,
         label: str, where: str) -> Plan:
    """Desired vs current → the action and the diff. Raises InvalidInput for refusals."""
    before = describe(current, hook=hook, target=target)
    drift = detect_drift(current, where)
    ours = current.ours
    if state == "absent":
        if ours is None:
            return Plan("none", before, before, drift)
        if not current.owned and not force:
            return Plan("none", before, before, drift, warnings=[
                f"{label}: the tc filter at {where} runs program id {ours.prog_id} that ebpf.deploy did not deploy; "
                "left in place (force: true removes it)"])
        removes_qdisc = bool((current.last or {}).get("created_qdisc")) and current.others == 0
        return Plan("detach", before, dict(before, prog_id=None, prog_name=None, filter_state="none",
                                           clsact=current.clsact and not removes_qdisc), drift)
    if prog is None:
        raise InvalidInput("state: present needs a program (deployment + program, or pin)")
    after = dict(before, prog_id=prog.id, prog_name=prog.name or None, filter_state="present", clsact=True)
    if ours is None:
        return Plan("attach", before, after, drift)
    if ours.prog_id == prog.id and ours.kind == "bpf":
        return Plan("none", before, before, drift)
    if not current.owned and not force:
        what = f"program id {ours.prog_id} ({ours.prog_name or 'no name'})" if ours.kind == "bpf" else \
            f"a {ours.kind} filter"
        raise InvalidInput(f"{label}: the tc filter at {where} runs {what} that ebpf.deploy did not deploy; "
                           "refusing to replace it (force: true takes it over, or choose another priority)",
                           foreign_prog_id=ours.prog_id, priority=target.get("priority"))
    return Plan("update", before, after, drift)


def priority_of(value: Optional[int]) -> int:
    prio = DEFAULT_PRIORITY if value is None else value
    if not 1 <= prio <= MAX_PRIORITY:
        raise InvalidInput(f"priority of a tc filter must be 1..{MAX_PRIORITY}, not {prio}", priority=prio)
    return prio


# --- the family: the kernel side ---------------------------------------------------------------
class TcFamily(HookFamily):
    family = "tc"

    @property
    def direction(self) -> str:
        return self.hook.name.split("_", 1)[1]

    def resolve(self, *, check_mode: bool) -> Target:
        prio = priority_of(self.request.priority)
        target = interface_target(self.hook, self.request, self.direction)
        return Target(key=target.key, label=target.label, netns=target.netns,
                      data=dict(target.data, priority=prio, handle=HANDLE))

    def read(self, target: Target, *, owned_ids: set, last: Optional[dict]) -> TcCurrent:
        ifindex, prio = target.data["ifindex"], target.data["priority"]
        with netlink().Netlink(target.netns) as nl:
            clsact = nl.has_clsact(ifindex)
            mine = nl.tc_filters(ifindex, self.direction) if clsact else []
            other = nl.tc_filters(ifindex, "egress" if self.direction == "ingress" else "ingress") if clsact else []
        ours = next((f for f in mine if f.prio == prio and f.handle == HANDLE), None)
        found = Filter(prog_id=ours.prog_id, prog_name=ours.prog_name or "", kind=ours.kind or "") if ours else None
        owned = found is not None and found.kind == "bpf" and found.prog_id is not None and (
            found.prog_id == (last or {}).get("prog_id") or found.prog_id in owned_ids)
        return TcCurrent(clsact=clsact, ours=found, owned=owned, others=len(mine) + len(other) - (1 if ours else 0),
                         last=last, chain=tuple(f.prog_id for f in mine if f.prog_id))

    def put(self, prog_fd: int, prog_name: str, target: Target, *, replace: bool) -> bool:
        """Our filter with this program (the qdisc made first when absent); True when we made it."""
        ifindex, prio = target.data["ifindex"], target.data["priority"]
        nl_mod = netlink()
        made = False
        with nl_mod.Netlink(target.netns) as nl:
            if not nl.has_clsact(ifindex):
                try:
                    nl.add_clsact(ifindex)
                    made = True
                except nl_mod.NetlinkOpError as exc:
                    if exc.errno != _errno.EEXIST:   # made meanwhile by another tool: fine, not ours
                        raise self._error(exc, target, "create the clsact qdisc on") from None
            try:
                nl.set_tc_filter(ifindex, self.direction, prio=prio, handle=HANDLE, prog_fd=prog_fd,
                                 name=prog_name or "ebpf_deploy", replace=replace)
            except nl_mod.NetlinkOpError as exc:
                if made:
                    nl.del_clsact(ifindex)
                if exc.errno == _errno.EEXIST:
                    raise EbpfDeployError(f"a tc filter appeared at {where_of(target)} on {target.label} while this "
                                          "run worked; nothing was overwritten, run again", errno=exc.errno) from None
                raise self._error(exc, target, "add the tc filter on") from None
        return made

    def remove(self, target: Target, *, remove_qdisc: bool) -> bool:
        """Our filter removed (gone already is fine); the qdisc too when asked and left empty."""
        ifindex, prio = target.data["ifindex"], target.data["priority"]
        nl_mod = netlink()
        with nl_mod.Netlink(target.netns) as nl:
            try:
                nl.del_tc_filter(ifindex, self.direction, prio=prio, handle=HANDLE)
            except nl_mod.NetlinkOpError as exc:
                if exc.errno not in (_errno.ENOENT, _errno.EINVAL):
                    raise self._error(exc, target, "remove the tc filter from") from None
            if not remove_qdisc or nl.tc_filters(ifindex, "ingress") or nl.tc_filters(ifindex, "egress"):
                return False
            try:
                nl.del_clsact(ifindex)
            except nl_mod.NetlinkOpError as exc:
                if exc.errno not in (_errno.ENOENT, _errno.EINVAL):
                    raise self._error(exc, target, "remove the clsact qdisc from") from None
            return True

    def chain(self, target: Target) -> Optional[Tuple[int, ...]]:
        with netlink().Netlink(target.netns) as nl:
            return tuple(f.prog_id for f in nl.tc_filters(target.data["ifindex"], self.direction) if f.prog_id)

    def _error(self, exc, target: Target, what: str) -> EbpfDeployError:
        err = SyscallError(exc.request, exc.errno, target=target.label, detail=exc.extack or None)
        return self.refused(err, target, what=what) if exc.errno in (_errno.EINVAL, _errno.EPERM) else err


def where_of(target: Target) -> str:
    return f"priority {target.data['priority']} handle {target.data['handle']}"


# --- the flow: read → plan → act → report --------------------------------------------------------
class TcAttachment:
    """One run of bpf_attach on tc_ingress/tc_egress, with the manager's inputs (program, pins, notes)."""

    def __init__(self, manager, hook_row, family: TcFamily) -> None:
        self.manager = manager
        self.hook = hook_row
        self.family = family

    def run(self) -> AttachResult:
        mgr, req = self.manager, self.manager.request
        target = self.family.resolve(check_mode=mgr.check_mode)
        prog = mgr.resolve_program(self.hook) if req.state == "present" else None
        key = mgr.link_pin_path(self.hook, target)   # names the note; nothing is pinned there
        last = read_note(req.bpffs_root, key)
        moved_from = (last or {}).get("priority")
        if req.state == "absent" and req.priority is None and moved_from is not None:
            target.data["priority"] = moved_from   # absent without a priority removes ours, wherever it is
        elif req.state == "present" and moved_from is not None and moved_from != target.data["priority"]:
            # a second filter at the new priority would run beside the old one: refuse, change nothing
            raise InvalidInput(f"our tc filter on {target.label} {self.family.direction} is at priority {moved_from}, "
                               f"not {target.data['priority']}: detach it first (state: absent, priority: {moved_from})",
                               priority=target.data["priority"], current_priority=moved_from)
        current = self.family.read(target, owned_ids=mgr._pinned_programs(), last=last)  # pylint: disable=protected-access
        the_plan = plan(req.state, prog, current, force=req.force, hook=self.hook.name, target=target.describe(),
                        label=target.label, where=where_of(target))
        mgr.warnings.extend(the_plan.warnings)
        created = bool((last or {}).get("created_qdisc"))
        if the_plan.changed and not mgr.check_mode:
            if mgr.before_change is not None:
                mgr.before_change({"prog_id": current.ours.prog_id if current.ours else None}, mgr.bpf)
            created = self._act(the_plan.action, prog, target, current, created)
        chain = current.chain
        if not mgr.check_mode:
            if the_plan.changed:
                chain = self.family.chain(target)
            if req.state == "present" and (the_plan.changed or last is None or last.get("prog_id") != prog.id):
                # where the filter is, too: bpf_facts lists tc attachments from these notes
                write_note(req.bpffs_root, key, dict(target.describe(), prog_id=prog.id, created_qdisc=created,
                                                     hook=self.hook.name, deployment=req.deployment,
                                                     name=os.path.basename(key)))
            elif req.state == "absent" and (the_plan.changed or current.ours is None):
                write_note(req.bpffs_root, key, None)
        return self._report(the_plan, target, current, chain)

    def _act(self, action: str, prog: Optional[Prog], target: Target, current: TcCurrent, created: bool) -> bool:
        """Does the action; returns whether the qdisc is (still) one we created."""
        bpf = self.manager.bpf
        if action in ("attach", "update"):
            fd = bpf.obj_get(prog.pin) if prog.pin else bpf.prog_fd(prog.id)
            try:
                made = self.family.put(fd, prog.name, target, replace=action == "update")
            finally:
                bpf.close(fd)
            return made or (created and current.clsact)
        if action == "detach":
            self.family.remove(target, remove_qdisc=created)
            return False
        raise AssertionError(f"unknown action {action}")

    def _report(self, the_plan: Plan, target: Target, current: TcCurrent, chain) -> AttachResult:
        present = self.manager.request.state == "present"
        after = the_plan.after
        result = AttachResult(changed=the_plan.changed, action=the_plan.action,
                              previous_prog_id=current.ours.prog_id if current.ours else None,
                              diff={"before": the_plan.before, "after": after},
                              warnings=list(self.manager.warnings),
                              extra={"hook": self.hook.name, "target": target.describe(),
                                     "prog_id": after.get("prog_id") if present else None,
                                     "link_pin": None, "link_id": None, "chain": list(chain)})
        if the_plan.drift:
            result.extra["drift"] = the_plan.drift
            result.diff["before_header"] = f"drift: {the_plan.drift}"
        return result


# --- facts -----------------------------------------------------------------------------------------
def attachments(bpffs_root: str) -> dict:
    """{deployment: {name: {hook, link_id: None, prog_id, priority}}} of the tc filters our runs put
    under this root, read back from the kernel (prog_id None: the filter is gone or runs another program)."""
    out: dict = {}
    for note in notes_in_root(bpffs_root):
        hook, dep = note.get("hook"), note.get("deployment")
        if hook not in ("tc_ingress", "tc_egress") or not dep or not note.get("name"):
            continue
        out.setdefault(dep, {})[note["name"]] = {"hook": hook, "link_id": None,
                                                 "prog_id": _running(note), "priority": note.get("priority")}
    return out


def _running(note: dict) -> Optional[int]:
    """The program in the filter at the note's place, when it is the note's program."""
    nl_mod = netlink()
    try:
        with nl_mod.Netlink(note.get("netns")) as nl:
            filters = nl.tc_filters(int(note["ifindex"]), note["direction"])
    except (LookupError, OSError, KeyError, ValueError):
        return None
    found = next((f for f in filters if f.prio == note.get("priority") and f.handle == HANDLE), None)
    return found.prog_id if found is not None and found.prog_id == note.get("prog_id") else None
