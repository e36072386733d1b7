"""XDP attachment planning: desired vs current → action, diff, drift and refusals (pure, no kernel)."""
from __future__ import annotations

import pytest

from ansible_collections.ebpf.deploy.plugins.module_utils import _xdp as xdp
from ansible_collections.ebpf.deploy.plugins.module_utils._errors import InvalidInput
from ansible_collections.ebpf.deploy.plugins.module_utils._netlink import parse_xdp_attrs

PIN = "/sys/fs/bpf/ebpf_deploy/pktcount/links/eth0.xdp"
V1 = xdp.Prog(id=10, name="xdp_packet_counter")
V2 = xdp.Prog(id=20, name="xdp_packet_counter")


def current(**kw) -> xdp.Current:
    return xdp.Current(ifindex=2, **kw)


def ours_link(prog_id=10, mode="native", **kw) -> xdp.Current:
    return current(prog_id=prog_id, prog_name="xdp_packet_counter", mode=mode, held_by_link=7,
                   link_pin=PIN, owned=True, **kw)


def ours_netlink(prog_id=10, mode="generic", **kw) -> xdp.Current:
    return current(prog_id=prog_id, prog_name="xdp_packet_counter", mode=mode, owned=True, **kw)


def want(prog=V2, **kw) -> xdp.Desired:
    kw.setdefault("link_pin", PIN)
    return xdp.Desired(state=kw.pop("state", "present"), prog=prog, **kw)


def run(desired, cur):
    return xdp.plan(desired, cur, interface="eth0", netns=None)


# --- present -----------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["link", "netlink"])
def test_nothing_attached_attaches(method):
    p = run(want(method=method, mode="native"), current())
    assert (p.action, p.changed) == ("attach", True)
    assert p.before["prog_id"] is None and p.after["prog_id"] == 20
    assert p.after["method"] == method
    assert p.after["link_pin"] == (PIN if method == "link" else None)


def test_wanted_program_attached_is_unchanged():
    p = run(want(prog=V1, mode="native"), ours_link())
    assert (p.action, p.changed) == ("none", False)
    assert p.before == p.after


def test_auto_mode_accepts_the_mode_the_program_runs_in():
    assert run(want(prog=V1, mode=None, method="netlink"), ours_netlink(mode="generic")).action == "none"


@pytest.mark.parametrize("cur,method", [(ours_link(), "link"), (ours_netlink(mode="native"), "netlink")])
def test_new_version_is_an_atomic_replace(cur, method):
    p = run(want(method=method, mode="native"), cur)
    assert p.action == "replace"
    assert (p.before["prog_id"], p.after["prog_id"]) == (10, 20)
    assert not p.warnings


def test_replace_in_auto_mode_keeps_the_current_mode():
    p = run(want(method="netlink", mode=None), ours_netlink(mode="generic"))
    assert p.action == "replace" and p.after["mode"] == "generic"


def test_mode_change_reattaches_with_a_warning():
    p = run(want(prog=V1, mode="generic"), ours_link(mode="native"))
    assert p.action == "reattach"
    assert "native → generic" in p.warnings[0]


def test_netlink_program_moving_to_a_link_reattaches_with_a_warning():
    p = run(want(method="link", mode="generic"), ours_netlink())
    assert p.action == "reattach" and "bpf_link" in p.warnings[0]


def test_netlink_refused_on_an_interface_held_by_a_link():
    with pytest.raises(InvalidInput, match=r"interface 'eth0' holds a bpf_link \(id 7\); use method: link"):
        run(want(method="netlink", mode="native"), ours_link())


def test_foreign_program_refused_without_force_naming_id_and_name():
    cur = current(prog_id=99, prog_name="xdp_hand", mode="generic", owned=False)
    with pytest.raises(InvalidInput) as err:
        run(want(method="netlink", mode="generic"), cur)
    assert "program id 99 (xdp_hand)" in str(err.value) and "force" in str(err.value)
    assert err.value.details["foreign_prog_id"] == 99


def test_foreign_program_taken_over_with_force_atomically_by_netlink():
    cur = current(prog_id=99, prog_name="xdp_hand", mode="generic", owned=False)
    p = run(want(method="netlink", mode="generic", force=True), cur)
    assert p.action == "replace" and not p.warnings


def test_foreign_link_taken_over_with_force_is_a_link_update():
    cur = current(prog_id=99, prog_name="xdp_hand", mode="native", held_by_link=3, owned=False)
    p = run(want(method="link", force=True), cur)
    assert p.action == "replace"


def test_link_pinned_elsewhere_is_repinned():
    cur = ours_link(prog_id=20)
    cur = xdp.Current(**{**cur.__dict__, "link_pin": "/sys/fs/bpf/ebpf_deploy/old/links/eth0.xdp"})
    assert run(want(mode="native"), cur).action == "repin"


# --- drift ---------------------------------------------------------------------------------------
def test_defunct_link_pin_is_drift_and_repaired():
    p = run(want(mode="native"), current(defunct_pin=PIN))
    assert p.action == "attach"
    assert p.drift == f"the bpf_link pinned at {PIN} was detached by hand"


def test_detached_by_hand_is_drift():
    p = run(want(method="netlink"), current(last={"prog_id": 10, "mode": "generic", "method": "netlink"}))
    assert p.action == "attach" and "detached by hand" in p.drift


def test_replaced_by_hand_with_one_of_ours_is_drift_and_replaced():
    cur = ours_netlink(prog_id=10, last={"prog_id": 20, "mode": "generic", "method": "netlink"})
    p = run(want(method="netlink"), cur)
    assert p.action == "replace" and "replaced by hand" in p.drift


def test_no_note_no_drift():
    assert run(want(), current()).drift is None


# --- absent --------------------------------------------------------------------------------------
def test_absent_detaches_ours():
    p = run(want(state="absent", prog=None), ours_link())
    assert p.action == "detach" and p.after["prog_id"] is None


def test_absent_with_nothing_attached_is_unchanged():
    p = run(want(state="absent", prog=None), current())
    assert (p.action, p.changed) == ("none", False)


def test_absent_removes_a_defunct_link_pin():
    assert run(want(state="absent", prog=None), current(defunct_pin=PIN)).action == "unpin"


def test_absent_leaves_a_foreign_program_with_a_warning():
    cur = current(prog_id=99, prog_name="xdp_hand", mode="generic", owned=False)
    p = run(want(state="absent", prog=None), cur)
    assert p.action == "none" and "left in place" in p.warnings[0]
    assert run(want(state="absent", prog=None, force=True), cur).action == "detach"


# --- netlink attribute parsing -------------------------------------------------------------------
def test_parse_xdp_attrs_single_and_multi_mode():
    single = {"attrs": [("IFLA_XDP_SKB_PROG_ID", 233), ("IFLA_XDP_ATTACHED", "xdpgeneric"),
                        ("IFLA_XDP_PROG_ID", 233)]}
    state = parse_xdp_attrs(single)
    assert (state.mode, state.prog_id) == ("generic", 233)
    multi = {"attrs": [("IFLA_XDP_DRV_PROG_ID", 5), ("IFLA_XDP_HW_PROG_ID", 6), ("IFLA_XDP_ATTACHED", "xdpmulti")]}
    state = parse_xdp_attrs(multi)
    assert state.progs == {"native": 5, "offload": 6} and state.mode == "native"
    assert parse_xdp_attrs({"attrs": [("IFLA_XDP_ATTACHED", None)]}).prog_id is None
    assert parse_xdp_attrs(None).progs == {}


def test_request_validation():
    with pytest.raises(InvalidInput):
        xdp.Request(interface="eth0").validate()
    with pytest.raises(InvalidInput):
        xdp.Request(interface="eth0", pin="/x", deployment="d", program="p").validate()
    xdp.Request(interface="eth0", state="absent").validate()


# --- another deployment's interface (issue 16) ---------------------------------------------------
def test_taking_another_deployments_interface_needs_force_and_names_the_holder():
    """Anything pinned under the root counted as ours: deployment A silently took B's interface."""
    held_by_b = ours_link(holder="blocklist")
    with pytest.raises(InvalidInput) as err:
        run(want(deployment="pktcount"), held_by_b)
    assert "deployment 'blocklist'" in err.value.msg and "force" in err.value.msg
    assert err.value.details["holder_deployment"] == "blocklist"
    assert run(want(deployment="pktcount", force=True), held_by_b).action == "replace"
    assert run(want(deployment="blocklist"), held_by_b).action == "replace"      # its own: no force


def test_detaching_another_deployments_program_needs_force():
    p = run(want(state="absent", deployment="pktcount"), ours_link(holder="blocklist"))
    assert p.action == "none" and "deployment 'blocklist'" in p.warnings[0]
    assert run(want(state="absent", deployment="pktcount", force=True), ours_link(holder="blocklist")).action == "detach"


def test_a_link_pinned_for_another_namespace_is_not_the_one_on_this_interface():
    """Link info has only the ifindex: ifindex 2 exists in every namespace."""
    links = [{"id": 7, "prog_id": 10, "ifindex": 2}, {"id": 8, "prog_id": 10, "ifindex": 2}]
    pins = {7: "/r/pktcount/links/lab1@eth0:xdp", 8: "/r/pktcount/links/lab2@eth0:xdp"}
    assert xdp.pick_link(links, pins, prog_id=10, netns="lab2", ifname="eth0") == 8
    assert xdp.pick_link(links, pins, prog_id=10, netns="lab1", ifname="eth0") == 7
    assert xdp.pick_link(links[:1], {}, prog_id=10, netns="lab9", ifname="eth0") == 7   # the only one
    with pytest.raises(InvalidInput, match="cannot be told apart"):
        xdp.pick_link(links, {}, prog_id=10, netns="lab3", ifname="eth0")
    assert xdp.pick_link(links, pins, prog_id=10, netns="lab3", ifname="eth0") is None  # both elsewhere
