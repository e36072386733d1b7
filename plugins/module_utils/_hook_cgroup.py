# -*- coding: utf-8 -*-
# Copyright: contributors to ebpf.deploy
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private to ebpf.deploy: cgroup links (every cgroup attach type in _hooks.HOOKS) on a cgroup v2
directory (kernel >= 5.7).

The target is a directory of the cgroup v2 hierarchy: an absolute path on a cgroup2 mount, or a
path relative to the first cgroup2 mount (``/sys/fs/cgroup`` on a unified host, often
``/sys/fs/cgroup/unified`` on a hybrid one). A cgroup link is multi-program (it runs beside other
programs on the cgroup and never replaces them), swaps its program with ``BPF_LINK_UPDATE``, and
reports cgroup id 0 once detached (or once its cgroup was removed): defunct. The cgroup id is the
directory's inode number, which is how a pinned link is matched to its cgroup.

No Ansible here.
"""
from __future__ import annotations

import os
from typing import Optional, Tuple

from ansible_collections.ebpf.deploy.plugins.module_utils._errors import InvalidInput, SyscallError
from ansible_collections.ebpf.deploy.plugins.module_utils._hook_base import Anchor, HookFamily, Target
from ansible_collections.ebpf.deploy.plugins.module_utils._pins import encode_component

MOUNTS = "/proc/self/mounts"


def cgroup2_mounts(mounts_text: str) -> list:
    """Mount points of cgroup2 filesystems, in /proc/mounts order."""
    out = []
    for line in mounts_text.splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[2] == "cgroup2":
            out.append(fields[1].replace("\\040", " "))
    return out


def resolve_cgroup_path(path: str, mounts: list) -> Tuple[str, str]:
    """(absolute path, path relative to its cgroup2 mount) of a cgroup option (pure)."""
    if not mounts:
        raise InvalidInput("this host has no cgroup v2 hierarchy mounted (no cgroup2 in /proc/mounts)")
    if not path:
        raise InvalidInput("cgroup must name a cgroup v2 directory")
    parts = [p for p in path.split("/") if p]
    if ".." in parts:
        raise InvalidInput(f"cgroup {path!r} must not contain '..'", cgroup=path)
    if path.startswith("/"):
        norm = "/" + "/".join(parts)
        for mnt in sorted(mounts, key=len, reverse=True):
            base = mnt.rstrip("/")
            if norm == base or norm.startswith(base + "/"):
                return norm, norm[len(base):].strip("/")
        raise InvalidInput(f"cgroup {path!r} is not on a cgroup v2 mount ({', '.join(mounts)})", cgroup=path)
    base = mounts[0].rstrip("/")
    rel = "/".join(parts)
    return f"{base}/{rel}", rel


class CgroupFamily(HookFamily):
    family = "cgroup"

    def resolve(self, *, check_mode: bool) -> Target:
        req = self.request
        if not req.cgroup:
            raise InvalidInput(f"hook {self.hook.name} needs cgroup (a cgroup v2 directory)", hook=self.hook.name)
        with open(MOUNTS, encoding="utf-8") as handle:
            mounts = cgroup2_mounts(handle.read())
        path, rel = resolve_cgroup_path(req.cgroup, mounts)
        if not os.path.isdir(path):
            raise InvalidInput(f"cgroup {req.cgroup!r} does not exist (no directory {path})", cgroup=req.cgroup)
        if not os.path.exists(os.path.join(path, "cgroup.procs")):
            raise InvalidInput(f"{path} is not a cgroup v2 directory (no cgroup.procs)", cgroup=req.cgroup)
        cgroup_id = os.stat(path).st_ino
        return Target(key=encode_component(rel or "root"), label=f"cgroup {path}",
                      data={"cgroup": path, "cgroup_id": cgroup_id})

    def _open(self, target: Target) -> int:
        return os.open(target.data["cgroup"], os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)

    def attach(self, prog_fd: int, target: Target, *, anchor: Optional[Anchor] = None) -> int:
        if anchor is not None:
            raise InvalidInput(f"before/after order programs on tcx hooks only, not on {self.hook.name}")
        cg_fd = self._open(target)
        try:
            return self.lib.link_create_hook(prog_fd, cg_fd, self.hook.attach_type, target_label=target.label)
        except SyscallError as exc:
            raise self.refused(exc, target) from None
        finally:
            os.close(cg_fd)

    def live(self, link_fd: int, target: Target) -> bool:
        info = self.lib.link_info(link_fd)
        raw = info.raw
        cgroup_id = raw[0] | (raw[1] << 32) if len(raw) >= 2 else 0
        return cgroup_id == target.data["cgroup_id"] and (len(raw) < 3 or raw[2] == self.hook.attach_type)

    def chain(self, target: Target) -> Optional[Tuple[int, ...]]:
        cg_fd = self._open(target)
        try:
            return self.lib.prog_query(cg_fd, self.hook.attach_type, target_label=target.label).prog_ids
        finally:
            os.close(cg_fd)
