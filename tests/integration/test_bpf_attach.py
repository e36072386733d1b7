"""ebpf.deploy.bpf_attach against the real kernel: tcx, cgroup, tracepoint, raw tracepoint and
netfilter hooks, each observed doing its job.

Programs are loaded into a deployment layout under a fresh bpffs root (`ebpfd_test_*`) by a small
libbpf loader (hooks_helpers.Loaded; libbpf 1.1 cannot tell the type of a `tcx/` or `netfilter`
section, so the loader sets it), maps shared between versions so an upgrade keeps counting in one
place. What the module reports is checked against the kernel through readers of its own (bpftool,
BPF_PROG_QUERY from a separate process) and against real packets and system calls.

Namespaces, veths and cgroups are `ebpfd-*` with random suffixes and removed by their fixtures.
"""
from __future__ import annotations

import platform
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests import helpers
from tests.helpers import ok
from tests.integration import hooks_helpers as hh
from tests.integration import xdp_helpers as h

VETH_TAG = "ba"
V1, V2 = "a1a1a1a1a1a1", "b2b2b2b2b2b2"
TCX_INGRESS, TCX_EGRESS = 46, 47
GETPID_NR = {"x86_64": 39, "aarch64": 172}[platform.machine()]


@pytest.fixture
def loaded(bpffs_root):
    made = []

    def make(name: str | None = None) -> hh.Loaded:
        dep = hh.Loaded(bpffs_root, name)
        made.append(dep)
        return dep
    yield make
    for dep in made:
        dep.cleanup()


def direct(args: dict, *, check: bool = False) -> dict:
    return helpers.direct("bpf_attach", args, check=check)


def send_from_host(veth, count: int) -> int:
    """UDP datagrams from the host side to the peer (egress of the host interface)."""
    cmd = ["nsenter", f"--net=/run/netns/{veth.host_ns}", sys.executable, "-c", h.SENDER, veth.peer_ip, "9",
           str(count), "0"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=120).stdout
    return int(out.split()[0])


def tcx_ids(veth, attach_type: int = TCX_INGRESS) -> list:
    return hh.tcx_prog_ids(hh.ifindex(veth.host_if, veth.host_ns), attach_type, veth.host_ns)


# --- tcx ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("direction", ["ingress", "egress"])
def test_tcx_counts_packets_rerun_unchanged_detach_removes(ansible_module, veth, loaded, bpffs_root, direction):
    dep = loaded()
    prog_id = dep.load(V1, helpers.BPF_DIR / "tcx_counter.bpf.o", {"tcx_count": hh.SCHED_CLS})["tcx_count"]
    args = {"deployment": dep.name, "program": "tcx_count", "section": f"tcx/{direction}",
            "interface": veth.host_if, "netns": veth.host_ns, "bpffs_root": str(bpffs_root)}
    attach_type = TCX_INGRESS if direction == "ingress" else TCX_EGRESS
    diff = ok(direct(args, check=True))["diff"]
    assert diff["before"]["prog_id"] is None and diff["after"]["prog_id"] == prog_id
    assert tcx_ids(veth, attach_type) == []  # check mode changed nothing

    check, run, _idem_check, idem = helpers.four_steps(ansible_module, "bpf_attach", args)
    assert check["action"] == "attach" and run["action"] == "attach" and idem["action"] == "none"
    assert run["hook"] == f"tcx_{direction}" and run["prog_id"] == prog_id
    pin = dep.dep.links_dir / f"{veth.host_ns}@{veth.host_if}:tcx_{direction}"
    assert run["link_pin"] == str(pin) and pin.exists()
    link = h.link_info(pin)
    assert link["id"] == run["link_id"] == idem["link_id"] and link["prog_id"] == prog_id
    assert tcx_ids(veth, attach_type) == [prog_id] == run["chain"]

    before = dep.counter()
    sent = veth.send(2000) if direction == "ingress" else send_from_host(veth, 2000)
    time.sleep(0.05)
    assert sent == 2000 and dep.counter() - before == sent

    absent = dict(args, state="absent", program=None)
    assert ok(direct(absent, check=True))["changed"] and pin.exists()
    gone = ok(ansible_module("bpf_attach", {k: v for k, v in absent.items() if v is not None}))
    assert gone["changed"] and gone["action"] == "detach" and not pin.exists()
    assert tcx_ids(veth, attach_type) == []
    before = dep.counter()
    veth.send(500) if direction == "ingress" else send_from_host(veth, 500)
    assert dep.counter() == before
    assert not ok(direct(absent))["changed"]


def test_tcx_upgrade_is_atomic_under_a_stream(veth, loaded, bpffs_root):
    """v2 replaces v1 with BPF_LINK_UPDATE on the same link while packets flow: every packet the
    interface received was counted by one of the two (shared map), none missing."""
    dep = loaded()
    v1 = dep.load(V1, helpers.BPF_DIR / "tcx_counter.bpf.o", {"tcx_count": hh.SCHED_CLS})["tcx_count"]
    args = {"deployment": dep.name, "program": "tcx_count", "hook": "tcx_ingress",
            "interface": veth.host_if, "netns": veth.host_ns, "bpffs_root": str(bpffs_root)}
    first = ok(direct(args))
    v2 = dep.load(V2, helpers.BPF_DIR / "tcx_counter.bpf.o", {"tcx_count": hh.SCHED_CLS})["tcx_count"]
    c0, r0 = dep.counter(), veth.host_counters()["rx_packets"]
    sender = veth.start_sender(200000, pps=40000)
    time.sleep(0.5)
    swap = ok(direct(args))
    sent = h.VethLab.stop_sender(sender)
    time.sleep(0.1)
    counted, received = dep.counter() - c0, veth.host_counters()["rx_packets"] - r0
    print(f"tcx swap under stream: sent {sent}, received {received}, counted {counted}, "
          f"unprocessed {received - counted}")
    assert swap["action"] == "update" and swap["previous_prog_id"] == v1 and swap["prog_id"] == v2
    assert swap["link_id"] == first["link_id"]  # same link, program swapped in place
    assert tcx_ids(veth) == [v2]
    assert received == sent and counted == received


def test_tcx_drift_repaired_and_foreign_program_refused(veth, loaded, bpffs_root):
    dep = loaded()
    v1 = dep.load(V1, helpers.BPF_DIR / "tcx_counter.bpf.o", {"tcx_count": hh.SCHED_CLS})["tcx_count"]
    args = {"deployment": dep.name, "program": "tcx_count", "hook": "tcx_ingress",
            "interface": veth.host_if, "netns": veth.host_ns, "bpffs_root": str(bpffs_root)}
    first = ok(direct(args))
    # detached by hand: the pin stays, defunct
    h.run("bpftool", "link", "detach", "id", str(first["link_id"]))
    assert tcx_ids(veth) == []
    repaired = ok(direct(args))
    assert repaired["action"] == "reattach" and "detached by hand" in repaired["drift"]
    assert tcx_ids(veth) == [v1] and ok(direct(args))["changed"] is False

    # unpinned by hand: nothing holds the link any more, so the kernel released it
    Path(repaired["link_pin"]).unlink()
    assert tcx_ids(veth) == []
    again = ok(direct(args))
    assert again["action"] == "attach" and "removed by hand" in again["drift"] and tcx_ids(veth) == [v1]
    repaired = again

    # a program loaded by hand outside the root, swapped onto our link by hand
    other = hh.Loaded(helpers.BPFFS / helpers.unique("ebpfd_foreign_"))
    try:
        foreign = other.load(V1, helpers.BPF_DIR / "tcx_counter.bpf.o", {"tcx_count": hh.SCHED_CLS})["tcx_count"]
        link_fd = hh.libbpf.obj_get(repaired["link_pin"])
        prog_fd = hh.libbpf.obj_get(str(other.dep.progs_dir(V1) / "tcx_count"))
        hh.libbpf.link_update(link_fd, prog_fd)
        hh.os.close(link_fd)
        hh.os.close(prog_fd)
        helpers.assert_one_line_failure(direct(args), "did not deploy")
        assert tcx_ids(veth) == [foreign]  # left as it was
        taken = ok(direct(dict(args, force=True)))
        assert taken["action"] == "update" and tcx_ids(veth) == [v1]
    finally:
        h.remove_tree(other.root)


def test_tcx_order_before_and_after_another_deployment(veth, loaded, bpffs_root):
    """`seen` counts packets by whether `mark` already ran: before/after is proven by packets, and
    by the kernel's list read from another process."""
    counter, marker = loaded(), loaded()
    seen_id = counter.load(V1, helpers.BPF_DIR / "tcx_order.bpf.o", {"tcx_seen": hh.SCHED_CLS})["tcx_seen"]
    mark_id = marker.load(V1, helpers.BPF_DIR / "tcx_order.bpf.o", {"tcx_mark": hh.SCHED_CLS})["tcx_mark"]
    base = {"hook": "tcx_ingress", "interface": veth.host_if, "netns": veth.host_ns, "bpffs_root": str(bpffs_root)}
    ok(direct(dict(base, deployment=counter.name, program="tcx_seen")))

    first = ok(direct(dict(base, deployment=marker.name, program="tcx_mark", before=counter.name)))
    assert first["action"] == "attach" and first["chain"] == [mark_id, seen_id] == tcx_ids(veth)
    marked0, plain0 = counter.counter("seen", 0), counter.counter("seen", 1)
    veth.send(1000)
    time.sleep(0.05)
    assert (counter.counter("seen", 0) - marked0, counter.counter("seen", 1) - plain0) == (1000, 0)
    again = ok(direct(dict(base, deployment=marker.name, program="tcx_mark", before=counter.name)))
    assert not again["changed"]

    moved = ok(direct(dict(base, deployment=marker.name, program="tcx_mark", after=f"{seen_id}")))
    assert moved["action"] == "move" and moved["chain"] == [seen_id, mark_id] == tcx_ids(veth)
    marked0, plain0 = counter.counter("seen", 0), counter.counter("seen", 1)
    veth.send(1000)
    time.sleep(0.05)
    assert (counter.counter("seen", 0) - marked0, counter.counter("seen", 1) - plain0) == (0, 1000)
    assert not ok(direct(dict(base, deployment=marker.name, program="tcx_mark",
                              after=f"{counter.name}/tcx_seen")))["changed"]

    missing = direct(dict(base, deployment=marker.name, program="tcx_mark", before="999999"))
    assert missing["failed"] and "is not attached to interface" in missing["msg"]


def test_tcx_pin_without_deployment_links_under_the_root(veth, loaded, bpffs_root):
    """Any pinned program: its link goes to <root>/links/, and state absent finds it by pin."""
    dep = loaded()
    prog_id = dep.load(V1, helpers.BPF_DIR / "tcx_counter.bpf.o", {"tcx_count": hh.SCHED_CLS})["tcx_count"]
    args = {"pin": str(dep.dep.progs_dir(V1) / "tcx_count"), "hook": "tcx_egress", "interface": veth.host_if,
            "netns": veth.host_ns, "bpffs_root": str(bpffs_root)}
    run = ok(direct(args))
    assert run["link_pin"] == str(bpffs_root / "links" / f"{veth.host_ns}@{veth.host_if}:tcx_egress")
    assert tcx_ids(veth, TCX_EGRESS) == [prog_id] and not ok(direct(args))["changed"]
    gone = ok(direct(dict(args, state="absent")))
    assert gone["action"] == "detach" and tcx_ids(veth, TCX_EGRESS) == []


# --- cgroup ------------------------------------------------------------------------------------------
def test_cgroup_skb_egress_counts_only_its_processes(ansible_module, loaded, bpffs_root):
    dep = loaded()
    prog_id = dep.load(V1, helpers.BPF_DIR / "cgroup_skb_count.bpf.o", {"cg_egress_count": None})["cg_egress_count"]
    with hh.Cgroup() as cg:
        args = {"deployment": dep.name, "program": "cg_egress_count", "section": "cgroup_skb/egress",
                "cgroup": cg.path.name, "bpffs_root": str(bpffs_root)}
        run = helpers.four_steps(ansible_module, "bpf_attach", args)[1]
        assert run["hook"] == "cgroup_skb_egress" and run["prog_id"] == prog_id
        assert run["target"]["cgroup"] == str(cg.path) and run["chain"] == [prog_id]
        assert h.link_info(Path(run["link_pin"]))["prog_id"] == prog_id

        before = dep.counter(index=1)
        inside = hh.send_udp(300, cgroup=cg.path)
        outside = hh.send_udp(700)
        assert (inside, outside) == (300, 700)
        assert dep.counter(index=1) - before == 300

        v2 = dep.load(V2, helpers.BPF_DIR / "cgroup_skb_count.bpf.o", {"cg_egress_count": None})["cg_egress_count"]
        upgraded = ok(direct(args))
        assert upgraded["action"] == "update" and upgraded["link_id"] == run["link_id"]
        assert upgraded["chain"] == [v2]

        gone = ok(direct(dict(args, state="absent", program=None)))
        assert gone["action"] == "detach" and not Path(run["link_pin"]).exists()
        before = dep.counter(index=1)
        hh.send_udp(100, cgroup=cg.path)
        assert dep.counter(index=1) == before


# --- tracing -----------------------------------------------------------------------------------------
def test_tracepoint_counts_getpid_of_a_process_and_overlaps_on_upgrade(loaded, bpffs_root):
    dep = loaded()
    v1 = dep.load(V1, helpers.BPF_DIR / "tracing_count.bpf.o", {"tp_getpid": None})["tp_getpid"]
    args = {"deployment": dep.name, "program": "tp_getpid", "section": "tracepoint/syscalls/sys_enter_getpid",
            "bpffs_root": str(bpffs_root)}
    check = ok(direct(args, check=True))
    assert check["changed"] and check["hook"] == "tracepoint" and check["target"] == {
        "target": "syscalls/sys_enter_getpid"}
    run = ok(direct(args))
    assert run["action"] == "attach" and run["prog_id"] == v1
    assert h.link_info(Path(run["link_pin"]))["prog_id"] == v1
    assert not ok(direct(args))["changed"]
    with hh.Syscaller() as proc:
        key = proc.pid.to_bytes(4, "little")
        start = dep.map_value("getpid_calls", key)  # its own start-up called getpid once
        proc.getpid(5000)
        assert dep.map_value("getpid_calls", key) - start == 5000

        v2 = dep.load(V2, helpers.BPF_DIR / "tracing_count.bpf.o", {"tp_getpid": None})["tp_getpid"]
        upgraded = ok(direct(args))
        assert upgraded["action"] == "overlap" and upgraded["prog_id"] == v2
        assert any("attached first" in str(w) for w in upgraded.get("warnings", []))
        assert h.link_info(Path(run["link_pin"]))["prog_id"] == v2
        links = [link for link in h.bpftool("link", "show") if link.get("prog_id") in (v1, v2)]
        assert [link["prog_id"] for link in links] == [v2]  # the old link is gone
        proc.getpid(1000)
        assert dep.map_value("getpid_calls", key) - start == 6000

        gone = ok(direct(dict(args, state="absent", program=None)))
        assert gone["action"] == "detach" and not Path(run["link_pin"]).exists()
        proc.getpid(1000)
        assert dep.map_value("getpid_calls", key) - start == 6000


def test_raw_tracepoint_counts_syscalls_of_a_process(loaded, bpffs_root):
    dep = loaded()
    prog_id = dep.load(V1, helpers.BPF_DIR / "tracing_count.bpf.o", {"rtp_syscalls": None})["rtp_syscalls"]
    args = {"deployment": dep.name, "program": "rtp_syscalls", "section": "raw_tracepoint/sys_enter",
            "bpffs_root": str(bpffs_root)}
    run = ok(direct(args))
    assert run["hook"] == "raw_tracepoint" and run["target"] == {"target": "sys_enter"} and run["prog_id"] == prog_id
    assert not ok(direct(args))["changed"]
    with hh.Syscaller() as proc:
        key = proc.pid.to_bytes(4, "little") + GETPID_NR.to_bytes(4, "little")
        start = dep.map_value("syscalls", key)
        proc.getpid(3000)
        assert dep.map_value("syscalls", key) - start == 3000
        ok(direct(dict(args, state="absent", program=None)))
        proc.getpid(100)
        assert dep.map_value("syscalls", key) - start == 3000


# --- netfilter ---------------------------------------------------------------------------------------
def test_netfilter_local_in_counts_packets(veth, loaded, bpffs_root):
    dep = loaded()
    v1 = dep.load(V1, helpers.BPF_DIR / "nf_count.bpf.o", {"nf_count": hh.NETFILTER})["nf_count"]
    args = {"deployment": dep.name, "program": "nf_count", "section": "netfilter", "pf": "ipv4",
            "hooknum": "local_in", "priority": -100, "netns": veth.host_ns, "bpffs_root": str(bpffs_root)}
    run = ok(direct(args))
    assert run["action"] == "attach" and run["target"]["hooknum"] == "local_in"
    link = h.link_info(Path(run["link_pin"]))
    assert link["prog_id"] == v1
    assert not ok(direct(args))["changed"]
    before = dep.counter()
    assert veth.send(1500) == 1500
    time.sleep(0.05)
    assert dep.counter() - before == 1500

    v2 = dep.load(V2, helpers.BPF_DIR / "nf_count.bpf.o", {"nf_count": hh.NETFILTER})["nf_count"]
    upgraded = ok(direct(args))
    # one link per pf/hook/priority and no update: detached, then attached (the module says so)
    assert upgraded["action"] == "detach_attach" and h.link_info(Path(run["link_pin"]))["prog_id"] == v2
    assert any("one link there at a time" in str(w) for w in upgraded.get("warnings", []))
    before = dep.counter()
    veth.send(500)
    time.sleep(0.05)
    assert dep.counter() - before == 500   # one program runs after the switch, not two

    ok(direct(dict(args, state="absent", program=None)))
    before = dep.counter()
    veth.send(500)
    assert dep.counter() == before


# --- refusals: one line, host unchanged ----------------------------------------------------------
def test_bad_inputs_fail_in_one_line_and_change_nothing(veth, loaded, bpffs_root):
    dep = loaded()
    dep.load(V1, helpers.BPF_DIR / "tcx_counter.bpf.o", {"tcx_count": hh.SCHED_CLS})
    base = {"deployment": dep.name, "program": "tcx_count", "bpffs_root": str(bpffs_root)}
    cases = [
        (dict(base, hook="cgroup_skb_egress", cgroup=str(hh.cgroup2_root())), r"is a sched_cls program; hook cgroup_skb_egress takes"),
        (dict(base, hook="tcx_ingress", interface="ebpfdnope0", netns=veth.host_ns), r"ebpfdnope0"),
        (dict(base, hook="tcx_ingress", interface=veth.host_if, netns="ebpfd-no-such-ns"), r"does not exist"),
        (dict(base, hook="cgroup_skb_egress", cgroup="ebpfd-no-such-cgroup"), r"does not exist"),
        (dict(base, hook="tracepoint", target="syscalls/sys_enter_ebpfd_nope"), r"no tracepoint"),
        (dict(base, hook="raw_tracepoint", target="ebpfd_nope"), r"no raw tracepoint"),
        (dict(base, hook="tcx_sideways", interface=veth.host_if), r"value of hook must be one of"),
        (dict(base, section="tc", interface=veth.host_if), r"ingress or egress"),
        (dict(base, hook="kprobe", target="do_unlinkat"), r"no kprobes"),
        (dict(base, hook="fentry", target="do_unlinkat"), r"lockdown"),
        (dict(base, hook="freplace", target=f"{bpffs_root}/ebpfd-nope:ebpfd_policy"), r"kernel lockdown \(.*\) refuses freplace"),
        (dict(base, hook="netfilter", pf="ipv4", hooknum="local_in"), r"needs pf"),
        (dict(base, hook="cgroup_skb_egress", cgroup=str(hh.cgroup2_root()), before="1"), r"tcx hooks only"),
        (dict(base, program="nope", hook="tcx_ingress", interface=veth.host_if, netns=veth.host_ns), r"no program 'nope'"),
    ]
    ours = set(dep.ids[V1].values())

    def snapshot():   # our program's links (other tests run beside us), our pins, the interface's tcx list
        links = [link for link in h.bpftool("link", "show") if link.get("prog_id") in ours]
        return links, sorted(str(p) for p in bpffs_root.rglob("*")), tcx_ids(veth)
    before = snapshot()
    for args, words in cases:
        msg = helpers.assert_one_line_failure(direct(args))
        assert re.search(words, msg), (words, msg, args)
    assert snapshot() == before
