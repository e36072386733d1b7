# -*- coding: utf-8 -*-
# Copyright: contributors to ebpf.deploy
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Documents the option group HOOK_ATTACHMENT of plugins/module_utils/_options.py: as the options
of bpf_attach, and (DEPLOYMENT) as the sub-options of bpf_deployment's attach (HOOK_ATTACHMENT
with XDP_MODE and the program).

ansible-core merges fragments into a module's top-level options only, so the sub-options are
written out a second time here, beside the first, short and pointing at bpf_attach for the detail.
"""
from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  hook:
    description:
      - The attach hook. Omitted, it is read from the program's ELF section (O(section)).
      - V(xdp), V(tcx_ingress), V(tcx_egress), V(tc_ingress) and V(tc_egress) need O(interface); the
        V(cgroup_*) hooks need O(cgroup);
        V(tracepoint) and V(raw_tracepoint) need O(target) (or a section that names it);
        V(netfilter) needs O(pf), O(hooknum) and O(priority).
      - V(xdp) runs what M(ebpf.deploy.xdp_attach) runs (O(mode), O(method)); its results are xdp_attach's
        (interface, mode, method, link pin) with RV(hook).
      - V(tc_ingress)/V(tc_egress) (kernel >= 4.5, for kernels without tcx) attach a C(bpf) filter in
        direct-action mode under the interface's C(clsact) qdisc, at O(priority) and handle 1. There is
        no link to pin (the program stays pinned under its deployment). The qdisc is created when absent;
        an upgrade replaces the filter in place on the same priority and handle (C(NLM_F_REPLACE)), atomic
        for the packet path (each packet meets the old program or the new one); O(state=absent) removes
        our filter, and the qdisc only when this collection created it and no other filter is on it.
        A filter of another tool or deployment at our priority is refused without O(force).
    type: str
    choices: [tcx_ingress, tcx_egress, tc_ingress, tc_egress, cgroup_skb_ingress, cgroup_skb_egress,
              cgroup_sock_create, cgroup_sock_release, cgroup_post_bind4, cgroup_post_bind6, cgroup_sock_ops,
              cgroup_device, cgroup_bind4, cgroup_bind6, cgroup_connect4, cgroup_connect6, cgroup_sendmsg4,
              cgroup_sendmsg6, cgroup_recvmsg4, cgroup_recvmsg6, cgroup_getpeername4, cgroup_getpeername6,
              cgroup_getsockname4, cgroup_getsockname6, cgroup_connect_unix, cgroup_sendmsg_unix,
              cgroup_recvmsg_unix, cgroup_getpeername_unix, cgroup_getsockname_unix, cgroup_sysctl,
              cgroup_getsockopt, cgroup_setsockopt, tracepoint, raw_tracepoint, kprobe, kretprobe, uprobe,
              uretprobe, fentry, fexit, lsm, freplace, netfilter, xdp]
  target:
    description:
      - V(tracepoint) C(category/name) (e.g. C(syscalls/sys_enter_getpid)) or a V(raw_tracepoint)
        name (e.g. C(sys_enter)).
      - V(kprobe)/V(kretprobe) the kernel function, C(function) or C(function+offset)
        (e.g. C(__x64_sys_getpid)), looked up in C(/proc/kallsyms).
      - V(uprobe)/V(uretprobe) C(/absolute/binary:symbol) (C(+offset) allowed), the symbol from the
        binary's C(.symtab) or C(.dynsym) (e.g. C(/usr/lib/x86_64-linux-gnu/libc.so.6:getpid)).
      - V(fentry)/V(fexit) the kernel function and V(lsm) the LSM hook (e.g. C(file_open)) the program
        was loaded for; it must agree with O(section).
      - V(freplace) C(/pin/of/the/program:function), the bpffs pin of the loaded program whose global
        function the C(ext) program replaces and that function (e.g.
        C(/sys/fs/bpf/ebpf_deploy/app/current/progs/main:policy)); the program at the pin must have
        BTF with that function, and the function must agree with O(section) (C(freplace/<function>)).
        The C(ext) program is loaded for it with M(ebpf.deploy.bpf_program)'s
        O(ebpf.deploy.bpf_program#module:attach_program). Required (the section names the function only).
      - Omitted, the section's target.
    type: str
  interface:
    description: The network interface of an xdp, tcx or tc hook.
    type: str
  netns:
    description:
      - A named network namespace (C(/run/netns/<name>)) that holds O(interface), or where a netfilter
        hook is attached. Omit for the namespace the module runs in.
    type: str
  cgroup:
    description:
      - A cgroup v2 directory, absolute, or relative to the first cgroup2 mount (V(/sys/fs/cgroup), or
        V(/sys/fs/cgroup/unified) on a hybrid host).
    type: str
  pf:
    description: The protocol family of a netfilter hook.
    type: str
    choices: [ipv4, ipv6]
  hooknum:
    description: The netfilter hook.
    type: str
    choices: [prerouting, local_in, forward, local_out, postrouting]
  priority:
    description:
      - The netfilter priority (lower runs first; the kernel refuses the extreme values).
      - The priority of the tc filter of V(tc_ingress)/V(tc_egress), 1 to 65535 (lower runs first).
        Omitted, V(1). Refused on the other hooks.
    type: int
  before:
    description:
      - tcx only. Run before this program - a program id, C(<deployment>/<program>) (its current
        version), or C(<deployment>) (the program its link on the same interface and direction runs).
      - Mutually exclusive with O(after).
    type: str
  after:
    description: tcx only. Run after this program (forms as for O(before)).
    type: str
  force:
    description: Replace (or with O(state=absent), detach) a program this collection did not deploy on our link pin.
    type: bool
    default: false
"""

    DEPLOYMENT = r"""
options:
  attach:
    description:
      - The attachments of the deployment, each a program of this deployment on one hook and target.
      - The hook is O(attach[].hook), or what the program's ELF section names, exactly as
        M(ebpf.deploy.bpf_attach) decides it (C(SEC("tcx/ingress")) is V(tcx_ingress),
        C(SEC("tracepoint/syscalls/sys_enter_getpid")) names the tracepoint too). An item with
        O(attach[].interface) whose section names no hook is an XDP item.
      - XDP items are made as M(ebpf.deploy.xdp_attach) makes them; the other hooks as
        M(ebpf.deploy.bpf_attach) does, with a C(bpf_link) pinned under
        O(bpffs_root)/O(name)C(/links/<target>:<hook>), swapped atomically on an upgrade where the hook
        can (xdp, tcx, cgroup) and otherwise attached new first (C(action=overlap), tracepoints) or
        detached then attached (netfilter).
      - Targets that are not listed are left alone.
    type: list
    elements: dict
    default: []
    suboptions:
      program:
        description: The program of the deployment to attach.
        type: str
        required: true
      hook:
        description:
          - The hook, as O(ebpf.deploy.bpf_attach#module:hook) names it. Omitted, the program's section
            tells it (an item with O(attach[].interface) and no hook in its section is XDP).
          - Every hook of M(ebpf.deploy.bpf_attach) but V(freplace) (bpf_deployment refuses C(freplace) programs,
            whose target is another deployment's program; load them with M(ebpf.deploy.bpf_program) and attach
            them with M(ebpf.deploy.bpf_attach)).
          - A program whose type the hook does not take is refused before anything loads.
        type: str
        choices: [cgroup_bind4, cgroup_bind6, cgroup_connect4, cgroup_connect6, cgroup_connect_unix, cgroup_device,
                  cgroup_getpeername4, cgroup_getpeername6, cgroup_getpeername_unix, cgroup_getsockname4,
                  cgroup_getsockname6, cgroup_getsockname_unix, cgroup_getsockopt, cgroup_post_bind4,
                  cgroup_post_bind6, cgroup_recvmsg4, cgroup_recvmsg6, cgroup_recvmsg_unix, cgroup_sendmsg4,
                  cgroup_sendmsg6, cgroup_sendmsg_unix, cgroup_setsockopt, cgroup_skb_egress, cgroup_skb_ingress,
                  cgroup_sock_create, cgroup_sock_ops, cgroup_sock_release, cgroup_sysctl, fentry, fexit, kprobe,
                  kretprobe, lsm, netfilter, raw_tracepoint, tc_egress, tc_ingress, tcx_egress, tcx_ingress,
                  tracepoint, uprobe, uretprobe, xdp]
      interface:
        description: The network interface of an XDP or tcx item.
        type: str
      netns:
        description: The named network namespace of O(attach[].interface) (or of a netfilter hook); omitted, the module's own.
        type: str
      target:
        description: The hook's target as for M(ebpf.deploy.bpf_attach)'s O(ebpf.deploy.bpf_attach#module:target); omitted, the section's.
        type: str
      cgroup:
        description: A cgroup v2 directory of a C(cgroup_*) hook (absolute, or relative to the cgroup2 mount).
        type: str
      pf:
        description: The protocol family of a netfilter hook.
        type: str
        choices: [ipv4, ipv6]
      hooknum:
        description: The netfilter hook.
        type: str
        choices: [forward, local_in, local_out, postrouting, prerouting]
      priority:
        description: The netfilter priority, or the tc filter's (V(tc_ingress)/V(tc_egress), default V(1)).
        type: int
      before:
        description: tcx only. Run before this program (as O(ebpf.deploy.bpf_attach#module:before)).
        type: str
      after:
        description: tcx only. Run after this program (as O(ebpf.deploy.bpf_attach#module:after)).
        type: str
      mode:
        description:
          - XDP only. The XDP mode, as O(ebpf.deploy.xdp_attach#module:mode) describes. Omitted, the kernel
            picks native where the driver has it and generic otherwise.
        type: str
        choices: [native, generic, offload]
      method:
        description:
          - XDP only. V(link) attaches with a C(bpf_link) pinned under O(bpffs_root)/O(name)C(/links/),
            updated atomically on an upgrade.
          - V(netlink) sets the program on the interface through rtnetlink (C(IFLA_XDP)).
        type: str
        choices: [link, netlink]
        default: link
      force:
        description:
          - Take over a target that holds a program this deployment did not attach (another tool's or
            another deployment's).
        type: bool
        default: false
"""
