"""The manager's pure decisions: map plans, none/switch/load, pruning, request validation."""
from __future__ import annotations

import pytest

from ansible_collections.ebpf.deploy.plugins.module_utils._errors import InvalidInput, MapConflict
from ansible_collections.ebpf.deploy.plugins.module_utils._objects import MapSpec
from ansible_collections.ebpf.deploy.plugins.module_utils._uapi import PROG_TYPES
from ansible_collections.ebpf.deploy.plugins.module_utils._program import (
    MapPlan,
    Request,
    decide,
    freplace_functions,
    plan_map,
    state_view,
    versions_to_prune,
)

V1, V2, V3, V4 = "111111111111", "222222222222", "333333333333", "444444444444"


def spec(**kw):
    base = dict(name="pkt_count", type=2, type_name="array", key_size=4, value_size=8, max_entries=1)
    base.update(kw)
    return MapSpec(**base)


def test_matching_pinned_map_is_reused():
    plan = plan_map(spec(), spec(), pinned_id=7, live=None, map_conflict="fail")
    assert (plan.action, plan.reused, plan.needs_pin, plan.pinned_id) == ("reuse", True, False, 7)


def test_a_statically_initialised_prog_array_is_never_reused_and_needs_no_load_of_its_own():
    table = spec(name="jmp_table", type=3, type_name="prog_array", value_size=4, per_version=True)
    # not even a matching shared pin, nor a live table of the running version: libbpf would write into it
    plan = plan_map(table, spec(name="jmp_table", type=3, type_name="prog_array", value_size=4), pinned_id=7,
                    live=(8, table), map_conflict="fail")
    assert (plan.action, plan.reused, plan.needs_pin) == ("per_version", False, False)
    # a pinned version brings its own table: switching to it needs no load
    assert decide(wanted_version=V2, wanted_programs=["p"], current_version=V1, pinned_programs={V2: ["p"]},
                  map_plans=[plan]) == "switch"


def test_conflicting_pinned_map_is_refused_with_both_specs():
    with pytest.raises(MapConflict) as err:
        plan_map(spec(type=1, type_name="hash", max_entries=4096), spec(), pinned_id=7, live=None,
                 map_conflict="fail")
    result = err.value.to_result()
    assert result["msg"].startswith("map 'pkt_count': type array \u2192 hash, max_entries 1 \u2192 4096")
    assert result["pinned"]["type"] == "array" and result["wanted"]["type"] == "hash"
    assert [c["field"] for c in result["changes"]] == ["type", "max_entries"]


def test_conflicting_pinned_map_is_recreated_on_request():
    plan = plan_map(spec(max_entries=2), spec(), pinned_id=7, live=None, map_conflict="recreate")
    assert (plan.action, plan.reused, plan.needs_pin) == ("recreate", False, True)
    assert plan.changes == [("max_entries", "1", "2")]


def test_unpinned_map_still_used_by_the_running_version_is_pinned_again():
    plan = plan_map(spec(), None, pinned_id=None, live=(9, spec()), map_conflict="fail")
    assert (plan.action, plan.live_id, plan.reused, plan.needs_pin) == ("repin", 9, True, True)
    # a live map with another spec is not adopted
    assert plan_map(spec(), None, pinned_id=None, live=(9, spec(max_entries=5)), map_conflict="fail").action == "create"


def test_internal_maps_are_never_pinned():
    plan = plan_map(spec(name=".rodata", internal=True), None, pinned_id=None, live=None, map_conflict="fail")
    assert plan.action == "internal" and not plan.needs_pin


def _plans(*actions):
    return [MapPlan(f"m{i}", spec(name=f"m{i}"), action=a) for i, a in enumerate(actions)]


@pytest.mark.parametrize("current,pinned,maps,expected", [
    (V1, {V1: ["p"]}, ("reuse",), "none"),                       # same version, all pins there
    (V1, {V1: ["p", "q"]}, ("reuse", "internal"), "none"),
    (V2, {V1: ["p"], V2: ["p"]}, ("reuse",), "switch"),          # pinned but not current: rollback
    (V2, {V2: ["p"]}, ("reuse",), "load"),                       # new object
    (V1, {V1: []}, ("reuse",), "load"),                          # program pin deleted by hand
    (V1, {V1: ["p"]}, ("create",), "load"),                      # map pin gone and not recoverable
    (V1, {V1: ["p"]}, ("repin",), "load"),                       # map pin gone, live map re-pinned
    (None, {}, (), "load"),                                      # first deployment
])
def test_decide(current, pinned, maps, expected):
    assert decide(wanted_version=V1, wanted_programs=["p"], current_version=current,
                  pinned_programs=pinned, map_plans=_plans(*maps)) == expected


def test_prune_keeps_current_and_the_most_recently_current():
    # activation order oldest -> newest; V3 is current and V4 is being deployed
    order = [V1, V2, V3]
    assert versions_to_prune(order, new_current=V4, old_current=V3, keep=1) == [V1, V2]
    assert versions_to_prune(order, new_current=V4, old_current=V3, keep=2) == [V1]
    assert versions_to_prune(order, new_current=V4, old_current=V3, keep=0) == [V1, V2, V3]
    # rollback to V1: V3 (current until now) is the one kept
    assert versions_to_prune(order, new_current=V1, old_current=V3, keep=1) == [V2]
    # unchanged run with more versions than asked for
    assert versions_to_prune(order, new_current=V3, old_current=V3, keep=1) == [V1]
    assert versions_to_prune([], new_current=V1, old_current=None, keep=1) == []


def test_request_validation():
    req = Request.from_params({"name": "demo", "src": "/x.o", "programs": ["b", "a"], "remote_src": True,
                               "keep_versions": 2, "verifier_log_level": 1})
    assert req.load_options == {"programs": ["a", "b"], "program_type": None}
    for bad in ({"name": "a.b", "src": "/x"}, {"name": "demo"}, {"name": "demo", "src": "/x", "keep_versions": -1},
                {"name": "demo", "version": "nothex"}, {"name": "demo", "src": "/x", "programs": ["../x"]},
                {"name": "demo", "src": "/x", "map_conflict": "merge"}):
        with pytest.raises(InvalidInput):
            Request.from_params(bad)
    assert Request.from_params({"name": "demo", "state": "absent"}).state == "absent"
    assert Request.from_params({"name": "demo", "version": V1}).version == V1


def test_state_view():
    assert state_view(None, [], {}, []) == {}
    assert state_view(V1, ["b", "a"], {}, [V1]) == {"version": V1, "programs": ["a", "b"], "maps": {},
                                                    "versions": [V1]}


def test_a_program_listed_twice_is_refused_before_anything_loads():
    """It loaded, then failed pinning the second copy (EEXIST) in the staging directory."""
    with pytest.raises(InvalidInput) as err:
        Request.from_params({"name": "demo", "src": "/x.o", "remote_src": True,
                             "programs": ["xdp_a", "xdp_b", "xdp_a"]})
    assert err.value.msg == "programs lists 'xdp_a' more than once"


# --- an EPERM of a locked-down kernel -----------------------------------------------------------------
def test_lockdown_refusal_names_lockdown_for_tracing_and_lsm_programs_only(monkeypatch):
    from ansible_collections.ebpf.deploy.plugins.module_utils import _hook_tracing
    from ansible_collections.ebpf.deploy.plugins.module_utils import _program

    monkeypatch.setattr(_hook_tracing, "lockdown_mode", lambda: "integrity")
    refused = _program.lockdown_refusal("fentry_unlink", PROG_TYPES["tracing"], "fentry_count.bpf.o")
    assert refused.msg.startswith("program 'fentry_unlink' not loaded: kernel lockdown (integrity) refuses "
                                  "tracing (fentry/fexit) programs")
    assert refused.details["lockdown"] == "integrity" and refused.details["errno"] == 1
    assert "lsm programs" in _program.lockdown_refusal("lsm_x", PROG_TYPES["lsm"], "o").msg
    assert "refuses ext (freplace) programs" in _program.lockdown_refusal("ebpfd_policy", PROG_TYPES["ext"], "o").msg
    assert _program.lockdown_refusal("xdp_x", PROG_TYPES["xdp"], "o") is None   # the usual EPERM hint applies
    monkeypatch.setattr(_hook_tracing, "lockdown_mode", lambda: None)
    assert _program.lockdown_refusal("fentry_unlink", PROG_TYPES["tracing"], "o") is None


def test_no_kernel_btf_is_said_only_when_libbpf_found_none():
    from ansible_collections.ebpf.deploy.plugins.module_utils import _program

    found = _program.no_kernel_btf(["libbpf: failed to find valid kernel BTF", "libbpf: Error loading vmlinux BTF: -3"],
                                   3, "core.bpf.o")
    assert found.msg.startswith("object 'core.bpf.o' not loaded: it needs the kernel's BTF")
    assert "/sys/kernel/btf/vmlinux" in found.msg and "CONFIG_DEBUG_INFO_BTF" in found.msg
    assert found.details["errno_name"] == "ESRCH"
    assert _program.no_kernel_btf(["libbpf: failed to load object 'x'"], 22, "x.bpf.o") is None


# --- freplace: attach_program ---------------------------------------------------------------------
EXT, KPROBE = PROG_TYPES["ext"], PROG_TYPES["kprobe"]


def test_freplace_programs_name_their_function_and_need_attach_program():
    programs = [("ebpfd_policy", EXT, "freplace/ebpfd_policy"), ("kp", KPROBE, "kprobe/do_unlinkat")]
    assert freplace_functions(programs, "/sys/fs/bpf/t", label="o") == {"ebpfd_policy": "ebpfd_policy"}
    assert freplace_functions(programs[1:], None, label="o") == {}
    cases = [
        (programs, None, True, "program 'ebpfd_policy' (section freplace/ebpfd_policy) is an freplace program: give "
                               "attach_program, the bpffs pin of the loaded program whose function it replaces; "
                               "nothing was loaded"),
        (programs[1:], "/sys/fs/bpf/t", True, "attach_program is for freplace programs and o loads none (programs: "
                                              "kp); nothing was loaded"),
        ([("p", EXT, "freplace")], "/t", True, "program 'p': section 'freplace' names no function to replace (write "
                                               "SEC(\"freplace/<function>\")); nothing was loaded"),
        ([("p", EXT, "freplace/")], "/t", True, "program 'p': section 'freplace/' names no function to replace"),
        (programs, "/sys/fs/bpf/t", False, "program 'ebpfd_policy' (section freplace/ebpfd_policy) is an freplace "
                                           "program: freplace programs are deployed with bpf_program and bpf_attach; "
                                           "bpf_deployment does not load them"),
    ]
    for progs, attach_program, allowed, words in cases:
        with pytest.raises(InvalidInput) as err:
            freplace_functions(progs, attach_program, label="o", allowed=allowed)
        assert err.value.msg.startswith(words) and "\n" not in err.value.msg, err.value.msg


def test_attach_program_is_an_absolute_pin_given_with_an_object():
    req = Request.from_params({"name": "demo", "src": "/x.o", "attach_program": "/sys/fs/bpf/app/current/progs/main"})
    assert req.attach_program == "/sys/fs/bpf/app/current/progs/main"
    assert "attach_program" not in req.load_options   # the digest takes the target's id, once it is read
    for bad, words in (({"name": "demo", "src": "/x.o", "attach_program": "app/main"}, "must be the absolute bpffs pin"),
                       ({"name": "demo", "version": V1, "attach_program": "/p"}, "give src with it")):
        with pytest.raises(InvalidInput, match=words):
            Request.from_params(bad)
    assert Request.from_params({"name": "demo", "state": "absent", "attach_program": "/p"}).state == "absent"
