# -*- coding: utf-8 -*-
# Copyright: contributors to ebpf.deploy
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private to ebpf.deploy: tcx ingress/egress links on an interface (kernel >= 6.6).

tcx keeps an ordered list of programs per interface and direction. A link is created with
``BPF_LINK_CREATE`` (attach type BPF_TCX_INGRESS/EGRESS) on the ifindex, in the interface's network
namespace, optionally ``BPF_F_BEFORE``/``BPF_F_AFTER`` + ``BPF_F_ID`` a program already there; the
kernel's list is read back with ``BPF_PROG_QUERY``. A tcx link swaps its program atomically with
``BPF_LINK_UPDATE`` and keeps its place in the list. A link whose interface went away (or that was
detached) reports ifindex 0: defunct.

The raw syscalls are in ``_libbpf`` (libbpf 1.1 cannot pass the tcx options); no Ansible here.
"""
from __future__ import annotations

import errno as _errno
from typing import Optional, Tuple

from ansible_collections.ebpf.deploy.plugins.module_utils._errors import InvalidInput, SyscallError
from ansible_collections.ebpf.deploy.plugins.module_utils._hook_base import Anchor, HookFamily, Target
from ansible_collections.ebpf.deploy.plugins.module_utils._hooks import Hook
from ansible_collections.ebpf.deploy.plugins.module_utils._pins import link_pin_name


def interface_target(hook: Hook, request, direction: str) -> Target:
    """An interface's ingress or egress (tcx and tc): the interface must exist in its namespace."""
    from ansible_collections.ebpf.deploy.plugins.module_utils import _netlink as netlink  # pylint: disable=import-outside-toplevel
    req = request
    if not req.interface:
        raise InvalidInput(f"hook {hook.name} needs interface", hook=hook.name)
    if req.netns and not netlink.netns_exists(req.netns):
        raise InvalidInput(f"network namespace {req.netns!r} does not exist (/run/netns/{req.netns})",
                           netns=req.netns)
    with netlink.Netlink(req.netns) as nl:
        try:
            iface = nl.interface(req.interface)
        except netlink.NoSuchInterface as exc:
            raise InvalidInput(str(exc), interface=req.interface, netns=req.netns) from None
    where = repr(iface.name) + (f" (netns {req.netns})" if req.netns else "")
    key = link_pin_name(iface.name, req.netns, kind=hook.name).rsplit(":", 1)[0]
    return Target(key=key, label=f"interface {where} {direction}", netns=req.netns,
                  data={"interface": iface.name, "ifindex": iface.ifindex, "netns": req.netns,
                        "direction": direction})


class TcxFamily(HookFamily):
    family = "tcx"

    @property
    def direction(self) -> str:
        return self.hook.name.split("_", 1)[1]

    def resolve(self, *, check_mode: bool) -> Target:
        return interface_target(self.hook, self.request, self.direction)

    def attach(self, prog_fd: int, target: Target, *, anchor: Optional[Anchor] = None) -> int:
        flags, relative = 0, 0
        if anchor is not None:
            flags = self.lib.BPF_F_ID | (self.lib.BPF_F_BEFORE if anchor.relation == "before" else self.lib.BPF_F_AFTER)
            relative = anchor.prog_id
        try:
            with self.in_netns(target.netns):
                return self.lib.link_create_hook(prog_fd, target.data["ifindex"], self.hook.attach_type,
                                                 flags=flags, relative=relative, target_label=target.label)
        except SyscallError as exc:
            if anchor is not None and exc.errno == _errno.ENOENT:
                raise InvalidInput(f"{anchor.label} is not attached to {target.label}; cannot run {anchor.relation} it",
                                   **{anchor.relation: anchor.prog_id}) from None
            raise self.refused(exc, target) from None

    def live(self, link_fd: int, target: Target) -> bool:
        info = self.lib.link_info(link_fd)
        return bool(info.ifindex) and info.ifindex == target.data["ifindex"] and \
            (len(info.raw) < 2 or info.raw[1] == self.hook.attach_type)

    def chain(self, target: Target) -> Optional[Tuple[int, ...]]:
        with self.in_netns(target.netns):
            return self.lib.prog_query(target.data["ifindex"], self.hook.attach_type,
                                       target_label=target.label).prog_ids
