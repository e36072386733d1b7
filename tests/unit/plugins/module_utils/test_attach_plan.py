"""bpf_attach planning: desired vs current → action, diff, drift and refusals (pure, no kernel)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from ansible_collections.ebpf.deploy.plugins.module_utils import _attach as at
from ansible_collections.ebpf.deploy.plugins.module_utils._errors import InvalidInput
from ansible_collections.ebpf.deploy.plugins.module_utils._hook_base import Anchor, Target

PIN = "/sys/fs/bpf/ebpf_deploy/cnt/links/eth0:tcx_ingress"
TARGET = {"interface": "eth0", "ifindex": 2, "netns": None, "direction": "ingress"}
V1 = at.Prog(id=10, name="tcx_count", pin="/p/v1")
V2 = at.Prog(id=20, name="tcx_count", pin="/p/v2")


def live(prog_id=10, **kw) -> at.Current:
    kw.setdefault("owned", True)
    kw.setdefault("last", {"prog_id": prog_id})
    return at.Current(pin_state="live", link_id=7, prog_id=prog_id, prog_name="tcx_count", **kw)


def want(prog=V2, **kw) -> at.Desired:
    return at.Desired(state=kw.pop("state", "present"), link_pin=PIN, prog=prog, **kw)


def run(desired, current):
    return at.plan(desired, current, hook="tcx_ingress", target=TARGET, label="interface 'eth0' ingress")


def test_nothing_there_attaches():
    p = run(want(), at.Current())
    assert (p.action, p.changed, p.drift) == ("attach", True, None)
    assert p.before["prog_id"] is None and p.before["link_state"] == "none"
    assert (p.after["prog_id"], p.after["prog_name"], p.after["link_pin"], p.after["link_state"]) == \
        (20, "tcx_count", PIN, "live")


def test_wanted_program_on_our_link_is_unchanged():
    p = run(want(prog=V1), live())
    assert (p.action, p.changed) == ("none", False) and p.before == p.after


def test_new_version_updates_atomically_where_the_hook_can():
    assert run(want(), live()).action == "update"


def test_hooks_without_update_overlap_and_say_so():
    p = run(want(updatable=False), live())
    assert p.action == "overlap" and "attached first" in p.warnings[0]


def test_hooks_that_take_one_link_at_a_time_detach_then_attach():
    p = run(want(updatable=False, overlap=False), live())
    assert p.action == "detach_attach" and "one link there at a time" in p.warnings[0]


def test_freplace_takes_one_extension_at_a_time_and_says_what_runs_in_between():
    p = at.plan(want(updatable=False, overlap=False), live(), hook="freplace", target={"target": "/p:f"},
                label="function f of program id 3")
    assert p.action == "detach_attach" and p.warnings == [
        "function f of program id 3: the kernel cannot swap the program of this link and takes one link there at a "
        "time: the old program is detached and the new one attached (calls in between run the function itself)"]


class _Family:
    """A family whose links cannot be detached (freplace): the old link must be gone before attach."""
    can_detach = False

    def __init__(self, pin, *, fail=False):
        self.pin, self.fail, self.calls = pin, fail, []

    def attach(self, prog_fd, target, *, anchor=None):
        self.calls.append(("attach", prog_fd, os.path.exists(self.pin)))
        if self.fail and prog_fd == 20:
            raise InvalidInput("refused")
        return 50 + prog_fd

    def detach(self, link_fd, target):
        raise AssertionError("freplace links are released, not detached")


class _Bpf:
    def obj_get(self, path):
        return 20

    def prog_fd(self, prog_id):
        return prog_id

    def close(self, fd):
        pass

    def pin(self, fd, path):
        Path(path).write_text(str(fd))

    def link_info(self, fd):
        return {"id": fd}


@pytest.mark.parametrize("fail", [False, True])
def test_a_link_that_cannot_be_detached_is_released_before_the_new_one_and_put_back_on_failure(tmp_path, fail):
    pin = str(tmp_path / "links" / "t:freplace")
    os.makedirs(os.path.dirname(pin))
    Path(pin).write_text("old")
    manager = at.AttachManager(at.Request(deployment="d", program="p", hook="freplace"), bpf=_Bpf())
    desired = at.Desired(state="present", link_pin=pin, prog=V2, updatable=False, overlap=False)
    current = live(prog_id=10)
    family = _Family(pin, fail=fail)
    the_plan = at.plan(desired, current, hook="freplace", target={}, label="t")
    if not fail:
        assert manager._act(the_plan, family, Target("t", "t"), desired, current) == 70
        assert family.calls == [("attach", 20, False)] and Path(pin).read_text() == "70"
        return
    with pytest.raises(InvalidInput, match="refused"):
        manager._act(the_plan, family, Target("t", "t"), desired, current)
    # the old pin released first, the new program refused, the old one (by its id) attached again
    assert family.calls == [("attach", 20, False), ("attach", 10, False)] and Path(pin).read_text() == "60"


def test_defunct_pin_is_drift_and_reattached():
    p = run(want(), at.Current(pin_state="defunct", link_id=7, last={"prog_id": 10}))
    assert p.action == "reattach" and "detached by hand" in p.drift


def test_removed_pin_is_drift_and_attached_again():
    p = run(want(), at.Current(last={"prog_id": 10}))
    assert p.action == "attach" and "removed by hand" in p.drift


def test_program_replaced_by_hand_is_drift():
    p = run(want(prog=V1), live(prog_id=30, owned=True, last={"prog_id": 10}))
    assert p.action == "update" and "replaced by hand with program id 30" in p.drift


def test_foreign_program_on_our_link_is_refused_without_force():
    foreign = live(prog_id=30, owned=False, last=None)
    with pytest.raises(InvalidInput) as err:
        run(want(), foreign)
    assert "did not deploy" in err.value.msg and "force: true" in err.value.msg
    assert run(want(force=True), foreign).action == "update"


def test_absent():
    assert run(want(state="absent", prog=None), live()).action == "detach"
    assert run(want(state="absent", prog=None), at.Current()).action == "none"
    assert run(want(state="absent", prog=None), at.Current(pin_state="defunct", link_id=7)).action == "unpin"
    kept = run(want(state="absent", prog=None), live(owned=False, last=None))
    assert kept.action == "none" and "left in place" in kept.warnings[0]
    gone = run(want(state="absent", prog=None), live())
    assert gone.after["prog_id"] is None and gone.after["link_pin"] is None


BEFORE_5 = Anchor("before", 5, "deployment other (program id 5)")
AFTER_5 = Anchor("after", 5, "deployment other (program id 5)")


def test_order_in_place_is_unchanged_and_out_of_place_overlaps():
    assert run(want(prog=V1, anchor=BEFORE_5), live(chain=(10, 5))).action == "none"
    moved = run(want(prog=V1, anchor=BEFORE_5), live(chain=(5, 10)))
    assert moved.action == "move" and "cannot move a link" in moved.warnings[0]
    assert run(want(prog=V1, anchor=AFTER_5), live(chain=(5, 10))).action == "none"
    # a new version in the wrong place: the move and the swap in one overlap
    assert run(want(anchor=BEFORE_5), live(chain=(5, 10))).action == "overlap"
    assert run(want(anchor=BEFORE_5), live(chain=(10, 5))).action == "update"
    assert run(want(anchor=BEFORE_5), at.Current(chain=(5,))).after["before"] == 5


def test_anchor_must_be_on_the_hook_and_not_ourselves():
    with pytest.raises(InvalidInput, match="is not attached to interface 'eth0' ingress"):
        run(want(anchor=BEFORE_5), at.Current(chain=(8,)))
    with pytest.raises(InvalidInput, match="cannot run before itself"):
        run(want(anchor=Anchor("before", 20, "program id 20")), at.Current(chain=(20,)))


def test_order_ok():
    assert at.order_ok((1, 2, 3), 1, Anchor("before", 3, "x")) is True
    assert at.order_ok((1, 2, 3), 3, Anchor("before", 1, "x")) is False
    assert at.order_ok((1, 2, 3), 3, Anchor("after", 1, "x")) is True
    assert at.order_ok(None, 3, Anchor("after", 1, "x")) is None
    assert at.order_ok((1, 2), 3, None) is None


@pytest.mark.parametrize("params, words", [
    ({"state": "present", "deployment": "d"}, "needs deployment + program"),
    ({"state": "absent"}, "needs the deployment"),
    ({"program": "p"}, "program needs deployment"),
    ({"deployment": "d", "program": "p", "before": "1", "after": "2"}, "before or after"),
    ({"deployment": "d", "program": "p", "hook": "tcx_sideways"}, "unknown hook"),
    ({"deployment": "d", "program": "p", "state": "gone"}, "state must be"),
])
def test_request_validation(params, words):
    with pytest.raises(InvalidInput) as err:
        at.AttachManager(at.Request.from_params(params))
    assert words in err.value.msg


def test_family_dispatch_has_no_link_family_for_xdp_and_tc_is_a_filter():
    from ansible_collections.ebpf.deploy.plugins.module_utils import _hooks as hooks
    from ansible_collections.ebpf.deploy.plugins.module_utils._errors import UnsupportedFeature
    # xdp never reaches family_for: AttachManager.run hands it to XdpManager first
    with pytest.raises(UnsupportedFeature, match="no bpf_link family"):
        at.family_for(hooks.HOOKS["xdp"])
    for name in ("tcx_egress", "cgroup_connect4", "tracepoint", "netfilter", "tc_ingress", "tc_egress"):
        assert at.family_for(hooks.HOOKS[name]).family == hooks.HOOKS[name].family


@pytest.mark.parametrize("params, hook, target", [
    ({"section": "tracepoint/syscalls/sys_enter_getpid"}, "tracepoint", "syscalls/sys_enter_getpid"),
    ({"hook": "tracepoint", "section": "tp/syscalls/sys_enter_getpid"}, "tracepoint", "syscalls/sys_enter_getpid"),
    ({"hook": "tracepoint", "section": "tp/a/b", "target": "c/d"}, "tracepoint", "c/d"),
    ({"hook": "raw_tracepoint", "section": "tp/a/b"}, "raw_tracepoint", None),   # the option wins
    ({"hook": "tcx_egress", "section": "tc"}, "tcx_egress", None),
    ({"section": "cgroup_skb/egress"}, "cgroup_skb_egress", None),
])
def test_hook_and_target_from_options_and_section(params, hook, target):
    manager = at.AttachManager(at.Request.from_params(dict(params, deployment="d", program="p")))
    manager._recorded_section = lambda: None  # no deployment on disk
    row, resolved = manager.resolve_hook()
    assert (row.name, resolved) == (hook, target)


def test_no_hook_and_no_section_says_what_to_set():
    manager = at.AttachManager(at.Request.from_params({"deployment": "d", "program": "p"}))
    manager._recorded_section = lambda: None
    with pytest.raises(InvalidInput, match="set hook"):
        manager.resolve_hook()


def test_raw_bpf_attr_layouts_match_the_kernel():
    """union bpf_attr members as include/uapi/linux/bpf.h lays them out (offsets in bytes)."""
    import ctypes
    from ansible_collections.ebpf.deploy.plugins.module_utils import _libbpf as lib
    assert ctypes.sizeof(lib._LinkCreateAttr) == 64
    assert lib._LinkCreateAttr.attach_type.offset == 8 and lib._LinkCreateAttr.u.offset == 16
    query = lib._ProgQueryAttr
    assert (query.prog_ids.offset, query.count.offset, query.link_ids.offset, query.revision.offset) == (16, 24, 40, 56)
    assert ctypes.sizeof(lib._PerfEventAttr) == 112  # PERF_ATTR_SIZE_VER5
    assert lib._PerfEventAttr.wakeup_events.offset == 48 and lib._PerfEventAttr.config.offset == 8
