#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to ebpf.deploy
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
---
module: bpf_deployment
short_description: Converge a whole BPF deployment (programs, attachments on any hook, map entries) in one task
version_added: 0.1.0
description:
  - Does in one module run what M(ebpf.deploy.bpf_program), M(ebpf.deploy.xdp_attach) (or
    M(ebpf.deploy.bpf_attach), for tcx, cgroup, tracing and netfilter hooks) and
    M(ebpf.deploy.bpf_map) do one by one, with the same options and the same guarantees, so that a
    host converges, or says in check mode whether it has converged, in one round trip.
  - The object's programs are loaded beside the running version and pinned as a version under
    O(bpffs_root)/O(name)/; then every O(attach) entry is switched atomically to its program of the
    new version; then every O(maps) entry's entries are written.
  - Each O(attach) entry's hook is O(attach[].hook), or what its program's ELF section names
    (C(SEC("tcx/ingress")) attaches to tcx ingress); an entry with O(attach[].interface) whose section
    names no hook is an XDP entry. The record's rollback, the confirm watcher and the restore at boot
    put every hook back as it was (the old program on the same link, a hook the old version did not
    use detached).
  - Before anything is loaded, every attachment is checked (the hook takes the program's type, the
    target - network namespace, interface, cgroup, tracepoint - exists, mode and method are valid),
    so a typo changes nothing.
  - When an attachment or a map write fails after the new version became current, the run undoes
    itself before failing - the attachments it switched and the V(current) version go back to what
    they were (a deployment new to the host is detached and removed) - and the message says so.
  - The ebpf.deploy.rollout role runs this module to stage and switch a host, and in check mode to
    leave hosts that already run the wanted state out of the rollout.
author:
  - ebpf.deploy maintainers (@ebpf-deploy)
requirements:
  - Linux with BPF, BTF, a mounted bpffs and bpf_link support for XDP (5.9 or later).
  - libbpf 1.x (V(libbpf.so.1)) and pyroute2 on the managed host.
  - Root, or CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN.
extends_documentation_fragment:
  - ebpf.deploy.attributes
  - ebpf.deploy.attributes.action_plugin
  - ebpf.deploy.program
  - ebpf.deploy.object
  - ebpf.deploy.pins
  - ebpf.deploy.lock
  - ebpf.deploy.record
  - ebpf.deploy.hook_attachment.deployment
  - ebpf.deploy.map_entries.deployment
attributes:
  check_mode:
    details:
      - A new object is loaded into the kernel for the verifier's verdict and closed again, as with
        M(ebpf.deploy.bpf_program). Its attachments and the entries of maps it would create are
        predicted (RV(attach[].predicted)), since nothing of it is pinned yet.
  diff_mode:
    details:
      - The program version, each attachment and each map's touched entries, before and after.
options:
  state:
    description:
      - V(present) converges the deployment. The switch is recorded on the host as pending, and is
        committed at once unless O(confirm_timeout) is set.
      - V(committed) confirms the pending switch (idempotent); only then are versions beyond
        O(keep_versions) unpinned.
      - V(rolled_back) restores the committed record exactly - the V(current) version, the program
        that held each interface before (another deployment's or another tool's too) and the prior
        contents of every map entry the switch wrote - or, with O(rollback_to), an earlier committed
        version. Idempotent.
      - V(absent) detaches it from the interfaces in O(attach), removes every pin of it (as
        M(ebpf.deploy.bpf_program) with O(ebpf.deploy.bpf_program#module:state=absent)) and its record.
    type: str
    choices: [present, absent, committed, rolled_back]
    default: present
  confirm_timeout:
    description:
      - Seconds within which the switch must be confirmed with O(state=committed). Until then it is
        pending, and when the time passes the host rolls it back by itself to the committed record -
        with the controller gone, the SSH session cut or the playbook killed. A watcher that outlives
        the module does it, a transient systemd timer where systemd runs the host, a detached process
        otherwise.
      - V(0) keeps the switch pending without a watcher. Omitted, a successful run commits at once.
    type: float
    version_added: 0.1.0
  rollback_to:
    description:
      - With O(state=rolled_back), where to return. V(committed) undoes a pending switch (nothing
        pending, nothing changes).
      - V(previous) also returns a committed version to the version committed before it, never to a
        version that was rolled back; the version it leaves is marked, so a second run changes nothing.
      - A version (12 hex digits) returns to that version of the record, loading its stored object
        when it is no longer pinned.
    type: str
    default: committed
    version_added: 0.1.0
  preflight_fail_on:
    description:
      - Before a new version is loaded, check the object against the host as M(ebpf.deploy.bpf_preflight) does
        (program types, helpers, GPL-only helpers, sizes, map limits, memory, races), in this same run, and
        refuse with every finding when one is of this severity or worse. Nothing is loaded or changed then.
      - A pinned map whose spec differs is left to O(map_conflict). Omitted, no preflight runs; nor does it
        when the version is already pinned (nothing is loaded).
    type: str
    choices: [error, warning, info]
    version_added: 0.1.0
  health:
    description:
      - After a successful O(state=present) run, soak and judge health checks on the host, in this same
        run (its lock released first, so a confirm watcher is never kept waiting), and return the verdict
        as RV(health). The checks are those of the P(ebpf.deploy.rollout#role) role's C(rollout_health),
        which passes this option. The host is read before and after the soak, the probe commands run on
        it and the maps are dumped on it, so a stage costs one round trip per host.
      - The run does not fail when a check fails; the caller decides (the role rolls back). In check mode
        nothing is soaked or judged (C(skipped) in RV(health) says so).
      - Map checks need the C(jmespath) Python package on the host (Debian C(python3-jmespath), which
        P(ebpf.deploy.host#role) installs).
    type: dict
    suboptions:
      soak_seconds:
        description: Seconds to count program runs before the checks are judged. Keep it below O(confirm_timeout).
        type: float
        default: 0
      checks:
        description:
          - The checks, each a dict with C(type) one of V(attached), V(program_runs), V(map), V(interface),
            V(dmesg), V(command) and that type's keys, as in the P(ebpf.deploy.rollout#role) role.
        type: list
        elements: dict
        required: true
      deployments:
        description:
          - The deployments the checks judge, each with its C(name) and C(attach) list (a rollout of
            several deployments passes them all to its last switch). Default, this deployment.
        type: list
        elements: dict
    version_added: 0.1.0
notes:
  - The deployment's lock is held for the whole run; its program, attachment and map parts run one
    after the other inside it.
  - The record lives under O(state_dir)/root-<digest of bpffs_root>/O(name)/ - the object of each kept
    version, its full spec, and C(state.json) with the committed version, the pending one with its
    deadline and what it replaced. The host role's C(ebpf-deploy-restore.service) restores every
    committed deployment from it at boot; map contents do not survive a reboot, declared entries are
    written again.
seealso:
  - module: ebpf.deploy.bpf_program
  - module: ebpf.deploy.xdp_attach
  - module: ebpf.deploy.bpf_map
  - module: ebpf.deploy.bpf_preflight
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
- name: Run the firewall on eth0 with its blocklist
  ebpf.deploy.bpf_deployment:
    name: fw
    src: files/blocklist.bpf.o
    attach:
      - {program: xdp_blocklist, interface: eth0, mode: native}
    maps:
      - map: blocklist
        key_type: ipv4
        value_type: u64
        entries:
          - {key: 192.0.2.7, value: 0}
        overwrite: false
        purge: true

- name: Count the UDP packets to port 5353 on eth0, the port set as a load-time global
  ebpf.deploy.bpf_deployment:
    name: mdns
    src: files/globals_port.bpf.o
    globals:
      target_port: 5353
    attach:
      - {program: xdp_port_counter, interface: eth0}

- name: Is this host already running it? (changes nothing)
  ebpf.deploy.bpf_deployment:
    name: fw
    src: files/blocklist.bpf.o
    attach:
      - {program: xdp_blocklist, interface: eth0, mode: native}
  check_mode: true
  register: fw_state

- name: Refuse an object that does not fit this host, before loading it
  ebpf.deploy.bpf_deployment:
    name: fw
    src: files/blocklist.bpf.o
    preflight_fail_on: warning
    attach:
      - {program: xdp_blocklist, interface: eth0, mode: native}

- name: Switch to a new version that the host rolls back by itself unless confirmed in 5 minutes
  ebpf.deploy.bpf_deployment:
    name: fw
    src: files/blocklist-v2.bpf.o
    confirm_timeout: 300
    attach:
      - {program: xdp_blocklist, interface: eth0, mode: native}

- name: Confirm it once it is found healthy
  ebpf.deploy.bpf_deployment:
    name: fw
    state: committed

- name: Or give back exactly what ran before (programs, interfaces, map entries)
  ebpf.deploy.bpf_deployment:
    name: fw
    state: rolled_back

- name: Return a committed version to the one committed before it (a second run changes nothing)
  ebpf.deploy.bpf_deployment:
    name: fw
    state: rolled_back
    rollback_to: previous

- name: Detach and remove it
  ebpf.deploy.bpf_deployment:
    name: fw
    state: absent
    attach:
      - {program: xdp_blocklist, interface: eth0}

- name: Count eth0's ingress with tcx (hook from SEC("tcx/ingress")) and one service's egress
  ebpf.deploy.bpf_deployment:
    name: pktcount
    src: files/pktcount.bpf.o
    program_type: sched_cls   # libbpf < 1.3 cannot tell the type of a tcx/ section
    confirm_timeout: 300
    attach:
      - {program: tcx_count, interface: eth0}
      - {program: tcx_count_egress, hook: tcx_egress, interface: eth0, after: policy}
"""

RETURN = r"""
version:
  description: The version that is current after the run (V(null) after O(state=absent)).
  returned: always
  type: str
  sample: 3f1c2a9b0d4e
committed:
  description: The version the host's record has committed after the run (V(null) when none).
  returned: always
  type: str
  sample: 3f1c2a9b0d4e
pending:
  description: Whether a switch is pending after the run (not yet committed or rolled back).
  returned: always
  type: bool
  sample: false
health:
  description:
    - With O(health), the verdict of the checks after the soak - C(passed) (every check held), C(checks)
      (one result per check - C(index), C(type), C(name), C(passed), C(detail)), C(soak_seconds) and
      C(seconds) (the soak and the reads).
    - In check mode nothing is switched, soaked or judged - C(passed) is V(null), C(checks) empty and
      C(skipped) says why.
  returned: when O(health) was given and the run succeeded
  type: dict
  sample: {passed: true, soak_seconds: 10, seconds: 10.04,
           checks: [{index: 0, type: attached, name: attached, passed: true, detail: "1 attachment(s) as wanted"}]}
record:
  description:
    - The host's record after the run - C(committed), C(pending) (C(version), C(deadline),
      C(seconds_left), C(watcher)), C(history) of committed versions, C(rolled_back) versions and the
      C(last) transition (commit, rollback or restore, and by whom - run, controller, watcher).
  returned: always
  type: dict
  sample: {committed: 9a0b1c2d3e4f, pending: {version: 3f1c2a9b0d4e, deadline: 1764590000.0, seconds_left: 290.0,
           watcher: process}, history: [9a0b1c2d3e4f], rolled_back: [], last: null}
previous_version:
  description: The version that was current before it.
  returned: always
  type: str
  sample: 9a0b1c2d3e4f
action:
  description:
    - What happened to the programs, as in M(ebpf.deploy.bpf_program) - V(none), V(switch) or V(load);
      V(remove) with O(state=absent).
  returned: always
  type: str
  sample: load
program:
  description:
    - The result of the program part, as M(ebpf.deploy.bpf_program) returns it; with O(globals), their
      values as they read back are in C(program.globals) (RV(ebpf.deploy.bpf_program#module:globals)).
    - On a failure because the verifier refused a program, the name of that program instead (a string).
  returned: always
  type: dict
  sample: {changed: true, version: 3f1c2a9b0d4e, action: load, programs: [{name: xdp_packet_counter, id: 812}]}
attach:
  description:
    - One result per O(attach) entry, as M(ebpf.deploy.xdp_attach) returns it for an XDP entry and
      M(ebpf.deploy.bpf_attach) for the other hooks (then with C(hook), C(target), C(link_pin),
      C(link_id), C(chain) instead of C(interface), C(mode), C(method)), with the program name.
  returned: always
  type: list
  elements: dict
  contains:
    interface:
      description: The interface.
      type: str
      sample: eth0
    netns:
      description: Its network namespace, V(null) for the module's own.
      type: str
      sample: null
    program:
      description: The program of the deployment.
      type: str
      sample: xdp_packet_counter
    prog_id:
      description: The program id attached after the run (V(null) when predicted).
      type: int
      sample: 812
    previous_prog_id:
      description: The program id attached before.
      type: int
      sample: 790
    mode:
      description: The XDP mode.
      type: str
      sample: native
    method:
      description: V(link) or V(netlink).
      type: str
      sample: link
    action:
      description:
        - XDP - V(none), V(attach), V(replace), V(reattach), V(repin), V(detach).
        - Other hooks, as M(ebpf.deploy.bpf_attach) says - V(update) (the link's program swapped atomically),
          V(overlap) (a tracepoint - new link first, then the old one released), V(detach_attach) (netfilter), ...
      type: str
      sample: replace
    changed:
      description: Whether this attachment changed (or would).
      type: bool
      sample: true
    predicted:
      description: In check mode, set when the result is predicted because the version is not pinned yet.
      type: bool
      sample: true
    hook:
      description: The hook of an entry other than XDP.
      type: str
      sample: tcx_ingress
    link_pin:
      description: Where the link of an entry other than XDP is pinned.
      type: str
      sample: /sys/fs/bpf/ebpf_deploy/pktcount/links/eth0:tcx_ingress
  sample: [{interface: eth0, netns: null, program: xdp_packet_counter, prog_id: 812, action: replace, changed: true}]
maps:
  description: One result per O(maps) entry, as M(ebpf.deploy.bpf_map) returns it, with the map name.
  returned: always
  type: list
  elements: dict
  sample: [{map: blocklist, changed: true, added: [192.0.2.7], changed_keys: [], removed: []}]
preflight:
  description:
    - When O(preflight_fail_on) is set and a version was (or in check mode would be) loaded, whether it
      C(passed), the C(counts) per severity and the C(findings), as M(ebpf.deploy.bpf_preflight) returns them.
      On a refusal, the failed result holds it too.
  returned: when preflight ran
  type: dict
  sample: {passed: true, counts: {error: 0, warning: 0, info: 0}, findings: []}
undone:
  description: On a failure after the switch, what the run undid before failing.
  returned: failure
  type: list
  elements: str
  sample: ["version 9a0b1c2d3e4f is current again", "1 attachment(s) restored"]
would_restore:
  description: With O(state=rolled_back) in check mode, what a rollback of the pending switch would give back.
  returned: check mode, when a switch is pending
  type: dict
  sample: {version: 9a0b1c2d3e4f, attach: {eth0: 790}, maps: {blocklist: 1}}
removed_versions:
  description: With O(state=committed), the versions unpinned after the commit.
  returned: when committed
  type: list
  elements: str
  sample: [1a2b3c4d5e6f]
diff:
  description: The program version, attachments and touched map entries before and after.
  returned: in diff mode
  type: dict
  sample:
    before: {program: {version: 9a0b1c2d3e4f}, attach: {eth0: {prog_id: 790}}, maps: {}}
    after: {program: {version: 3f1c2a9b0d4e}, attach: {eth0: {prog_id: 812}}, maps: {}}
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
verifier_log:
  description: On a verifier rejection, the whole verifier log.
  returned: failure
  type: str
  sample: "0: R1=ctx() R10=fp0\n..."
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
from ansible_collections.ebpf.deploy.plugins.module_utils._deployment import run
from ansible_collections.ebpf.deploy.plugins.module_utils._module_run import exit_with
from ansible_collections.ebpf.deploy.plugins.module_utils._options import (
    DEPLOYMENT_ATTACH, DEPLOYMENT_MAP, LOCK, OBJECT, PINS, PROGRAM, RECORD, compose,
)

ARGUMENT_SPEC = compose(
    PROGRAM, OBJECT, PINS, LOCK, RECORD,
    state=dict(type="str", choices=["present", "absent", "committed", "rolled_back"], default="present"),
    confirm_timeout=dict(type="float"),
    rollback_to=dict(type="str", default="committed"),
    attach=dict(type="list", elements="dict", default=[], options=DEPLOYMENT_ATTACH),
    maps=dict(type="list", elements="dict", default=[], options=DEPLOYMENT_MAP),
    preflight_fail_on=dict(type="str", choices=["error", "warning", "info"]),
    health=dict(type="dict", options=dict(
        soak_seconds=dict(type="float", default=0),
        checks=dict(type="list", elements="dict", required=True),
        deployments=dict(type="list", elements="dict"),
    )),
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
