#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to ebpf.deploy
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
---
module: bpf_map
short_description: Manage the entries of pinned BPF maps declaratively, with typed keys and values
version_added: 0.1.0
description:
  - Writes, changes and removes entries of a map pinned in the BPF filesystem so that it holds
    O(entries), and reads the entries back decoded, for health checks.
  - The map is one of a M(ebpf.deploy.bpf_program) deployment (O(deployment) + O(map)), any pinned
    map (O(path)), or a standalone map that the module creates and pins at O(path) (O(create)).
  - Keys and values are written in YAML as the types O(key_type) and O(value_type) say (integers,
    addresses, hex bytes, or a struct as a mapping by field name when the map carries BTF).
  - Only missing or different entries are written. With O(purge=true), entries that are not listed
    are removed (in an array map, which cannot delete, they are set to zero).
  - Everything is validated before anything is written (types, key and value sizes, the number of
    entries against C(max_entries), program types for a C(prog_array), and the memory of a new
    standalone map against the host's limits). If a write still fails midway, the entries written so
    far are restored from the snapshot taken before the run.
  - In a C(prog_array), values are programs (a program name of a deployment, a pinned program
    path, or a program id); they are written as program file descriptors, so tail calls reach them.
    The map must stay pinned, or the kernel drops its programs when the last user goes away.
  - A C(prog_array) the object initialises itself (C(.values)) belongs to one version (see
    M(ebpf.deploy.bpf_program)), so O(deployment) + O(map) naming it, or a C(maps) entry of
    M(ebpf.deploy.bpf_deployment), is refused in one line, since its slots change only with the version.
    It can still be read by its O(path).
  - Per-CPU maps take one value for every CPU, or a list with one value per possible CPU; reading
    returns the per-CPU values and their sum.
  - Runs on the same map are serialized with a lock (per deployment, or per pin path).
author:
  - ebpf.deploy maintainers (@ebpf-deploy)
requirements:
  - Linux with BPF and a mounted bpffs (V(/sys/fs/bpf)).
  - libbpf 1.x (V(libbpf.so.1)) on the managed host.
  - Root, or CAP_BPF (and CAP_SYS_ADMIN to read BTF and program ids).
extends_documentation_fragment:
  - ebpf.deploy.attributes
  - ebpf.deploy.attributes.no_action_plugin
  - ebpf.deploy.map_entries
  - ebpf.deploy.pins
  - ebpf.deploy.lock
attributes:
  check_mode:
    details:
      - Reads the map, validates and plans; writes nothing and creates nothing.
  diff_mode:
    details:
      - The entries that are added, changed or removed, before and after, keyed by map key, with a
        per-CPU value shown as its sum, a PROG_ARRAY slot as its program's name and id, and each side
        cut after 20 entries with C(N more) (RV(added), RV(changed_keys) and RV(removed) list every key).
  idempotent:
    details:
      - A map that already holds the listed entries (and nothing else with O(purge=true)) is
        C(changed=false).
options:
  deployment:
    description:
      - The M(ebpf.deploy.bpf_program) deployment that owns the map. Needs O(map).
      - Mutually exclusive with O(path).
    type: str
  map:
    description: The name of the map within O(deployment) (pinned at O(bpffs_root)/O(deployment)/maps/O(map)).
    type: str
  path:
    description:
      - Any map pinned in the bpffs, or where the standalone map of O(create) is pinned.
    type: path
  create:
    description:
      - Create a standalone map pinned at O(path) when none is pinned there.
      - A map already pinned at O(path) must have this spec, or the module fails naming every field
        that differs.
    type: dict
    suboptions:
      type:
        description: The map type.
        type: str
        required: true
        choices: [hash, array, prog_array, percpu_hash, percpu_array, lru_hash, lru_percpu_hash,
                  lpm_trie, devmap, devmap_hash]
      key_size:
        description: Bytes of a key (4 for array types).
        type: int
        required: true
      value_size:
        description: Bytes of a value (4 for V(prog_array) and V(devmap)).
        type: int
        required: true
      max_entries:
        description: The number of entries the map can hold.
        type: int
        required: true
      flags:
        description: Map flags. V(lpm_trie) needs V(no_prealloc).
        type: list
        elements: str
        choices: [no_prealloc, no_common_lru, rdonly, wronly, zero_seed, rdonly_prog, wronly_prog,
                  mmapable, preserve_elems]
        default: []
      name:
        description: The map's name in the kernel (15 characters). Default is the last part of O(path).
        type: str
  dump:
    description: Return the decoded entries (RV(entries)) after the run even when O(entries) is given.
    type: bool
    default: false
  state:
    description:
      - V(present) makes the map hold O(entries) (creating it with O(create)).
      - V(absent) unpins the map at O(path) (a standalone map); a deployment's maps are removed with
        the deployment by M(ebpf.deploy.bpf_program).
    type: str
    choices: [present, absent]
    default: present
notes:
  - A key or value whose size does not fit the map, a key listed twice with different values, more
    entries than C(max_entries), or a program of another type in a V(prog_array) fails before
    anything is written.
  - The memory estimate of a new map follows the kernel's layout (elements, buckets, per-CPU slots)
    and is compared with the memory cgroup limit, the available memory and, before Linux 5.11,
    C(RLIMIT_MEMLOCK).
seealso:
  - module: ebpf.deploy.bpf_program
  - module: ebpf.deploy.xdp_attach
  - ref: ansible_collections.ebpf.deploy.docsite.getting_started
    description: Getting started with ebpf.deploy on your own hosts.
  - ref: ansible_collections.ebpf.deploy.docsite.canary_rollout
    description: Rolling a new version out in canary stages with the rollout role.
  - ref: ansible_collections.ebpf.deploy.docsite.troubleshooting
    description: What the errors mean (verifier rejections, EPERM, missing BTF, XDP modes) and what to do.
  - name: BPF documentation (Linux kernel)
    description: The kernel's own documentation of BPF - program types, maps, helpers, the verifier.
    link: https://docs.kernel.org/bpf/
"""

EXAMPLES = r"""
---
- name: Block two source addresses in the firewall deployment's blocklist
  ebpf.deploy.bpf_map:
    deployment: fw
    map: blocklist
    key_type: ipv4
    value_type: u64
    entries:
      - {key: 192.0.2.7, value: 0}
      - {key: 198.51.100.23, value: 0}
    purge: true

- name: Read the pass counter for a health check
  ebpf.deploy.bpf_map:
    deployment: fw
    map: pass_count
    value_type: u64
  register: pass_count

- name: Fail when nothing passed
  ansible.builtin.assert:
    that: pass_count.entries[0].value > 0

- name: Put the counting stage into slot 0 of the tail-call table
  ebpf.deploy.bpf_map:
    deployment: pipeline
    map: jmp_table
    entries:
      - {key: 0, value: xdp_stage_count}

- name: Set a rate limit described by the map's BTF
  ebpf.deploy.bpf_map:
    deployment: shaper
    map: config
    value_type: btf
    entries:
      - key: 0
        value: {rate: 1000, burst: 32, flags: [1, 0]}

- name: A standalone per-CPU map pinned by itself, the same start value on every CPU
  ebpf.deploy.bpf_map:
    path: /sys/fs/bpf/ebpf_deploy/standalone_counters
    create: {type: percpu_array, key_size: 4, value_size: 8, max_entries: 4}
    value_type: u64
    entries:
      - {key: 0, value: 0}

- name: Remove the standalone map
  ebpf.deploy.bpf_map:
    path: /sys/fs/bpf/ebpf_deploy/standalone_counters
    state: absent
"""

RETURN = r"""
map:
  description: The map after the run (in check mode before a create, its spec with O(path) and no id).
  returned: always (V(null) with O(state=absent) when nothing was pinned)
  type: dict
  contains:
    id:
      description: The kernel's map id.
      type: int
      sample: 57
    name:
      description: The map name in the kernel.
      type: str
      sample: blocklist
    type:
      description: The map type.
      type: str
      sample: hash
    key_size:
      description: Bytes of a key.
      type: int
      sample: 4
    value_size:
      description: Bytes of a value.
      type: int
      sample: 8
    max_entries:
      description: The number of entries the map can hold.
      type: int
      sample: 1024
    flags:
      description: The map flags as a number.
      type: int
      sample: 0
    pin:
      description: Where the map is pinned.
      type: str
      sample: /sys/fs/bpf/ebpf_deploy/fw/maps/blocklist
    btf:
      description: The map's BTF id and key/value types (name, size, struct members), V(null) without BTF.
      type: dict
      sample: {id: 112, key: {type_id: 8, name: __u32, size: 4},
               value: {type_id: 11, name: struct rate_cfg, size: 16,
                       members: [{name: rate, type: __u32, offset: 0}]}}
    key_type:
      description: The type keys were written and are shown as.
      type: str
      sample: ipv4
    value_type:
      description: The type values were written and are shown as (V(program) in a prog_array).
      type: str
      sample: u64
  sample:
    id: 57
    name: blocklist
    type: hash
    key_size: 4
    value_size: 8
    max_entries: 1024
    flags: 0
    pin: /sys/fs/bpf/ebpf_deploy/fw/maps/blocklist
    btf: null
    key_type: ipv4
    value_type: u64
entries:
  description:
    - The map's entries after the run, decoded and sorted by key.
    - Per-CPU maps add RV(entries[].per_cpu) (one value per CPU) and RV(entries[].sum); their
      RV(entries[].value) is the sum when the values are numbers.
    - A prog_array shows the program id in RV(entries[].value) and its name in RV(entries[].program).
  returned: when O(entries) is omitted, or O(dump=true)
  type: list
  elements: dict
  contains:
    key:
      description: The decoded key.
      type: raw
      sample: 192.0.2.7
    value:
      description: The decoded value.
      type: raw
      sample: 12
    per_cpu:
      description: The value of every possible CPU (per-CPU maps).
      type: list
      sample: [5, 7]
    sum:
      description: The sum of the per-CPU values (per-CPU maps; V(null) when not numbers).
      type: raw
      sample: 12
    program:
      description: The name of the program in the slot (prog_array).
      type: str
      sample: xdp_stage_count
  sample:
    - {key: 192.0.2.7, value: 12}
added:
  description: Keys that were (or in check mode would be) added.
  returned: with O(state=present)
  type: list
  elements: raw
  sample: [192.0.2.7]
changed_keys:
  description: Keys whose value was (or would be) changed.
  returned: with O(state=present)
  type: list
  elements: raw
  sample: [198.51.100.23]
removed:
  description: Keys that were (or would be) removed (set to zero in an array map).
  returned: with O(state=present)
  type: list
  elements: raw
  sample: [203.0.113.5]
memory_estimate:
  description: The bytes the kernel takes for a standalone map to create (as it accounts them).
  returned: when O(create) creates a map
  type: int
  sample: 83024
diff:
  description:
    - The entries touched by the run, before and after, each side an object keyed by map key (a struct
      or array key as compact JSON) whose values are decoded; a per-CPU value is the sum over the CPUs
      (the per-CPU list when the value type has no sum), a PROG_ARRAY slot the name of its program and
      that program's id.
    - A side with more than 20 entries lists the first 20 (changed entries first, then in key order) and
      says how many more in C(more), for example C(35 more).
  returned: in diff mode
  type: dict
  sample:
    before: {entries: {198.51.100.23: 0}}
    after: {entries: {198.51.100.23: 5, 192.0.2.7: 0}}
syscall:
  description: When a system call or libbpf/netlink call failed, its name.
  returned: failure
  type: str
  sample: BPF_MAP_CREATE
errno:
  description: When a call failed, its errno (also on a verifier rejection, from the load).
  returned: failure
  type: int
  sample: 1
errno_name:
  description: When a call failed, the symbolic name of RV(errno).
  returned: failure
  type: str
  sample: EPERM
target:
  description: When a call failed, what it was called for (a map, a program, an interface).
  returned: failure
  type: str
  sample: "map 'pkt_count'"
requires:
  description: When the host lacks a feature the request needs, what it needs (also named in C(msg)).
  returned: failure
  type: str
  sample: kernel >= 5.9
"""

from ansible.module_utils.basic import AnsibleModule

# first of ours: it serves the module_utils below from the host's bytecode cache
from ansible_collections.ebpf.deploy.plugins.module_utils import _bytecode  # noqa: F401 pylint: disable=unused-import
from ansible_collections.ebpf.deploy.plugins.module_utils._options import LOCK, MAP_ENTRIES, MAP_ENTRY_LIST, PINS, compose
from ansible_collections.ebpf.deploy.plugins.module_utils._map import MAP_FLAGS, MAP_TYPES, MapManager, Request
from ansible_collections.ebpf.deploy.plugins.module_utils._module_run import exit_with

ARGUMENT_SPEC = compose(
    MAP_ENTRIES, MAP_ENTRY_LIST, PINS, LOCK,
    deployment=dict(type="str"),
    map=dict(type="str"),
    path=dict(type="path"),
    create=dict(type="dict", options=dict(
        type=dict(type="str", required=True, choices=list(MAP_TYPES)),
        key_size=dict(type="int", required=True),
        value_size=dict(type="int", required=True),
        max_entries=dict(type="int", required=True),
        flags=dict(type="list", elements="str", choices=list(MAP_FLAGS), default=[]),
        name=dict(type="str"),
    )),
    dump=dict(type="bool", default=False),
    state=dict(type="str", choices=["present", "absent"], default="present"),
)


def main() -> None:
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        mutually_exclusive=[("deployment", "path")],
        required_one_of=[("deployment", "path")],
        required_by={"deployment": "map", "create": "path"},
        supports_check_mode=True,
    )
    exit_with(module, lambda: MapManager(Request.from_params(module.params), check_mode=module.check_mode,
                                         diff_mode=module._diff).run())


if __name__ == "__main__":
    main()
