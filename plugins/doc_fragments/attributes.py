# -*- coding: utf-8 -*-
# Copyright: contributors to ebpf.deploy
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The attributes every module of the collection declares; a module adds its own details."""
from __future__ import annotations


class ModuleDocFragment:
    # a module's own keys win over these (ansible-core merges an attribute key by key): it adds
    # C(details), or for a module that never changes anything C(support: none) under diff_mode
    DOCUMENTATION = r"""
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: full
  idempotent:
    description: When run twice in a row outside check mode with the same arguments, the second run reports no change.
    support: full
  action_group:
    description: Use C(group/ebpf.deploy.ebpf) in C(module_defaults) to set defaults for this module.
    support: full
    membership:
      - ebpf.deploy.ebpf
  platform:
    description: Target OS/families that can be operated against.
    support: full
    platforms: linux
    details:
      - The managed host must run Linux with BPF (see the requirements); the controller can be any POSIX system.
"""

    # a module with an action plugin of the same name (plugins/action/)
    ACTION_PLUGIN = r"""
attributes:
  action:
    description: Indicates this has a corresponding action plugin so some parts of the options can be executed on the controller.
    support: full
    details:
      - Unless O(remote_src=true), the action plugin reads O(src) on the controller, compares its sha256 with
        O(checksum), checks that it is a BPF ELF object and sends it to the host inside the module's arguments
        (up to 4 MiB; a larger object is copied first).
"""

    NO_ACTION_PLUGIN = r"""
attributes:
  action:
    description: Indicates this has a corresponding action plugin so some parts of the options can be executed on the controller.
    support: none
"""
