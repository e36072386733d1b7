"""The hook table and the ELF section parser (pure, no kernel)."""
from __future__ import annotations

import pytest

from ansible_collections.ebpf.deploy.plugins.module_utils import _hooks as hooks
from ansible_collections.ebpf.deploy.plugins.module_utils._errors import InvalidInput
from ansible_collections.ebpf.deploy.plugins.module_utils._hook_cgroup import (
    cgroup2_mounts, resolve_cgroup_path)
from ansible_collections.ebpf.deploy.plugins.module_utils._hook_netfilter import netfilter_target
from ansible_collections.ebpf.deploy.plugins.module_utils._hook_tracing import (
    btf_has_raw_tracepoint, parse_tracepoint)
from ansible_collections.ebpf.deploy.plugins.module_utils._uapi import PROG_TYPES


@pytest.mark.parametrize("section, hook, target", [
    ("tcx/ingress", "tcx_ingress", None),
    ("tcx/egress", "tcx_egress", None),
    ("tc/ingress", "tcx_ingress", None),
    ("cgroup_skb/egress", "cgroup_skb_egress", None),
    ("cgroup_skb/ingress", "cgroup_skb_ingress", None),
    ("cgroup/sock_create", "cgroup_sock_create", None),
    ("cgroup/sock", "cgroup_sock_create", None),
    ("cgroup/connect4", "cgroup_connect4", None),
    ("cgroup/sendmsg6", "cgroup_sendmsg6", None),
    ("cgroup/dev", "cgroup_device", None),
    ("sockops", "cgroup_sock_ops", None),
    ("tracepoint/syscalls/sys_enter_getpid", "tracepoint", "syscalls/sys_enter_getpid"),
    ("tp/sched/sched_switch", "tracepoint", "sched/sched_switch"),
    ("raw_tracepoint/sys_enter", "raw_tracepoint", "sys_enter"),
    ("raw_tp/sched_switch", "raw_tracepoint", "sched_switch"),
    ("raw_tp.w/bpf_test_finish", "raw_tracepoint", "bpf_test_finish"),
    ("kprobe/do_unlinkat", "kprobe", "do_unlinkat"),
    ("kretprobe/do_unlinkat", "kretprobe", "do_unlinkat"),
    ("uprobe//usr/bin/bash:readline", "uprobe", "/usr/bin/bash:readline"),
    ("fentry/do_unlinkat", "fentry", "do_unlinkat"),
    ("fexit.s/do_unlinkat", "fexit", "do_unlinkat"),
    ("lsm/file_open", "lsm", "file_open"),
    ("lsm.s/bprm_check_security", "lsm", "bprm_check_security"),
    ("netfilter", "netfilter", None),
    ("xdp", "xdp", None),
    ("kprobe/", "kprobe", None),
    ("freplace/ebpfd_policy", "freplace", "ebpfd_policy"),
])
def test_section_names_hook_and_target(section, hook, target):
    parsed = hooks.parse_section(section)
    assert (parsed.hook, parsed.target) == (hook, target)
    assert parsed.hook in hooks.HOOKS


@pytest.mark.parametrize("section, words", [
    ("tc", "ingress or egress"),
    ("classifier", "ingress or egress"),
    ("cgroup/skb", "ingress or egress"),
    ("tcx/sideways", "neither ingress nor egress"),
    ("tracepoint/sys_enter_getpid", "category/name"),
    ("tracepoint/a/b/c", "category/name"),
    ("cgroup/frobnicate", "no cgroup hook"),
    ("socket", "names no hook"),
    ("xdp/devmap", "devmap"),
    ("", "no ELF section"),
])
def test_sections_that_say_too_little_are_refused_in_one_line(section, words):
    with pytest.raises(InvalidInput) as err:
        hooks.parse_section(section)
    assert words in err.value.msg and "\n" not in err.value.msg


def test_unknown_hook_lists_the_known_ones():
    with pytest.raises(InvalidInput) as err:
        hooks.hook("tcx_sideways")
    assert "tcx_ingress" in err.value.msg and "netfilter" in err.value.msg


def test_kernel_facts_are_declared_once():
    assert hooks.HOOKS["tcx_ingress"].requires == "kernel >= 6.6"
    assert hooks.HOOKS["netfilter"].requires == "kernel >= 6.4"
    assert not hooks.HOOKS["tracepoint"].updatable and hooks.HOOKS["cgroup_skb_egress"].updatable
    # freplace: the BPF_LINK_CREATE form with a target program (5.10); one extension per function, no overlap
    row = hooks.HOOKS["freplace"]
    assert (row.family, row.prog_types, row.target, row.requires, row.updatable, row.overlap) == (
        "tracing", (PROG_TYPES["ext"],), "program_function", "kernel >= 5.10", False, False)
    assert all(r.target in hooks.TARGET_KINDS for r in hooks.HOOKS.values())
    every_family = {row.family for row in hooks.HOOKS.values()}
    assert every_family == set(hooks.FAMILIES)
    cgroup_types = {row.attach_type for row in hooks.HOOKS.values() if row.family == "cgroup"}
    assert len(cgroup_types) == len([r for r in hooks.HOOKS.values() if r.family == "cgroup"])  # one row each


@pytest.mark.parametrize("release, wanted, ok", [
    ("6.18.44-fc-v1045", "6.6", True), ("6.1.0-28-amd64", "6.6", False), ("6.6.0", "6.6", True),
    ("5.15.0-100-generic", "5.15", True), ("5.4.0", "5.7", False), ("6.10.3+deb13", "6.4", True),
])
def test_kernel_at_least(release, wanted, ok):
    assert hooks.kernel_at_least(release, wanted) is ok


def test_wrong_program_type_is_named():
    with pytest.raises(InvalidInput) as err:
        hooks.check_prog_type(hooks.HOOKS["tcx_ingress"], PROG_TYPES["xdp"], prog_label="'x' (id 3)", type_name="xdp")
    assert err.value.msg == "program 'x' (id 3) is a xdp program; hook tcx_ingress takes sched_cls programs"
    hooks.check_prog_type(hooks.HOOKS["raw_tracepoint"], PROG_TYPES["raw_tracepoint_writable"], prog_label="y",
                          type_name="raw_tracepoint_writable")


MOUNTS = """cgroup /sys/fs/cgroup/cpu cgroup rw 0 0
cgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0
"""


def test_cgroup_paths():
    mounts = cgroup2_mounts(MOUNTS)
    assert mounts == ["/sys/fs/cgroup/unified"]
    assert resolve_cgroup_path("ebpfd-x/svc", mounts) == ("/sys/fs/cgroup/unified/ebpfd-x/svc", "ebpfd-x/svc")
    assert resolve_cgroup_path("/sys/fs/cgroup/unified/a", mounts) == ("/sys/fs/cgroup/unified/a", "a")
    assert resolve_cgroup_path("/sys/fs/cgroup/unified", mounts) == ("/sys/fs/cgroup/unified", "")
    for bad, words in (("/sys/fs/cgroup/cpu/a", "not on a cgroup v2 mount"), ("a/../b", "'..'")):
        with pytest.raises(InvalidInput) as err:
            resolve_cgroup_path(bad, mounts)
        assert words in err.value.msg
    with pytest.raises(InvalidInput, match="no cgroup v2"):
        resolve_cgroup_path("a", [])


def test_netfilter_target():
    assert netfilter_target("ipv4", "local_in", -100) == {
        "pf": "ipv4", "pf_num": 2, "hooknum": "local_in", "hooknum_num": 1, "priority": -100}
    assert netfilter_target("IPv6", "4", "7")["hooknum"] == "postrouting"
    for args, words in ((("ipx", "local_in", 1), "pf must be"), (("ipv4", "input", 1), "hooknum must be"),
                        (("ipv4", "local_in", 2 ** 31 - 1), "out of range"), (("ipv4", "local_in", None), "needs pf"),
                        (("ipv4", "local_in", "high"), "integer")):
        with pytest.raises(InvalidInput) as err:
            netfilter_target(*args)
        assert words in err.value.msg


def test_tracepoint_targets():
    assert parse_tracepoint("syscalls/sys_enter_getpid") == ("syscalls", "sys_enter_getpid")
    for bad in (None, "", "sys_enter_getpid", "a/b/c", "../x"):
        with pytest.raises(InvalidInput):
            parse_tracepoint(bad)
    blob = b"\0int\0btf_trace_sys_enter\0btf_trace_sched_switch\0"
    assert btf_has_raw_tracepoint("sys_enter", blob) and not btf_has_raw_tracepoint("sys_ente", blob)
