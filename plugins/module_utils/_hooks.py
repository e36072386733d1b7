# -*- coding: utf-8 -*-
# Copyright: contributors to ebpf.deploy
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private to ebpf.deploy: every attach hook the collection names, declared once (pure).

One row per hook says which family of code attaches it (``tcx``, ``cgroup``, ``tracing``,
``netfilter``, ``xdp``, ``tc``), the kernel attach type, the program types it accepts, what its
target is (an interface, a cgroup, a tracepoint, a function, ...), whether its bpf_link can swap a
program atomically (``BPF_LINK_UPDATE``) and the kernel (and libbpf) it needs. Every message that
says "requires kernel >= X" reads it from here.

``parse_section()`` turns a program's ELF section as libbpf spells it (``SEC("tcx/ingress")``,
``SEC("tracepoint/syscalls/sys_enter_getpid")``, ``SEC("cgroup_skb/egress")``) into the hook and
the target it names, so a program whose section is written right needs no ``hook`` option.

No Ansible and no kernel here: unit-tested as is.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Tuple

from ansible_collections.ebpf.deploy.plugins.module_utils._errors import InvalidInput
from ansible_collections.ebpf.deploy.plugins.module_utils._uapi import ATTACH_TYPES, PROG_TYPE_NAMES, PROG_TYPES
# bpf_attach takes its pf/hooknum choices from here, with the hooks
from ansible_collections.ebpf.deploy.plugins.module_utils._uapi import NF_HOOKS, NF_PFS  # noqa: F401 pylint: disable=unused-import

# Program and attach types by their uapi name (enum bpf_prog_type, enum bpf_attach_type)
PT, AT = PROG_TYPES, ATTACH_TYPES

# program_function: a global function of a loaded program (freplace), /pin/of/the/program:function
TARGET_KINDS = ("interface", "cgroup", "tracepoint", "function", "uprobe", "lsm_hook", "netfilter",
                "program_function")


@dataclass(frozen=True)
class Hook:
    """One attach hook: how it is attached, what it takes, what it needs."""

    name: str
    family: str                      # the _hook_<family>.py that attaches it
    # enum bpf_attach_type (None: attached through perf_event/raw_tp, or freplace: BPF_LINK_CREATE with 0)
    attach_type: Optional[int]
    prog_types: Tuple[int, ...]      # program types the kernel accepts here
    target: str                      # one of TARGET_KINDS
    kernel: str                      # the first kernel with a bpf_link for this hook
    updatable: bool                  # BPF_LINK_UPDATE swaps the program atomically
    libbpf: str = "1.0"              # the libbpf whose bpf_program__attach_* knows it (for messages)
    note: str = ""
    overlap: bool = True             # two links may hold the target at once (netfilter: one per priority)

    @property
    def requires(self) -> str:
        return f"kernel >= {self.kernel}"


def _cgroup(name: str, attach: str, prog_type: int, kernel: str = "5.7") -> Hook:
    return Hook(name, "cgroup", AT[attach], (prog_type,), "cgroup", kernel, True)


HOOKS: Dict[str, Hook] = {hook.name: hook for hook in (
    Hook("xdp", "xdp", AT["xdp"], (PT["xdp"],), "interface", "5.9", True,
         note="attached by _xdp.XdpManager (modes, link or netlink method), as xdp_attach does"),
    Hook("tcx_ingress", "tcx", AT["tcx_ingress"], (PT["sched_cls"],), "interface", "6.6", True, libbpf="1.3"),
    Hook("tcx_egress", "tcx", AT["tcx_egress"], (PT["sched_cls"],), "interface", "6.6", True, libbpf="1.3"),
    # clsact (4.5) + a cls_bpf filter in direct-action mode: no bpf_link; replaced in place (NLM_F_REPLACE)
    Hook("tc_ingress", "tc", None, (PT["sched_cls"],), "interface", "4.5", False,
         note="a bpf filter under the clsact qdisc, swapped in place on the same priority and handle"),
    Hook("tc_egress", "tc", None, (PT["sched_cls"],), "interface", "4.5", False,
         note="a bpf filter under the clsact qdisc, swapped in place on the same priority and handle"),
    _cgroup("cgroup_skb_ingress", "cgroup_inet_ingress", PT["cgroup_skb"]),
    _cgroup("cgroup_skb_egress", "cgroup_inet_egress", PT["cgroup_skb"]),
    _cgroup("cgroup_sock_create", "cgroup_inet_sock_create", PT["cgroup_sock"]),
    _cgroup("cgroup_sock_release", "cgroup_inet_sock_release", PT["cgroup_sock"]),
    _cgroup("cgroup_post_bind4", "cgroup_inet4_post_bind", PT["cgroup_sock"]),
    _cgroup("cgroup_post_bind6", "cgroup_inet6_post_bind", PT["cgroup_sock"]),
    _cgroup("cgroup_sock_ops", "cgroup_sock_ops", PT["sock_ops"]),
    _cgroup("cgroup_device", "cgroup_device", PT["cgroup_device"]),
    _cgroup("cgroup_bind4", "cgroup_inet4_bind", PT["cgroup_sock_addr"]),
    _cgroup("cgroup_bind6", "cgroup_inet6_bind", PT["cgroup_sock_addr"]),
    _cgroup("cgroup_connect4", "cgroup_inet4_connect", PT["cgroup_sock_addr"]),
    _cgroup("cgroup_connect6", "cgroup_inet6_connect", PT["cgroup_sock_addr"]),
    _cgroup("cgroup_sendmsg4", "cgroup_udp4_sendmsg", PT["cgroup_sock_addr"]),
    _cgroup("cgroup_sendmsg6", "cgroup_udp6_sendmsg", PT["cgroup_sock_addr"]),
    _cgroup("cgroup_recvmsg4", "cgroup_udp4_recvmsg", PT["cgroup_sock_addr"]),
    _cgroup("cgroup_recvmsg6", "cgroup_udp6_recvmsg", PT["cgroup_sock_addr"]),
    _cgroup("cgroup_getpeername4", "cgroup_inet4_getpeername", PT["cgroup_sock_addr"]),
    _cgroup("cgroup_getpeername6", "cgroup_inet6_getpeername", PT["cgroup_sock_addr"]),
    _cgroup("cgroup_getsockname4", "cgroup_inet4_getsockname", PT["cgroup_sock_addr"]),
    _cgroup("cgroup_getsockname6", "cgroup_inet6_getsockname", PT["cgroup_sock_addr"]),
    _cgroup("cgroup_connect_unix", "cgroup_unix_connect", PT["cgroup_sock_addr"], "6.7"),
    _cgroup("cgroup_sendmsg_unix", "cgroup_unix_sendmsg", PT["cgroup_sock_addr"], "6.7"),
    _cgroup("cgroup_recvmsg_unix", "cgroup_unix_recvmsg", PT["cgroup_sock_addr"], "6.7"),
    _cgroup("cgroup_getpeername_unix", "cgroup_unix_getpeername", PT["cgroup_sock_addr"], "6.7"),
    _cgroup("cgroup_getsockname_unix", "cgroup_unix_getsockname", PT["cgroup_sock_addr"], "6.7"),
    _cgroup("cgroup_sysctl", "cgroup_sysctl", PT["cgroup_sysctl"]),
    _cgroup("cgroup_getsockopt", "cgroup_getsockopt", PT["cgroup_sockopt"]),
    _cgroup("cgroup_setsockopt", "cgroup_setsockopt", PT["cgroup_sockopt"]),
    Hook("tracepoint", "tracing", AT["perf_event"], (PT["tracepoint"],), "tracepoint", "5.15", False),
    Hook("raw_tracepoint", "tracing", None, (PT["raw_tracepoint"], PT["raw_tracepoint_writable"]),
         "tracepoint", "5.7", False),
    Hook("kprobe", "tracing", AT["perf_event"], (PT["kprobe"],), "function", "5.15", False),
    Hook("kretprobe", "tracing", AT["perf_event"], (PT["kprobe"],), "function", "5.15", False),
    Hook("uprobe", "tracing", AT["perf_event"], (PT["kprobe"],), "uprobe", "5.15", False),
    Hook("uretprobe", "tracing", AT["perf_event"], (PT["kprobe"],), "uprobe", "5.15", False),
    Hook("fentry", "tracing", AT["trace_fentry"], (PT["tracing"],), "function", "5.5", False),
    Hook("fexit", "tracing", AT["trace_fexit"], (PT["tracing"],), "function", "5.5", False),
    Hook("lsm", "tracing", AT["lsm_mac"], (PT["lsm"],), "lsm_hook", "5.7", False),
    # 5.10: BPF_LINK_CREATE with a target program fd and BTF id (the form a repaired link needs)
    Hook("freplace", "tracing", None, (PT["ext"],), "program_function", "5.10", False,
         note="an EXT program in place of a global function of a loaded program; the function takes one "
              "extension at a time (EBUSY) and the link cannot be detached, only released", overlap=False),
    Hook("netfilter", "netfilter", AT["netfilter"], (PT["netfilter"],), "netfilter", "6.4", False, libbpf="1.2",
         note="netfilter links cannot swap their program (BPF_LINK_UPDATE: EOPNOTSUPP) and the kernel takes one "
              "link per pf, hook and priority (EBUSY)", overlap=False),
)}
FAMILIES = ("xdp", "tcx", "tc", "cgroup", "tracing", "netfilter")

# The sections libbpf knows (tools/lib/bpf/libbpf.c section_defs), by prefix.
# value: (hook, how the rest of the section is read): "" nothing may follow, "target" the rest is
# the target, "direction" the rest is ingress/egress
_SECTION_PREFIXES = (
    ("tcx/", "tcx_", "direction"),
    ("tc/", "tcx_", "direction"),          # libbpf >= 1.3: tc/ingress is tcx/ingress
    ("cgroup_skb/", "cgroup_skb_", "direction"),
    ("tracepoint/", "tracepoint", "tracepoint"),
    ("tp/", "tracepoint", "tracepoint"),
    ("raw_tracepoint.w/", "raw_tracepoint", "target"),
    ("raw_tracepoint/", "raw_tracepoint", "target"),
    ("raw_tp.w/", "raw_tracepoint", "target"),
    ("raw_tp/", "raw_tracepoint", "target"),
    ("kprobe/", "kprobe", "target"),
    ("kretprobe/", "kretprobe", "target"),
    ("uprobe/", "uprobe", "target"),
    ("uretprobe/", "uretprobe", "target"),
    ("fentry.s/", "fentry", "target"),
    ("fentry/", "fentry", "target"),
    ("fexit.s/", "fexit", "target"),
    ("fexit/", "fexit", "target"),
    ("lsm.s/", "lsm", "target"),
    ("lsm/", "lsm", "target"),
    ("freplace/", "freplace", "target"),   # the function only: bpf_attach's target adds the program's pin
)
_CGROUP_SECTIONS = {
    "sock_create": "cgroup_sock_create", "sock": "cgroup_sock_create", "sock_release": "cgroup_sock_release",
    "post_bind4": "cgroup_post_bind4", "post_bind6": "cgroup_post_bind6", "dev": "cgroup_device",
    "bind4": "cgroup_bind4", "bind6": "cgroup_bind6", "connect4": "cgroup_connect4",
    "connect6": "cgroup_connect6", "connect_unix": "cgroup_connect_unix", "sendmsg4": "cgroup_sendmsg4",
    "sendmsg6": "cgroup_sendmsg6", "sendmsg_unix": "cgroup_sendmsg_unix", "recvmsg4": "cgroup_recvmsg4",
    "recvmsg6": "cgroup_recvmsg6", "recvmsg_unix": "cgroup_recvmsg_unix",
    "getpeername4": "cgroup_getpeername4", "getpeername6": "cgroup_getpeername6",
    "getpeername_unix": "cgroup_getpeername_unix", "getsockname4": "cgroup_getsockname4",
    "getsockname6": "cgroup_getsockname6", "getsockname_unix": "cgroup_getsockname_unix",
    "sysctl": "cgroup_sysctl", "getsockopt": "cgroup_getsockopt", "setsockopt": "cgroup_setsockopt",
}
_EXACT_SECTIONS = {"xdp": "xdp", "xdp.frags": "xdp", "netfilter": "netfilter", "sockops": "cgroup_sock_ops"}
_NO_DIRECTION = ("tc", "tcx", "classifier", "cgroup/skb", "cgroup_skb")


@dataclass(frozen=True)
class SectionHook:
    """What a section names: the hook, and the target when the section carries one."""

    hook: str
    target: Optional[str] = None


def hook(name: str) -> Hook:
    """The row for a hook name; InvalidInput (one line, every name listed) when unknown."""
    try:
        return HOOKS[name]
    except KeyError:
        raise InvalidInput(f"unknown hook {name!r}; known hooks: {', '.join(sorted(HOOKS))}",
                           hook=name) from None


def parse_section(section: str) -> SectionHook:
    """``tcx/ingress`` -> (tcx_ingress); ``tp/syscalls/sys_enter_getpid`` -> (tracepoint,
    syscalls/sys_enter_getpid). Raises InvalidInput naming the section when it says too little
    (``tc``: no direction) or names no attachable hook."""
    text = (section or "").strip()
    if not text:
        raise InvalidInput("the program has no ELF section to tell its hook; set hook")
    if text in _NO_DIRECTION:
        raise InvalidInput(f"section {text!r} does not say ingress or egress; set hook "
                           "(e.g. tcx_ingress, cgroup_skb_egress)", section=text)
    if text in _EXACT_SECTIONS:
        return SectionHook(_EXACT_SECTIONS[text])
    if text.startswith("xdp/") or text.startswith("xdp.frags/"):
        raise InvalidInput(f"section {text!r} is an XDP program for a devmap/cpumap entry, not an interface hook",
                           section=text)
    if text.startswith("cgroup/"):
        rest = text[len("cgroup/"):]
        if rest in _CGROUP_SECTIONS:
            return SectionHook(_CGROUP_SECTIONS[rest])
        raise InvalidInput(f"section {text!r} names no cgroup hook this collection knows; set hook", section=text)
    for prefix, name, kind in _SECTION_PREFIXES:
        if not text.startswith(prefix):
            continue
        rest = text[len(prefix):]
        if kind == "direction":
            if rest not in ("ingress", "egress"):
                raise InvalidInput(f"section {text!r}: {rest!r} is neither ingress nor egress", section=text)
            return SectionHook(name + rest)
        if not rest:
            # libbpf accepts "kprobe/" etc. for programs attached by hand: no target in the section
            return SectionHook(name)
        if kind == "tracepoint":
            if rest.count("/") != 1 or not all(rest.split("/")):
                raise InvalidInput(f"section {text!r}: a tracepoint is category/name "
                                   "(e.g. tracepoint/syscalls/sys_enter_getpid)", section=text)
        return SectionHook(name, rest)
    raise InvalidInput(f"section {text!r} names no hook this collection attaches; set hook", section=text)


# options that mean something on some families only: given for another hook, they are refused
# (a value equal to the option's default, like method link, is no choice and passes)
OPTION_FAMILIES = {
    "mode": ("xdp",),
    "method": ("xdp",),
    "priority": ("netfilter", "tc"),
    "cgroup": ("cgroup",),
    "pf": ("netfilter",),
    "hooknum": ("netfilter",),
}
OPTION_DEFAULTS = {"method": "link"}


def check_options_apply(hook_row: Hook, values: dict, *, prefix: str = "") -> None:
    """Refuse, in one line, an option that the hook's family does not take (mode on tcx, priority
    on XDP, ...). ``values`` holds the options as given (None: not given)."""
    for name, families in OPTION_FAMILIES.items():
        value = values.get(name)
        if value is None or value == OPTION_DEFAULTS.get(name) or hook_row.family in families:
            continue
        if families == ("xdp",):
            what = f"{name} is an XDP option" if name == "mode" else f"{name} {value} is XDP's"
        else:
            what = f"{name} is an option of {' and '.join(families)} hooks"
        raise InvalidInput(f"{prefix}{what}; hook {hook_row.name} does not take it", hook=hook_row.name,
                           option=name)


def check_prog_type(hook_row: Hook, prog_type: int, *, prog_label: str, type_name: str) -> None:
    """A program of the wrong type for the hook is refused before anything is touched."""
    if prog_type not in hook_row.prog_types:
        wanted = " or ".join(PROG_TYPE_NAMES.get(t, str(t)) for t in hook_row.prog_types)
        raise InvalidInput(f"program {prog_label} is a {type_name} program; hook {hook_row.name} takes {wanted} "
                           "programs", hook=hook_row.name, prog_type=type_name)


def kernel_at_least(release: str, wanted: str) -> bool:
    """``6.18.44-fc`` >= ``6.6``: compares the numeric major.minor(.patch) prefix."""
    def numbers(text: str) -> Tuple[int, ...]:
        out = []
        for part in text.split("-")[0].split("."):
            digits = "".join(ch for ch in part if ch.isdigit())
            if not digits:
                break
            out.append(int(digits))
        return tuple(out)
    return numbers(release) >= numbers(wanted)
