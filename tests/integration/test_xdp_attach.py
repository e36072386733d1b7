"""ebpf.deploy.xdp_attach against the real kernel, with real packets.

A veth joins two fresh namespaces (`ebpfd-xa-*`): the host side, where XDP is attached, and the peer
that sends bounded UDP streams. The counter program and its v2 are loaded into a deployment layout
under a fresh bpffs root, sharing the pinned `pkt_count` map, so a swap keeps counting in one place.
What the module reports is checked against what the kernel says (`ip -j link`, bpftool) and against
packets: counted by the program (map delta) vs received by the interface (rx delta).
"""
from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from ansible_collections.ebpf.deploy.plugins.module_utils import _xdp as xdp
from ansible_collections.ebpf.deploy.plugins.module_utils._pins import Deployment

from tests import helpers
from tests.helpers import RUN_DIR, SESSION, assert_one_line_failure, forget_deployment, unique
from tests.integration import xdp_helpers as h

VETH_TAG = "xa"
PROGRAM = "xdp_packet_counter"
V1, V2 = "a1a1a1a1a1a1", "b2b2b2b2b2b2"
# `ip -j link` XDP modes
IP_MODE = {1: "native", 2: "generic", 3: "offload"}


class Deployed:
    """counter (v1) and counter_v2 (v2) pinned as a bpf_program deployment would pin them."""

    def __init__(self, root: Path, bpf_object):
        self.root = root
        self.name = unique("ebpfd-xa-")
        self.dep = Deployment(str(root), self.name)
        self.map_pin = self.dep.maps_dir / "pkt_count"
        self.ids = {}
        for version, stem in ((V1, "counter"), (V2, "counter_v2")):
            reuse = {"pkt_count": self.map_pin} if self.map_pin.exists() else None
            pin = self.dep.progs_dir(version) / PROGRAM
            self.ids[version] = h.load_xdp(bpf_object(stem), pin, maps_dir=root / f"_maps_{version}", reuse=reuse)
            if version == V1:
                self.dep.maps_dir.mkdir(parents=True, exist_ok=True)
                (root / f"_maps_{version}" / "pkt_count").rename(self.map_pin)
        self.dep.set_current(V1)

    def use(self, version: str) -> int:
        self.dep.set_current(version)
        return self.ids[version]

    def counted(self) -> int:
        return h.map_counter(self.map_pin)

    def link_pin(self, veth) -> Path:
        return self.dep.link_pin(veth.host_if, veth.host_ns)

    def cleanup(self) -> None:
        """What runs leave outside the bpffs root: metadata, notes and lock files (/run)."""
        forget_deployment(self.name, self.root)


@pytest.fixture
def deployed(bpffs_root, bpf_object):
    dep = Deployed(bpffs_root, bpf_object)
    yield dep
    dep.cleanup()


@pytest.fixture
def foreign(bpf_object):
    """A counter loaded by hand outside any ebpf.deploy root."""
    base = helpers.BPFFS / unique("ebpfd_foreign_")
    prog_id = h.load_xdp(bpf_object("blocklist"), base / "prog", maps_dir=base / "maps")
    yield base / "prog", prog_id
    h.remove_tree(base)


def args(veth, deployed, **kw) -> dict:
    base = {"interface": veth.host_if, "netns": veth.host_ns, "deployment": deployed.name,
            "program": PROGRAM, "bpffs_root": str(deployed.root)}
    base.update(kw)
    return {key: value for key, value in base.items() if value is not None}


def direct(a: dict, *, check: bool = False) -> dict:
    return helpers.direct("xdp_attach", a, check=check)


def warnings(res: dict) -> str:
    return " ".join(w if isinstance(w, str) else str(w.get("msg", w)) for w in res.get("warnings", []))


def kernel_attachment(veth) -> tuple:
    info = veth.xdp()
    if not info:
        return None, None
    return info["prog"]["id"], IP_MODE[info["mode"]]


def count_stream(veth, deployed, n: int = 2000) -> tuple:
    c0, r0 = deployed.counted(), veth.host_counters()["rx_packets"]
    sent = veth.send(n)
    time.sleep(0.05)
    return sent, deployed.counted() - c0, veth.host_counters()["rx_packets"] - r0


# --- attach, count, detach: both methods, both modes -------------------------------------------------
@pytest.mark.parametrize("method", ["link", "netlink"])
@pytest.mark.parametrize("mode", ["generic", "native"])
def test_attach_counts_packets_and_detach_stops(ansible_module, veth, deployed, method, mode):
    a = args(veth, deployed, method=method, mode=mode)
    v1 = deployed.ids[V1]
    diff = direct(a, check=True)["diff"]
    assert diff["before"]["prog_id"] is None and diff["before"]["method"] is None
    assert (diff["after"]["prog_id"], diff["after"]["prog_name"], diff["after"]["mode"], diff["after"]["method"]) == \
        (v1, "xdp_packet_coun", mode, method)
    steps = helpers.four_steps(ansible_module, "xdp_attach", a)
    check, run, idem = steps[0], steps[1], steps[3]
    assert check["prog_id"] == v1 and check["previous_prog_id"] is None
    assert (run["prog_id"], run["mode"], run["method"]) == (v1, mode, method)
    assert kernel_attachment(veth) == (v1, mode)
    if method == "link":
        pin = deployed.link_pin(veth)
        assert run["link_pin"] == str(pin) and pin.exists()
        link = h.link_info(pin)
        assert link["id"] == run["link_id"] == idem["link_id"] and link["prog_id"] == v1
    else:
        assert run["link_pin"] is None and run["link_id"] is None

    sent, counted, received = count_stream(veth, deployed)
    assert sent == 2000 and counted == received == sent

    absent = dict(a, state="absent")
    check = ansible_module("xdp_attach", absent, check=True)
    assert check["changed"] and kernel_attachment(veth) == (v1, mode)  # check mode changed nothing
    diff = direct(absent, check=True)["diff"]
    assert diff["before"]["prog_id"] == v1 and diff["after"]["prog_id"] is None
    gone = ansible_module("xdp_attach", absent, diff=True)
    assert gone["changed"] and gone["previous_prog_id"] == v1 and gone["prog_id"] is None
    assert kernel_attachment(veth) == (None, None)
    if method == "link":
        assert not deployed.link_pin(veth).exists()
    sent, counted, received = count_stream(veth, deployed)
    assert counted == 0 and received == sent
    again = ansible_module("xdp_attach", absent)
    assert not again["failed"] and not again["changed"]


def test_root_namespace_interface_default_mode(ansible_module, bpffs_root, bpf_object):
    """No netns: the interface is in the namespace the module runs in; mode left to the kernel."""
    dep = Deployed(bpffs_root, bpf_object)
    with h.VethLab(host_in_root=True) as veth:
        a = {"interface": veth.host_if, "deployment": dep.name, "program": PROGRAM, "bpffs_root": str(bpffs_root)}
        run = helpers.four_steps(ansible_module, "xdp_attach", a)[1]
        assert run["netns"] is None and run["mode"] == "native"  # veth has native XDP
        assert Path(run["link_pin"]) == dep.dep.link_pin(veth.host_if)
        assert kernel_attachment(veth) == (dep.ids[V1], "native")
        sent, counted, received = count_stream(veth, dep)
        assert counted == received == sent
        assert ansible_module("xdp_attach", dict(a, state="absent"))["changed"]
        assert kernel_attachment(veth) == (None, None)
    dep.cleanup()


# --- upgrade: v2 replaces v1 atomically while packets flow -------------------------------------------
@pytest.mark.parametrize("method", ["link", "netlink"])
def test_replace_with_v2_has_no_gap(ansible_module, veth, deployed, method):
    a = args(veth, deployed, method=method, mode="native")
    first = ansible_module("xdp_attach", a)
    assert first["changed"] and first["prog_id"] == deployed.ids[V1]
    v2 = deployed.use(V2)
    byte_pin = deployed.root / f"_maps_{V2}" / "byte_count"

    check = ansible_module("xdp_attach", a, check=True)
    assert check["changed"] and kernel_attachment(veth)[0] == deployed.ids[V1]

    c0, r0 = deployed.counted(), veth.host_counters()["rx_packets"]
    sender = veth.start_sender(600_000, pps=30_000)  # at most 20 s; stopped shortly after the swap
    try:
        time.sleep(0.5)
        swap = direct(a)
        time.sleep(0.5)
        running = sender.poll() is None
    finally:
        sent = veth.stop_sender(sender)
    time.sleep(0.05)
    counted, received = deployed.counted() - c0, veth.host_counters()["rx_packets"] - r0
    assert running, "the stream ended before the swap: the host is too slow for this test's window"

    assert swap["changed"] and swap["prog_id"] == v2 and swap["previous_prog_id"] == deployed.ids[V1]
    assert swap["diff"]["before"]["prog_id"] == deployed.ids[V1] and swap["diff"]["after"]["prog_id"] == v2
    assert kernel_attachment(veth) == (v2, "native")
    if method == "link":
        assert swap["link_id"] == first["link_id"]  # the same link, its program updated in place
    # both versions ran during the stream, and not one received packet went uncounted
    assert 0 < h.map_counter(byte_pin) < sent * 100
    assert counted == received == sent, (sent, counted, received)
    assert not ansible_module("xdp_attach", a)["changed"]


@pytest.mark.parametrize("method", ["link", "netlink"])
def test_mode_change_reattaches_and_warns(ansible_module, veth, deployed, method):
    a = args(veth, deployed, method=method, mode="native")
    first = ansible_module("xdp_attach", a)
    moved = direct(dict(a, mode="generic"))
    assert moved["changed"] and moved["action"] == "reattach" and "native → generic" in warnings(moved)
    assert kernel_attachment(veth) == (deployed.ids[V1], "generic")
    if method == "link":
        assert moved["link_id"] != first["link_id"] and h.link_info(deployed.link_pin(veth))["id"] == moved["link_id"]
    assert not ansible_module("xdp_attach", dict(a, mode="generic"))["changed"]


# --- end to end with ebpf.deploy.bpf_program ------------------------------------------------------------
def test_deployments_of_bpf_program_attach_and_upgrade(ansible_module, veth, bpffs_root, bpf_object):
    """bpf_program deploys v1 → attached; bpf_program deploys v2 → the same link now runs v2."""
    name = unique("ebpfd-xa-")
    deploy = {"name": name, "bpffs_root": str(bpffs_root)}
    try:
        first = ansible_module("bpf_program", dict(deploy, src=str(bpf_object("counter"))))
        assert first["changed"] and not first["failed"], first
        v1 = {p["name"]: p["id"] for p in first["programs"]}[PROGRAM]
        map_pin = Path({m["name"]: m["pin"] for m in first["maps"]}["pkt_count"])
        a = {"interface": veth.host_if, "netns": veth.host_ns, "deployment": name, "program": PROGRAM,
             "bpffs_root": str(bpffs_root), "mode": "native"}
        attached = helpers.four_steps(ansible_module, "xdp_attach", a)[1]
        assert attached["prog_id"] == v1 and kernel_attachment(veth) == (v1, "native")
        c0 = h.map_counter(map_pin)
        assert veth.send(1000) == 1000 and h.map_counter(map_pin) - c0 == 1000

        second = ansible_module("bpf_program", dict(deploy, src=str(bpf_object("counter_v2"))))
        assert second["changed"] and not second["failed"], second
        v2 = {p["name"]: p["id"] for p in second["programs"]}[PROGRAM]
        swapped = ansible_module("xdp_attach", a)
        assert swapped["changed"] and (swapped["previous_prog_id"], swapped["prog_id"]) == (v1, v2)
        assert swapped["link_id"] == attached["link_id"] and kernel_attachment(veth) == (v2, "native")
        c0 = h.map_counter(map_pin)
        assert veth.send(1000) == 1000 and h.map_counter(map_pin) - c0 == 1000  # same map, still counting
        assert not ansible_module("xdp_attach", a)["changed"]
        assert ansible_module("xdp_attach", dict(a, state="absent"))["changed"]
    finally:
        forget_deployment(name, bpffs_root)


# --- drift: changed by hand → reported and repaired ---------------------------------------------------
def test_link_detached_by_hand_is_drift_and_repaired(ansible_module, veth, deployed):
    a = args(veth, deployed, method="link", mode="generic")
    first = ansible_module("xdp_attach", a)
    h.run("bpftool", "link", "detach", "id", str(first["link_id"]))
    assert kernel_attachment(veth) == (None, None)
    check = ansible_module("xdp_attach", a, check=True, diff=True)
    assert check["changed"] and "detached by hand" in check["drift"]
    repaired = direct(a)
    assert repaired["changed"] and "detached by hand" in repaired["drift"]
    assert "drift" in repaired["diff"]["before_header"] and repaired["diff"]["before"]["prog_id"] is None
    assert kernel_attachment(veth) == (deployed.ids[V1], "generic")
    assert h.link_info(deployed.link_pin(veth))["id"] == repaired["link_id"] != first["link_id"]
    assert not ansible_module("xdp_attach", a)["changed"]


def test_netlink_detached_or_replaced_by_hand_is_drift_and_repaired(ansible_module, veth, deployed):
    a = args(veth, deployed, method="netlink", mode="generic")
    ansible_module("xdp_attach", a)
    veth.ip_link("xdpgeneric", "off")
    repaired = ansible_module("xdp_attach", a, diff=True)
    assert repaired["changed"] and "detached by hand" in repaired["drift"]
    assert kernel_attachment(veth) == (deployed.ids[V1], "generic")
    # replaced by hand with another of our versions: replaced back, atomically
    veth.ip_link("xdpgeneric", "pinned", str(deployed.dep.progs_dir(V2) / PROGRAM), force=True)
    repaired = ansible_module("xdp_attach", a, diff=True)
    assert repaired["changed"] and "replaced by hand" in repaired["drift"]
    assert repaired["previous_prog_id"] == deployed.ids[V2] and repaired["prog_id"] == deployed.ids[V1]
    assert kernel_attachment(veth) == (deployed.ids[V1], "generic")


# --- a program this collection did not attach ----------------------------------------------------------
@pytest.mark.parametrize("method", ["link", "netlink"])
def test_foreign_program_refused_then_taken_over_with_force(ansible_module, veth, deployed, foreign, method):
    pin, foreign_id = foreign
    veth.ip_link("xdpgeneric", "pinned", str(pin))
    name = h.prog_info(pin)["name"]
    a = args(veth, deployed, method=method, mode="generic")
    refused = ansible_module("xdp_attach", a)
    assert refused["failed"] and f"program id {foreign_id} ({name})" in refused["msg"]
    assert "force" in refused["msg"] and "\n" not in refused["msg"]
    assert kernel_attachment(veth) == (foreign_id, "generic")

    forced = dict(a, force=True)
    check = ansible_module("xdp_attach", forced, check=True)
    assert check["changed"] and kernel_attachment(veth) == (foreign_id, "generic")
    taken = direct(forced)
    assert taken["changed"] and taken["previous_prog_id"] == foreign_id
    assert kernel_attachment(veth) == (deployed.ids[V1], "generic")
    if method == "netlink":
        assert taken["action"] == "replace" and not warnings(taken)  # atomic
    else:  # the kernel refuses a bpf_link over a netlink-attached program: detach first, and say so
        assert taken["action"] == "reattach" and "no atomic way" in warnings(taken)
    assert not ansible_module("xdp_attach", forced)["changed"]


def test_absent_leaves_a_foreign_program(ansible_module, veth, deployed, foreign):
    pin, foreign_id = foreign
    veth.ip_link("xdpgeneric", "pinned", str(pin))
    res = direct(args(veth, deployed, state="absent"))
    assert not res.get("failed") and not res["changed"] and "left in place" in warnings(res)
    assert kernel_attachment(veth) == (foreign_id, "generic")
    veth.ip_link("xdpgeneric", "off")


# --- errors: one line, nothing changed ----------------------------------------------------------------
def _fails(ansible_module, veth, a: dict, *needles: str) -> str:
    before = kernel_attachment(veth)
    msg = assert_one_line_failure(ansible_module("xdp_attach", a), *needles)
    assert kernel_attachment(veth) == before
    return msg


def test_unknown_interface(ansible_module, veth, deployed):
    _fails(ansible_module, veth, args(veth, deployed, interface="ebpfdnope0"), "'ebpfdnope0'", veth.host_ns)


def test_unknown_netns_is_not_created(ansible_module, veth, deployed):
    ns = unique("ebpfd-xa-") + "-none"
    _fails(ansible_module, veth, args(veth, deployed, netns=ns), ns, "does not exist")
    assert not Path(f"/run/netns/{ns}").exists()


def test_program_that_is_not_xdp(ansible_module, veth, deployed, bpf_object):
    pin = deployed.root / "tc" / "tc_pass"
    h.load_xdp(h.tc_object(bpf_object("counter").parent), pin, maps_dir=deployed.root / "tc_maps", prog_type="tc")
    a = args(veth, deployed, deployment=None, program=None, pin=str(pin))
    _fails(ansible_module, veth, a, "sched_cls", "not XDP", "tc_pass")


def test_native_mode_unsupported_on_lo(ansible_module, veth, deployed):
    _fails(ansible_module, veth, args(veth, deployed, interface="lo", mode="native", method="netlink"),
           "'lo'", "native", "mode: generic")
    _fails(ansible_module, veth, args(veth, deployed, interface="lo", mode="native", method="link"),
           "'lo'", "native", "mode: generic")
    assert not deployed.dep.link_pin("lo", veth.host_ns).exists()


@pytest.mark.parametrize("method", ["link", "netlink"])
def test_native_mode_refused_for_an_mtu_too_large_for_xdp(ansible_module, veth, deployed, method):
    """veth with a 9000-byte MTU: the kernel says ERANGE (a link carries no extack); the module
    says why, and nothing is attached."""
    h.run("ip", "link", "set", "dev", veth.peer_if, "mtu", "9000", netns=veth.peer_ns)
    veth.ip_link("mtu", "9000")
    try:
        _fails(ansible_module, veth, args(veth, deployed, mode="native", method=method),
               "refuses XDP in native mode", "MTU", "mode: generic")
        assert not veth.xdp(), veth.xdp()
    finally:
        veth.ip_link("mtu", "1500")
        h.run("ip", "link", "set", "dev", veth.peer_if, "mtu", "1500", netns=veth.peer_ns)


@pytest.mark.parametrize("method", ["link", "netlink"])
def test_offload_unsupported_on_veth(ansible_module, veth, deployed, method):
    _fails(ansible_module, veth, args(veth, deployed, mode="offload", method=method), "offload", veth.host_if)


def test_netlink_on_an_interface_held_by_a_link(ansible_module, veth, deployed):
    linked = ansible_module("xdp_attach", args(veth, deployed, method="link", mode="generic"))
    deployed.use(V2)
    _fails(ansible_module, veth, args(veth, deployed, method="netlink", mode="generic"),
           f"interface '{veth.host_if}' (netns {veth.host_ns}) holds a bpf_link (id {linked['link_id']}); use method: link or detach it first")


def test_missing_deployment_or_program(ansible_module, veth, deployed):
    _fails(ansible_module, veth, args(veth, deployed, deployment=f"{deployed.name}-none"), f"'{deployed.name}-none'",
           "no current version")
    _fails(ansible_module, veth, args(veth, deployed, program="xdp_nope"), "'xdp_nope'", "no pin")
    _fails(ansible_module, veth, args(veth, deployed, deployment=None, program=None,
                                      pin=str(deployed.root / "nothing")), "no pinned program")


# --- concurrent change: the expected old program is enforced by the kernel -----------------------------
@pytest.mark.parametrize("method", ["link", "netlink"])
def test_concurrent_change_is_detected_not_overwritten(ansible_module, veth, deployed, method):
    """A run that read v1 but finds v2 attached at the moment it swaps fails and changes nothing."""
    a = args(veth, deployed, method=method, mode="generic")
    ansible_module("xdp_attach", a)
    v1, v2 = deployed.ids[V1], deployed.use(V2)
    mgr = xdp.XdpManager(xdp.Request.from_params(a))
    with xdp.netlink.Netlink(veth.host_ns) as nl:
        iface = nl.interface(veth.host_if)
        stale = xdp.read_current(mgr.bpf, nl, iface, bpffs_root=str(deployed.root),
                                 link_pin=mgr.link_pin_path())
        assert stale.prog_id == v1
        # someone else swaps to v2 between our read and our act
        ansible_module("xdp_attach", a)
        assert kernel_attachment(veth) == (v2, "generic")
        other = xdp.Prog(id=v1, pin=str(deployed.dep.progs_dir(V1) / PROGRAM))
        method_impl = xdp.METHOD_CLASSES[method](mgr.bpf, nl, iface)
        with pytest.raises(xdp.EbpfDeployError, match="changed while this run worked"):
            method_impl.replace(other, current=stale, link_pin=stale.link_pin)
    assert kernel_attachment(veth) == (v2, "generic")


@pytest.fixture(autouse=True, scope="module")
def _no_leftovers():
    """No namespace of this file is left (this session's: other sessions may be running it too)."""
    yield
    leftovers = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout
    for lock in (RUN_DIR / "locks").glob(f"xdp-ebpfd-xa-{SESSION}*.lock"):
        lock.unlink()  # interface locks of pin-only runs on our test interfaces
    assert f"ebpfd-xa-{SESSION}" not in leftovers
