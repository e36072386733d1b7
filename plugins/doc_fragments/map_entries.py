# -*- coding: utf-8 -*-
# Copyright: contributors to ebpf.deploy
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Documents the option groups MAP_ENTRIES and MAP_ENTRY_LIST of plugins/module_utils/_options.py:
as the options of bpf_map, and (DEPLOYMENT) as the sub-options of bpf_deployment's maps.

ansible-core merges fragments into a module's top-level options only, so the sub-options are
written out a second time here, beside the first, short and pointing at bpf_map for the detail.
"""
from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  key_type:
    description:
      - How keys are written in YAML and shown in results.
      - V(u8) to V(u64) and V(s8) to V(s64) are little-endian integers (host order on x86 and arm64);
        V(be16), V(be32), V(be64) are integers in network order; V(ipv4), V(ipv6) and V(mac) are
        addresses in network order; V(hex) is any bytes as hex (V(0a000001), V(0x0a000001),
        V(0a:00:00:01)); V(btf) writes the map's BTF key type (a struct as a mapping by field name).
      - The type must have exactly the map's key size.
      - Default is V(u32) for array maps, V(btf) when the map carries BTF, else V(hex).
    type: str
    choices: [u8, u16, u32, u64, s8, s16, s32, s64, be16, be32, be64, ipv4, ipv6, mac, hex, btf]
  value_type:
    description:
      - How values are written, with the same types as O(key_type).
      - V(btf) writes the map's BTF value type; a struct is a mapping by field name, an array a list
        (or a string for a C(char) array), an enum its name or number. Fields not listed keep their
        current value in an existing entry and are zero in a new one.
      - Default is V(btf) when the map carries BTF, else V(hex). Ignored for a V(prog_array).
    type: str
    choices: [u8, u16, u32, u64, s8, s16, s32, s64, be16, be32, be64, ipv4, ipv6, mac, hex, btf]
  entries:
    description:
      - The entries the map must hold, as a list of O(entries[].key) and O(entries[].value).
      - Omitted, the module only reads the map and returns RV(entries).
      - With O(purge=true), V([]) empties the map.
    type: list
    elements: dict
    suboptions:
      key:
        description: The key, written as O(key_type) says (a slot index in array maps).
        type: raw
        required: true
      value:
        description:
          - The value, written as O(value_type) says.
          - In a per-CPU map, one value for every CPU or a list with one per possible CPU.
          - In a V(prog_array), a program name of O(value_deployment) (or of O(deployment)), a pinned
            program path, or a program id.
        type: raw
        required: true
  value_deployment:
    description:
      - The deployment whose programs O(entries[].value) names in a V(prog_array). Default is
        O(deployment).
    type: str
  overwrite:
    description:
      - V(true) writes the listed value of a key that exists with another value.
      - V(false) only adds missing keys and leaves the values of existing ones alone, for maps whose
        values the program keeps (drop counters of a blocklist). In an array map, a zero entry counts
        as missing.
      - Either way, fields of a BTF struct value that an entry does not list keep their current
        value.
      - That keeping is a read, a merge and a write, not one atomic step; an increment the program
        makes to such a field between the read and the write is lost (the write puts back the value
        read). A value holding a C(struct bpf_spin_lock) is read and written under that lock
        (C(BPF_F_LOCK)), so no copy tears against an update the program makes under the lock, but
        the increments in between are still lost. Keep counters that must not lose one in a map of
        their own, not in values written while the program runs. The lock itself is the kernel's
        and may not be listed.
    type: bool
    default: true
  purge:
    description: Remove the entries that O(entries) does not list.
    type: bool
    default: false
"""

    DEPLOYMENT = r"""
options:
  maps:
    description: Entries of the deployment's maps, each as M(ebpf.deploy.bpf_map) would write them.
    type: list
    elements: dict
    default: []
    suboptions:
      map:
        description: The name of the map within the deployment.
        type: str
        required: true
      key_type:
        description:
          - How keys are written, as O(ebpf.deploy.bpf_map#module:key_type) describes.
          - Default is V(u32) for array maps, V(btf) when the map carries BTF, else V(hex).
        type: str
        choices: [u8, u16, u32, u64, s8, s16, s32, s64, be16, be32, be64, ipv4, ipv6, mac, hex, btf]
      value_type:
        description:
          - How values are written, as O(ebpf.deploy.bpf_map#module:value_type) describes.
          - Default is V(btf) when the map carries BTF, else V(hex). Ignored for a V(prog_array).
        type: str
        choices: [u8, u16, u32, u64, s8, s16, s32, s64, be16, be32, be64, ipv4, ipv6, mac, hex, btf]
      entries:
        description:
          - The entries the map must hold, each a mapping with C(key) and C(value), as
            O(ebpf.deploy.bpf_map#module:entries) describes.
          - With O(maps[].purge=true), V([]) empties the map.
        type: list
        elements: dict
        default: []
      value_deployment:
        description:
          - The deployment whose programs the values of a V(prog_array) name. Default is this
            deployment.
        type: str
      overwrite:
        description:
          - V(true) writes the listed value of a key that exists with another value.
          - V(false) only adds missing keys and leaves the values of existing ones alone, for maps whose
            values the program keeps (drop counters of a blocklist).
        type: bool
        default: true
      purge:
        description: Remove the entries that O(maps[].entries) does not list.
        type: bool
        default: false
"""
