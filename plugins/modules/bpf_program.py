#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to ebpf.deploy
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
---
module: bpf_program
short_description: Load and pin the programs of a BPF object as a versioned deployment
version_added: 0.1.0
description:
  - Opens a compiled BPF ELF object, loads its programs into the kernel with the verifier log
    captured, and pins them in the BPF filesystem as one B(deployment) under
    O(bpffs_root)/O(name)/.
  - Programs are pinned per version (V(<bpffs_root>/<name>/<version>/progs/<program>)); maps are
    pinned once per deployment (V(<bpffs_root>/<name>/maps/<map>)) and reused by every later version
    whose map spec matches, so their contents survive an upgrade.
  - A C(prog_array) the object initialises itself (a C(.values) initialiser naming programs) is the exception; libbpf
    fills its slots at load, so each version gets its own, created at load and pinned under the version
    (V(<bpffs_root>/<name>/<version>/maps/<map>)). Loading a new version (or a check-mode run) leaves the
    running version's tail calls alone; they change with the switch and come back with a rollback, and
    the table goes when its version is pruned.
  - The version is the first 12 hex digits of the sha256 of the object and of the options that change
    what is loaded. A new object is loaded beside the running version and only then made
    V(current); previous versions stay pinned for an instant rollback (O(keep_versions), O(version)).
  - The current state is read from the bpffs and the kernel on every run, so pins deleted by hand
    are detected and restored, and an unchanged run loads nothing.
  - A failure (verifier rejection, map too large, map spec conflict, bad object) changes nothing;
    the previous version stays pinned and current, and no new pin is left behind.
  - Runs on one host are serialized per deployment with a lock under V(/run/ebpf_deploy/locks).
author:
  - ebpf.deploy maintainers (@ebpf-deploy)
requirements:
  - Linux with BPF, BTF and a mounted bpffs (V(/sys/fs/bpf)).
  - libbpf 1.x (V(libbpf.so.1)) on the managed host.
  - Root, or CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN.
extends_documentation_fragment:
  - ebpf.deploy.attributes
  - ebpf.deploy.attributes.action_plugin
  - ebpf.deploy.program
  - ebpf.deploy.program.freplace
  - ebpf.deploy.object
  - ebpf.deploy.pins
  - ebpf.deploy.lock
attributes:
  check_mode:
    details:
      - Loads the object into the kernel to get the verifier's verdict and statistics, then closes
        it; nothing is pinned and nothing is switched.
  diff_mode:
    details:
      - Shows the version, programs, maps and pinned versions before and after.
options:
  state:
    description:
      - V(present) loads and pins the object (or switches to O(version)).
      - V(absent) unpins every program, version, map and link pin of the deployment and removes its
        metadata; pinned XDP links of the deployment are released with it.
    type: str
    choices: [present, absent]
    default: present
notes:
  - The bpffs refuses names that contain a dot, so deployment, program and map names cannot have one.
  - Metadata the kernel cannot hold (source, digest, options, deployed_at) is kept in
    V(/run/ebpf_deploy/<name>/<version>.json), which is cleared on reboot like the bpffs.
seealso:
  - module: ebpf.deploy.xdp_attach
  - module: ebpf.deploy.bpf_map
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
- name: Deploy the packet counter (loaded and pinned, not attached)
  ebpf.deploy.bpf_program:
    name: pktcount
    src: files/counter.bpf.o
    programs:
      - xdp_packet_counter
    checksum: "sha256:{{ lookup('ansible.builtin.file', 'files/counter.bpf.o.sha256') }}"
  register: pktcount

- name: Upgrade, keeping two older versions pinned for rollback
  ebpf.deploy.bpf_program:
    name: pktcount
    src: files/counter_v2.bpf.o
    keep_versions: 2
    verifier_log_level: 1

- name: Roll back instantly to the version that was current before
  ebpf.deploy.bpf_program:
    name: pktcount
    version: "{{ pktcount.version }}"

- name: Count the packets to port 5353 only, set in the object's const volatile globals before load
  ebpf.deploy.bpf_program:
    name: mdns
    src: files/globals_port.bpf.o
    globals:
      target_port: 5353
      mode: MATCH_DROP
      limits: {max_len: 1500, ttl_min: 1}

- name: Load a policy that replaces the global function policy() of the running program app/main (freplace)
  ebpf.deploy.bpf_program:
    name: app-policy
    src: files/policy.bpf.o          # SEC("freplace/policy") int policy(__u32 tgid) { ... }
    attach_program: /sys/fs/bpf/ebpf_deploy/app/current/progs/main

- name: Replace a pinned map whose spec changed (its contents are lost)
  ebpf.deploy.bpf_program:
    name: pktcount
    src: /opt/bpf/counter_hash.bpf.o
    remote_src: true
    map_conflict: recreate

- name: Remove every pin of the deployment
  ebpf.deploy.bpf_program:
    name: pktcount
    state: absent
"""

RETURN = r"""
version:
  description: The version that is current after the run (V(null) after O(state=absent)).
  returned: always
  type: str
  sample: 3f1c2a9b0d4e
previous_version:
  description: The version that was current before it (kept pinned while O(keep_versions) allows).
  returned: always
  type: str
  sample: 9a0b1c2d3e4f
digest:
  description: sha256 of the object.
  returned: when O(src) is given, or when the metadata of O(version) is known
  type: str
  sample: 5d41402abc4b2a76b9719d911017c592aa6c1b4c5c1e5bd5d0c4b1f0b0a9f1e2
globals:
  description:
    - The load-time globals of the version (O(globals)), as they read back from the object's BTF
      (enums by name, char arrays as lists of bytes, structs with every field).
    - Part of the version digest; the diff shows them too.
  returned: when the version has globals
  type: dict
  sample: {target_port: 5353, mode: MATCH_DROP, limits: {max_len: 1500, ttl_min: 1, reserved: [0, 0, 0]}}
  version_added: 0.1.0
action:
  description:
    - What the run did or, in check mode, would do.
    - V(none) nothing, V(switch) only moved V(current), V(load) loaded and pinned the object.
  returned: with O(state=present)
  type: str
  sample: load
programs:
  description: The programs of the version, as the kernel reports them.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Program name in the object.
      type: str
      sample: xdp_packet_counter
    kernel_name:
      description: The name the kernel keeps (at most 15 characters).
      type: str
      sample: xdp_packet_coun
    id:
      description: Kernel program id (V(null) in check mode when it would be loaded).
      type: int
      sample: 412
    tag:
      description: Program tag (hash of the translated instructions), as bpftool shows it.
      type: str
      sample: 0afa56fcd9325709
    type:
      description: Program type.
      type: str
      sample: xdp
    pin:
      description: Pin path.
      type: str
      sample: /sys/fs/bpf/ebpf_deploy/pktcount/3f1c2a9b0d4e/progs/xdp_packet_counter
    verified_insns:
      description: Instructions the verifier processed.
      type: int
      sample: 11
    xlated_len:
      description: Size in bytes of the translated program.
      type: int
      sample: 144
    jited_len:
      description: Size in bytes of the JIT-compiled program.
      type: int
      sample: 94
    map_ids:
      description: Ids of the maps the program uses.
      type: list
      elements: int
      sample: [67]
maps:
  description: The maps of the object (global-variable maps excluded) and their pins.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Map name.
      type: str
      sample: pkt_count
    id:
      description: Kernel map id (V(null) in check mode for a map that would be created).
      type: int
      sample: 67
    type:
      description: Map type.
      type: str
      sample: array
    key_size:
      description: Key size in bytes.
      type: int
      sample: 4
    value_size:
      description: Value size in bytes.
      type: int
      sample: 8
    max_entries:
      description: Maximum number of entries.
      type: int
      sample: 1
    map_flags:
      description: Map flags.
      type: int
      sample: 0
    pin:
      description: Pin path, shared by all versions (the version's own for RV(maps[].per_version)).
      type: str
      sample: /sys/fs/bpf/ebpf_deploy/pktcount/maps/pkt_count
    reused:
      description: V(true) when the pinned map (and its contents) is kept, V(false) when it is new.
      type: bool
      sample: true
    per_version:
      description: V(true) for a C(prog_array) or map of maps the object initialises, which each version has of its own.
      type: bool
      sample: false
      version_added: 0.1.0
versions:
  description: Pinned versions after the run, oldest deployed first.
  returned: always
  type: list
  elements: str
  sample: [9a0b1c2d3e4f, 3f1c2a9b0d4e]
repaired:
  description:
    - One line per table of the version's own (RV(maps[].per_version)) whose pin was gone and is pinned
      again from the table the version's programs hold (a C(prog_array)'s recorded slots written again).
  returned: when a pin was repaired (in check mode, what would be)
  type: list
  elements: str
  sample:
    - "/sys/fs/bpf/ebpf_deploy/pipeline/9a0b1c2d3e4f/maps/jmp_table pinned again (map id 7, held by version
      9a0b1c2d3e4f's programs; slots 0 → xdp_tail_callee written again)"
  version_added: 0.1.0
removed_versions:
  description: Versions unpinned by this run (beyond O(keep_versions), or using a recreated map).
  returned: with O(state=present)
  type: list
  elements: str
  sample: []
verifier:
  description:
    - Per-program verifier statistics, keyed by program name.
    - V(log) holds the whole verifier log when O(verifier_log_level) is above 0.
  returned: when a program was loaded in check mode, or with O(verifier_log_level) above 0
  type: dict
  sample:
    xdp_packet_counter:
      verified_insns: 11
      processed_insns: 11
      total_states: 1
      peak_states: 1
      xlated_len: 144
      jited_len: 94
diff:
  description: The deployment before and after (version, programs, maps, pinned versions).
  returned: in diff mode
  type: dict
  sample:
    before: {version: 9a0b1c2d3e4f, programs: [xdp_packet_counter], maps: {}, versions: [9a0b1c2d3e4f]}
    after: {version: 3f1c2a9b0d4e, programs: [xdp_packet_counter], maps: {}, versions: [9a0b1c2d3e4f, 3f1c2a9b0d4e]}
error_kind:
  description:
    - On a verifier rejection, the kind of error the verifier found, from its log.
    - One of V(gpl_only), V(null_check), V(uninitialized), V(unbounded_loop), V(too_complex), V(stack_limit),
      V(helper_not_allowed), V(invalid_return), V(bounds), V(core_relocation) (libbpf could not
      relocate a CO-RE access against this kernel's BTF), V(unknown).
  returned: failure
  type: str
  sample: null_check
insn:
  description: On a verifier rejection, the index of the instruction the verifier stopped at (V(null) when the log names none).
  returned: failure
  type: int
  sample: 8
verifier_log:
  description: On a verifier rejection, the whole verifier log.
  returned: failure
  type: str
  sample: "0: R1=ctx() R10=fp0\n..."
program:
  description: On a verifier rejection, the program the verifier refused.
  returned: failure
  type: str
  sample: xdp_lookup
reason:
  description: On a verifier rejection, the verifier's own line that says why.
  returned: failure
  type: str
  sample: "R0 invalid mem access 'map_value_or_null'"
verifier_summary:
  description: On a verifier rejection, the decisive last lines of the log, after a count of the lines omitted.
  returned: failure
  type: str
  sample: "(7 lines omitted)\n6: (85) call bpf_map_lookup_elem#1 ; R0=map_value_or_null(id=1,map=lookup_count,ks=4,vs=8)\n..."
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
pinned:
  description: When a pinned map's spec differs from the object's, the pinned map's spec.
  returned: failure
  type: dict
  sample: {type: hash, key_size: 4, value_size: 8, max_entries: 1024, map_flags: 0}
wanted:
  description: When a pinned map's spec differs from the object's, the object's spec for it.
  returned: failure
  type: dict
  sample: {type: hash, key_size: 4, value_size: 8, max_entries: 4096, map_flags: 0}
"""

from ansible.module_utils.basic import AnsibleModule

# first of ours: it serves the module_utils below from the host's bytecode cache
from ansible_collections.ebpf.deploy.plugins.module_utils import _bytecode  # noqa: F401 pylint: disable=unused-import
from ansible_collections.ebpf.deploy.plugins.module_utils._module_run import exit_with
from ansible_collections.ebpf.deploy.plugins.module_utils._options import FREPLACE, LOCK, OBJECT, PINS, PROGRAM, compose
from ansible_collections.ebpf.deploy.plugins.module_utils._program import run

ARGUMENT_SPEC = compose(
    PROGRAM, FREPLACE, OBJECT, PINS, LOCK,
    state=dict(type="str", choices=["present", "absent"], default="present"),
)


def main() -> None:
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        supports_check_mode=True,
        required_if=[("state", "present", ("src", "version"), True)],
    )
    exit_with(module, lambda: run(module.params, check_mode=module.check_mode, diff_mode=module._diff))


if __name__ == "__main__":
    main()
