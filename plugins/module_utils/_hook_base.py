# -*- coding: utf-8 -*-
# Copyright: contributors to ebpf.deploy
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private to ebpf.deploy: the small link interface every hook family implements.

A family (``_hook_tcx``, ``_hook_cgroup``, ``_hook_tracing``, ``_hook_netfilter``) knows how to:

- ``resolve()``   find the target (interface, cgroup, tracepoint, netfilter hook) or refuse in one line;
- ``attach()``    create a bpf_link for a program fd there (tcx: before/after an anchor);
- ``update()``    swap the program of a live link atomically (BPF_LINK_UPDATE), where the hook has it;
- ``live()``      say whether a pinned link still holds this target (a detached link is defunct);
- ``detach()``    detach a link (hooks without BPF_LINK_DETACH are released by unpinning);
- ``chain()``     the programs on the hook in run order, where the kernel lists them (tcx, cgroup).

Pins, ownership, notes, planning and the overlap of hooks without update live in ``_attach``;
the families only talk to the kernel, through ``_libbpf`` (and ``_netlink`` for interfaces).
No Ansible here.
"""
from __future__ import annotations

import errno as _errno
import os
from dataclasses import dataclass, field
from typing import Optional, Tuple

from ansible_collections.ebpf.deploy.plugins.module_utils._errors import (
    EbpfDeployError,
    SyscallError,
    UnsupportedFeature,
)
from ansible_collections.ebpf.deploy.plugins.module_utils._hooks import Hook, kernel_at_least


def libbpf():
    from ansible_collections.ebpf.deploy.plugins.module_utils import _libbpf as lib  # pylint: disable=import-outside-toplevel
    return lib


@dataclass(frozen=True)
class Target:
    """Where a link goes: ``key`` names the link pin (before ``:<hook>``), ``label`` the messages."""

    key: str
    label: str
    data: dict = field(default_factory=dict)
    netns: Optional[str] = None
    exists: bool = True          # False only in check mode, for a target the run would create (tracefs)
    warnings: Tuple[str, ...] = ()

    def describe(self) -> dict:
        return {key: value for key, value in self.data.items() if not key.startswith("_")}


@dataclass(frozen=True)
class Anchor:
    """tcx ordering: run before/after the program with this id."""

    relation: str   # before | after
    prog_id: int
    label: str


class HookFamily:
    """Base of the families: the link interface and shared error wording."""

    family = ""
    # False: the kernel cannot detach this hook's links (freplace); one that takes a link at a time
    # (detach_attach) has the old link released (unpinned) before the new one is attached
    can_detach = True

    def __init__(self, hook: Hook, request, lib=None) -> None:
        self.hook = hook
        self.request = request
        self.lib = lib or libbpf()

    # --- what the kernel can do ---------------------------------------------------------------
    def check_kernel(self) -> None:
        """Refuse a hook this kernel cannot have, before anything is read or changed."""
        release = os.uname().release
        if not kernel_at_least(release, self.hook.kernel):
            raise UnsupportedFeature(f"hook {self.hook.name} is not available on kernel {release}",
                                     requires=self.hook.requires, hook=self.hook.name)

    # --- the link interface -------------------------------------------------------------------
    def resolve(self, *, check_mode: bool) -> Target:
        raise NotImplementedError

    def attach(self, prog_fd: int, target: Target, *, anchor: Optional[Anchor] = None) -> int:
        raise NotImplementedError

    def update(self, link_fd: int, new_fd: int, old_fd: int, target: Target) -> None:
        """BPF_LINK_UPDATE with BPF_F_REPLACE: atomic, refused if the link's program changed meanwhile."""
        try:
            self.lib.link_update(link_fd, new_fd, old_prog_fd=old_fd, target=f"link on {target.label}")
        except SyscallError as exc:
            if exc.errno in (_errno.EPERM, _errno.ENOENT):
                raise EbpfDeployError(f"the program on {target.label} changed while this run worked; "
                                      "nothing was overwritten, run again to reconcile", errno=exc.errno) from None
            raise

    def live(self, link_fd: int, target: Target) -> bool:
        """True while the link is attached to this target (default: links that cannot be detached)."""
        return True

    def detach(self, link_fd: int, target: Target) -> None:
        """BPF_LINK_DETACH; hooks whose links cannot be detached are released by unpinning."""
        try:
            self.lib.link_detach(link_fd, target=f"link on {target.label}")
        except SyscallError as exc:
            if exc.errno not in (_errno.EOPNOTSUPP, _errno.EINVAL, 524):
                raise

    def chain(self, target: Target) -> Optional[Tuple[int, ...]]:
        """Program ids on the hook in run order, or None where the kernel does not list them."""
        return None

    # --- shared wording ---------------------------------------------------------------------------
    def refused(self, exc: SyscallError, target: Target, *, what: str = "attach") -> EbpfDeployError:
        """A kernel refusal at attach in one line, with what it most likely means for this hook."""
        if exc.errno == _errno.EINVAL:
            return UnsupportedFeature(
                f"the kernel refused to {what} {self.hook.name} on {target.label} ({exc.syscall}: EINVAL): "
                "the program was loaded for another attach type, or this kernel lacks the hook",
                requires=self.hook.requires, hook=self.hook.name, errno=exc.errno)
        if exc.errno == _errno.EPERM:
            return EbpfDeployError(
                f"the kernel refused to {what} {self.hook.name} on {target.label} ({exc.syscall}: EPERM): "
                "not permitted (root/CAP_BPF + CAP_NET_ADMIN/CAP_PERFMON, or kernel lockdown)",
                hook=self.hook.name, errno=exc.errno)
        return exc

    def in_netns(self, netns: Optional[str]):
        from ansible_collections.ebpf.deploy.plugins.module_utils._netlink import in_netns  # pylint: disable=import-outside-toplevel
        return in_netns(netns)
