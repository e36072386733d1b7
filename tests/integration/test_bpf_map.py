"""ebpf.deploy.bpf_map against the real kernel, with real packets where a program reads the map.

Every case runs the module the way a playbook does (ad hoc, through Ansible) in four steps where it
applies: check mode (reports the change, writes nothing) → run → check again (nothing to do) → run
again (unchanged). Map contents are checked with bpftool, which does not go through the code under
test. Namespaces, veths and pins are named `ebpfd*` and removed afterwards.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from ansible_collections.ebpf.deploy.plugins.module_utils import _map
from ansible_collections.ebpf.deploy.plugins.module_utils._map import path_lock_name

from tests import helpers
from tests.helpers import RUN_DIR, bpftool
from tests.integration.xdp_helpers import VethLab, map_counter, run

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for the bpffs and XDP")

VETH_TAG = "bm"
LOCK_DIR = RUN_DIR / "locks"

SEND_FROM = r"""
import socket, sys
src, dst, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((src, 0))
for _ in range(count):
    s.sendto(b"ebpfd-bm", (dst, 9))
"""


# --- helpers --------------------------------------------------------------------------------------
def possible_cpus() -> int:
    total = 0
    for part in Path("/sys/devices/system/cpu/possible").read_text().strip().split(","):
        low, _sep, high = part.partition("-")
        total += int(high or low) - int(low) + 1
    return total


def dump(pin: Path) -> list:
    """The map as bpftool sees it (raw bytes and, with BTF, formatted)."""
    return bpftool("map", "dump", "pinned", str(pin)) or []


def raw_entries(pin: Path) -> dict:
    """{key bytes: value bytes} from bpftool (per-CPU maps: {key: [value bytes per CPU]})."""
    out = {}
    for item in dump(pin):
        key = bytes(int(b, 16) for b in item["key"])
        if "values" in item:
            out[key] = [bytes(int(b, 16) for b in cpu["value"]) for cpu in item["values"]]
        else:
            out[key] = bytes(int(b, 16) for b in item["value"])
    return out


def wait_for(predicate, timeout: float = 5.0):
    """Packets are processed in softirq after the sender returns: poll briefly."""
    deadline = time.monotonic() + timeout
    value = predicate()
    while not value and time.monotonic() < deadline:
        time.sleep(0.05)
        value = predicate()
    return value


def direct(args: dict, *, check: bool = False) -> dict:
    return helpers.direct("bpf_map", args, check=check)


def four_steps(ansible_module, args: dict, *, expect_change: bool = True) -> dict:
    """check → run → check → run; the real run reports what check mode predicted, the re-runs no
    entry. Returns the first real run's result."""
    check, first, _again_check, again = helpers.four_steps(ansible_module, "bpf_map", args, changes=expect_change)
    for name in ("added", "changed_keys", "removed"):
        assert first[name] == check[name], (name, check, first)
    assert (again["added"], again["changed_keys"], again["removed"]) == ([], [], [])
    return first


@pytest.fixture
def deploy(ansible_module, bpffs_root, bpf_object):
    """Load an object with ebpf.deploy.bpf_program as deployment `ebpfd-bm-<stem>-<hex>`."""
    made = []

    def _deploy(stem: str) -> tuple:
        name = helpers.unique(f"ebpfd-bm-{stem.replace('_', '-')}-", 2)
        result = ansible_module("bpf_program", {"name": name, "src": str(bpf_object(stem)),
                                                "bpffs_root": str(bpffs_root)})
        assert not result["failed"], result.get("msg")
        made.append(name)
        progs = {p["name"]: Path(p["pin"]) for p in result["programs"]}
        maps = {m["name"]: Path(m["pin"]) for m in result["maps"]}
        return name, progs, maps

    yield _deploy
    for name in made:   # the module file itself: a second or two less than through `ansible`
        helpers.direct("bpf_program", {"name": name, "state": "absent", "bpffs_root": str(bpffs_root)})
        (LOCK_DIR / f"{name}.lock").unlink(missing_ok=True)


@pytest.fixture
def standalone(bpffs_root):
    """Pin paths for standalone maps under the test's bpffs root; their lock files are removed."""
    paths = []

    def _path(name: str) -> Path:
        path = bpffs_root / f"ebpfd_{name}"
        paths.append(path)
        return path

    bpffs_root.mkdir(parents=True, exist_ok=True)
    yield _path
    for path in paths:
        path.unlink(missing_ok=True)
        (LOCK_DIR / f"{path_lock_name(str(path))}.lock").unlink(missing_ok=True)


@pytest.fixture
def veth(veth):
    """The conftest's veth, with a second source address on the peer, so one source can be listed
    and another not."""
    octet = veth.peer_ip.rsplit(".", 1)[0]
    veth.other_ip = f"{octet}.3"
    run("ip", "addr", "add", f"{veth.other_ip}/24", "dev", veth.peer_if, netns=veth.peer_ns)
    mac = json.loads(run("ip", "-j", "link", "show", "dev", veth.peer_if, netns=veth.peer_ns).stdout)[0]["address"]
    run("ip", "neigh", "replace", veth.other_ip, "lladdr", mac, "dev", veth.host_if, "nud", "permanent",
        netns=veth.host_ns)
    return veth


def send_from(veth: VethLab, src: str, count: int) -> None:
    """`count` UDP datagrams from `src` (an address of the peer) to the host side."""
    subprocess.run(["nsenter", f"--net=/run/netns/{veth.peer_ns}", sys.executable, "-c", SEND_FROM,
                    src, veth.host_ip, str(count)], check=True, timeout=60, capture_output=True)


def attach(veth: VethLab, prog_pin: Path) -> None:
    veth.ip_link("xdpgeneric", "pinned", str(prog_pin))


# --- the blocklist example: entries decide which packets are dropped --------------------------------
def test_blocklist_entries_drop_listed_sources_and_pass_the_rest(ansible_module, deploy, bpffs_root, veth):
    name, progs, maps = deploy("blocklist")
    attach(veth, progs["xdp_blocklist"])
    blocklist, pass_count = maps["blocklist"], maps["pass_count"]

    # nothing listed: everything passes
    send_from(veth, veth.peer_ip, 10)
    assert wait_for(lambda: map_counter(pass_count) >= 10)
    assert dump(blocklist) == []

    args = {"deployment": name, "map": "blocklist", "bpffs_root": str(bpffs_root),
            "key_type": "ipv4", "value_type": "u64", "entries": [{"key": veth.peer_ip, "value": 0}]}
    check = direct(args, check=True)
    assert check["changed"] and check["added"] == [veth.peer_ip]
    assert check["diff"] == {"before": {"entries": {}}, "after": {"entries": {veth.peer_ip: 0}}}
    assert dump(blocklist) == [], "check mode wrote to the map"
    first = four_steps(ansible_module, args)
    assert first["added"] == [veth.peer_ip]
    assert first["map"]["type"] == "hash" and first["map"]["max_entries"] == 1024
    assert raw_entries(blocklist) == {bytes(map(int, veth.peer_ip.split("."))): bytes(8)}

    # the next packets from the listed source are dropped (and counted in its entry); the other passes
    passed = map_counter(pass_count)
    send_from(veth, veth.peer_ip, 20)
    send_from(veth, veth.other_ip, 7)
    assert wait_for(lambda: raw_entries(blocklist)[bytes(map(int, veth.peer_ip.split(".")))] ==
                    (20).to_bytes(8, "little"))
    assert wait_for(lambda: map_counter(pass_count) >= passed + 7)
    assert map_counter(pass_count) < passed + 20, "listed packets passed"

    # reading for a health check: decoded entries, jmespath-friendly
    read_args = {k: v for k, v in args.items() if k != "entries"}
    read = ansible_module("bpf_map", read_args)
    assert read["changed"] is False
    assert read["entries"] == [{"key": veth.peer_ip, "value": 20}]

    # overwrite=false keeps the drop counter while making sure the key is there
    keep = dict(args, overwrite=False)
    assert ansible_module("bpf_map", keep)["changed"] is False
    # without it, the listed value is what the map must hold: the counter is reset (a change)
    reset = direct(args, check=True)
    assert reset["changed"] and reset["changed_keys"] == [veth.peer_ip]
    assert reset["diff"]["before"]["entries"] == {veth.peer_ip: 20}

    # swap: list the other source and purge the first; the effect shows on the next packets
    swap = dict(args, entries=[{"key": veth.other_ip, "value": 0}], purge=True)
    first = four_steps(ansible_module, swap)
    assert first["added"] == [veth.other_ip] and first["removed"] == [veth.peer_ip]
    passed = map_counter(pass_count)
    send_from(veth, veth.peer_ip, 15)
    send_from(veth, veth.other_ip, 5)
    assert wait_for(lambda: map_counter(pass_count) >= passed + 15)
    assert wait_for(lambda: ansible_module("bpf_map", read_args)["entries"] == [{"key": veth.other_ip, "value": 5}])

    # purge everything: all traffic passes again
    empty = dict(args, entries=[], purge=True)
    four_steps(ansible_module, empty)
    assert dump(blocklist) == []
    passed = map_counter(pass_count)
    send_from(veth, veth.other_ip, 9)
    assert wait_for(lambda: map_counter(pass_count) >= passed + 9)


# --- PROG_ARRAY: the tail call reaches the stage only while the module keeps it in the table --------
def test_prog_array_entry_routes_tail_calls_and_purge_stops_them(ansible_module, deploy, bpffs_root, veth):
    name, progs, maps = deploy("tailcall")
    attach(veth, progs["xdp_entry"])
    stage_count = maps["stage_count"]

    send_from(veth, veth.peer_ip, 10)
    time.sleep(0.3)
    assert map_counter(stage_count) == 0, "the stage ran without a table entry"

    args = {"deployment": name, "map": "jmp_table", "bpffs_root": str(bpffs_root),
            "entries": [{"key": 0, "value": "xdp_stage_count"}]}
    stage_id = bpftool("prog", "show", "pinned", str(progs["xdp_stage_count"]))["id"]
    assert direct(args, check=True)["diff"]["after"]["entries"] == {"0": f"xdp_stage_count (id {stage_id})"}
    first = four_steps(ansible_module, args)
    assert first["added"] == [0]
    # the module has exited: the entry stays because the table is pinned
    assert raw_entries(maps["jmp_table"]) == {bytes(4): stage_id.to_bytes(4, "little")}
    send_from(veth, veth.peer_ip, 12)
    assert wait_for(lambda: map_counter(stage_count) >= 12)
    assert map_counter(stage_count) == 12

    # reading returns the program id and name per slot
    read = ansible_module("bpf_map", {"deployment": name, "map": "jmp_table", "bpffs_root": str(bpffs_root)})
    assert read["entries"] == [{"key": 0, "value": stage_id, "program": "xdp_stage_count"}]
    assert read["map"]["value_type"] == "program"

    # the same program by its pinned path is the same entry
    by_path = dict(args, entries=[{"key": 0, "value": str(progs["xdp_stage_count"])}])
    assert ansible_module("bpf_map", by_path)["changed"] is False

    # purge: the tail call finds an empty slot and the stage stops counting
    first = four_steps(ansible_module, dict(args, entries=[], purge=True))
    assert first["removed"] == [0]
    assert dump(maps["jmp_table"]) == []
    send_from(veth, veth.peer_ip, 10)
    time.sleep(0.3)
    assert map_counter(stage_count) == 12


def test_prog_array_refuses_a_program_of_another_type(ansible_module, deploy, bpffs_root):
    name, _progs, maps = deploy("tailcall")
    tc_name, _tc_progs, _tc_maps = deploy("tc_classifier")
    args = {"deployment": name, "map": "jmp_table", "bpffs_root": str(bpffs_root),
            "entries": [{"key": 0, "value": "xdp_stage_count"}]}
    assert ansible_module("bpf_map", args)["changed"] is True
    before = dump(maps["jmp_table"])

    bad = dict(args, value_deployment=tc_name, entries=[{"key": 1, "value": "tc_pass"}])
    for result in ansible_module.check_then_run("bpf_map", bad):
        assert result["failed"], result
        assert "is a sched_cls program but PROG_ARRAY jmp_table holds xdp programs" in result["msg"]
        assert result["_stderr"].count("Traceback") == 0
    assert dump(maps["jmp_table"]) == before

    missing = dict(args, entries=[{"key": 1, "value": "no_such_stage"}])
    result = ansible_module("bpf_map", missing)
    assert result["failed"] and "has no program 'no_such_stage'" in result["msg"]
    out_of_range = dict(args, entries=[{"key": 4, "value": "xdp_stage_count"}])
    result = ansible_module("bpf_map", out_of_range)
    assert result["failed"] and "has 4 slots (0..3)" in result["msg"]
    assert dump(maps["jmp_table"]) == before


# --- BTF: a struct value by field name -------------------------------------------------------------
def test_btf_struct_value_round_trips_and_keeps_fields_the_program_updates(
        ansible_module, deploy, bpffs_root, veth):
    name, progs, maps = deploy("struct_value")
    args = {"deployment": name, "map": "config", "bpffs_root": str(bpffs_root), "dump": True,
            "entries": [{"key": 0, "value": {"rate": 1000, "burst": 32, "flags": [1, 2]}}]}
    first = four_steps(ansible_module, args)
    assert first["map"]["value_type"] == "btf:struct rate_cfg"
    assert first["map"]["btf"]["value"]["name"] == "struct rate_cfg"
    assert [m["name"] for m in first["map"]["btf"]["value"]["members"]] == ["rate", "burst", "flags", "bytes"]
    assert first["entries"] == [{"key": 0, "value": {"rate": 1000, "burst": 32, "flags": [1, 2], "bytes": 0}}]
    # bpftool reads the same struct through the same BTF
    assert [e["formatted"] for e in dump(maps["config"])] == [
        {"key": 0, "value": {"rate": 1000, "burst": 32, "flags": [1, 2], "bytes": 0}}]

    # the program adds packet bytes to `bytes`; an entry that does not list it leaves it alone
    attach(veth, progs["xdp_config"])
    send_from(veth, veth.peer_ip, 5)
    assert wait_for(lambda: dump(maps["config"])[0]["formatted"]["value"]["bytes"] > 0)
    again = ansible_module("bpf_map", args)
    assert again["changed"] is False
    assert again["entries"][0]["value"]["bytes"] > 0

    # a changed field is written, the others stay
    change = dict(args, entries=[{"key": 0, "value": {"rate": 2000}}])
    result = direct(change)
    assert result["changed"] and result["changed_keys"] == [0]
    value = dump(maps["config"])[0]["formatted"]["value"]
    assert (value["rate"], value["burst"], value["flags"]) == (2000, 32, [1, 2]) and value["bytes"] > 0
    assert result["diff"]["before"]["entries"]["0"]["rate"] == 1000

    bad = dict(args, entries=[{"key": 0, "value": {"rate": 1, "burts": 2}}])
    result = ansible_module("bpf_map", bad)
    assert result["failed"] and "no field burts (fields: rate, burst, flags, bytes)" in result["msg"]


# --- refusals leave the map untouched ---------------------------------------------------------------
def test_invalid_input_fails_clearly_and_writes_nothing(ansible_module, deploy, bpffs_root):
    name, _progs, maps = deploy("blocklist")
    base = {"deployment": name, "map": "blocklist", "bpffs_root": str(bpffs_root),
            "key_type": "ipv4", "value_type": "u64"}
    assert ansible_module("bpf_map", dict(base, entries=[{"key": "192.0.2.1", "value": 3}]))["changed"]
    before = dump(maps["blocklist"])
    assert len(before) == 1

    cases = [
        (dict(base, key_type="u64", entries=[{"key": 1, "value": 0}]),
         "key_type u64 is 8 bytes but the map's key size is 4 bytes"),
        (dict(base, key_type="hex", entries=[{"key": "0102030405", "value": 0}]),
         "is 5 bytes as hex, but the map's key size is 4 bytes"),
        (dict(base, value_type="u32", entries=[{"key": "192.0.2.9", "value": 0}]),
         "value_type u32 is 4 bytes but the map's value size is 8 bytes"),
        (dict(base, entries=[{"key": "192.0.2.9", "value": 0}, {"key": "not-an-address", "value": 0}]),
         "entries[1]: key 'not-an-address' is not a valid ipv4"),
        (dict(base, entries=[{"key": "192.0.2.9", "value": -1}]),
         "-1 is out of range for u64"),
        (dict(base, entries=[{"key": "192.0.2.9", "value": 1}, {"key": "192.0.2.9", "value": 2}]),
         "listed twice with different values"),
        (dict(base, entries=[{"key": f"10.{n // 256}.{n % 256}.1", "value": 0} for n in range(1025)]),
         "1025 entries requested but map blocklist holds at most 1024 (max_entries)"),
        (dict(base, value_type="btf", key_type="btf", entries=[{"key": 1, "value": {"a": 1}}]),
         "entries[0]: value {'a': 1}"),
    ]
    # every case in check mode and for real, as the tasks of one playbook (a controller start each
    # would cost ten times the module runs)
    results = ansible_module.steps("bpf_map", [{"args": args, "check": check} for args, _message in cases
                                               for check in (True, False)])
    for n, result in enumerate(results):
        message = cases[n // 2][1]
        assert result["failed"], (message, result)
        assert message in result["msg"], (message, result["msg"])
        assert "Traceback" not in result["_stderr"]
    assert dump(maps["blocklist"]) == before

    # more entries than fit next to the ones already there, without purge
    many = dict(base, entries=[{"key": f"10.{n // 256}.{n % 256}.1", "value": 0} for n in range(1024)])
    result = ansible_module("bpf_map", many)
    assert result["failed"]
    assert "would hold 1025 entries (1 now, +1024 added, -0 removed) but max_entries is 1024" in result["msg"]
    assert dump(maps["blocklist"]) == before


def test_oversized_standalone_maps_are_refused_with_the_numbers(ansible_module, standalone):
    path = standalone("huge")
    args = {"path": str(path), "create": {"type": "array", "key_size": 4, "value_size": 4096,
                                          "max_entries": 100_000_000}}
    for result in ansible_module.check_then_run("bpf_map", args):
        assert result["failed"], result
        assert "map ebpfd_huge (array, key 4 + value 4096 bytes x 100000000 entries) would need about" in result["msg"]
        assert "409600000312 bytes" in result["msg"] and "is available" in result["msg"]   # 312 + 4096 x 1e8
        assert result["estimated_bytes"] > result["available_bytes"]
    assert not path.exists()

    # within the host's memory but beyond what the kernel accepts for one element: E2BIG, same kind
    path = standalone("bigvalue")
    result = ansible_module("bpf_map", {"path": str(path), "create": {
        "type": "hash", "key_size": 4, "value_size": 64 << 20, "max_entries": 1}})
    assert result["failed"], result
    assert "the kernel refused to create map ebpfd_bigvalue (hash, key 4 + value 67108864 bytes x 1 entries" in result["msg"]
    assert "E2BIG" in result["msg"]
    assert not path.exists()


def test_a_write_failing_midway_restores_the_map(ansible_module, standalone):
    """A devmap entry must name an existing interface: the kernel refuses the second write."""
    path = standalone("devmap")
    args = {"path": str(path), "create": {"type": "devmap", "key_size": 4, "value_size": 4, "max_entries": 4},
            "value_type": "u32", "entries": [{"key": 0, "value": 1}]}
    four_steps(ansible_module, args)
    before = dump(path)
    bad = dict(args, purge=True, entries=[{"key": 2, "value": 1}, {"key": 3, "value": 999_999}])
    result = ansible_module("bpf_map", bad)
    assert result["failed"], result
    assert "bpf_map_update_elem failed for map ebpfd_devmap" in result["msg"] and "key 3" in result["msg"]
    assert result["rolled_back"] is True and result["writes_undone"] == 2
    assert dump(path) == before

    # a map created by the failing run is not left behind
    fresh = standalone("devmap2")
    result = ansible_module("bpf_map", dict(bad, path=str(fresh)))
    assert result["failed"] and "the new map was unpinned again" in result["msg"]
    assert not fresh.exists()


# --- per-CPU values --------------------------------------------------------------------------------
def test_percpu_values_per_cpu_and_sum(ansible_module, standalone):
    ncpus = possible_cpus()
    path = standalone("percpu")
    spread = list(range(1, ncpus + 1))
    args = {"path": str(path), "create": {"type": "percpu_hash", "key_size": 4, "value_size": 4,
                                          "max_entries": 8},
            "key_type": "u32", "value_type": "u32", "dump": True,
            "entries": [{"key": 1, "value": 5}, {"key": 2, "value": spread}]}
    check = ansible_module("bpf_map", args, check=True, diff=True)
    assert check["changed"] and not path.exists(), "check mode created the map"
    predicted = direct(args, check=True)["diff"]["after"]["entries"]
    assert predicted == {"1": 5 * ncpus, "2": sum(spread)}, "the per-CPU diff is not the sum"
    first = four_steps(ansible_module, args)
    assert first["entries"] == [
        {"key": 1, "value": 5 * ncpus, "per_cpu": [5] * ncpus, "sum": 5 * ncpus},
        {"key": 2, "value": sum(spread), "per_cpu": spread, "sum": sum(spread)},
    ]
    # bpftool: one 4-byte value per CPU
    assert raw_entries(path) == {
        (1).to_bytes(4, "little"): [(5).to_bytes(4, "little")] * ncpus,
        (2).to_bytes(4, "little"): [n.to_bytes(4, "little") for n in spread],
    }
    wrong = dict(args, entries=[{"key": 3, "value": [1] * (ncpus + 1)}])
    result = ansible_module("bpf_map", wrong)
    assert result["failed"] and f"lists {ncpus + 1} per-CPU values but this host has {ncpus} possible CPUs" in result["msg"]

    # a standalone map is unpinned with state=absent (check mode first)
    absent = {"path": str(path), "state": "absent"}
    result = ansible_module("bpf_map", absent, check=True)
    assert result["changed"] and path.exists()
    assert ansible_module("bpf_map", absent)["changed"] and not path.exists()
    assert ansible_module("bpf_map", absent)["changed"] is False


def test_percpu_array_counter_of_a_program_reads_sum(ansible_module, standalone):
    """An array map's slots always exist: purge sets unlisted slots to zero."""
    path = standalone("arr")
    args = {"path": str(path), "create": {"type": "percpu_array", "key_size": 4, "value_size": 8,
                                          "max_entries": 3},
            "value_type": "u64", "entries": [{"key": 1, "value": 7}]}
    four_steps(ansible_module, args)
    read = ansible_module("bpf_map", {"path": str(path), "value_type": "u64"})
    ncpus = possible_cpus()
    assert [e["key"] for e in read["entries"]] == [0, 1, 2]
    assert read["entries"][1]["sum"] == 7 * ncpus and read["entries"][0]["sum"] == 0
    first = four_steps(ansible_module, dict(args, entries=[{"key": 2, "value": 1}], purge=True))
    assert first["removed"] == [1] and first["added"] == [] and first["changed_keys"] == [2]
    read = ansible_module("bpf_map", {"path": str(path), "value_type": "u64"})
    assert [e["sum"] for e in read["entries"]] == [0, 0, ncpus]


# --- --diff as the user reads it -------------------------------------------------------------------
def test_diff_of_a_real_purge_is_keyed_by_map_key_and_cut_with_n_more(ansible_module, standalone):
    """`ansible --diff` prints the purge of a 30-entry map as one line per key, a change as -/+ of its
    key, and the removals beyond the first 20 as "N more"; `removed` still lists every key."""
    path = standalone("diff")
    args = {"path": str(path), "create": {"type": "hash", "key_size": 4, "value_size": 8, "max_entries": 64},
            "key_type": "u32", "value_type": "u64", "entries": [{"key": n, "value": n} for n in range(30)]}
    ansible_module("bpf_map", args)
    purge = dict(args, entries=[{"key": 0, "value": 100}], purge=True)
    env = dict(ansible_module.env, ANSIBLE_STDOUT_CALLBACK="default", ANSIBLE_CALLBACK_RESULT_FORMAT="yaml",
               ANSIBLE_NOCOLOR="1")
    rc, out, err, _timed_out = helpers.run_group(ansible_module.command("bpf_map", purge, diff=True), env=env)
    assert rc == 0, f"{out}\n{err}"
    assert "-        '0': 0\n" in out and "+        '0': 100\n" in out, out   # the changed key, both halves
    assert "-        '1': 1\n" in out, out       # removed keys in key order, one line each
    assert "-    more: 10 more\n" in out, out     # 29 removed + 1 changed, 20 shown
    assert sum(1 for line in out.splitlines() if line.startswith("-        '")) == 20, out
    assert sorted(raw_entries(path)) == [(0).to_bytes(4, "little")], "the purge did not run"
    again = dict(args, entries=[{"key": n, "value": n} for n in range(30)])
    result = direct(again)
    assert result["added"] == list(range(1, 30)) and result["changed_keys"] == [0]
    assert len(result["diff"]["after"]["entries"]) == 20 and result["diff"]["after"]["more"] == "10 more"


# --- values holding a bpf_spin_lock: written and read under it (BPF_F_LOCK) ----------------------------
def test_values_with_a_spin_lock_never_tear_while_the_program_updates_them(deploy, bpffs_root, veth):
    """The program increments a and b of each entry under the value's lock, per packet; every value
    bpf_map writes or reads meanwhile has a == b (a copy outside the lock could catch one increment
    without the other), and the entries written keep being counted."""
    name, progs, _maps = deploy("spin_lock_pair")
    base = {"deployment": name, "bpffs_root": str(bpffs_root)}

    def entries(value: int) -> list:
        return [{"key": key, "value": {"a": value, "b": value}} for key in range(4)]

    for map_name in ("pairs", "pair_slots"):   # the array's slots are there already, zero
        wrote = direct(dict(base, map=map_name, entries=entries(0)))
        assert not wrote.get("failed") and wrote["changed"] is (map_name == "pairs"), wrote
    attach(veth, progs["xdp_lock_pair"])
    sender = veth.start_sender(100_000_000)   # bounded; stopped by its PID below
    seen = 0
    try:
        for round_ in range(1, 11):
            for map_name in ("pairs", "pair_slots"):
                wrote = direct(dict(base, map=map_name, entries=entries(round_ * 1_000_000), dump=True))
                # many more reads than module runs allow: the manager itself, in this process
                reads = [_map.MapManager(_map.Request.from_params(dict(base, map=map_name))).run().as_dict()
                         for _read in range(100)]
                for result in [wrote] + reads:
                    assert not result.get("failed"), result
                    for entry in result["entries"]:
                        value = entry["value"]
                        assert value["a"] == value["b"], f"{map_name}: a torn value {entry}"
                        seen += 1
    finally:
        sent = veth.stop_sender(sender)
    assert seen >= 10 * 2 * 101 * 4 and sent > 0
    veth.send(20)

    def counted() -> list:
        return direct(dict(base, map="pairs"))["entries"]
    assert wait_for(lambda: all(e["value"]["a"] == e["value"]["b"] >= 10_000_020 for e in counted())), \
        f"the program stopped counting into the entries written: {counted()}"

    # the lock is the kernel's: a value that sets it is refused by name, and nothing is written
    bad = direct(dict(base, map="pairs", entries=[{"key": 0, "value": {"lock": {"val": 1}, "a": 5, "b": 5}}]))
    assert bad["failed"] and helpers.one_line(bad["msg"]) and "bpf_spin_lock" in bad["msg"], bad
    assert direct(dict(base, map="pairs"))["entries"][0]["value"]["a"] != 5
