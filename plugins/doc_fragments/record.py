# -*- coding: utf-8 -*-
# Copyright: contributors to ebpf.deploy
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Documents the option group RECORD of plugins/module_utils/_options.py."""
from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  state_dir:
    description:
      - Where the host keeps its record of the deployments (survives reboot), per O(bpffs_root); see
        M(ebpf.deploy.bpf_deployment).
    type: path
    default: /var/lib/ebpf_deploy
    version_added: 0.1.0
"""
