# -*- coding: utf-8 -*-
# Copyright: contributors to ebpf.deploy
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller side of ebpf.deploy.bpf_preflight: the same as bpf_program's action plugin.

``src`` is found on the controller, checked (checksum, BPF ELF) and shipped exactly as for
bpf_program, so a preflight inspects the very bytes a deployment would load; only the module run
on the host differs.
"""
from __future__ import annotations

from ansible_collections.ebpf.deploy.plugins.action.bpf_program import ActionModule as _ProgramAction


class ActionModule(_ProgramAction):

    MODULE = "ebpf.deploy.bpf_preflight"

    def _needs_object(self, args: dict) -> bool:
        return bool(args.get("src"))
