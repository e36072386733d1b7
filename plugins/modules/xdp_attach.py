#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to ebpf.deploy
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
---
module: xdp_attach
short_description: Attach an XDP program to a network interface, atomically and idempotently
version_added: 0.1.0
description:
  - Attaches the current version of a program deployed with M(ebpf.deploy.bpf_program), or any
    pinned XDP program, to an interface in the root network namespace or in a named one.
  - With O(method=link) (the default) the attachment is a C(bpf_link) pinned in the bpffs, so it
    outlives the run; an upgrade swaps the program with C(bpf_link_update), which is atomic.
  - With O(method=netlink) the program is set through rtnetlink (C(IFLA_XDP)) with the mode flag;
    a replacement uses C(XDP_FLAGS_REPLACE) with the expected old program, so a concurrent change is
    detected and reported instead of overwritten.
  - Replacing a program never leaves the interface without one. Only a change of O(mode), or moving
    a netlink-attached program to a link, needs a detach first; the module warns when it does that.
  - The kernel is the source of truth. A program detached or replaced by hand since the last run is
    reported as RV(drift) and in the diff, and repaired.
  - A program this collection did not attach (neither our link's program nor a program pinned under
    O(bpffs_root)) is never replaced unless O(force=true).
  - Runs are serialized per deployment (or per interface when only O(pin) is given) with a lock.
author:
  - ebpf.deploy maintainers (@ebpf-deploy)
requirements:
  - Linux with BTF and bpf_link support for XDP (5.9 or later)
  - libbpf 1.x (C(libbpf.so.1)) on the managed host
  - pyroute2 on the managed host
  - root, or CAP_BPF + CAP_NET_ADMIN
extends_documentation_fragment:
  - ebpf.deploy.attributes
  - ebpf.deploy.attributes.no_action_plugin
  - ebpf.deploy.xdp_attachment
  - ebpf.deploy.xdp_attachment.xdp_mode
  - ebpf.deploy.pins
  - ebpf.deploy.lock
attributes:
  check_mode:
    details:
      - Reads the interface and the bpffs and reports what would change; changes nothing.
  diff_mode:
    details:
      - The attachment before and after (program id and name, mode, method, link pin).
  idempotent:
    details:
      - The wanted program already attached in the wanted mode by the wanted method is C(changed=false).
options:
  deployment:
    description:
      - The M(ebpf.deploy.bpf_program) deployment whose current version is attached.
      - With O(pin), only names where the link is pinned.
    type: str
  program:
    description: The program within O(deployment). Required with O(deployment) when O(state=present).
    type: str
  pin:
    description:
      - Any pinned XDP program, instead of O(deployment) + O(program).
      - Its link is pinned under O(bpffs_root)C(/links/) unless O(deployment) is given too.
    type: path
  state:
    description:
      - V(present) attaches the program; V(absent) detaches what this collection attached there.
      - With V(absent), a program this collection did not attach is left in place with a warning
        unless O(force=true).
    type: str
    choices: [present, absent]
    default: present
notes:
  - A program in O(mode=native) on a veth needs nothing from the peer for packets it receives.
  - Detaching with O(state=absent) removes the link pin; an interface that is deleted takes its
    attachment with it, and the next run reports the defunct link pin as drift and repairs it.
seealso:
  - module: ebpf.deploy.bpf_program
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
- name: Attach the packet counter's current version to eth0 with a pinned bpf_link
  ebpf.deploy.xdp_attach:
    interface: eth0
    deployment: pktcount
    program: xdp_packet_counter

- name: Attach in generic mode inside the namespace "blue" through netlink
  ebpf.deploy.xdp_attach:
    interface: veth0
    netns: blue
    deployment: pktcount
    program: xdp_packet_counter
    mode: generic
    method: netlink

- name: Take over an interface that holds a program attached by hand
  ebpf.deploy.xdp_attach:
    interface: eth1
    pin: /sys/fs/bpf/my_filter
    deployment: filters
    force: true

- name: Detach
  ebpf.deploy.xdp_attach:
    interface: eth0
    deployment: pktcount
    state: absent
"""

RETURN = r"""
interface:
  description: The interface name.
  returned: always
  type: str
  sample: eth0
ifindex:
  description: The interface index in its namespace.
  returned: always
  type: int
  sample: 2
netns:
  description: The network namespace, V(null) for the one the module ran in.
  returned: always
  type: str
  sample: blue
prog_id:
  description: The program id attached after the run (in check mode, the one that would be).
  returned: always
  type: int
  sample: 412
previous_prog_id:
  description: The program id attached before the run (V(null) when none was).
  returned: always
  type: int
  sample: 398
mode:
  description: The mode the program runs in (V(native), V(generic) or V(offload)).
  returned: always
  type: str
  sample: native
method:
  description: How the program is attached (V(link) or V(netlink)).
  returned: always
  type: str
  sample: link
link_pin:
  description: Where the bpf_link is pinned with O(method=link), else V(null).
  returned: always
  type: str
  sample: /sys/fs/bpf/ebpf_deploy/pktcount/links/eth0.xdp
link_id:
  description: The bpf_link id with O(method=link), else V(null).
  returned: always
  type: int
  sample: 17
action:
  description: What the run did (V(none), V(attach), V(replace), V(repin), V(reattach), V(detach), V(unpin)).
  returned: always
  type: str
  sample: replace
drift:
  description: How the interface differed from what the last run left, when it did.
  returned: when the attachment was changed by hand since the last run
  type: str
  sample: program id 398 was detached by hand (attached native)
diff:
  description: The attachment before and after the run.
  returned: always
  type: dict
  sample:
    before: {interface: eth0, netns: null, prog_id: 398, prog_name: xdp_packet_counter, mode: native, method: link,
             link_pin: /sys/fs/bpf/ebpf_deploy/pktcount/links/eth0.xdp}
    after: {interface: eth0, netns: null, prog_id: 412, prog_name: xdp_packet_counter, mode: native, method: link,
            link_pin: /sys/fs/bpf/ebpf_deploy/pktcount/links/eth0.xdp}
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
from ansible_collections.ebpf.deploy.plugins.module_utils._module_run import exit_with
from ansible_collections.ebpf.deploy.plugins.module_utils._netlink import HAS_PYROUTE2, PYROUTE2_IMPORT_ERROR
from ansible_collections.ebpf.deploy.plugins.module_utils._options import LOCK, PINS, XDP_ATTACHMENT, compose
from ansible_collections.ebpf.deploy.plugins.module_utils._xdp import XdpManager, Request

ARGUMENT_SPEC = compose(
    XDP_ATTACHMENT, PINS, LOCK,
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
        mutually_exclusive=[("pin", "program")],
        supports_check_mode=True,
    )
    if not HAS_PYROUTE2:
        module.fail_json(msg=f"pyroute2 is required on the managed host: {PYROUTE2_IMPORT_ERROR}")
    # the manager bpf_attach runs for hook xdp (_attach.xdp_manager)
    exit_with(module, lambda: XdpManager(Request.from_params(module.params), check_mode=module.check_mode,
                                         diff_mode=module._diff).run())


if __name__ == "__main__":
    main()
