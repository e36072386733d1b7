# -*- coding: utf-8 -*-
# Copyright: contributors to ebpf.deploy
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Documents the option groups XDP_ATTACHMENT (xdp_attach's interface, netns, force) and XDP_MODE
(XDP_MODE: mode and method, of xdp_attach and bpf_attach) of plugins/module_utils/_options.py
(bpf_deployment's attach items are documented by hook_attachment's DEPLOYMENT part).
"""
from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  interface:
    description: Name of the network interface.
    type: str
    required: true
  netns:
    description:
      - A named network namespace (C(/run/netns/<name>)) that holds O(interface).
      - Omit for the namespace the module runs in.
    type: str
  force:
    description:
      - Take over (or with O(state=absent), detach) an interface that holds a program this
        collection did not attach. The takeover is atomic except when a netlink-attached program
        must make way for a bpf_link.
    type: bool
    default: false
"""

    XDP_MODE = r"""
options:
  mode:
    description:
      - With M(ebpf.deploy.bpf_attach), for O(ebpf.deploy.bpf_attach#module:hook=xdp) only; refused on the other hooks.
      - V(native) runs in the driver, V(generic) in the network stack (works on every interface),
        V(offload) on a NIC that supports it.
      - Omitted, the kernel picks native where the driver has it and generic otherwise, and an
        attached program is kept in whichever mode it runs.
    type: str
    choices: [native, generic, offload]
  method:
    description:
      - With M(ebpf.deploy.bpf_attach), for the V(xdp) hook only (V(netlink) is refused on the other hooks).
      - V(link) attaches with a C(bpf_link) pinned at
        O(bpffs_root)C(/<deployment>/links/<interface>.xdp) (C(<netns>@<interface>.xdp) in a netns);
        an upgrade swaps its program with C(bpf_link_update), which is atomic.
      - V(netlink) sets the program on the interface through rtnetlink (C(IFLA_XDP)). An interface
        held by a bpf_link is refused with V(netlink).
    type: str
    choices: [link, netlink]
    default: link
"""
