# -*- coding: utf-8 -*-
# Copyright: contributors to ebpf.deploy
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller side of ebpf.deploy.bpf_deployment: the object is found, checked and shipped exactly
as for bpf_program (inline up to 4 MiB, else copied); only the module run on the host differs."""
from __future__ import annotations

from ansible_collections.ebpf.deploy.plugins.action.bpf_program import ActionModule as _ProgramAction


class ActionModule(_ProgramAction):

    MODULE = "ebpf.deploy.bpf_deployment"
