#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to ebpf.deploy
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
---
module: bpf_facts
short_description: Gather facts about BPF on a host - kernel, features, programs, maps, XDP, limits, kernel log
version_added: 0.1.0
description:
  - Reads, never changes, what the kernel says about BPF and returns it as RV(ansible_facts.ebpf).
  - Programs, maps and links are everything loaded on the host, with the pins found in every
    mounted bpffs and the M(ebpf.deploy.bpf_program) deployment and version each pin belongs to.
    Program and map ids are global to the kernel, so hosts that share one (lab namespaces) see the
    same ids.
  - The kernel log subset returns the BPF and XDP lines since a cursor and a new cursor, so a play
    can ask "what did the kernel say about BPF since the last check" (pass the previous
    RV(ansible_facts.ebpf.dmesg_cursor) as O(dmesg_since)).
author:
  - ebpf.deploy maintainers (@ebpf-deploy)
requirements:
  - Linux with BPF; libbpf 1.x (C(libbpf.so.1)) on the managed host
  - root, or CAP_BPF + CAP_SYS_ADMIN (ids and pins) and CAP_SYSLOG (the kernel log)
extends_documentation_fragment:
  - ebpf.deploy.attributes
  - ebpf.deploy.attributes.no_action_plugin
  - ebpf.deploy.pins
  - ebpf.deploy.record
attributes:
  check_mode:
    details:
      - Gathers the same facts in check mode; nothing is changed either way.
  diff_mode:
    support: none
    details:
      - Nothing changes, so there is no diff.
  facts:
    support: full
    description: Returns RV(ansible_facts.ebpf).
  idempotent:
    details:
      - Never changes anything (C(changed=false)).
options:
  bpffs_root:
    description: Root of the collection's pins, used to tell which deployment a pin belongs to.
  gather_subset:
    description:
      - Which facts to gather. V(all) is every subset; V(min) is V(kernel); a name prefixed with
        C(!) leaves that subset out (V(!dmesg)).
      - The default is every subset except V(features), which probes the kernel (well under a
        second the first time after a boot; the answer is cached in
        C(/run/ebpf_deploy/features-<boot_id>.json) until the next boot).
    type: list
    elements: str
    default: [kernel, programs, maps, links, xdp, interfaces, limits, dmesg, record]
  dmesg_since:
    description:
      - Cursor from a previous run's RV(ansible_facts.ebpf.dmesg_cursor), written C(<boot id>:<seq>) (the boot
        and the sequence number of the last kernel log record seen). Only newer BPF/XDP lines are returned.
      - Omitted, the last 50 matching lines are returned with the current cursor.
      - A cursor of another boot is recognised by its boot id. The window then says C(rebooted) and holds
        this boot's lines only. A bare number (a cursor from an earlier version) is still accepted.
    type: raw
  stats_seconds:
    description:
      - Count program runs for this many seconds before gathering, so that the C(run_cnt)
        and C(run_time_ns) of RV(ansible_facts.ebpf) programs grow by what ran meanwhile (a health soak).
      - The statistics are on only while the module holds the kernel's BPF_ENABLE_STATS file descriptor;
        nothing stays enabled afterwards, unlike the C(kernel.bpf_stats_enabled) sysctl.
    type: float
    default: 0
    version_added: 0.1.0
  xdp_netns:
    description: Named network namespaces (C(/run/netns/<name>)) whose interfaces to list as well.
    type: list
    elements: str
    default: []
  refresh_features:
    description: Probe the kernel again instead of using this boot's cached features.
    type: bool
    default: false
notes:
  - The kernel log lines are those that mention C(bpf)/C(BPF)/C(eBPF) as a word or prefix, C(xdp)/C(XDP),
    C(JIT), C(page_pool) or C(verifier), such as C(Illegal XDP return value).
  - C(run_cnt) and C(run_time_ns) count only while BPF statistics are on (C(bpf_stats_enabled) in RV(ansible_facts.ebpf.kernel)).
seealso:
  - module: ebpf.deploy.bpf_program
  - module: ebpf.deploy.bpf_preflight
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
- name: Gather BPF facts
  ebpf.deploy.bpf_facts:

- name: Programs of the pktcount deployment
  ansible.builtin.debug:
    msg: "{{ ansible_facts.ebpf.programs | selectattr('deployment', 'equalto', 'pktcount') | list }}"

- name: Take a kernel log cursor before a rollout
  ebpf.deploy.bpf_facts:
    gather_subset: [dmesg]
  register: before

- name: Kernel BPF/XDP lines since then, and the XDP state inside a namespace
  ebpf.deploy.bpf_facts:
    gather_subset: [dmesg, xdp, interfaces]
    dmesg_since: "{{ before.ansible_facts.ebpf.dmesg_cursor }}"
    xdp_netns: [blue]

- name: What the kernel offers (probed once per boot)
  ebpf.deploy.bpf_facts:
    gather_subset: [kernel, features, limits]
"""

RETURN = r"""
ansible_facts:
  description: Facts to add to ansible_facts.
  returned: always
  type: complex
  contains:
    ebpf:
      description: BPF facts, one key per gathered subset.
      returned: always
      type: complex
      contains:
        gather_subset:
          description: The subsets gathered.
          returned: always
          type: list
          elements: str
          sample: [kernel, programs, maps, links, xdp, interfaces, limits, dmesg]
        kernel:
          description:
            - Kernel release, C(btf) (vmlinux BTF present), C(jit_enable), C(jit_harden), C(jit_kallsyms),
              C(unprivileged_bpf_disabled), C(bpf_stats_enabled), C(lockdown) (V(null) without the
              securityfs file), C(bpffs) (mount points), C(tracefs) and C(boot_id).
          returned: when V(kernel) is gathered
          type: dict
          sample: {release: 6.1.0-18-amd64, btf: true, jit_enable: 1, jit_harden: 0, bpf_stats_enabled: false,
                   unprivileged_bpf_disabled: 2, lockdown: none, bpffs: [/sys/fs/bpf]}
        features:
          description:
            - C(program_types) and C(map_types) (name → available; V(null) when the probe cannot tell)
              and C(helpers) (program type → helper names it may call).
          returned: when V(features) is gathered
          type: dict
          sample: {program_types: {xdp: true, lirc_mode2: false}, helpers: {xdp: [bpf_map_lookup_elem]}}
        programs:
          description:
            - Every loaded program; C(loaded_at) is a Unix time like C(bpftool prog show). C(pins)
              lists where it is pinned; C(deployment)/C(version)/C(program) say where it sits in the
              ebpf.deploy layout under O(bpffs_root) (V(null) deployment when it does not).
          returned: when V(programs) is gathered
          type: list
          elements: dict
          sample:
            - {id: 412, name: xdp_packet_coun, type: xdp, tag: 0afa56fcd9325709, loaded_at: 1717171717,
               verified_insns: 11, run_cnt: 0, run_time_ns: 0, map_ids: [37], bytes_memlock: 4096,
               pins: [/sys/fs/bpf/ebpf_deploy/pktcount/0123456789ab/progs/xdp_packet_counter],
               deployment: pktcount, version: 0123456789ab, program: xdp_packet_counter}
        maps:
          description: Every map (id, name, type, key_size, value_size, max_entries, flags, bytes_memlock, pins, deployment).
          returned: when V(maps) is gathered
          type: list
          elements: dict
          sample:
            - {id: 37, name: pkt_count, type: array, key_size: 4, value_size: 8, max_entries: 1, flags: 0,
               pins: [/sys/fs/bpf/ebpf_deploy/pktcount/maps/pkt_count], deployment: pktcount}
        links:
          description:
            - Every bpf_link (id, type, prog_id, ifindex, pins, deployment, hook, interface, netns); C(hook) is
              the hook its pin under a deployment's C(links/) names, C(interface) only for XDP, tcx and tc links.
          returned: when V(links) is gathered
          type: list
          elements: dict
        deployments:
          description:
            - Per ebpf.deploy deployment found under O(bpffs_root) - versions (program name → id), maps, links,
              current, previous.
            - With V(links) gathered, C(attachments) too - every link pinned under the deployment's C(links/),
              of every hook, by pin name C(<target>:<hook>) with its C(hook), C(link_id) and C(prog_id).
          returned: when V(programs), V(maps) or V(links) is gathered
          type: dict
          sample: {pktcount: {current: 0123456789ab, previous: null, versions: {0123456789ab: {xdp_packet_counter: 412}},
                              maps: {pkt_count: 37}, links: {"eth0:xdp": 17},
                              attachments: {"eth0:xdp": {hook: xdp, link_id: 17, prog_id: 412}}}}
        xdp:
          description: For every interface of the root namespace and of O(xdp_netns) - C(mode), C(prog_id) and C(progs) (mode → id).
          returned: when V(xdp) is gathered
          type: list
          elements: dict
          sample: [{interface: eth0, netns: null, ifindex: 2, mode: native, prog_id: 412, progs: {native: 412}}]
        interfaces:
          description:
            - Counters per interface - rx/tx packets and bytes, rx/tx dropped, C(xdp_drops) (the driver's
              C(*xdp_drops) ethtool counters summed, V(null) when the driver has none, as in generic
              mode) and C(xdp_stats) (every ethtool counter with C(xdp) in its name).
          returned: when V(interfaces) is gathered
          type: list
          elements: dict
        limits:
          description:
            - C(memlock) (soft/hard, V(null) for unlimited), C(memlock_applies) (kernels before 5.11),
              C(memory_cgroup) (version, path, limit, usage, available), C(mem_available),
              C(possible_cpus), C(kernel) (fixed verifier limits) and C(bpf_memory_budget).
          returned: when V(limits) is gathered
          type: dict
        dmesg:
          description: C(lines) (seq, level, time, message), C(cursor), C(missed) (records lost from the ring), C(restarted),
            C(boot_id), C(rebooted) (the cursor was of another boot, C(since_boot_id)).
          returned: when V(dmesg) is gathered
          type: dict
          sample: {lines: [{seq: 1842, level: warning, time: 1203.5, message: "Illegal XDP return value 7 ..."}],
                   cursor: "30b27bd1-24b0-488c-9aeb-5555d8b25b29:1843", missed: 0, restarted: false,
                   boot_id: 30b27bd1-24b0-488c-9aeb-5555d8b25b29, rebooted: false}
        dmesg_cursor:
          description: The cursor to pass as O(dmesg_since) next time.
          returned: when V(dmesg) is gathered
          type: str
          sample: "30b27bd1-24b0-488c-9aeb-5555d8b25b29:1843"
        record:
          description:
            - The host's record of the deployments under O(bpffs_root) - per deployment C(committed),
              C(pending) (version, deadline, seconds_left, watcher), C(history), C(rolled_back) and C(last)
              transition - and C(last_restore), what the restore at boot did (C(failed) count and one
              entry per deployment with its C(status)).
          returned: when V(record) is gathered
          type: dict
          sample: {state_dir: /var/lib/ebpf_deploy, deployments: {pktcount: {committed: 0123456789ab, pending: null}},
                   last_restore: {failed: 0, deployments: [{deployment: pktcount, status: restored}]}}
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
from ansible_collections.ebpf.deploy.plugins.module_utils._facts import DEFAULT_SUBSETS, gather, resolve_subsets
from ansible_collections.ebpf.deploy.plugins.module_utils._options import PINS, RECORD, compose
from ansible_collections.ebpf.deploy.plugins.module_utils._module_run import exit_with

ARGUMENT_SPEC = compose(
    PINS, RECORD,
    gather_subset=dict(type="list", elements="str", default=list(DEFAULT_SUBSETS)),
    dmesg_since=dict(type="raw"),
    xdp_netns=dict(type="list", elements="str", default=[]),
    refresh_features=dict(type="bool", default=False),
    stats_seconds=dict(type="float", default=0),
)


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    params = module.params

    def facts() -> dict:
        return gather(resolve_subsets(params["gather_subset"]), bpffs_root=params["bpffs_root"],
                      xdp_netns=params["xdp_netns"], dmesg_since=params["dmesg_since"],
                      refresh_features=params["refresh_features"], stats_seconds=params["stats_seconds"],
                      state_dir=params["state_dir"])

    exit_with(module, lambda: {"changed": False, "ansible_facts": {"ebpf": facts()}})


if __name__ == "__main__":
    main()
