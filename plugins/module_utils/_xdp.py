# -*- coding: utf-8 -*-
# Copyright: contributors to ebpf.deploy
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private to ebpf.deploy: the XDP attachment manager behind the xdp_attach module.

One run is read → plan → act → report:

- read:  the interface (netlink), what IFLA_XDP says is attached, which bpf_link holds it, whether
         the attached program is ours (our link pin's program, or a program or link pinned in one
         of our directories under the bpffs root) and which deployment holds it, and our link
         pin's state. Taking over another deployment's interface needs force, like a foreign one.
- plan:  `plan()` is pure: desired vs current → one action, the diff, and refusals (a foreign
         program without force, a bpf_link in the way of netlink, ...). Unit-tested without a kernel.
- act:   one class per method behind one small interface (attach, replace, detach, info):
         `LinkMethod` (a pinned bpf_link, replaced with bpf_link_update) and `NetlinkMethod`
         (IFLA_XDP with XDP_FLAGS_REPLACE + the expected old program). Replacing is atomic in both.
- report: the module's return values.

No Ansible here. libbpf is only reached through `_libbpf`, netlink only through `_netlink`.
"""
from __future__ import annotations

import errno as _errno
import json
import os
from dataclasses import dataclass, replace
from typing import Optional

from ansible_collections.ebpf.deploy.plugins.module_utils import _netlink as netlink
from ansible_collections.ebpf.deploy.plugins.module_utils._errors import (
    EbpfDeployError,
    InvalidInput,
    SyscallError,
    UnsupportedFeature,
)
from ansible_collections.ebpf.deploy.plugins.module_utils._uapi import PROG_TYPE_NAMES, PROG_TYPES
from ansible_collections.ebpf.deploy.plugins.module_utils._request import known_params
from ansible_collections.ebpf.deploy.plugins.module_utils._result import ActionPlan, Result

DEFAULT_BPFFS_ROOT = "/sys/fs/bpf/ebpf_deploy"
MODES = ("native", "generic", "offload")
METHODS = ("link", "netlink")
BPF_PROG_TYPE_XDP = PROG_TYPES["xdp"]
# Where a run leaves a note of what it attached, so a later run can call a difference "drift".
# Like the bpffs it is cleared on reboot.
STATE_DIR = "/run/ebpf_deploy/xdp"


# --- values --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Prog:
    """A loaded program as the kernel describes it."""

    id: int
    name: str = ""
    type: int = BPF_PROG_TYPE_XDP
    tag: str = ""
    pin: Optional[str] = None
    ifindex: int = 0  # the device the program was loaded for (offload), 0 when none

    @property
    def type_name(self) -> str:
        return PROG_TYPE_NAMES.get(self.type, f"type {self.type}")


@dataclass(frozen=True)
class Current:
    """What is on the interface now, read from the kernel (and our note of the last run)."""

    ifindex: int
    prog_id: Optional[int] = None
    prog_name: str = ""
    mode: Optional[str] = None
    held_by_link: Optional[int] = None  # id of the bpf_link holding the program, if one does
    link_pin: Optional[str] = None  # where that link is pinned under the bpffs root, if it is
    owned: bool = False  # the attached program is ours (our link's, or pinned in our directories)
    holder: Optional[str] = None  # the deployment whose pins hold it (None: pin-only, or not ours)
    defunct_pin: Optional[str] = None  # our link pin for the interface, no longer attached
    last: Optional[dict] = None  # note of our last attachment here: prog_id, mode, method

    @property
    def method(self) -> Optional[str]:
        if self.prog_id is None:
            return None
        return "link" if self.held_by_link else "netlink"


@dataclass(frozen=True)
class Desired:
    state: str  # present | absent
    prog: Optional[Prog] = None  # the program to attach (present)
    mode: Optional[str] = None  # None: native where the driver has it, else generic
    method: str = "link"
    force: bool = False
    link_pin: Optional[str] = None  # where our link for this interface is (to be) pinned
    deployment: Optional[str] = None  # the deployment asking (None: a pin given alone)


class Plan(ActionPlan):
    """One action and its diff. action is one of:

    none      nothing to do
    attach    nothing attached: attach the program (link create + pin, or netlink set)
    replace   swap the attached program atomically (link update, or netlink REPLACE)
    repin     the right program is attached by a link pinned elsewhere: pin it at our path
    reattach  mode or method change: detach, then attach (the kernel has no atomic way)
    detach    state absent: remove our attachment
    unpin     state absent, nothing attached but our defunct link pin is left: remove it
    """


# --- planning (pure) ---------------------------------------------------------------------------
def describe(current: Current, *, interface: str, netns: Optional[str]) -> dict:
    return {
        "interface": interface,
        "netns": netns,
        "prog_id": current.prog_id,
        "prog_name": current.prog_name or None,
        "mode": current.mode,
        "method": current.method,
        "link_pin": current.link_pin if current.held_by_link else None,
    }


def _foreign(current: Current) -> str:
    name = f" ({current.prog_name})" if current.prog_name else ""
    holder = f"bpf_link id {current.held_by_link}" if current.held_by_link else "netlink"
    return f"program id {current.prog_id}{name}, attached {current.mode} by {holder}"


def _other_deployment(desired: Desired, current: Current) -> bool:
    """The attached program is another deployment's (ours, but not the asking one's)."""
    return current.owned and current.holder is not None and current.holder != desired.deployment


def _asking(desired: Desired) -> str:
    return f"deployment '{desired.deployment}'" if desired.deployment else "a pin given alone"


def detect_drift(current: Current) -> Optional[str]:
    """A difference between the kernel and what our last run left (None: no difference known)."""
    if current.defunct_pin and current.prog_id is None:
        return f"the bpf_link pinned at {current.defunct_pin} was detached by hand"
    last = current.last
    if not last:
        return None
    if current.prog_id is None:
        return f"program id {last.get('prog_id')} was detached by hand (attached {last.get('mode')})"
    if current.prog_id != last.get("prog_id"):
        return f"program id {last.get('prog_id')} was replaced by hand with program id {current.prog_id}"
    if last.get("mode") and current.mode != last.get("mode"):
        return f"the program was re-attached by hand in {current.mode} mode (was {last.get('mode')})"
    return None


def plan(desired: Desired, current: Current, *, interface: str, netns: Optional[str]) -> Plan:
    """Desired vs current → the action and the diff. Raises EbpfDeployError for refusals."""
    before = describe(current, interface=interface, netns=netns)
    drift = detect_drift(current)
    where = repr(interface) + (f" (netns {netns})" if netns else "")

    if desired.state == "absent":
        after = dict(before, prog_id=None, prog_name=None, mode=None, method=None, link_pin=None)
        if current.prog_id is None:
            action = "unpin" if current.defunct_pin else "none"
            return Plan(action, before, before if action == "none" else after, drift)
        if not current.owned and not desired.force:
            return Plan("none", before, before, drift, warnings=[
                f"interface {where}: {_foreign(current)} was not attached by ebpf.deploy; left in place "
                "(force: true detaches it)"])
        if _other_deployment(desired, current) and not desired.force:
            return Plan("none", before, before, drift, warnings=[
                f"interface {where}: {_foreign(current)} belongs to deployment '{current.holder}', not to "
                f"{_asking(desired)}; left in place (force: true detaches it)"])
        return Plan("detach", before, after, drift)

    prog = desired.prog
    if prog is None:
        raise InvalidInput("state: present needs a program (deployment + program, or pin)")
    if desired.mode == "offload" and prog.ifindex != current.ifindex:
        # refused before anything is detached: the kernel takes only a program loaded for the device
        raise UnsupportedFeature(
            f"interface {where} cannot run program {prog.name or prog.id!r} in offload mode: it was not loaded "
            "for that device (offload needs a NIC that offloads XDP and a program loaded for it); "
            "use mode: native or generic", interface=interface, netns=netns, mode="offload")
    after = {
        "interface": interface,
        "netns": netns,
        "prog_id": prog.id,
        "prog_name": prog.name or None,
        "mode": desired.mode or current.mode,  # None until the kernel picks (fresh attach, auto)
        "method": desired.method,
        "link_pin": desired.link_pin if desired.method == "link" else None,
    }

    if current.prog_id is None:
        return Plan("attach", before, after, drift)

    if not current.owned and current.prog_id != prog.id and not desired.force:
        raise InvalidInput(
            f"interface {where} has a program this collection did not attach: {_foreign(current)}; "
            "refusing to replace it (force: true takes it over)",
            interface=interface, netns=netns, foreign_prog_id=current.prog_id,
            foreign_prog_name=current.prog_name)

    if current.prog_id != prog.id and _other_deployment(desired, current) and not desired.force:
        raise InvalidInput(
            f"interface {where} runs {_foreign(current)} of deployment '{current.holder}'; refusing to "
            f"take it over for {_asking(desired)} (force: true takes it over)",
            interface=interface, netns=netns, holder_deployment=current.holder,
            holder_prog_id=current.prog_id)

    if desired.method == "netlink" and current.held_by_link:
        raise InvalidInput(
            f"interface {where} holds a bpf_link (id {current.held_by_link}); "
            "use method: link or detach it first",
            interface=interface, netns=netns, link_id=current.held_by_link)

    mode_differs = desired.mode is not None and desired.mode != current.mode
    warnings = []
    if mode_differs or (desired.method == "link" and not current.held_by_link):
        why = (f"mode {current.mode} → {desired.mode}" if mode_differs
               else "a netlink-attached program cannot be replaced by a bpf_link")
        warnings.append(f"interface {where}: {why}: the kernel has no atomic way, so the program is detached "
                        "and the new one attached (packets in between pass without a program)")
        return Plan("reattach", before, after, drift, warnings)

    if current.prog_id != prog.id:
        return Plan("replace", before, after, drift)

    if desired.method == "link" and current.link_pin != desired.link_pin:
        return Plan("repin", before, after, drift)
    return Plan("none", before, before, drift)


# --- the kernel, through _libbpf -----------------------------------------------------------------
def _libbpf():
    from ansible_collections.ebpf.deploy.plugins.module_utils import _libbpf as lib  # noqa: E501 pylint: disable=import-outside-toplevel
    return lib


class Bpf:
    """The few bpf() operations this manager needs, all through `_libbpf`.

    Kept in one small adapter so the manager reads in terms of programs and links, and so the
    unit tests can replace it.
    """

    def __init__(self, lib=None):
        self.lib = lib or _libbpf()

    @staticmethod
    def close(fd: Optional[int]) -> None:
        if fd is not None and fd >= 0:
            os.close(fd)

    def obj_get(self, path: str) -> int:
        return self.lib.obj_get(path)

    def pin(self, fd: int, path: str) -> None:
        self.lib.obj_pin(fd, path)

    def prog_fd(self, prog_id: int) -> int:
        return self.lib.prog_fd_by_id(prog_id)

    def prog_info(self, fd: int, *, pin: Optional[str] = None) -> Prog:
        info = self.lib.prog_info(fd)
        return Prog(id=info.id, name=info.name, type=info.type, tag=info.tag, pin=pin, ifindex=info.ifindex)

    def prog_by_id(self, prog_id: int) -> Optional[Prog]:
        try:
            fd = self.prog_fd(prog_id)
        except SyscallError as exc:
            if exc.errno == _errno.ENOENT:
                return None
            raise
        try:
            return self.prog_info(fd)
        finally:
            self.close(fd)

    def link_info(self, fd: int) -> dict:
        """{'id', 'type', 'prog_id', 'ifindex', ...} (ifindex 0 once an XDP link is detached)."""
        return self.lib.link_info(fd).as_dict()

    def xdp_links(self, ifindex: int) -> list:
        """Every XDP bpf_link on this ifindex (any namespace: the caller matches the program)."""
        found = []
        for link_id in self.lib.link_ids():
            try:
                fd = self.lib.link_fd_by_id(link_id)
            except SyscallError:
                continue  # went away while we looked
            try:
                info = self.link_info(fd)
            finally:
                self.close(fd)
            if info.get("type") == self.lib.BPF_LINK_TYPE_XDP and info.get("ifindex") == ifindex:
                found.append(info)
        return found

    def link_create(self, prog_fd: int, ifindex: int, flags: int, *, ifname: str) -> int:
        return self.lib.link_create_xdp(prog_fd, ifindex, flags=flags, ifname=ifname)

    def link_fd(self, link_id: int) -> int:
        return self.lib.link_fd_by_id(link_id)

    def link_update(self, link_fd: int, new_prog_fd: int, old_prog_fd: int, *, target: str) -> None:
        self.lib.link_update(link_fd, new_prog_fd, old_prog_fd=old_prog_fd, target=target)

    def link_detach(self, link_fd: int, *, target: str) -> None:
        self.lib.link_detach(link_fd, target=target)

    def pinned_kind(self, path: str) -> tuple:
        """('prog', Prog) | ('link', info dict) | (None, None) for a pin (maps and the rest: None)."""
        try:
            fd = self.obj_get(path)
        except SyscallError:
            return None, None
        try:
            kind = self.lib.fd_kind(fd)
            if kind == "prog":
                return kind, self.prog_info(fd, pin=path)
            if kind == "link":
                return kind, self.link_info(fd)
            return None, None
        finally:
            self.close(fd)


# --- reading the current state -------------------------------------------------------------------
def _note_path(bpffs_root: str, interface: str, netns: Optional[str]) -> str:
    key = f"{netns}@{interface}" if netns else interface
    scope = bpffs_root.strip("/").replace("/", "_")
    return os.path.join(STATE_DIR, scope, key + ".json")


def read_note(bpffs_root: str, interface: str, netns: Optional[str]) -> Optional[dict]:
    from ansible_collections.ebpf.deploy.plugins.module_utils._pins import read_private_file  # pylint: disable=import-outside-toplevel
    note = read_private_file(_note_path(bpffs_root, interface, netns))
    return note if isinstance(note, dict) else None


def write_note(bpffs_root: str, interface: str, netns: Optional[str], note: Optional[dict]) -> None:
    path = _note_path(bpffs_root, interface, netns)
    if note is None:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        return
    from ansible_collections.ebpf.deploy.plugins.module_utils._pins import write_private_file  # pylint: disable=import-outside-toplevel
    from pathlib import Path  # pylint: disable=import-outside-toplevel
    write_private_file(Path(path), json.dumps(note))


def deployment_of(path: str, bpffs_root: str) -> Optional[str]:
    """The deployment a pin under the root belongs to (None for the root's own links/)."""
    first = os.path.relpath(path, bpffs_root).split(os.sep, 1)[0]
    return None if first in ("links", "..", ".") else first


def pick_link(links: list, pins: dict, *, prog_id: int, netns: Optional[str], ifname: str) -> Optional[int]:
    """The id of the XDP link holding ``prog_id`` on this interface, among the links on its ifindex.

    The kernel's link info has the ifindex only, and every namespace has an ifindex 2: a link
    pinned by us for another namespace or interface (its pin name says which) is not this one;
    of the others, one is; several that nothing tells apart are refused rather than guessed.
    """
    from ansible_collections.ebpf.deploy.plugins.module_utils._pins import parse_link_pin_name  # pylint: disable=import-outside-toplevel
    candidates = [info for info in links if info.get("prog_id") == prog_id]
    unknown = []
    for info in candidates:
        path = pins.get(info["id"])
        try:
            place = parse_link_pin_name(os.path.basename(path))[:2] if path else None
        except InvalidInput:
            place = None
        if place == (netns, ifname):
            return info["id"]
        if place is None:
            unknown.append(info)
    if len(unknown) <= 1:
        return unknown[0]["id"] if unknown else None
    raise InvalidInput(
        f"bpf_links {', '.join(str(i['id']) for i in unknown)} all hold program id {prog_id} on ifindex "
        f"{unknown[0].get('ifindex')} (of different network namespaces) and cannot be told apart; "
        "pin the one of this interface or detach the others", link_ids=[i["id"] for i in unknown])


def our_dirs(bpffs_root: str) -> list:
    """The directories under the root that this collection made: every deployment carrying the
    marker (or, made before markers, nothing but the layout), and `links/` of pin-only attachments.
    With a root shared with other tools (/sys/fs/bpf) nothing else counts as ours."""
    from ansible_collections.ebpf.deploy.plugins.module_utils._pins import Deployment  # pylint: disable=import-outside-toplevel
    found = []
    try:
        entries = sorted(os.scandir(bpffs_root), key=lambda e: e.name)
    except OSError:
        return found
    for entry in entries:
        if not entry.is_dir(follow_symlinks=False):
            continue
        if entry.name == "links":
            found.append(entry.path)
            continue
        try:
            if Deployment(bpffs_root, entry.name).is_ours():
                found.append(entry.path)
        except InvalidInput:  # not a name a deployment can have
            continue
    return found


def scan_root(bpf: Bpf, bpffs_root: str) -> tuple:
    """Programs pinned (or held by links pinned) in our directories under the root, with the
    deployment whose directory holds them ({prog id: deployment or None}), and the link pins there
    ({link id: path})."""
    owners, links = {}, {}
    for top in our_dirs(bpffs_root):
        owner = deployment_of(top, bpffs_root)
        for dirpath, _dirs, files in os.walk(top):
            for name in files:
                path = os.path.join(dirpath, name)
                kind, info = bpf.pinned_kind(path)
                if kind == "prog":
                    owners.setdefault(info.id, owner)
                elif kind == "link":
                    links[info["id"]] = path
                    if info.get("prog_id"):
                        owners.setdefault(info["prog_id"], owner)
    return owners, links


def read_current(bpf: Bpf, nl: "netlink.Netlink", iface: "netlink.Interface", *, bpffs_root: str,
                 link_pin: Optional[str]) -> Current:
    """What is attached, and whose: the holder is the deployment whose directory pins it."""
    state = nl.xdp_state(iface.ifindex)
    prog_id, mode = state.prog_id, state.mode
    prog = bpf.prog_by_id(prog_id) if prog_id else None

    defunct = None
    held_by, held_pin = None, None
    if link_pin and os.path.exists(link_pin):
        kind, info = bpf.pinned_kind(link_pin)
        if kind != "link":
            raise InvalidInput(f"{link_pin} is in the way of the link pin: it is not a bpf_link")
        if prog_id and info.get("ifindex") == iface.ifindex and info.get("prog_id") == prog_id:
            held_by, held_pin = info["id"], link_pin
        elif info.get("ifindex"):
            raise InvalidInput(
                f"the link pinned at {link_pin} (id {info['id']}) is attached to ifindex {info['ifindex']}, "
                f"not to {iface.name} (ifindex {iface.ifindex}); unpin it or check the interface name")
        else:
            defunct = link_pin
    # Our own link pin holding the attached program settles ownership; only a program held some
    # other way (or by netlink) is looked up among the pins under the root, which opens every one.
    owned = held_pin is not None
    holder = deployment_of(held_pin, bpffs_root) if held_pin else None
    if prog_id and held_by is None:
        owners, root_links = scan_root(bpf, bpffs_root)
        held_by = pick_link(bpf.xdp_links(iface.ifindex), root_links, prog_id=prog_id, netns=iface.netns,
                            ifname=iface.name)
        held_pin = root_links.get(held_by) if held_by is not None else None
        owned = prog_id in owners or held_pin is not None
        holder = deployment_of(held_pin, bpffs_root) if held_pin else owners.get(prog_id)
    return Current(
        ifindex=iface.ifindex,
        prog_id=prog_id,
        prog_name=prog.name if prog else "",
        mode=mode,
        held_by_link=held_by,
        link_pin=held_pin,
        owned=owned,
        holder=holder if owned else None,
        defunct_pin=defunct,
        last=read_note(bpffs_root, iface.name, iface.netns),
    )


def holder(current: Current) -> dict:
    """What holds the interface, as the host's record keeps it (to give it back on a rollback)."""
    return {"prog_id": current.prog_id, "prog_name": current.prog_name or None, "mode": current.mode,
            "method": current.method, "link_pin": current.link_pin if current.held_by_link else None,
            "owned": current.owned}


def give_back(bpffs_root: str, interface: str, netns: Optional[str], *, held: dict,
              prog_pin: Optional[str], our_link_pin: str) -> str:
    """Put back what held an interface before a switch (``held`` as ``holder()`` recorded it, its
    program pinned at ``prog_pin``): the program on its link (atomic bpf_link update, the link pin
    moved back where it was), or by netlink in its mode; nothing when nothing held it. Returns the
    action taken."""
    bpf = Bpf()
    with netlink.Netlink(netns) as nl:
        iface = nl.interface(interface)
        current = read_current(bpf, nl, iface, bpffs_root=bpffs_root, link_pin=our_link_pin)
        if not held.get("prog_id"):
            if current.prog_id is None:
                if current.defunct_pin:
                    os.unlink(current.defunct_pin)
                write_note(bpffs_root, iface.name, iface.netns, None)
                return "none"
            METHOD_CLASSES[current.method](bpf, nl, iface).detach(current)
            write_note(bpffs_root, iface.name, iface.netns, None)
            return "detach"
        kind, prog = bpf.pinned_kind(prog_pin) if prog_pin else (None, None)
        if kind != "prog" and current.prog_id == held["prog_id"] and current.method == held.get("method"):
            return "none"   # given back already (by a run that was killed before it was recorded)
        if kind != "prog":
            raise InvalidInput(f"interface {interface}: the program that held it before (id {held['prog_id']}) "
                               f"was not kept at {prog_pin}; cannot give it back", interface=interface)
        want_link = held.get("link_pin") or our_link_pin
        if held.get("method") == "link" and current.held_by_link:
            if current.prog_id == prog.id and current.link_pin == want_link:
                action = "none"
            else:
                LinkMethod(bpf, nl, iface).replace(prog, current=current, link_pin=want_link)
                action = "replace"
        else:
            if current.prog_id is not None:
                if current.prog_id == prog.id and current.method == held.get("method"):
                    return "none"
                METHOD_CLASSES[current.method](bpf, nl, iface).detach(current)
            gone = replace(current, prog_id=None, held_by_link=None, link_pin=None, defunct_pin=None)
            METHOD_CLASSES[held.get("method") or "link"](bpf, nl, iface).attach(
                prog, mode=held.get("mode"), link_pin=want_link, current=gone)
            action = "reattach"
        write_note(bpffs_root, iface.name, iface.netns,
                   {"prog_id": prog.id, "mode": held.get("mode"), "method": held.get("method")})
        return action


def keep_program(bpf: Bpf, prog_id: int, path: str) -> None:
    """Pin a program by id (what held an interface before a switch), replacing an older such pin."""
    fd = bpf.prog_fd(prog_id)
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if os.path.lexists(path):
            os.unlink(path)
        bpf.pin(fd, path)
    finally:
        bpf.close(fd)


# --- acting: one class per method -------------------------------------------------------------
@dataclass
class Outcome:
    link_id: Optional[int] = None
    link_pin: Optional[str] = None


class AttachMethod:
    """attach / replace / detach / info for one interface. Subclasses: LinkMethod, NetlinkMethod."""

    name = ""

    def __init__(self, bpf: Bpf, nl: "netlink.Netlink", iface: "netlink.Interface"):
        self.bpf = bpf
        self.nl = nl
        self.iface = iface

    @property
    def where(self) -> str:
        return repr(self.iface.name) + (f" (netns {self.iface.netns})" if self.iface.netns else "")

    def info(self) -> "netlink.XdpState":
        return self.nl.xdp_state(self.iface.ifindex)

    def attach(self, prog: Prog, *, mode: Optional[str], link_pin: Optional[str], current: Current) -> Outcome:
        raise NotImplementedError

    def replace(self, prog: Prog, *, current: Current, link_pin: Optional[str]) -> Outcome:
        raise NotImplementedError

    def detach(self, current: Current) -> None:
        raise NotImplementedError

    # shared error wording -----------------------------------------------------------------------
    def mode_error(self, err: int, mode: Optional[str], detail: str = "") -> Optional[EbpfDeployError]:
        kind = f" ({self.iface.kind})" if self.iface.kind else ""
        if err == _errno.EOPNOTSUPP and mode in (None, "native"):
            return UnsupportedFeature(
                f"interface {self.where}{kind} does not support XDP in native mode; use mode: generic",
                interface=self.iface.name, netns=self.iface.netns, mode=mode, errno=err, kernel_message=detail)
        if err == _errno.ERANGE and mode in (None, "native"):
            # veth and most drivers: a frame must fit one page beside the XDP headroom (ERANGE,
            # "Peer MTU is too large to set XDP"; a bpf_link carries no extack to say so)
            return UnsupportedFeature(
                f"interface {self.where}{kind} refuses XDP in native mode: its MTU (or its veth peer's) is larger "
                "than one page minus the XDP headroom; lower the MTU (1500 fits), use mode: generic, or build the "
                "program for multi-buffer XDP (SEC(\"xdp.frags\"))",
                interface=self.iface.name, netns=self.iface.netns, mode=mode, errno=err, kernel_message=detail)
        if mode == "offload" and err in (_errno.EINVAL, _errno.EOPNOTSUPP):
            return UnsupportedFeature(
                f"interface {self.where}{kind} does not support offload mode (it needs a NIC that "
                "offloads XDP and a program loaded for that device); use mode: native or generic",
                interface=self.iface.name, netns=self.iface.netns, mode=mode, errno=err, kernel_message=detail)
        return None

    def concurrent(self, what: str, **details) -> EbpfDeployError:
        return EbpfDeployError(f"the XDP program on {self.where} changed while this run worked ({what}); "
                               "nothing was overwritten, run again to reconcile",
                               interface=self.iface.name, netns=self.iface.netns, **details)


class LinkMethod(AttachMethod):
    """A bpf_link for the interface, pinned so it outlives the run; replaced with bpf_link_update."""

    name = "link"

    def attach(self, prog: Prog, *, mode: Optional[str], link_pin: Optional[str], current: Current) -> Outcome:
        prog_fd = self.bpf.obj_get(prog.pin) if prog.pin else self.bpf.prog_fd(prog.id)
        try:
            flags = netlink.MODE_FLAGS[mode] if mode else 0
            try:
                # Links bind to the ifindex in the namespace the call is made from.
                with netlink.in_netns(self.iface.netns):
                    link_fd = self.bpf.link_create(prog_fd, self.iface.ifindex, flags, ifname=self.where)
            except SyscallError as exc:
                if exc.errno == _errno.EBUSY:
                    raise self.concurrent("a program was attached in the meantime", errno=exc.errno) from None
                raise self.mode_error(exc.errno, mode) or exc from None
        finally:
            self.bpf.close(prog_fd)
        try:
            os.makedirs(os.path.dirname(link_pin), exist_ok=True)
            if current.defunct_pin == link_pin and os.path.lexists(link_pin):
                os.unlink(link_pin)  # our old link, detached by hand: the new one takes its place
            self.bpf.pin(link_fd, link_pin)  # if this fails, closing the fd detaches the link again
            return Outcome(link_id=self.bpf.link_info(link_fd)["id"], link_pin=link_pin)
        finally:
            self.bpf.close(link_fd)

    def _open_link(self, current: Current) -> int:
        if current.link_pin:
            return self.bpf.obj_get(current.link_pin)
        return self.bpf.link_fd(current.held_by_link)

    def replace(self, prog: Prog, *, current: Current, link_pin: Optional[str]) -> Outcome:
        link_fd = self._open_link(current)
        try:
            new_fd = self.bpf.obj_get(prog.pin) if prog.pin else self.bpf.prog_fd(prog.id)
            old_fd = None
            try:
                old_fd = self.bpf.prog_fd(current.prog_id)
                # BPF_F_REPLACE: atomic, and refused (EPERM) if the link's program changed meanwhile.
                self.bpf.link_update(link_fd, new_fd, old_fd, target=f"link on {self.where}")
            except SyscallError as exc:
                if exc.errno in (_errno.EPERM, _errno.ENOENT):
                    raise self.concurrent(f"expected program id {current.prog_id} on the link", errno=exc.errno) from None
                raise
            finally:
                self.bpf.close(new_fd)
                self.bpf.close(old_fd)
            return self._pin_at(link_fd, current, link_pin)
        finally:
            self.bpf.close(link_fd)

    def repin(self, current: Current, link_pin: str) -> Outcome:
        link_fd = self._open_link(current)
        try:
            return self._pin_at(link_fd, current, link_pin)
        finally:
            self.bpf.close(link_fd)

    def _pin_at(self, link_fd: int, current: Current, link_pin: Optional[str]) -> Outcome:
        link_id = self.bpf.link_info(link_fd)["id"]
        if link_pin and current.link_pin != link_pin:
            os.makedirs(os.path.dirname(link_pin), exist_ok=True)
            if os.path.lexists(link_pin):
                os.unlink(link_pin)  # a defunct pin of ours; the live link is held by link_fd
            self.bpf.pin(link_fd, link_pin)
            if current.link_pin:
                os.unlink(current.link_pin)
        return Outcome(link_id=link_id, link_pin=link_pin or current.link_pin)

    def detach(self, current: Current) -> None:
        link_fd = self._open_link(current)
        try:
            self.bpf.link_detach(link_fd, target=f"link on {self.where}")
        finally:
            self.bpf.close(link_fd)
        if current.link_pin:
            os.unlink(current.link_pin)


class NetlinkMethod(AttachMethod):
    """IFLA_XDP through rtnetlink with the mode flag; replaced with XDP_FLAGS_REPLACE."""

    name = "netlink"

    def _set(self, prog_fd: int, *, mode: Optional[str], expected_id: Optional[int], if_noexist: bool = False) -> None:
        old_fd = self.bpf.prog_fd(expected_id) if expected_id else None
        try:
            self.nl.set_xdp(self.iface.ifindex, prog_fd, mode=mode, expected_fd=old_fd, if_noexist=if_noexist)
        except netlink.NetlinkOpError as exc:
            if exc.errno == _errno.EEXIST and expected_id:
                raise self.concurrent(f"expected program id {expected_id}: {exc.extack or 'not attached'}",
                                      errno=exc.errno) from None
            if exc.errno == _errno.EBUSY and "link" in exc.extack.lower():
                raise InvalidInput(f"interface {self.where} holds a bpf_link; use method: link or detach it first",
                                   interface=self.iface.name, netns=self.iface.netns) from None
            if exc.errno in (_errno.EBUSY, _errno.EEXIST):
                raise self.concurrent(exc.extack or os.strerror(exc.errno), errno=exc.errno) from None
            raise self.mode_error(exc.errno, mode, exc.extack) or SyscallError(
                exc.request, exc.errno, self.where, detail=exc.extack or None) from None
        finally:
            self.bpf.close(old_fd)

    def attach(self, prog: Prog, *, mode: Optional[str], link_pin: Optional[str], current: Current) -> Outcome:
        prog_fd = self.bpf.obj_get(prog.pin) if prog.pin else self.bpf.prog_fd(prog.id)
        try:
            self._set(prog_fd, mode=mode, expected_id=None, if_noexist=True)
        finally:
            self.bpf.close(prog_fd)
        return Outcome()

    def replace(self, prog: Prog, *, current: Current, link_pin: Optional[str]) -> Outcome:
        prog_fd = self.bpf.obj_get(prog.pin) if prog.pin else self.bpf.prog_fd(prog.id)
        try:
            self._set(prog_fd, mode=current.mode, expected_id=current.prog_id)
        finally:
            self.bpf.close(prog_fd)
        return Outcome()

    def detach(self, current: Current) -> None:
        self._set(-1, mode=current.mode, expected_id=current.prog_id)


METHOD_CLASSES = {"link": LinkMethod, "netlink": NetlinkMethod}


# --- the manager ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Request:
    interface: str
    netns: Optional[str] = None
    deployment: Optional[str] = None
    program: Optional[str] = None
    pin: Optional[str] = None
    bpffs_root: str = DEFAULT_BPFFS_ROOT
    mode: Optional[str] = None
    method: str = "link"
    state: str = "present"
    force: bool = False
    lock_timeout: float = 60.0

    @classmethod
    def from_params(cls, params: dict) -> "Request":
        return cls(**known_params(cls, params))

    def validate(self) -> None:
        from ansible_collections.ebpf.deploy.plugins.module_utils._pins import validate_path  # pylint: disable=import-outside-toplevel
        validate_path(self.pin, "pin")
        validate_path(self.bpffs_root, "bpffs_root")
        if self.mode is not None and self.mode not in MODES:
            raise InvalidInput(f"mode must be one of {', '.join(MODES)}, not {self.mode!r}")
        if self.method not in METHODS:
            raise InvalidInput(f"method must be one of {', '.join(METHODS)}, not {self.method!r}")
        if self.state == "present":
            if self.pin and self.program:
                raise InvalidInput("give either pin or deployment + program, not both")
            if not self.pin and not (self.deployment and self.program):
                raise InvalidInput("state: present needs deployment + program, or pin")


@dataclass
class XdpResult(Result):
    """One xdp_attach run; ``extra`` holds interface, ifindex, netns, prog_id, mode, method, link_pin,
    link_id and drift. The diff is in every result (bpf_deployment composes it)."""
    action: str = "none"
    previous_prog_id: Optional[int] = None

    keep_none = ("previous_prog_id",)


class XdpManager:
    """read → plan → act → report for one interface."""

    def __init__(self, request: Request, *, check_mode: bool = False, diff_mode: bool = False,
                 bpf: Optional[Bpf] = None, before_change=None):
        request.validate()
        self.request = request
        self.check_mode = check_mode
        self.diff_mode = diff_mode   # the diff is returned either way: Ansible shows it in diff mode
        self._bpf = bpf
        # bpf_deployment's transaction: told what holds the interface before it is changed
        self.before_change = before_change

    @property
    def bpf(self) -> Bpf:
        if self._bpf is None:
            self._bpf = Bpf()
        return self._bpf

    # --- pins -------------------------------------------------------------------------------
    def _deployment(self, name: str):
        from ansible_collections.ebpf.deploy.plugins.module_utils._pins import Deployment  # pylint: disable=import-outside-toplevel
        return Deployment(self.request.bpffs_root, name)

    def link_pin_path(self) -> Optional[str]:
        """Our link pin for this interface: in the deployment's links/, or in the root's `links/`
        directory (a reserved deployment name) when only a pin was given."""
        from ansible_collections.ebpf.deploy.plugins.module_utils._pins import link_pin_name  # pylint: disable=import-outside-toplevel
        req = self.request
        if req.deployment:
            return str(self._deployment(req.deployment).link_pin(req.interface, netns=req.netns))
        return os.path.join(req.bpffs_root, "links", link_pin_name(req.interface, req.netns))

    def resolve_program(self) -> Prog:
        req = self.request
        if req.pin:
            path = req.pin
            if not os.path.exists(path):
                raise InvalidInput(f"no pinned program at {path}", pin=path)
        else:
            deployment = self._deployment(req.deployment)
            if deployment.current_version() is None:
                raise InvalidInput(
                    f"deployment {req.deployment!r} has no current version under {req.bpffs_root} "
                    "(deploy it with ebpf.deploy.bpf_program first)", deployment=req.deployment)
            path = str(deployment.program_pin(req.program))
            if not os.path.exists(path):
                raise InvalidInput(
                    f"deployment {req.deployment!r} has no program {req.program!r} (no pin at {path})",
                    deployment=req.deployment, program=req.program, pin=path)
        kind, prog = self.bpf.pinned_kind(path)
        if kind != "prog":
            raise InvalidInput(f"{path} is not a pinned program", pin=path)
        if prog.type != BPF_PROG_TYPE_XDP:
            raise InvalidInput(
                f"program {prog.name!r} (id {prog.id}) at {path} is a {prog.type_name} program, not XDP",
                prog_id=prog.id, prog_type=prog.type_name, pin=path)
        return prog

    # --- run --------------------------------------------------------------------------------------
    def run(self) -> XdpResult:
        req = self.request
        if req.netns and not netlink.netns_exists(req.netns):
            raise InvalidInput(f"network namespace {req.netns!r} does not exist (/run/netns/{req.netns})",
                               netns=req.netns)
        with self._lock():
            with netlink.Netlink(req.netns) as nl:
                try:
                    iface = nl.interface(req.interface)
                except netlink.NoSuchInterface as exc:
                    raise InvalidInput(str(exc), interface=req.interface, netns=req.netns) from None
                return self._run(nl, iface)

    def _lock(self):
        """The deployment's lock (bpf_program switches its version under the same one); with only
        a pin, a lock named after the interface."""
        from ansible_collections.ebpf.deploy.plugins.module_utils._lock import deployment_lock  # pylint: disable=import-outside-toplevel
        req = self.request
        if req.deployment:
            name = req.deployment
        else:
            key = f"{req.netns}-{req.interface}" if req.netns else req.interface
            name = "xdp-" + "".join(ch if ch.isalnum() or ch in "_-" else "_" for ch in key)
        return deployment_lock(name, req.lock_timeout)

    def _run(self, nl, iface) -> XdpResult:
        req = self.request
        prog = self.resolve_program() if req.state == "present" else None
        link_pin = self.link_pin_path() if (req.state == "absent" or req.method == "link") else None
        current = read_current(self.bpf, nl, iface, bpffs_root=req.bpffs_root, link_pin=link_pin)
        desired = Desired(state=req.state, prog=prog, mode=req.mode, method=req.method,
                          force=req.force, link_pin=link_pin, deployment=req.deployment)
        the_plan = plan(desired, current, interface=iface.name, netns=iface.netns)

        outcome = Outcome(link_id=current.held_by_link, link_pin=current.link_pin)
        if the_plan.changed and not self.check_mode:
            if self.before_change is not None:
                self.before_change(holder(current), self.bpf)
            outcome = self._act(the_plan, nl, iface, desired, current)
        return self._report(the_plan, nl, iface, current, outcome)

    def _act(self, the_plan: Plan, nl, iface, desired: Desired, current: Current) -> Outcome:
        req = self.request
        wanted = METHOD_CLASSES[req.method](self.bpf, nl, iface)
        held = METHOD_CLASSES[current.method or req.method](self.bpf, nl, iface)
        action = the_plan.action
        if action == "attach":
            return wanted.attach(desired.prog, mode=desired.mode, link_pin=desired.link_pin, current=current)
        if action == "replace":
            return wanted.replace(desired.prog, current=current, link_pin=desired.link_pin)
        if action == "repin":
            return wanted.repin(current, desired.link_pin)
        if action == "reattach":
            keep_fd = self.bpf.prog_fd(current.prog_id)  # holds the old program while it is off
            try:
                held.detach(current)
                gone = replace(current, prog_id=None, held_by_link=None, link_pin=None)
                try:
                    return wanted.attach(desired.prog, mode=desired.mode or current.mode,
                                         link_pin=desired.link_pin, current=gone)
                except EbpfDeployError as err:
                    # the new mode or method was refused: put the old program back as it was
                    self._restore(held, current, gone, err)
                    raise
            finally:
                self.bpf.close(keep_fd)
        if action == "detach":
            held.detach(current)
            return Outcome()
        if action == "unpin":
            os.unlink(current.defunct_pin)
            return Outcome()
        raise AssertionError(f"unknown action {action}")

    def _restore(self, held: "AttachMethod", current: Current, gone: Current, err: EbpfDeployError) -> None:
        old = Prog(id=current.prog_id, name=current.prog_name)
        try:
            held.attach(old, mode=current.mode, link_pin=current.link_pin or self.link_pin_path(), current=gone)
        except EbpfDeployError as undo:
            raise EbpfDeployError(f"{err.msg}; putting program id {current.prog_id} back failed too, the "
                                  f"interface has no XDP program: {undo.msg}", **err.details) from None

    def _report(self, the_plan: Plan, nl, iface, current: Current, outcome: Outcome) -> XdpResult:
        req = self.request
        after = the_plan.after
        mode = after.get("mode")
        prog_id = after.get("prog_id")
        if the_plan.changed and not self.check_mode:
            state = nl.xdp_state(iface.ifindex)  # read back: the kernel picked the mode on "auto"
            prog_id, mode = state.prog_id, state.mode
            after = dict(after, prog_id=prog_id, mode=mode,
                         link_pin=outcome.link_pin if req.method == "link" and prog_id else None)
            write_note(req.bpffs_root, iface.name, iface.netns,
                       {"prog_id": prog_id, "mode": mode, "method": req.method} if prog_id else None)
        elif not the_plan.changed and req.state == "present" and current.last is None and not self.check_mode:
            write_note(req.bpffs_root, iface.name, iface.netns,
                       {"prog_id": current.prog_id, "mode": current.mode, "method": current.method})
        present = req.state == "present"
        by_link = present and after.get("method") == "link"
        result = XdpResult(changed=the_plan.changed, action=the_plan.action, previous_prog_id=current.prog_id,
                           diff={"before": the_plan.before, "after": after}, warnings=list(the_plan.warnings),
                           extra={"interface": iface.name, "ifindex": iface.ifindex, "netns": iface.netns,
                                  "prog_id": prog_id, "mode": mode,
                                  "method": after.get("method") if present else current.method,
                                  "link_pin": (outcome.link_pin or after.get("link_pin")) if by_link else None,
                                  "link_id": outcome.link_id if by_link else None})
        if the_plan.drift:
            result.extra["drift"] = the_plan.drift
            result.diff["before_header"] = f"drift: {the_plan.drift}"
        return result
