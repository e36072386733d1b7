"""tc clsact planning (pure), the parsing of RTM_NEWTFILTER, and the refusal of options of other hooks."""
from __future__ import annotations

import struct

import pytest

from ansible_collections.ebpf.deploy.plugins.module_utils import _hook_tc as tc
from ansible_collections.ebpf.deploy.plugins.module_utils import _hooks as hooks
from ansible_collections.ebpf.deploy.plugins.module_utils import _netlink as netlink
from ansible_collections.ebpf.deploy.plugins.module_utils._attach import Prog
from ansible_collections.ebpf.deploy.plugins.module_utils._errors import InvalidInput

TARGET = {"interface": "eth0", "ifindex": 2, "netns": None, "direction": "ingress", "priority": 1, "handle": 1}
V1 = Prog(id=10, name="tcx_count", pin="/p/v1")
V2 = Prog(id=20, name="tcx_count", pin="/p/v2")


def run_plan(state="present", prog=V2, current=None, force=False):
    return tc.plan(state, prog, current or tc.TcCurrent(), force=force, hook="tc_ingress", target=TARGET,
                   label="interface 'eth0' ingress", where="priority 1 handle 1")


def ours(prog_id=10, owned=True, **kw) -> tc.TcCurrent:
    kw.setdefault("last", {"prog_id": prog_id, "created_qdisc": True})
    return tc.TcCurrent(clsact=True, ours=tc.Filter(prog_id=prog_id, prog_name="tcx_count"), owned=owned, **kw)


def test_attach_when_no_filter_and_nothing_in_check_of_the_same_program():
    first = run_plan(prog=V1)
    assert first.action == "attach" and first.after["prog_id"] == 10 and first.after["clsact"] is True
    assert first.before["filter_state"] == "none" and first.drift is None
    assert run_plan(prog=V1, current=ours(10)).action == "none"


def test_new_program_replaces_ours_in_place():
    the_plan = run_plan(current=ours(10))
    assert the_plan.action == "update" and the_plan.before["prog_id"] == 10 and the_plan.after["prog_id"] == 20


def test_foreign_filter_refused_without_force_taken_over_with_it():
    foreign = ours(99, owned=False, last=None)
    with pytest.raises(InvalidInput, match=r"runs program id 99 \(tcx_count\) that ebpf.deploy did not deploy"):
        run_plan(current=foreign)
    assert run_plan(current=foreign, force=True).action == "update"
    other_kind = tc.TcCurrent(clsact=True, ours=tc.Filter(prog_id=None, kind="u32"), last=None)
    with pytest.raises(InvalidInput, match="runs a u32 filter"):
        run_plan(current=other_kind)


def test_drift_removed_or_replaced_by_hand():
    gone = run_plan(current=tc.TcCurrent(clsact=True, last={"prog_id": 10}))
    assert gone.action == "attach" and "removed by hand" in gone.drift
    swapped = run_plan(prog=V1, current=ours(30, owned=False, last={"prog_id": 10}), force=True)
    assert "program id 10 in the tc filter" in swapped.drift and swapped.action == "update"


def test_detach_removes_the_qdisc_only_when_ours_and_empty():
    assert run_plan("absent", None, ours(10, others=0)).after["clsact"] is False
    assert run_plan("absent", None, ours(10, others=1)).after["clsact"] is True
    not_made = ours(10, others=0, last={"prog_id": 10, "created_qdisc": False})
    assert run_plan("absent", None, not_made).after["clsact"] is True
    assert run_plan("absent", None, tc.TcCurrent()).action == "none"
    left = run_plan("absent", None, ours(99, owned=False, last=None))
    assert left.action == "none" and "left in place" in left.warnings[0]
    assert run_plan("absent", None, ours(99, owned=False, last=None), force=True).action == "detach"


@pytest.mark.parametrize("value, expected", [(None, 1), (1, 1), (65535, 65535)])
def test_priority_default_and_range(value, expected):
    assert tc.priority_of(value) == expected


@pytest.mark.parametrize("value", [0, -1, 65536])
def test_priority_out_of_range_refused(value):
    with pytest.raises(InvalidInput, match=r"1\.\.65535"):
        tc.priority_of(value)


def _attr(kind: int, payload: bytes) -> bytes:
    return struct.pack("=HH", 4 + len(payload), kind) + payload + b"\0" * (-len(payload) % 4)


def test_filter_message_parsed_with_its_program():
    options = (_attr(netlink.TCA_BPF_NAME, b"tcx_count\0") + _attr(netlink.TCA_BPF_FLAGS, struct.pack("=I", 1))
               + _attr(netlink.TCA_BPF_ID, struct.pack("=I", 4242)))
    payload = (struct.pack("=BxxxiIII", 0, 2, 1, netlink.TC_PARENTS["egress"], (5 << 16) | 0x0300)
               + _attr(netlink.TCA_KIND, b"bpf\0") + _attr(netlink.TCA_OPTIONS, options))
    found = netlink.tc_filter(netlink.parse_tcmsg(payload))
    assert found == netlink.TcFilter(parent=0xFFFFFFF3, prio=5, handle=1, kind="bpf", prog_id=4242,
                                     prog_name="tcx_count", direct_action=True)
    header = struct.pack("=BxxxiIII", 0, 2, 0, netlink.TC_PARENTS["egress"], 5 << 16) + _attr(netlink.TCA_KIND, b"bpf\0")
    assert netlink.tc_filter(netlink.parse_tcmsg(header)) is None   # a priority's header, no filter


@pytest.mark.parametrize("hook, values, words", [
    ("tcx_ingress", {"mode": "native"}, "mode is an XDP option; hook tcx_ingress does not take it"),
    ("tc_egress", {"method": "netlink"}, "method netlink is XDP's; hook tc_egress"),
    ("xdp", {"priority": 3}, "priority is an option of netfilter and tc hooks; hook xdp"),
    ("xdp", {"cgroup": "/sys/fs/cgroup"}, "cgroup is an option of cgroup hooks"),
    ("tc_ingress", {"pf": "ipv4"}, "pf is an option of netfilter hooks"),
])
def test_options_of_other_hooks_refused(hook, values, words):
    with pytest.raises(InvalidInput, match=words):
        hooks.check_options_apply(hooks.HOOKS[hook], values)


@pytest.mark.parametrize("hook, values", [
    ("tcx_ingress", {"method": "link", "mode": None}), ("xdp", {"mode": "generic", "method": "netlink"}),
    ("tc_ingress", {"priority": 4}), ("netfilter", {"priority": -100, "pf": "ipv4", "hooknum": "local_in"}),
])
def test_options_of_the_hook_pass(hook, values):
    hooks.check_options_apply(hooks.HOOKS[hook], values)
