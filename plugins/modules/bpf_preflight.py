#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to ebpf.deploy
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
---
module: bpf_preflight
short_description: Check a BPF object against a host before deploying it
version_added: 0.1.0
description:
  - Compares a compiled BPF object with the managed host and reports findings, each with a
    C(severity) (V(error), V(warning), V(info)), the C(check) that made it and, where it applies,
    the C(program), C(map) and instruction (C(insn)).
  - Checks the program types and helpers the object uses against what the kernel offers (probed
    once per boot), GPL-only helpers in an object whose license is not GPL-compatible, the
    instruction count, map sizes the kernel refuses outright, the memory the maps need against
    RLIMIT_MEMLOCK (kernels before 5.11), the memory cgroup and free memory (naming the map that
    does not fit), the pinned maps of deployment O(name) whose spec differs from the object's,
    and non-atomic read-modify-writes of shared map values (the racy counter).
  - All of this is read from the object and the host without creating anything. With
    O(dry_verify=true) and no error found, the object is also loaded once into the kernel (its own
    maps, nothing pinned, everything closed again) to report the verifier's processed
    instructions and stack depth, or its refusal.
  - Fails, with every finding in the result, when a finding is at or above O(fail_on).
author:
  - ebpf.deploy maintainers (@ebpf-deploy)
requirements:
  - Linux with BPF; libbpf 1.x (C(libbpf.so.1)) on the managed host
  - root, or CAP_BPF (+ CAP_PERFMON, CAP_NET_ADMIN for O(dry_verify))
extends_documentation_fragment:
  - ebpf.deploy.attributes
  - ebpf.deploy.attributes.action_plugin
  - ebpf.deploy.object
  - ebpf.deploy.pins
attributes:
  check_mode:
    details:
      - Runs the same checks in check mode; the module never changes anything.
  diff_mode:
    support: none
    details:
      - Nothing changes, so there is no diff.
  idempotent:
    details:
      - Never changes anything (C(changed=false)).
options:
  src:
    required: true
  name:
    description:
      - The deployment whose pinned maps (O(bpffs_root)C(/<name>/maps/)) the object's maps are compared
        with. Omitted, no pinned map is compared.
    type: str
  dry_verify:
    description:
      - Load the object once (then close it) to get C(verified_insns), C(processed_insns) and the
        stack depth from the verifier, or its refusal as a V(verifier) finding.
      - Skipped when an error was already found, so an oversized map is never created.
    type: bool
    default: false
  fail_on:
    description: Fail when a finding has this severity or a worse one; V(never) only reports.
    type: str
    choices: [error, warning, info, never]
    default: error
  refresh_features:
    description: Probe the kernel's features again instead of using this boot's cached answer.
    type: bool
    default: false
notes:
  - The GPL-only helper table comes from the C(.gpl_only = true) flags in the kernel source and
    was confirmed against Linux 6.18 by loading each helper with a non-GPL license.
  - The race check follows registers through one linear pass; it finds the load/add/store clang
    emits for C(*value += 1) on a value from C(bpf_map_lookup_elem) of a map that is not per-CPU.
    It does not prove that an object is free of races.
  - The memory figures follow the kernel's own accounting of each map type (see C(formula) in
    RV(memory)), what M(ebpf.deploy.bpf_facts) reports as C(bytes_memlock) on Linux 6.4 and later;
    for a map that allocates on demand they are the most it can take.
seealso:
  - module: ebpf.deploy.bpf_program
  - module: ebpf.deploy.bpf_facts
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
- name: Check the packet counter before deploying it
  ebpf.deploy.bpf_preflight:
    src: files/counter.bpf.o
    name: pktcount

- name: Also let the verifier check it, and fail on warnings (such as a racy counter)
  ebpf.deploy.bpf_preflight:
    src: files/counter.bpf.o
    name: pktcount
    dry_verify: true
    fail_on: warning

- name: Only report, for an object already on the host
  ebpf.deploy.bpf_preflight:
    src: /opt/bpf/filter.bpf.o
    remote_src: true
    fail_on: never
  register: preflight

- name: Show the findings
  ansible.builtin.debug:
    var: preflight.findings
"""

RETURN = r"""
passed:
  description: No finding at or above O(fail_on).
  returned: always
  type: bool
  sample: true
findings:
  description:
    - What the checks found, the most severe first. C(check) is one of V(hook), V(program_type), V(helper),
      V(gpl_helper), V(program_size), V(map_limits), V(memory), V(pinned_map), V(race), V(verifier),
      V(map_create), V(complexity), V(dry_verify). C(details) holds the figures (sizes, both map specs,
      the race's load/alu/store instructions and its fix).
  returned: always
  type: list
  elements: dict
  sample:
    - severity: warning
      check: race
      program: xdp_racy_counter
      map: racy_count
      insn: 10
      message: "program 'xdp_racy_counter' insn 10: non-atomic read-modify-write of map 'racy_count' ..."
counts:
  description: Number of findings per severity.
  returned: always
  type: dict
  sample: {error: 0, warning: 1, info: 0}
programs:
  description:
    - The object's programs (name, section, type, insn_cnt, helpers) and, after a O(dry_verify) load,
      verified_insns, processed_insns, stack_depth and the JIT/xlated sizes.
  returned: always
  type: list
  elements: dict
  sample: [{name: xdp_packet_counter, section: xdp, type: xdp, insn_cnt: 12, helpers: ["bpf_map_lookup_elem#1"]}]
maps:
  description: The object's maps (name, type, key_size, value_size, max_entries, map_flags).
  returned: always
  type: list
  elements: dict
memory:
  description:
    - Estimated bytes per map (C(maps[].bytes), C(formula), C(reused) when a pinned map with the same spec
      would be reused), their C(total), and the C(budget) with what C(limited_by) it.
  returned: always
  type: dict
  sample: {total: 320, budget: 24890355712, limited_by: mem_available,
           maps: [{name: pkt_count, type: array, bytes: 320, formula: "312 + round_up(8, 8) * 1", reused: false}]}
license:
  description: The object's license string.
  returned: always
  type: str
  sample: GPL
gpl_compatible:
  description: Whether the kernel treats that license as GPL-compatible.
  returned: always
  type: bool
  sample: true
dry_verify:
  description: Whether a verification load was C(requested) and C(done), or why it was C(skipped).
  returned: always
  type: dict
  sample: {requested: true, done: true}
digest:
  description: sha256 of the object.
  returned: always
  type: str
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
from ansible_collections.ebpf.deploy.plugins.module_utils._options import OBJECT, PINS, compose, require
from ansible_collections.ebpf.deploy.plugins.module_utils._module_run import exit_with
from ansible_collections.ebpf.deploy.plugins.module_utils._preflight import PreflightManager, Request

ARGUMENT_SPEC = compose(
    require(OBJECT, "src"), PINS,   # a preflight always has an object to check
    name=dict(type="str"),
    dry_verify=dict(type="bool", default=False),
    fail_on=dict(type="str", choices=["error", "warning", "info", "never"], default="error"),
    refresh_features=dict(type="bool", default=False),
)


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    # findings at fail_on or worse fail the task with the whole report
    exit_with(module, lambda: PreflightManager(Request.from_params(module.params), check_mode=module.check_mode,
                                               diff_mode=module._diff).run(),
              fail_when=lambda result: not result["passed"])


if __name__ == "__main__":
    main()
