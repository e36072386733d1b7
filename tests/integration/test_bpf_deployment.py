"""ebpf.deploy.bpf_deployment against the real kernel: a whole deployment (programs, attachment, map
entries) in one task, on a veth whose peer sends real packets.

Each case runs check mode, the real run, then check mode and the real run again for idempotence;
the kernel side is read with bpftool and ip, independently of the module.
"""
from __future__ import annotations

import time
from pathlib import Path

from tests.helpers import ModuleRun, assert_one_line_failure, bpftool, listing, map_u64
from tests.integration import xdp_helpers as h

VETH_TAG = "bd"
PROGRAM = "xdp_packet_counter"


def args(veth, name: str, root: Path, obj: Path, **extra) -> dict:
    base = {"name": name, "src": str(obj), "bpffs_root": str(root),
            "attach": [{"program": PROGRAM, "interface": veth.host_if, "netns": veth.host_ns, "mode": "generic"}],
            "maps": [{"map": "pkt_count", "key_type": "u32", "value_type": "u64",
                      "entries": [{"key": 0, "value": 0}], "overwrite": False}]}
    base.update(extra)
    return base


def attached_id(veth):
    info = veth.xdp()
    return info["prog"]["id"] if info else None


def counted(root: Path, name: str) -> int:
    return h.map_counter(root / name / "maps" / "pkt_count")


def test_converges_in_one_task_and_counts_real_packets(ansible_module, veth, bpffs_root, deployment, bpf_object):
    a = args(veth, deployment, bpffs_root, bpf_object("counter"))

    check = ansible_module("bpf_deployment", a, check=True)
    assert not check["failed"], check
    assert check["changed"] and check["action"] == "load"
    assert check["attach"][0]["predicted"] and check["attach"][0]["action"] == "attach"
    assert listing(bpffs_root) == [] and attached_id(veth) is None, "check mode pinned or attached something"

    run = ansible_module("bpf_deployment", a)
    assert not run["failed"], run
    assert run["changed"] and run["action"] == "load"
    prog_id = run["attach"][0]["prog_id"]
    assert attached_id(veth) == prog_id == h.prog_info(bpffs_root / deployment / run["version"] / "progs" / PROGRAM)["id"]
    assert (bpffs_root / deployment / "links" / f"{veth.host_ns}@{veth.host_if}:xdp").exists()

    assert veth.send(500) == 500
    assert counted(bpffs_root, deployment) == 500, "the attached program did not count the peer's packets"

    for again in ansible_module.check_then_run("bpf_deployment", a):
        assert not again["failed"], again
        assert not again["changed"] and again["action"] == "none", again
        assert not again["attach"][0]["changed"] and not again["maps"][0]["changed"], again
    assert attached_id(veth) == prog_id
    assert counted(bpffs_root, deployment) == 500, "overwrite: false must leave the program's count alone"


def test_upgrade_swaps_atomically_keeps_the_map_and_rolls_back_by_version(
        ansible_module, veth, bpffs_root, deployment, bpf_object):
    v1 = ansible_module("bpf_deployment", args(veth, deployment, bpffs_root, bpf_object("counter")))
    assert not v1["failed"], v1
    veth.send(200)
    a2 = args(veth, deployment, bpffs_root, bpf_object("counter_v2"))

    check = ansible_module("bpf_deployment", a2, check=True)
    assert check["changed"] and check["action"] == "load" and check["attach"][0]["action"] == "replace", check
    assert attached_id(veth) == v1["attach"][0]["prog_id"], "check mode switched the interface"

    v2 = ansible_module("bpf_deployment", a2)
    assert not v2["failed"], v2
    assert v2["previous_version"] == v1["version"] and v2["version"] != v1["version"]
    assert v2["attach"][0]["action"] == "replace" and v2["attach"][0]["previous_prog_id"] == v1["attach"][0]["prog_id"]
    assert attached_id(veth) == v2["attach"][0]["prog_id"] != v1["attach"][0]["prog_id"]
    assert counted(bpffs_root, deployment) == 200, "the pinned map (and its count) must survive the upgrade"
    veth.send(100)
    assert counted(bpffs_root, deployment) == 300, "v2 counts into the same map"
    assert not ansible_module("bpf_deployment", a2)["changed"]

    back = {"name": deployment, "version": "previous", "bpffs_root": str(bpffs_root), "attach": a2["attach"]}
    rolled = ansible_module("bpf_deployment", back)
    assert not rolled["failed"] and rolled["changed"] and rolled["version"] == v1["version"], rolled
    assert attached_id(veth) == v1["attach"][0]["prog_id"], "rollback did not re-attach the old version"


def test_bad_input_changes_nothing_and_a_late_failure_undoes_the_run(ansible_module, veth, bpffs_root, deployment,
                                                                     bpf_object):
    v1 = ansible_module("bpf_deployment", args(veth, deployment, bpffs_root, bpf_object("counter")))
    assert not v1["failed"], v1
    veth.send(50)
    before = (listing(bpffs_root), attached_id(veth), counted(bpffs_root, deployment))

    typo = args(veth, deployment, bpffs_root, bpf_object("counter_v2"),
                attach=[{"program": PROGRAM, "interface": "ebpfd-nosuch", "netns": veth.host_ns}])
    assert_one_line_failure(ansible_module("bpf_deployment", typo), "ebpfd-nosuch")
    assert (listing(bpffs_root), attached_id(veth), counted(bpffs_root, deployment)) == before

    # a map the object does not have is only found after the new version is current: the run undoes itself
    late = args(veth, deployment, bpffs_root, bpf_object("counter_v2"),
                maps=[{"map": "ebpfd_nosuchmap", "entries": [{"key": 0, "value": 1}]}])
    undone = ansible_module("bpf_deployment", late)
    assert undone["failed"] and "ebpfd_nosuchmap" in undone["msg"], undone
    assert f"version {v1['version']} is current again" in undone["msg"], undone["msg"]
    assert (listing(bpffs_root), attached_id(veth), counted(bpffs_root, deployment)) == before, \
        "the failed run left the host changed"
    veth.send(10)
    assert counted(bpffs_root, deployment) == before[2] + 10, "the old version stopped counting"


def test_an_freplace_program_is_refused_in_one_line_before_anything_changes(ansible_module, bpffs_root, deployment,
                                                                            bpf_object):
    """freplace programs replace a function of another deployment's program: bpf_program and bpf_attach
    deploy them (the module says so); bpf_deployment refuses them, in check mode too, with nothing pinned
    and no record written."""
    before = listing(bpffs_root)
    spec = {"name": deployment, "src": str(bpf_object("freplace_policy")), "bpffs_root": str(bpffs_root)}
    for refused in ansible_module.check_then_run("bpf_deployment", spec):
        assert_one_line_failure(refused,
                                "program 'ebpfd_policy' (section freplace/ebpfd_policy) is an freplace program: "
                                "freplace programs are deployed with bpf_program and bpf_attach; bpf_deployment "
                                "does not load them")
    assert listing(bpffs_root) == before
    assert not list(Path("/var/lib/ebpf_deploy").glob(f"*/{deployment}")), "a refused run wrote a record"


def test_absent_detaches_and_removes(ansible_module, veth, bpffs_root, deployment, bpf_object):
    a = args(veth, deployment, bpffs_root, bpf_object("counter"))
    assert not ansible_module("bpf_deployment", a)["failed"]
    gone = {"name": deployment, "state": "absent", "bpffs_root": str(bpffs_root), "attach": a["attach"]}
    check = ansible_module("bpf_deployment", gone, check=True)
    assert check["changed"] and attached_id(veth) is not None and (bpffs_root / deployment).exists()
    removed = ansible_module("bpf_deployment", gone)
    assert removed["changed"] and not removed["failed"], removed
    assert attached_id(veth) is None and not (bpffs_root / deployment).exists()
    assert not ansible_module("bpf_deployment", gone)["changed"]


def test_preflight_refuses_before_loading_and_reports_when_it_passes(
        ansible_module, veth, bpffs_root, deployment, bpf_object):
    v1 = ansible_module("bpf_deployment", args(veth, deployment, bpffs_root, bpf_object("counter")))
    assert not v1["failed"], v1
    before = (listing(bpffs_root), attached_id(veth), counted(bpffs_root, deployment))
    # racy_counter has a non-atomic read-modify-write of a shared map value: a preflight warning
    racy_attach = [{"program": "xdp_racy_counter", "interface": veth.host_if, "netns": veth.host_ns, "mode": "generic"}]
    strict = args(veth, deployment, bpffs_root, bpf_object("racy_counter"), attach=racy_attach, maps=[],
                  preflight_fail_on="warning")
    for refused in ansible_module.check_then_run("bpf_deployment", strict):
        msg = assert_one_line_failure(refused, "non-atomic read-modify-write")
        assert msg.startswith("preflight refused racy_counter.bpf.o"), refused
        assert refused["preflight"]["counts"]["warning"] >= 1 and not refused["preflight"]["passed"], refused
        assert (listing(bpffs_root), attached_id(veth), counted(bpffs_root, deployment)) == before, \
            "a preflight refusal changed the host"

    lenient = dict(strict, preflight_fail_on="error")
    loaded = ansible_module("bpf_deployment", lenient)
    assert not loaded["failed"] and loaded["action"] == "load", loaded
    assert loaded["preflight"]["passed"] and loaded["preflight"]["counts"]["warning"] >= 1, loaded["preflight"]
    assert {f["check"] for f in loaded["preflight"]["findings"]} >= {"race"}
    assert attached_id(veth) == loaded["attach"][0]["prog_id"] != before[1]
    again = ansible_module("bpf_deployment", lenient)
    assert not again["changed"] and "preflight" not in again, "preflight ran although nothing was loaded"


def test_health_is_soaked_and_judged_on_the_host_in_the_switch_run(ansible_module, veth, bpffs_root, deployment,
                                                                   bpf_object):
    """With `health`, the switch's own run soaks and judges every kind of check on the host (one
    round trip): a paced sender runs through the soak, so the program's runs, the interface's
    counters and the map are read as the kernel counted them; a check that fails is a verdict, not
    a failed run, and the switch stays pending for the caller to roll back."""
    ifname = f"{veth.host_ns}/{veth.host_if}"
    checks = [{"type": "attached"},
              {"type": "program_runs", "min_runs": 50},
              {"type": "interface", "interface": veth.host_if, "netns": veth.host_ns, "min_packets": 50},
              {"type": "dmesg", "ignore": ["ebpfd-test"]},
              {"type": "command", "name": "probe", "cmd": ["ip", "netns", "exec", veth.host_ns, "true"]},
              {"type": "map", "map": "pkt_count", "key_type": "u32", "value_type": "u64",
               "query": "[?key==`0`].value | [0]", "condition": "> `0`"}]
    # paced traffic through the whole run (Ansible starts in 2-3 s, the run loads, then soaks 2 s), stopped after it
    sender = veth.start_sender(9000, pps=300)
    try:
        run = ansible_module("bpf_deployment", args(veth, deployment, bpffs_root, bpf_object("counter"),
                                                    confirm_timeout=60, health={"soak_seconds": 2, "checks": checks}))
    finally:
        sent = veth.stop_sender(sender)
    assert not run["failed"], run
    verdict = run["health"]
    assert verdict["passed"], verdict
    assert [c["type"] for c in verdict["checks"]] == [c["type"] for c in checks]
    runs = verdict["checks"][1]["detail"]
    assert f"{deployment}/{PROGRAM} ran" in runs and int(runs.rsplit(" ran ", 1)[1].split()[0]) >= 50, runs
    assert ifname in verdict["checks"][2]["detail"], verdict["checks"][2]
    assert 2 <= verdict["seconds"] < 30, verdict
    assert run["pending"] and sent > 0

    failing = [{"type": "map", "map": "pkt_count", "key_type": "u32", "value_type": "u64",
                "query": "[?key==`0`].value | [0]", "condition": "> `100000000`"},
               {"type": "command", "cmd": ["ebpfd-no-such-command"]}]
    again = ansible_module("bpf_deployment", args(veth, deployment, bpffs_root, bpf_object("counter"),
                                                  confirm_timeout=60, health={"soak_seconds": 0, "checks": failing}))
    assert not again["failed"] and again["action"] == "none", again
    assert not again["health"]["passed"], again["health"]
    details = [c["detail"] for c in again["health"]["checks"]]
    assert "wanted > `100000000`" in details[0] and "ebpfd-no-such-command" in details[1], details


def test_health_input_the_host_cannot_judge_is_refused_before_the_switch(ansible_module, veth, bpffs_root,
                                                                         deployment, bpf_object):
    obj = bpf_object("counter")
    cases = {
        "unknown type 'ebpfd_bogus'": {"soak_seconds": 0, "checks": [{"type": "ebpfd_bogus"}]},
        "must be shorter than confirm_timeout": {"soak_seconds": 30, "checks": [{"type": "attached"}]},
    }
    for expected, health in cases.items():
        run = ansible_module("bpf_deployment", args(veth, deployment, bpffs_root, obj, confirm_timeout=30, health=health))
        assert_one_line_failure(run, expected)
        assert listing(bpffs_root) == [] and attached_id(veth) is None, f"{expected}: something was loaded"


# --- a statically initialised PROG_ARRAY: each version calls its own callee ------------------------
def tailcall_args(veth, name: str, root: Path, obj: Path, **extra) -> dict:
    return dict({"name": name, "src": str(obj), "bpffs_root": str(root),
                 "attach": [{"program": "xdp_entry", "interface": veth.host_if, "netns": veth.host_ns,
                             "mode": "generic"}]}, **extra)


def as_int(shown) -> int:
    """A bpftool key or value: a number (with BTF) or little-endian hex bytes."""
    return shown if isinstance(shown, int) else int.from_bytes(bytes(int(b, 16) for b in shown), "little")


def table_slots(prog_id: int) -> dict:
    """The slots of the PROG_ARRAY an (entry) program uses, read with bpftool: {slot: program id}."""
    for map_id in bpftool("prog", "show", "id", str(prog_id))["map_ids"]:
        if bpftool("map", "show", "id", str(map_id))["type"] == "prog_array":
            slots = {}
            for entry in bpftool("map", "dump", "id", str(map_id)) or []:
                entry = entry.get("formatted", entry)
                slots[as_int(entry["key"])] = as_int(entry["value"])
            return slots
    raise AssertionError(f"program {prog_id} uses no PROG_ARRAY")


def hits_by_version(veth, root: Path, name: str, packets: int = 100) -> tuple:
    """Send packets, then how many each version's callee counted meanwhile: (v1, v2). Read until
    every packet is counted, for 5 s at most: on a loaded machine the receive side may run later, in
    ksoftirqd, than the send returns."""
    pin = root / name / "maps" / "hits"
    before = (map_u64(pin, 1), map_u64(pin, 2))
    assert veth.send(packets) == packets
    deadline = time.monotonic() + 5
    while True:
        seen = map_u64(pin, 1) - before[0], map_u64(pin, 2) - before[1]
        if sum(seen) >= packets or time.monotonic() > deadline:
            return seen
        time.sleep(0.05)


def test_a_static_prog_array_changes_only_at_the_switch_and_back_at_the_rollback(
        ansible_module, veth, bpffs_root, deployment, bpf_object):
    v1 = ansible_module("bpf_deployment", tailcall_args(veth, deployment, bpffs_root, bpf_object("tailcall_static")))
    assert not v1["failed"], v1
    v1_entry = attached_id(veth)
    v1_slots = table_slots(v1_entry)
    assert hits_by_version(veth, bpffs_root, deployment) == (100, 0), "v1's entry does not reach v1's callee"
    own_table = bpffs_root / deployment / v1["version"] / "maps" / "jmp_table"
    assert own_table.exists() and not (bpffs_root / deployment / "maps" / "jmp_table").exists()

    a2 = tailcall_args(veth, deployment, bpffs_root, bpf_object("tailcall_static_v2"), confirm_timeout=120)
    pins = listing(bpffs_root)
    check = ansible_module("bpf_deployment", a2, check=True)
    assert not check["failed"] and check["changed"] and check["action"] == "load", check
    assert table_slots(v1_entry) == v1_slots, "a check-mode load wrote into the running version's table"
    assert listing(bpffs_root) == pins, "check mode pinned something"
    assert hits_by_version(veth, bpffs_root, deployment) == (100, 0), "v1 tail-calls another callee after check mode"

    staged = ansible_module("bpf_program", {"name": deployment, "src": str(bpf_object("tailcall_static_v2")),
                                            "bpffs_root": str(bpffs_root), "keep_versions": 2})
    assert not staged["failed"] and staged["action"] == "load", staged
    assert attached_id(veth) == v1_entry
    assert table_slots(v1_entry) == v1_slots, "loading v2 wrote into v1's table"
    assert hits_by_version(veth, bpffs_root, deployment) == (100, 0), "v1's entry tail-calls v2's callee before the switch"
    back_to_v1 = ansible_module("bpf_program", {"name": deployment, "version": v1["version"],
                                                "bpffs_root": str(bpffs_root), "keep_versions": 2})
    assert not back_to_v1["failed"], back_to_v1

    v2 = ansible_module("bpf_deployment", a2)
    assert not v2["failed"] and v2["pending"], v2
    assert attached_id(veth) != v1_entry
    assert hits_by_version(veth, bpffs_root, deployment) == (0, 100), "after the switch v2's callee counts"
    assert table_slots(v1_entry) == v1_slots

    rolled = ansible_module("bpf_deployment", {"name": deployment, "state": "rolled_back",
                                               "bpffs_root": str(bpffs_root)})
    assert not rolled["failed"] and rolled["version"] == v1["version"], rolled
    assert attached_id(veth) == v1_entry
    assert table_slots(v1_entry) == v1_slots
    assert hits_by_version(veth, bpffs_root, deployment) == (100, 0), "after the rollback v1's callee counts again"


def test_maps_entries_for_a_static_prog_array_are_refused_by_name(
        ansible_module, veth, bpffs_root, deployment, bpf_object):
    v1 = ansible_module("bpf_deployment", tailcall_args(veth, deployment, bpffs_root, bpf_object("tailcall_static")))
    assert not v1["failed"], v1
    before = (listing(bpffs_root), attached_id(veth), table_slots(attached_id(veth)))
    write = [{"map": "jmp_table", "entries": [{"key": 0, "value": "xdp_entry"}]}]
    for refused in ansible_module.check_then_run("bpf_deployment", tailcall_args(
            veth, deployment, bpffs_root, bpf_object("tailcall_static_v2"), maps=write)):
        assert_one_line_failure(refused, "jmp_table", "one per version")
        assert (listing(bpffs_root), attached_id(veth), table_slots(attached_id(veth))) == before
    alone = ansible_module("bpf_map", {"deployment": deployment, "map": "jmp_table", "bpffs_root": str(bpffs_root),
                                       "entries": [{"key": 0, "value": "xdp_entry"}]})
    assert_one_line_failure(alone, "jmp_table", "one per version")
    assert (listing(bpffs_root), attached_id(veth), table_slots(attached_id(veth))) == before


def test_a_lost_per_version_table_pin_is_pinned_again_from_the_running_program(
        ansible_module, veth, bpffs_root, deployment, bpf_object):
    a1 = tailcall_args(veth, deployment, bpffs_root, bpf_object("tailcall_static"))
    v1 = ansible_module("bpf_deployment", a1)
    assert not v1["failed"], v1
    v1_entry = attached_id(veth)
    own_table = bpffs_root / deployment / v1["version"] / "maps" / "jmp_table"
    held_id = bpftool("map", "show", "pinned", str(own_table))["id"]
    own_table.unlink()   # by hand, while v1 runs

    with_diff = ModuleRun(extra_env={"ANSIBLE_VERBOSITY": "3"})   # the callbacks drop `diff` below 3
    check = with_diff("bpf_deployment", a1, check=True, diff=True)
    assert not check["failed"] and check["changed"] and check["action"] == "none", check
    assert not own_table.exists(), "check mode pinned the table again"
    fixed = with_diff("bpf_deployment", a1, diff=True)
    assert not fixed["failed"] and fixed["changed"] and fixed["action"] == "none", fixed
    assert bpftool("map", "show", "pinned", str(own_table))["id"] == held_id, "pinned another table than v1 runs"
    for run in (check, fixed):
        assert any(str(own_table) in line for line in run["program"]["repaired"]), run["program"]
        assert any(str(own_table) in line for line in run["diff"]["after"]["program"]["repaired"]), run["diff"]
    assert attached_id(veth) == v1_entry
    assert hits_by_version(veth, bpffs_root, deployment) == (100, 0), "v1's entry lost its callee with the pin"
    again = ansible_module("bpf_deployment", a1)
    assert not again["failed"] and not again["changed"], again

    v2 = ansible_module("bpf_deployment", tailcall_args(veth, deployment, bpffs_root, bpf_object("tailcall_static_v2")))
    assert not v2["failed"] and v2["version"] != v1["version"], v2
    own_table.unlink()   # v1 is kept, not running: a rollback to it finds its table gone
    rolled = ansible_module("bpf_deployment", {"name": deployment, "state": "rolled_back", "rollback_to": "previous",
                                               "bpffs_root": str(bpffs_root)})
    assert not rolled["failed"] and rolled["version"] == v1["version"], rolled
    assert attached_id(veth) == v1_entry
    assert bpftool("map", "show", "pinned", str(own_table))["id"] == held_id
    assert hits_by_version(veth, bpffs_root, deployment) == (100, 0), "after the rollback v1's callee counts again"


# --- a statically initialised ARRAY_OF_MAPS: each version reaches its own inner map ------------------
def mapinmap_args(veth, name: str, root: Path, obj: Path, **extra) -> dict:
    return dict({"name": name, "src": str(obj), "bpffs_root": str(root),
                 "attach": [{"program": "xdp_inner_count", "interface": veth.host_if, "netns": veth.host_ns,
                             "mode": "generic"}]}, **extra)


def outer_slots(prog_id: int) -> dict:
    """The slots of the ARRAY_OF_MAPS a program uses, read with bpftool: {slot: inner map id}."""
    for map_id in bpftool("prog", "show", "id", str(prog_id))["map_ids"]:
        if bpftool("map", "show", "id", str(map_id))["type"] == "array_of_maps":
            return {as_int(e.get("formatted", e)["key"]): as_int(e.get("formatted", e)["value"])
                    for e in bpftool("map", "dump", "id", str(map_id)) or []}
    raise AssertionError(f"program {prog_id} uses no ARRAY_OF_MAPS")


def pinned_map_id(pin: Path) -> int:
    return bpftool("map", "show", "pinned", str(pin))["id"]


def inner_counts(root: Path, name: str) -> tuple:
    """What each version's inner map counted so far: (inner_v1, inner_v2), 0 for one not pinned."""
    maps = root / name / "maps"
    return tuple(map_u64(maps / inner) if (maps / inner).exists() else 0 for inner in ("inner_v1", "inner_v2"))


def reached(veth, root: Path, name: str) -> tuple:
    """Send 100 packets: ((v1, v2) counted in the shared hits, (inner_v1, inner_v2) counted)."""
    before = inner_counts(root, name)
    shared = hits_by_version(veth, root, name)
    after = inner_counts(root, name)
    return shared, (after[0] - before[0], after[1] - before[1])


def test_a_static_map_of_maps_is_per_version_and_each_version_reaches_its_own_inner_map(
        ansible_module, veth, bpffs_root, deployment, bpf_object):
    v1 = ansible_module("bpf_deployment", mapinmap_args(veth, deployment, bpffs_root, bpf_object("mapinmap_static")))
    assert not v1["failed"], v1
    v1_prog = attached_id(veth)
    maps = bpffs_root / deployment / "maps"
    assert (bpffs_root / deployment / v1["version"] / "maps" / "outer").exists() and not (maps / "outer").exists()
    v1_slots = outer_slots(v1_prog)
    assert v1_slots == {0: pinned_map_id(maps / "inner_v1")}, "v1's outer map does not hold v1's inner map"
    assert reached(veth, bpffs_root, deployment) == ((100, 0), (100, 0))

    a2 = mapinmap_args(veth, deployment, bpffs_root, bpf_object("mapinmap_static_v2"), confirm_timeout=120)
    pins = listing(bpffs_root)
    check = ansible_module("bpf_deployment", a2, check=True)
    assert not check["failed"] and check["changed"] and check["action"] == "load", check
    assert outer_slots(v1_prog) == v1_slots, "a check-mode load wrote into the running version's outer map"
    assert listing(bpffs_root) == pins, "check mode pinned something"

    staged = ansible_module("bpf_program", {"name": deployment, "src": str(bpf_object("mapinmap_static_v2")),
                                            "bpffs_root": str(bpffs_root), "keep_versions": 2})
    assert not staged["failed"] and staged["action"] == "load", staged
    assert attached_id(veth) == v1_prog and outer_slots(v1_prog) == v1_slots, "loading v2 wrote into v1's outer map"
    assert reached(veth, bpffs_root, deployment) == ((100, 0), (100, 0)), "v1 reaches v2's inner map before the switch"
    back_to_v1 = ansible_module("bpf_program", {"name": deployment, "version": v1["version"],
                                                "bpffs_root": str(bpffs_root), "keep_versions": 2})
    assert not back_to_v1["failed"], back_to_v1

    v2 = ansible_module("bpf_deployment", a2)
    assert not v2["failed"] and v2["pending"], v2
    v2_prog = attached_id(veth)
    assert v2_prog != v1_prog
    assert outer_slots(v2_prog) == {0: pinned_map_id(maps / "inner_v2")}, "v2 does not reach its own inner map"
    assert outer_slots(v1_prog) == v1_slots
    assert reached(veth, bpffs_root, deployment) == ((0, 100), (0, 100)), "after the switch v2's inner map counts"
    hits_ids = [m for m in bpftool("prog", "show", "id", str(v2_prog))["map_ids"]
                if m in bpftool("prog", "show", "id", str(v1_prog))["map_ids"]]
    assert pinned_map_id(maps / "hits") in hits_ids, "the versions do not share the ordinary map hits"

    rolled = ansible_module("bpf_deployment", {"name": deployment, "state": "rolled_back",
                                               "bpffs_root": str(bpffs_root)})
    assert not rolled["failed"] and rolled["version"] == v1["version"], rolled
    assert attached_id(veth) == v1_prog and outer_slots(v1_prog) == v1_slots
    assert reached(veth, bpffs_root, deployment) == ((100, 0), (100, 0)), "after the rollback v1's inner map counts"


def test_maps_entries_for_a_static_map_of_maps_are_refused_naming_its_type(
        ansible_module, veth, bpffs_root, deployment, bpf_object):
    v1 = ansible_module("bpf_deployment", mapinmap_args(veth, deployment, bpffs_root, bpf_object("mapinmap_static")))
    assert not v1["failed"], v1
    before = (listing(bpffs_root), attached_id(veth), outer_slots(attached_id(veth)))
    write = [{"map": "outer", "entries": [{"key": 0, "value": 0}]}]
    for refused in ansible_module.check_then_run("bpf_deployment", mapinmap_args(
            veth, deployment, bpffs_root, bpf_object("mapinmap_static_v2"), maps=write)):
        assert_one_line_failure(refused, "outer", "array_of_maps", "one per version")
        assert (listing(bpffs_root), attached_id(veth), outer_slots(attached_id(veth))) == before
    alone = ansible_module("bpf_map", {"deployment": deployment, "map": "outer", "bpffs_root": str(bpffs_root),
                                       "entries": [{"key": 0, "value": 0}]})
    assert_one_line_failure(alone, "outer", "array_of_maps", "one per version")
    assert (listing(bpffs_root), attached_id(veth), outer_slots(attached_id(veth))) == before
