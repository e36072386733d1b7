"""ebpf.deploy.bpf_attach on tc clsact (tc_ingress/tc_egress) and on XDP, against the real kernel.

tc: the tcx counter fixture (a sched_cls program that returns -1, TC_ACT_UNSPEC under tc: the
packet goes on) is put in a `bpf` filter under clsact; what the module says is checked against
`tc -j filter show` and `tc -j qdisc show` and against real packets on a veth. XDP: the example
counter through bpf_attach runs what xdp_attach runs.

Namespaces and veths are `ebpfd-*` with random suffixes, removed by their fixtures.
"""
from __future__ import annotations

import json
import re
import signal
import subprocess
import time

import pytest

from tests import helpers
from tests.helpers import ok
from tests.integration import hooks_helpers as hh
from tests.integration import xdp_helpers as h
from tests.integration.test_bpf_attach import loaded, send_from_host  # noqa: F401 pylint: disable=unused-import

VETH_TAG = "tc"
V1, V2 = "a1a1a1a1a1a1", "b2b2b2b2b2b2"


def tc_json(veth, *args: str) -> list:
    cmd = ["tc", "-j", *args]
    if veth.host_ns:
        cmd = ["nsenter", f"--net=/run/netns/{veth.host_ns}"] + cmd
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=30).stdout
    return json.loads(out) if out.strip() else []


def bpf_filters(veth, direction: str) -> list:
    """(pref, handle, prog id) of each bpf filter under clsact's direction, as iproute2 reads them."""
    if not has_clsact(veth):
        return []
    found = []
    for entry in tc_json(veth, "filter", "show", "dev", veth.host_if, direction):
        opts = entry.get("options") or {}
        if entry.get("kind") == "bpf" and "handle" in opts:
            found.append((entry["pref"], int(opts["handle"], 16), (opts.get("prog") or {}).get("id")))
    return found


def has_clsact(veth) -> bool:
    return any(q.get("kind") == "clsact" for q in tc_json(veth, "qdisc", "show", "dev", veth.host_if))


def tc(veth, *args: str) -> None:
    cmd = ["tc", *args]
    if veth.host_ns:
        cmd = ["nsenter", f"--net=/run/netns/{veth.host_ns}"] + cmd
    subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=30)


def facts_attachments(bpffs_root, name: str) -> dict:
    facts = ok(helpers.direct("bpf_facts", {"gather_subset": ["programs", "links"], "bpffs_root": str(bpffs_root)}))
    return facts["ansible_facts"]["ebpf"]["deployments"][name]["attachments"]


def direct(args: dict, *, check: bool = False) -> dict:
    return helpers.direct("bpf_attach", args, check=check)


def send(veth, direction: str, count: int) -> int:
    return veth.send(count) if direction == "ingress" else send_from_host(veth, count)


def load_counter(dep, version: str) -> int:
    return dep.load(version, helpers.BPF_DIR / "tcx_counter.bpf.o", {"tcx_count": hh.SCHED_CLS})["tcx_count"]


# --- tc clsact -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("direction", ["ingress", "egress"])
def test_tc_counts_packets_rerun_unchanged_upgrade_in_place_detach_removes(ansible_module, veth, loaded,  # noqa: F811
                                                                           bpffs_root, direction):
    dep = loaded()
    v1 = load_counter(dep, V1)
    args = {"deployment": dep.name, "program": "tcx_count", "hook": f"tc_{direction}",
            "interface": veth.host_if, "netns": veth.host_ns, "bpffs_root": str(bpffs_root)}
    diff = ok(direct(args, check=True))["diff"]
    assert diff["before"]["prog_id"] is None and diff["after"]["prog_id"] == v1
    assert not has_clsact(veth)   # check mode changed nothing

    check, run, _idem_check, idem = helpers.four_steps(ansible_module, "bpf_attach", args)
    assert check["action"] == "attach" and run["action"] == "attach" and idem["action"] == "none"
    assert run["hook"] == f"tc_{direction}" and run["prog_id"] == v1 and run["link_pin"] is None
    assert run["target"]["priority"] == 1 and run["target"]["handle"] == 1
    assert bpf_filters(veth, direction) == [(1, 1, v1)] and run["chain"] == [v1]
    assert not (dep.dep.links_dir / f"{veth.host_ns}@{veth.host_if}:tc_{direction}").exists()  # no link

    before = dep.counter()
    sent = send(veth, direction, 2000)
    time.sleep(0.05)
    assert sent == 2000 and dep.counter() - before == sent

    # v2 replaces v1 in the same filter (same priority and handle), the map is shared
    v2 = load_counter(dep, V2)
    up = ok(direct(args))
    assert up["action"] == "update" and up["previous_prog_id"] == v1 and up["prog_id"] == v2
    assert bpf_filters(veth, direction) == [(1, 1, v2)]
    before = dep.counter()
    send(veth, direction, 300)
    time.sleep(0.05)
    assert dep.counter() - before == 300
    assert not ok(direct(args))["changed"]

    absent = {k: v for k, v in dict(args, state="absent", program=None).items() if v is not None}
    assert ok(direct(absent, check=True))["changed"] and bpf_filters(veth, direction) == [(1, 1, v2)]
    gone = ok(ansible_module("bpf_attach", absent))
    assert gone["changed"] and gone["action"] == "detach"
    assert bpf_filters(veth, direction) == [] and not has_clsact(veth)   # the qdisc we made went too
    before = dep.counter()
    send(veth, direction, 200)
    assert dep.counter() == before
    assert not ok(direct(absent))["changed"]


def test_tc_upgrade_is_atomic_under_a_stream(veth, loaded, bpffs_root):  # noqa: F811
    """NLM_F_REPLACE on our filter while packets flow: every packet received was counted by v1 or v2."""
    dep = loaded()
    v1 = load_counter(dep, V1)
    args = {"deployment": dep.name, "program": "tcx_count", "hook": "tc_ingress",
            "interface": veth.host_if, "netns": veth.host_ns, "bpffs_root": str(bpffs_root)}
    ok(direct(args))
    v2 = load_counter(dep, V2)
    c0, r0 = dep.counter(), veth.host_counters()["rx_packets"]
    sender = veth.start_sender(100000, pps=20000)
    time.sleep(0.5)
    swap = ok(direct(args))
    sent = h.VethLab.stop_sender(sender)
    time.sleep(0.1)
    counted, received = dep.counter() - c0, veth.host_counters()["rx_packets"] - r0
    print(f"tc swap under stream: sent {sent}, received {received}, counted {counted}")
    assert swap["action"] == "update" and swap["previous_prog_id"] == v1 and swap["prog_id"] == v2
    assert bpf_filters(veth, "ingress") == [(1, 1, v2)]
    assert received == sent and counted == received


def test_tc_keeps_a_qdisc_it_did_not_make_and_refuses_a_foreign_filter(veth, loaded, bpffs_root):  # noqa: F811
    dep = loaded()
    v1 = load_counter(dep, V1)
    pin = helpers.BPFFS / helpers.unique("ebpfd_tc_foreign_", 4)   # another tool's program, outside our root
    subprocess.run(["bpftool", "prog", "load", str(helpers.BPF_DIR / "tcx_counter.bpf.o"), str(pin),
                    "type", "classifier"], check=True, capture_output=True, timeout=60)
    try:
        foreign = helpers.bpftool("prog", "show", "pinned", str(pin))["id"]
        tc(veth, "qdisc", "add", "dev", veth.host_if, "clsact")
        tc(veth, "filter", "add", "dev", veth.host_if, "ingress", "prio", "1", "handle", "1", "bpf", "da",
           "pinned", str(pin))
        _foreign_filter_kept_apart(veth, dep, bpffs_root, v1, foreign)
    finally:
        pin.unlink()
        subprocess.run(["nsenter", f"--net=/run/netns/{veth.host_ns}", "tc", "qdisc", "del", "dev", veth.host_if,
                        "clsact"], capture_output=True, check=False, timeout=30)


def _foreign_filter_kept_apart(veth, dep, bpffs_root, v1: int, foreign: int) -> None:
    args = {"deployment": dep.name, "program": "tcx_count", "hook": "tc_ingress",
            "interface": veth.host_if, "netns": veth.host_ns, "bpffs_root": str(bpffs_root)}
    msg = helpers.assert_one_line_failure(direct(args))
    assert re.search(rf"runs program id {foreign} .*did not deploy; refusing", msg), msg
    assert bpf_filters(veth, "ingress") == [(1, 1, foreign)]

    # another priority: ours beside theirs; detach leaves their filter and the qdisc
    mine = ok(direct(dict(args, priority=5)))
    assert mine["action"] == "attach" and bpf_filters(veth, "ingress") == [(1, 1, foreign), (5, 1, v1)]
    assert mine["chain"] == [foreign, v1]
    absent = {k: v for k, v in dict(args, priority=5, state="absent", program=None).items() if v is not None}
    assert ok(direct(absent))["action"] == "detach"
    assert bpf_filters(veth, "ingress") == [(1, 1, foreign)] and has_clsact(veth)

    # force takes our place over
    took = ok(direct(dict(args, force=True)))
    assert took["action"] == "update" and bpf_filters(veth, "ingress") == [(1, 1, v1)]
    assert ok(direct({k: v for k, v in dict(args, state="absent", program=None).items() if v is not None}))["changed"]
    assert has_clsact(veth)   # not ours to remove


def test_tc_drift_repaired(veth, loaded, bpffs_root):  # noqa: F811
    dep = loaded()
    v1 = load_counter(dep, V1)
    args = {"deployment": dep.name, "program": "tcx_count", "hook": "tc_egress",
            "interface": veth.host_if, "netns": veth.host_ns, "bpffs_root": str(bpffs_root)}
    ok(direct(args))
    name = f"{veth.host_ns}@{veth.host_if}:tc_egress"
    assert facts_attachments(bpffs_root, dep.name)[name] == {"hook": "tc_egress", "link_id": None, "prog_id": v1,
                                                             "priority": 1}
    tc(veth, "filter", "del", "dev", veth.host_if, "egress", "prio", "1", "handle", "1", "bpf")
    assert facts_attachments(bpffs_root, dep.name)[name]["prog_id"] is None   # bpf_facts sees it gone
    fixed = ok(direct(args))
    assert fixed["action"] == "attach" and "removed by hand" in fixed["drift"]
    assert bpf_filters(veth, "egress") == [(1, 1, v1)]
    ok(direct({k: v for k, v in dict(args, state="absent", program=None).items() if v is not None}))
    assert not has_clsact(veth)


def test_tc_a_new_priority_is_refused_and_absent_finds_ours_at_its_own(veth, loaded, bpffs_root):  # noqa: F811
    dep = loaded()
    v1 = load_counter(dep, V1)
    args = {"deployment": dep.name, "program": "tcx_count", "hook": "tc_ingress", "priority": 5,
            "interface": veth.host_if, "netns": veth.host_ns, "bpffs_root": str(bpffs_root)}
    ok(direct(args))
    assert bpf_filters(veth, "ingress") == [(5, 1, v1)]
    msg = helpers.assert_one_line_failure(direct(dict(args, priority=7)))
    assert "is at priority 5, not 7: detach it first" in msg, msg
    assert bpf_filters(veth, "ingress") == [(5, 1, v1)], "a refused priority change touched the filters"
    gone = ok(direct({k: v for k, v in dict(args, state="absent", program=None, priority=None).items()
                      if v is not None}))
    assert gone["changed"] and gone["action"] == "detach", gone
    assert bpf_filters(veth, "ingress") == [] and not has_clsact(veth)


def test_tc_bad_inputs_fail_in_one_line_and_change_nothing(veth, loaded, bpffs_root):  # noqa: F811
    dep = loaded()
    load_counter(dep, V1)
    base = {"deployment": dep.name, "program": "tcx_count", "bpffs_root": str(bpffs_root)}
    cases = [
        (dict(base, hook="tc_ingress"), r"hook tc_ingress needs interface"),
        (dict(base, hook="tc_egress", interface="ebpfdnope0", netns=veth.host_ns), r"ebpfdnope0"),
        (dict(base, hook="tc_ingress", interface=veth.host_if, netns=veth.host_ns, priority=0), r"1\.\.65535"),
        (dict(base, hook="tc_ingress", interface=veth.host_if, netns=veth.host_ns, mode="generic"),
         r"mode is an XDP option; hook tc_ingress"),
        (dict(base, hook="tcx_ingress", interface=veth.host_if, netns=veth.host_ns, mode="native"),
         r"mode is an XDP option; hook tcx_ingress"),
        (dict(base, hook="tcx_ingress", interface=veth.host_if, netns=veth.host_ns, method="netlink"),
         r"method netlink is XDP's"),
        (dict(base, hook="tcx_ingress", interface=veth.host_if, netns=veth.host_ns, priority=3),
         r"priority is an option of netfilter and tc hooks"),
        (dict(base, hook="xdp", interface=veth.host_if, netns=veth.host_ns), r"is a sched_cls program, not XDP"),
    ]
    before = (has_clsact(veth), sorted(str(p) for p in bpffs_root.rglob("*")))
    for args, words in cases:
        msg = helpers.assert_one_line_failure(direct(args))
        assert re.search(words, msg), (words, msg, args)
    assert (has_clsact(veth), sorted(str(p) for p in bpffs_root.rglob("*"))) == before


# --- xdp through bpf_attach ----------------------------------------------------------------------------
def test_xdp_through_bpf_attach_counts_rerun_unchanged_detach(ansible_module, veth, loaded, bpffs_root):  # noqa: F811
    dep = loaded()
    prog_id = dep.load(V1, helpers.BPF_DIR / "counter.bpf.o", {"xdp_packet_counter": None})["xdp_packet_counter"]
    args = {"deployment": dep.name, "program": "xdp_packet_counter", "section": "xdp", "mode": "generic",
            "interface": veth.host_if, "netns": veth.host_ns, "bpffs_root": str(bpffs_root)}
    check, run, _idem_check, idem = helpers.four_steps(ansible_module, "bpf_attach", args)
    assert check["action"] == run["action"] == "attach" and idem["action"] == "none"
    assert run["hook"] == "xdp" and run["prog_id"] == prog_id and run["mode"] == "generic"
    assert run["method"] == "link" and run["link_pin"] == str(dep.dep.links_dir / f"{veth.host_ns}@{veth.host_if}:xdp")
    assert veth.xdp()["prog"]["id"] == prog_id
    before = dep.counter()
    assert veth.send(1000) == 1000
    time.sleep(0.05)
    assert dep.counter() - before == 1000

    absent = {k: v for k, v in dict(args, state="absent", program=None, mode=None).items() if v is not None}
    gone = ok(ansible_module("bpf_attach", absent))
    assert gone["changed"] and gone["action"] == "detach"
    before = dep.counter()
    veth.send(200)
    assert dep.counter() == before
    assert not ok(direct(absent))["changed"]


# --- a bpf_deployment attach item on tc ------------------------------------------------------------------
def test_tc_deployment_item_switch_rollback_and_absent(ansible_module, veth, bpffs_root, tmp_path, bpf_object):
    """bpf_deployment runs the same tc code: v2 replaces v1 in the filter, a rollback puts v1 back in
    it, state absent removes the filter and the qdisc the deployment made."""
    name = helpers.unique("ebpfd_", 4)
    state_dir = tmp_path / "state"
    attach = [{"program": "tcx_count", "hook": "tc_ingress", "interface": veth.host_if, "netns": veth.host_ns}]

    def spec(obj: str, **extra) -> dict:
        return dict({"name": name, "src": str(bpf_object(obj)), "bpffs_root": str(bpffs_root),
                     "state_dir": str(state_dir), "program_type": "sched_cls", "attach": attach}, **extra)
    try:
        run = ok(ansible_module("bpf_deployment", spec("tcx_counter")))
        v1 = run["attach"][0]["prog_id"]
        assert run["attach"][0]["action"] == "attach" and bpf_filters(veth, "ingress") == [(1, 1, v1)]
        assert not ok(ansible_module("bpf_deployment", spec("tcx_counter")))["changed"]
        v2 = ok(ansible_module("bpf_deployment", spec("tcx_counter_v2", confirm_timeout=300)))
        assert v2["pending"] and v2["attach"][0]["action"] == "update", v2["attach"]
        (_pref, _handle, v2_prog), = bpf_filters(veth, "ingress")
        assert v2_prog not in (None, v1)
        back = {"name": name, "state": "rolled_back", "bpffs_root": str(bpffs_root), "state_dir": str(state_dir)}
        assert ok(ansible_module("bpf_deployment", back))["changed"]
        assert bpf_filters(veth, "ingress") == [(1, 1, v1)], "v1's program is not back in the filter"
        absent = {"name": name, "state": "absent", "bpffs_root": str(bpffs_root), "state_dir": str(state_dir),
                  "attach": attach}
        assert ok(ansible_module("bpf_deployment", absent))["changed"]
        assert bpf_filters(veth, "ingress") == [] and not has_clsact(veth)
    finally:
        helpers.kill_pids(helpers.pids_with_argv(lambda argv: str(state_dir) in argv and "watch" in argv),
                          signal.SIGTERM)
        helpers.forget_deployment(name, bpffs_root)
