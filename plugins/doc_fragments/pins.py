# -*- coding: utf-8 -*-
# Copyright: contributors to ebpf.deploy
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Documents the option group PINS of plugins/module_utils/_options.py."""
from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  bpffs_root:
    description:
      - The directory in the BPF filesystem that holds the deployments, one directory each (the root of
        every pin of this collection).
    type: path
    default: /sys/fs/bpf/ebpf_deploy
"""
