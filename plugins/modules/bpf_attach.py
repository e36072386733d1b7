#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to ebpf.deploy
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
---
module: bpf_attach
short_description: Attach a deployed BPF program to any hook - XDP, tcx, tc, cgroup, tracing or netfilter
version_added: 0.1.0
description:
  - Attaches the current version of a program deployed with M(ebpf.deploy.bpf_program), or any pinned
    program, to a hook, with a C(bpf_link) pinned at
    O(bpffs_root)C(/<deployment>/links/<target>:<hook>) so the attachment outlives the run.
  - The hook is O(hook), or what the program's ELF section names (O(section), for example
    C(tcx/ingress), C(cgroup_skb/egress) or C(tracepoint/syscalls/sys_enter_getpid), which also gives
    the tracepoint).
  - An upgrade swaps the program of the link atomically (C(BPF_LINK_UPDATE) with the expected old
    program) on tcx and cgroup hooks. Tracepoint and raw tracepoint links cannot swap their program;
    there the new link is attached first and the old one detached after, and the result says
    RV(action=overlap) (both programs run for a moment, none is missing).
  - Netfilter links can neither swap their program nor share a pf, hook and priority, so an upgrade
    detaches the old program and then attaches the new one, with a warning (RV(action=detach_attach);
    packets in between are accepted without either).
  - tcx programs share an interface in an order; O(before) or O(after) place ours relative to
    another deployment's program or a program id. A program out of place is moved - detached and
    attached again in place, as tcx holds a program once per hook and cannot move a link (a new
    version out of place is attached in place first, then the old one detached).
  - The kernel is the source of truth. A link detached or replaced by hand is reported as RV(drift)
    and repaired. A link pin of ours that runs a program this collection did not deploy is never
    replaced without O(force=true). Programs of other tools on the same hook are left alone.
  - C(kprobe)/C(kretprobe) and C(uprobe)/C(uretprobe) are perf events on the kernel's kprobe and
    uprobe PMUs with a C(BPF_PERF_EVENT) link; C(fentry), C(fexit) and C(lsm) programs are linked
    where they were loaded for (their section; libbpf resolves the kernel function or LSM hook at
    load), so O(section) must be known and a O(target) that disagrees with it is refused. Like
    tracepoints, their links cannot swap a program, so an upgrade is RV(action=overlap).
  - C(freplace) puts an C(ext) program (loaded with M(ebpf.deploy.bpf_program)'s
    O(ebpf.deploy.bpf_program#module:attach_program)) in place of a global function of a running program,
    O(target=/pin/of/that/program:function) (kernel >= 5.10). The function is found in that program's
    BTF and must agree with O(section). A function takes one C(ext) program at a time and the link cannot
    be detached, only released, so an upgrade releases the old link and then attaches the new one
    (RV(action=detach_attach); calls in between run the function itself); a failed attach puts the old
    one back.
  - What a host lacks is named before anything changes - no kprobe or uprobe PMU, kernel lockdown
    (fentry, fexit, lsm and freplace programs cannot load), no C(bpf) among the active LSMs.
  - V(xdp) runs the code of M(ebpf.deploy.xdp_attach) (modes, O(method), the same guarantees and
    return values, with RV(hook)). C(tc_ingress)/C(tc_egress) put a C(bpf) filter in direct-action mode
    under the interface's C(clsact) qdisc (for kernels without tcx), see O(priority).
author:
  - ebpf.deploy maintainers (@ebpf-deploy)
requirements:
  - Linux with BPF links for the hook (tcx 6.6, netfilter 6.4, tracepoint links 5.15, cgroup links 5.7)
  - libbpf 1.x (C(libbpf.so.1)) on the managed host (libbpf 1.1 is enough; tcx and netfilter options
    go to the C(bpf) syscall directly)
  - pyroute2 on the managed host for tcx hooks
  - root, or CAP_BPF + CAP_NET_ADMIN (+ CAP_PERFMON for tracing)
extends_documentation_fragment:
  - ebpf.deploy.attributes
  - ebpf.deploy.attributes.no_action_plugin
  - ebpf.deploy.pins
  - ebpf.deploy.lock
  - ebpf.deploy.hook_attachment
  - ebpf.deploy.xdp_attachment.xdp_mode
attributes:
  check_mode:
    details:
      - Reads the target, the bpffs and the hook and reports what would change; changes nothing
        (an unmounted tracefs is reported, not mounted).
  diff_mode:
    details:
      - The attachment before and after (target, hook, program id and name, link pin and state).
  idempotent:
    details:
      - The wanted program attached by our link (in the wanted order) is C(changed=false).
options:
  section:
    description:
      - The program's ELF section as libbpf spells it (C(SEC("...")) in the source), used for the
        default of O(hook) and O(target). C(tc/ingress) means tcx, as in libbpf 1.3.
    type: str
  deployment:
    description:
      - The M(ebpf.deploy.bpf_program) deployment whose current version is attached, and under which
        the link is pinned.
    type: str
  program:
    description: The program within O(deployment). Required with O(deployment) when O(state=present).
    type: str
  pin:
    description:
      - Any pinned program, instead of O(deployment) + O(program). Its link is pinned under
        O(bpffs_root)C(/links/) unless O(deployment) is given too.
    type: path
  state:
    description:
      - V(present) attaches the program; V(absent) detaches our link and removes its pin.
      - With V(absent), a link of ours that runs a program this collection did not deploy is left in
        place with a warning unless O(force=true).
    type: str
    choices: [present, absent]
    default: present
notes:
  - Tracepoints need tracefs; the module mounts it at C(/sys/kernel/tracing) when it is not mounted
    (never in check mode) and says so in a warning.
  - Tracepoint and raw tracepoint links cannot be detached by the kernel, only released; O(state=absent)
    unpins the link, which releases it unless another process holds it open.
  - C(bpftool net show) of bpftool 7.1 (Debian 12) does not list tcx links; bpftool 7.3 and later do.
    RV(chain) is the kernel's own list (C(BPF_PROG_QUERY)).
  - Where each tracing hook is proven, counting the calls of a real process - tracepoint and
    raw_tracepoint on kernel 6.18; kprobe, kretprobe, fentry, fexit, uprobe, uretprobe, freplace and lsm
    (C(file_open)) on Debian 12 (kernel 6.1) and Debian 13 (kernel 6.12) VM lab hosts (the 6.18 test
    kernel has no kprobe PMU and is locked down).
  - The C(lsm) hook needs a kernel built with C(CONFIG_BPF_LSM) and C(bpf) in its active LSM list
    (C(/sys/kernel/security/lsm)); add it with the C(lsm=) boot parameter when it is missing.
seealso:
  - module: ebpf.deploy.bpf_program
  - module: ebpf.deploy.xdp_attach
  - ref: ansible_collections.ebpf.deploy.docsite.getting_started
    description: Getting started with ebpf.deploy on your own hosts.
  - ref: ansible_collections.ebpf.deploy.docsite.troubleshooting
    description: What the errors mean (verifier rejections, EPERM, missing BTF, XDP modes) and what to do.
  - name: BPF documentation (Linux kernel)
    description: The kernel's own documentation of BPF - program types, maps, helpers, the verifier.
    link: https://docs.kernel.org/bpf/
"""

EXAMPLES = r"""
---
- name: Count ingress packets of eth0 with tcx (hook from the section)
  ebpf.deploy.bpf_attach:
    deployment: pktcount
    program: tcx_count
    section: tcx/ingress
    interface: eth0

- name: Run the policy before the counter on the same interface
  ebpf.deploy.bpf_attach:
    deployment: policy
    program: tcx_policy
    hook: tcx_ingress
    interface: eth0
    before: pktcount

- name: Count the egress packets of one service's cgroup
  ebpf.deploy.bpf_attach:
    deployment: svc-egress
    program: cg_egress_count
    hook: cgroup_skb_egress
    cgroup: system.slice/nginx.service

- name: Count getpid calls (tracepoint from the section)
  ebpf.deploy.bpf_attach:
    deployment: tracing
    program: tp_getpid
    section: tracepoint/syscalls/sys_enter_getpid

- name: Count getpid calls with a kprobe, and calls of libc's getpid() with a uprobe
  ebpf.deploy.bpf_attach:
    deployment: probes
    program: "{{ item.program }}"
    section: "{{ item.section }}"
  loop:
    - {program: kp_getpid, section: kprobe/__x64_sys_getpid}
    - {program: up_getpid, section: "uprobe//usr/lib/x86_64-linux-gnu/libc.so.6:getpid"}

- name: Count file opens with an LSM program (the target comes from the section it was loaded for)
  ebpf.deploy.bpf_attach:
    deployment: opens
    program: lsm_open
    section: lsm/file_open

- name: Run the policy program in place of the function policy() of the running program app/main
  ebpf.deploy.bpf_attach:
    deployment: app-policy
    program: policy
    section: freplace/policy
    target: /sys/fs/bpf/ebpf_deploy/app/current/progs/main:policy

- name: Count packets at IPv4 local_in in namespace blue
  ebpf.deploy.bpf_attach:
    deployment: nfcount
    program: nf_count
    hook: netfilter
    pf: ipv4
    hooknum: local_in
    priority: -100
    netns: blue

- name: Detach
  ebpf.deploy.bpf_attach:
    deployment: pktcount
    hook: tcx_ingress
    interface: eth0
    state: absent
"""

RETURN = r"""
hook:
  description: The hook the program is attached to.
  returned: always
  type: str
  sample: tcx_ingress
target:
  description:
    - The target as resolved (interface and ifindex, cgroup and its id, tracepoint, netfilter hook; a tc
      filter's priority and handle).
    - On a failed system call, a string - what the call was for (an interface, a cgroup, a link).
  returned: always (a string on failure)
  type: dict
  sample: {interface: eth0, ifindex: 2, netns: null, direction: ingress}
prog_id:
  description: The program id attached after the run (in check mode, the one that would be); V(null) after O(state=absent).
  returned: always
  type: int
  sample: 412
previous_prog_id:
  description: The program id our link ran before the run (V(null) when there was none).
  returned: always
  type: int
  sample: 398
link_pin:
  description: Where the link is pinned (V(null) after O(state=absent), and for V(tc_ingress)/V(tc_egress), which have no link).
  returned: always
  type: str
  sample: /sys/fs/bpf/ebpf_deploy/pktcount/links/eth0:tcx_ingress
link_id:
  description: The bpf_link id (V(null) in check mode before the first attach, and after O(state=absent)).
  returned: always
  type: int
  sample: 17
action:
  description:
    - What the run did - V(none), V(attach), V(update) (atomic program swap), V(overlap) (new link first,
      then the old one detached), V(move) (a tcx program detached and attached again in the wanted
      place; the kernel holds a program once per hook), V(detach_attach) (netfilter upgrade, old
      detached, then new attached), V(reattach) (a defunct pin replaced), V(detach),
      V(unpin).
  returned: always
  type: str
  sample: update
chain:
  description: Program ids on the hook in run order, where the kernel lists them (tcx, cgroup), else V(null).
  returned: always
  type: list
  elements: int
  sample: [398, 412]
drift:
  description: How our link differed from what the last run left, when it did.
  returned: when the link was changed by hand since the last run
  type: str
  sample: the link pinned at /sys/fs/bpf/ebpf_deploy/pktcount/links/eth0:tcx_ingress was detached by hand
diff:
  description: The attachment before and after the run.
  returned: always
  type: dict
  sample:
    before: {interface: eth0, hook: tcx_ingress, prog_id: 398, prog_name: tcx_count, link_state: live,
             link_pin: /sys/fs/bpf/ebpf_deploy/pktcount/links/eth0:tcx_ingress}
    after: {interface: eth0, hook: tcx_ingress, prog_id: 412, prog_name: tcx_count, link_state: live,
            link_pin: /sys/fs/bpf/ebpf_deploy/pktcount/links/eth0:tcx_ingress}
syscall:
  description: When a system call or libbpf/netlink call failed, its name.
  returned: failure
  type: str
  sample: BPF_LINK_CREATE
errno:
  description: When a call failed, its errno.
  returned: failure
  type: int
  sample: 1
errno_name:
  description: When a call failed, the symbolic name of RV(errno).
  returned: failure
  type: str
  sample: EPERM
requires:
  description: When the host lacks a feature the request needs, what it needs (also named in C(msg)).
  returned: failure
  type: str
  sample: kernel >= 6.6
"""

from ansible.module_utils.basic import AnsibleModule

# first of ours: it serves the module_utils below from the host's bytecode cache
from ansible_collections.ebpf.deploy.plugins.module_utils import _bytecode  # noqa: F401 pylint: disable=unused-import
from ansible_collections.ebpf.deploy.plugins.module_utils._attach import AttachManager, Request
from ansible_collections.ebpf.deploy.plugins.module_utils._options import HOOK_ATTACHMENT, LOCK, PINS, XDP_MODE, compose
from ansible_collections.ebpf.deploy.plugins.module_utils._module_run import exit_with

ARGUMENT_SPEC = compose(
    PINS, LOCK, HOOK_ATTACHMENT, XDP_MODE,
    section=dict(type="str"),
    deployment=dict(type="str"),
    program=dict(type="str"),
    pin=dict(type="path"),
    state=dict(type="str", choices=["present", "absent"], default="present"),
)


def main() -> None:
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        required_if=[("state", "present", ("pin", "program"), True)],
        required_by={"program": "deployment"},
        mutually_exclusive=[("pin", "program"), ("before", "after")],
        supports_check_mode=True,
    )
    exit_with(module, lambda: AttachManager(Request.from_params(module.params), check_mode=module.check_mode,
                                            diff_mode=module._diff).run())


if __name__ == "__main__":
    main()
