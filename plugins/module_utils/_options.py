# -*- coding: utf-8 -*-
# Copyright: contributors to ebpf.deploy
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private to ebpf.deploy: every option that more than one module takes, declared once.

Each group below is the argument spec of one concept, with its types, choices and defaults; the
modules build their ``ARGUMENT_SPEC`` from the groups with ``compose()`` and add only the options
that are theirs alone (``state``, ``create``, bpf_attach's ``section``, ...). Each group is
documented by the doc fragment of the same name in ``plugins/doc_fragments/`` (the sub-options of
bpf_deployment's ``attach`` and ``maps`` by the ``DEPLOYMENT`` part of ``hook_attachment`` and
``map_entries``), and ``make sanity`` (validate-modules) holds every module's docs to its spec.

    group            modules                                  doc fragment
    PINS             every module                             ebpf.deploy.pins
    LOCK             bpf_program, bpf_deployment, xdp_attach, ebpf.deploy.lock
                     bpf_map, bpf_attach
    RECORD           bpf_deployment, bpf_facts                ebpf.deploy.record
    OBJECT           bpf_program, bpf_deployment, bpf_preflight  ebpf.deploy.object
    PROGRAM          bpf_program, bpf_deployment              ebpf.deploy.program
    FREPLACE         bpf_program                              ebpf.deploy.program.freplace
    XDP_ATTACHMENT   xdp_attach                               ebpf.deploy.xdp_attachment (+ .xdp_mode)
    XDP_MODE         xdp_attach, bpf_attach; bpf_deployment's ebpf.deploy.xdp_attachment.xdp_mode
                     attach[]
    HOOK_ATTACHMENT  bpf_attach; bpf_deployment's attach[]    ebpf.deploy.hook_attachment
    MAP_ENTRIES      bpf_map; bpf_deployment's maps[]         ebpf.deploy.map_entries

Every module imports this file, so it imports nothing of the collection: the choices are written
out here (tests/unit/plugins/module_utils/test_options.py holds them equal to the constants the
managers validate with), and a module's payload stays what it was.
"""
from __future__ import annotations

import copy
from typing import Dict, Tuple

Spec = Dict[str, dict]

# the encodings of keys and values (what _codec.TYPE_NAMES can write)
VALUE_TYPES = ["u8", "u16", "u32", "u64", "s8", "s16", "s32", "s64", "be16", "be32", "be64",
               "ipv4", "ipv6", "mac", "hex", "btf"]

PINS: Spec = dict(
    bpffs_root=dict(type="path", default="/sys/fs/bpf/ebpf_deploy"),
)

LOCK: Spec = dict(
    lock_timeout=dict(type="float", default=60),
)

RECORD: Spec = dict(
    state_dir=dict(type="path", default="/var/lib/ebpf_deploy"),
)

# where the object comes from; the action plugin reads src on the controller and fills content
OBJECT: Spec = dict(
    src=dict(type="path"),
    remote_src=dict(type="bool", default=False),
    content=dict(type="str", no_log=True),
    checksum=dict(type="str"),
    # an OpenSSH signature (ssh-keygen -Y sign); the action plugin reads the files on the controller
    # and sends their texts as signature_content / allowed_signers_content
    signature=dict(type="path"),
    allowed_signers=dict(type="path"),
    signature_namespace=dict(type="str", default="ebpf.deploy"),
    signature_content=dict(type="str"),
    allowed_signers_content=dict(type="str"),
)

# what is loaded and how its versions are kept
PROGRAM: Spec = dict(
    name=dict(type="str", required=True),
    programs=dict(type="list", elements="str"),
    program_type=dict(type="str"),
    keep_versions=dict(type="int", default=1),
    map_conflict=dict(type="str", choices=["fail", "recreate"], default="fail"),
    verifier_log_level=dict(type="int", choices=[0, 1, 2], default=0),
    version=dict(type="str"),
    # load-time globals by name, typed through the object's BTF (checked by the program manager)
    globals=dict(type="dict"),
)

# freplace (EXT) programs: the loaded program whose global function they replace (bpf_program only:
# bpf_deployment refuses freplace programs)
FREPLACE: Spec = dict(
    attach_program=dict(type="path"),
)

# the network target of a hook: an interface, in a named network namespace
NET_TARGET: Spec = dict(
    interface=dict(type="str"),
    netns=dict(type="str"),
)

FORCE: Spec = dict(
    force=dict(type="bool", default=False),
)

# how an XDP program is put on its interface (refused on other hooks: _hooks.check_options_apply)
XDP_MODE: Spec = dict(
    mode=dict(type="str", choices=["native", "generic", "offload"]),
    method=dict(type="str", choices=["link", "netlink"], default="link"),
)

# one XDP program on one interface
XDP_ATTACHMENT: Spec = dict(
    interface=dict(NET_TARGET["interface"], required=True),
    netns=NET_TARGET["netns"],
    **XDP_MODE,
    **FORCE,
)

# every hook (_hooks.HOOKS), and the netfilter families and hooks (_uapi.NF_PFS, NF_HOOKS)
HOOK_NAMES = [
    "cgroup_bind4", "cgroup_bind6", "cgroup_connect4", "cgroup_connect6", "cgroup_connect_unix", "cgroup_device",
    "cgroup_getpeername4", "cgroup_getpeername6", "cgroup_getpeername_unix", "cgroup_getsockname4",
    "cgroup_getsockname6", "cgroup_getsockname_unix", "cgroup_getsockopt", "cgroup_post_bind4", "cgroup_post_bind6",
    "cgroup_recvmsg4", "cgroup_recvmsg6", "cgroup_recvmsg_unix", "cgroup_sendmsg4", "cgroup_sendmsg6",
    "cgroup_sendmsg_unix", "cgroup_setsockopt", "cgroup_skb_egress", "cgroup_skb_ingress", "cgroup_sock_create",
    "cgroup_sock_ops", "cgroup_sock_release", "cgroup_sysctl", "fentry", "fexit", "freplace", "kprobe", "kretprobe",
    "lsm", "netfilter", "raw_tracepoint", "tc_egress", "tc_ingress", "tcx_egress", "tcx_ingress", "tracepoint",
    "uprobe", "uretprobe", "xdp",
]
NF_PF_NAMES = ["ipv4", "ipv6"]
NF_HOOK_NAMES = ["forward", "local_in", "local_out", "postrouting", "prerouting"]

# one program on one hook and its target (bpf_attach; a bpf_deployment attach[] item)
HOOK_ATTACHMENT: Spec = dict(
    hook=dict(type="str", choices=HOOK_NAMES),
    target=dict(type="str"),
    **NET_TARGET,
    cgroup=dict(type="str"),
    pf=dict(type="str", choices=NF_PF_NAMES),
    hooknum=dict(type="str", choices=NF_HOOK_NAMES),
    # netfilter's priority (required there), and a tc filter's (default _hook_tc.DEFAULT_PRIORITY)
    priority=dict(type="int"),
    before=dict(type="str"),
    after=dict(type="str"),
    **FORCE,
)

# how a map's entries are written
MAP_ENTRIES: Spec = dict(
    key_type=dict(type="str", choices=VALUE_TYPES),
    value_type=dict(type="str", choices=VALUE_TYPES),
    purge=dict(type="bool", default=False),
    overwrite=dict(type="bool", default=True),
    value_deployment=dict(type="str"),
)

# bpf_map: omitted, the map is only read; each entry is checked to have a key and a value
MAP_ENTRY_LIST: Spec = dict(
    entries=dict(type="list", elements="dict", options=dict(
        key=dict(type="raw", required=True, no_log=False),   # a map key, not a secret
        value=dict(type="raw", required=True),
    )),
)


def compose(*groups: Spec, **own: dict) -> Spec:
    """One argument spec from ``groups`` and a module's ``own`` options (deep copies, so that no
    spec shares a dict with another). An option declared twice is a mistake and refused."""
    spec: Spec = {}
    for group in groups + (own,):
        twice = sorted(set(spec) & set(group))
        if twice:
            raise ValueError(f"option(s) declared twice: {', '.join(twice)}")
        spec.update(copy.deepcopy(group))
    return spec


def require(group: Spec, *required: str) -> Spec:
    """A copy of ``group`` in which the options ``required`` must be given."""
    spec = copy.deepcopy(group)
    for name in required:
        spec[name]["required"] = True
    return spec


def names(*groups: Spec) -> Tuple[str, ...]:
    """The option names of ``groups``, in order."""
    return tuple(name for group in groups for name in group)


# bpf_deployment's attach[] and maps[]: an attachment or a map's entries of this deployment
# (an item whose hook is xdp, named or from its program's section, takes the XDP mode too)
DEPLOYMENT_ATTACH: Spec = compose(HOOK_ATTACHMENT, XDP_MODE, program=dict(type="str", required=True))
# every hook but freplace: bpf_deployment does not load freplace programs (their target is another deployment's)
DEPLOYMENT_ATTACH["hook"]["choices"] = [name for name in HOOK_NAMES if name != "freplace"]
DEPLOYMENT_MAP: Spec = compose(
    MAP_ENTRIES,
    map=dict(type="str", required=True),
    entries=dict(type="list", elements="dict", default=[]),   # checked by the map manager
)
