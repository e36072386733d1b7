"""What the VM side borrows from the namespace side (the VM files never import these).

Part of the lab tool (package docstring: the whole picture). Standard library only.
"""
from __future__ import annotations

from labtool.namespaces import _ns_view, in_netns, netns_names, write_sysctl
from labtool.processes import kill_pids
from labtool.sshd import ensure_key
from labtool.vm_lab import LabHooks


def lab_hooks() -> LabHooks:
    return LabHooks(in_netns=in_netns, write_sysctl=write_sysctl, kill_pids=kill_pids,
                    ensure_key=ensure_key, ns_view=_ns_view, netns_names=netns_names)
