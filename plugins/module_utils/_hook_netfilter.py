# -*- coding: utf-8 -*-
# Copyright: contributors to ebpf.deploy
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private to ebpf.deploy: netfilter links (kernel >= 6.4): a program on an IPv4/IPv6 netfilter
hook (prerouting, local_in, forward, local_out, postrouting) at a priority, in a network namespace.

``BPF_LINK_CREATE`` with attach type BPF_NETFILTER and (pf, hooknum, priority, flags); libbpf 1.1
has no netfilter options, so the call is the raw syscall in ``_libbpf``. A netfilter link cannot
swap its program: an upgrade attaches the new link first, then detaches the old (``overlap``).
No Ansible here.
"""
from __future__ import annotations

import errno as _errno
from typing import Optional

from ansible_collections.ebpf.deploy.plugins.module_utils._errors import InvalidInput, SyscallError
from ansible_collections.ebpf.deploy.plugins.module_utils._hook_base import Anchor, HookFamily, Target
from ansible_collections.ebpf.deploy.plugins.module_utils._pins import encode_component
from ansible_collections.ebpf.deploy.plugins.module_utils._uapi import NF_HOOKS, NF_PFS

PRIORITY_MIN, PRIORITY_MAX = -(2 ** 31) + 1, 2 ** 31 - 2   # NF_IP_PRI_FIRST/LAST are refused


def netfilter_target(pf, hooknum, priority) -> dict:
    """Validate pf/hooknum/priority (names or numbers) into numbers and names (pure)."""
    if pf is None or hooknum is None or priority is None:
        raise InvalidInput("hook netfilter needs pf (ipv4, ipv6), hooknum (prerouting, local_in, forward, "
                           "local_out, postrouting) and priority")
    pf_name = str(pf).lower()
    if pf_name not in NF_PFS:
        raise InvalidInput(f"pf must be one of {', '.join(NF_PFS)}, not {pf!r}", pf=pf)
    hook_name = str(hooknum).lower()
    if hook_name.isdigit():
        names = {v: k for k, v in NF_HOOKS.items()}
        hook_name = names.get(int(hook_name), hook_name)
    if hook_name not in NF_HOOKS:
        raise InvalidInput(f"hooknum must be one of {', '.join(NF_HOOKS)}, not {hooknum!r}", hooknum=hooknum)
    try:
        prio = int(priority)
    except (TypeError, ValueError):
        raise InvalidInput(f"priority must be an integer, not {priority!r}", priority=priority) from None
    if not PRIORITY_MIN <= prio <= PRIORITY_MAX:
        raise InvalidInput(f"priority {prio} is out of range ({PRIORITY_MIN}..{PRIORITY_MAX})", priority=prio)
    return {"pf": pf_name, "pf_num": NF_PFS[pf_name], "hooknum": hook_name, "hooknum_num": NF_HOOKS[hook_name],
            "priority": prio}


class NetfilterFamily(HookFamily):
    family = "netfilter"

    def resolve(self, *, check_mode: bool) -> Target:
        from ansible_collections.ebpf.deploy.plugins.module_utils import _netlink as netlink  # pylint: disable=import-outside-toplevel
        req = self.request
        data = netfilter_target(req.pf, req.hooknum, req.priority)
        if req.netns and not netlink.netns_exists(req.netns):
            raise InvalidInput(f"network namespace {req.netns!r} does not exist (/run/netns/{req.netns})",
                               netns=req.netns)
        key = f"{data['pf']}-{data['hooknum']}-{data['priority']}"
        if req.netns:
            key = f"{encode_component(req.netns)}@{key}"
        where = f" (netns {req.netns})" if req.netns else ""
        label = f"netfilter {data['pf']} {data['hooknum']} priority {data['priority']}{where}"
        return Target(key=key, label=label, netns=req.netns,
                      data={"pf": data["pf"], "hooknum": data["hooknum"], "priority": data["priority"],
                            "netns": req.netns, "_nf": (data["pf_num"], data["hooknum_num"], data["priority"], 0)})

    def attach(self, prog_fd: int, target: Target, *, anchor: Optional[Anchor] = None) -> int:
        if anchor is not None:
            raise InvalidInput("before/after order programs on tcx hooks only; netfilter orders by priority")
        try:
            with self.in_netns(target.netns):
                return self.lib.link_create_hook(prog_fd, 0, self.hook.attach_type, netfilter=target.data["_nf"],
                                                 target_label=target.label)
        except SyscallError as exc:
            if exc.errno == _errno.EBUSY:  # another link holds this pf, hook and priority
                raise InvalidInput(f"{target.label} is taken: {exc.msg}") from None
            raise self.refused(exc, target) from None

    def update(self, link_fd: int, new_fd: int, old_fd: int, target: Target) -> None:
        raise AssertionError("netfilter links have no update; _attach overlaps them")
