"""Load-time globals against the real kernel: tests/bpf/globals_port.bpf.c counts the UDP packets to
its `target_port` (a const volatile in .rodata) on a veth whose peer sends real packets.

The port set through `globals:` decides what is counted (port A counted, port B not); another value is
another version, the same value the same one; a rollback, from a pinned version or from the host's
record, brings the old value's behaviour back; bad globals are refused in one line with the host
unchanged. The kernel side is read with bpftool and ip, independently of the module.
"""
from __future__ import annotations

import json
from pathlib import Path

from tests.helpers import assert_one_line_failure, bpftool, direct, four_steps, listing, ok, record_dir
from tests.integration import xdp_helpers as h

VETH_TAG = "gl"
PROGRAM = "xdp_port_counter"
PORT_A, PORT_B = 5353, 9


def args(veth, name: str, root: Path, obj: Path, port: int, **extra) -> dict:
    base = {"name": name, "src": str(obj), "bpffs_root": str(root), "globals": {"target_port": port},
            "attach": [{"program": PROGRAM, "interface": veth.host_if, "netns": veth.host_ns, "mode": "generic"}]}
    base.update(extra)
    return base


def send(veth, port: int, count: int) -> None:
    proc = veth.start_sender(count, port=port)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0 and int(out.split()[0]) == count, err


def hits(root: Path, name: str) -> int:
    return h.map_counter(root / name / "maps" / "port_hits")


def counts_only(veth, root: Path, name: str, port: int) -> None:
    """Packets to `port` are counted, those to the other port are not."""
    other = PORT_B if port == PORT_A else PORT_A
    before = hits(root, name)
    send(veth, port, 30)
    send(veth, other, 20)
    assert hits(root, name) - before == 30, f"expected exactly the 30 packets to port {port} counted"


def attached_id(veth):
    info = veth.xdp()
    return info["prog"]["id"] if info else None


def rodata_port(root: Path, name: str, version: str) -> int:
    """target_port as the loaded program's .rodata map holds it (bpftool reads it through BTF)."""
    info = bpftool("prog", "show", "pinned", str(root / name / version / "progs" / PROGRAM))
    for map_id in info["map_ids"]:
        dump = bpftool("map", "dump", "id", str(map_id))
        value = (dump[0].get("formatted") or {}).get("value") or {}
        if ".rodata" in value:
            return next(v["target_port"] for v in value[".rodata"] if "target_port" in v)
    raise AssertionError("the program has no .rodata map")


def test_the_port_global_decides_what_is_counted_and_each_value_is_a_version(
        ansible_module, veth, bpffs_root, deployment, bpf_object):
    a = args(veth, deployment, bpffs_root, bpf_object("globals_port"), PORT_A)

    check = direct("bpf_deployment", a, check=True, diff=True)
    ok(check)
    assert check["changed"] and check["program"]["globals"] == {"target_port": PORT_A}
    assert check["diff"]["after"]["program"]["globals"] == {"target_port": PORT_A}
    assert listing(bpffs_root) == [] and attached_id(veth) is None, "check mode pinned or attached something"

    v1 = ok(ansible_module("bpf_deployment", a))
    assert v1["changed"] and v1["action"] == "load" and v1["version"] == check["version"]
    assert rodata_port(bpffs_root, deployment, v1["version"]) == PORT_A
    counts_only(veth, bpffs_root, deployment, PORT_A)
    spec = json.loads((record_dir(bpffs_root) / deployment / "versions" / f"{v1['version']}.json").read_text())
    assert spec["globals"] == {"target_port": PORT_A}, "the record must keep the version's globals"

    # the same value, however written, is the same version: nothing changes
    same = dict(a, globals={"target_port": hex(PORT_A)})
    for again in ansible_module.check_then_run("bpf_deployment", same):
        ok(again)
        assert not again["changed"] and again["action"] == "none" and again["version"] == v1["version"], again

    # another value is another version, loaded beside the first and swapped in
    b = args(veth, deployment, bpffs_root, bpf_object("globals_port"), PORT_B)
    v2 = ok(ansible_module("bpf_deployment", b))
    assert v2["changed"] and v2["action"] == "load" and v2["version"] != v1["version"], v2
    assert v2["previous_version"] == v1["version"]
    counts_only(veth, bpffs_root, deployment, PORT_B)
    assert not ansible_module("bpf_deployment", b)["changed"]

    # back to the pinned previous version: its value counts again
    back = {"name": deployment, "version": "previous", "bpffs_root": str(bpffs_root), "attach": a["attach"]}
    rolled = ok(direct("bpf_deployment", back))
    assert rolled["changed"] and rolled["version"] == v1["version"], rolled
    assert rolled["program"]["globals"] == {"target_port": PORT_A}
    assert attached_id(veth) == h.prog_info(bpffs_root / deployment / v1["version"] / "progs" / PROGRAM)["id"]
    counts_only(veth, bpffs_root, deployment, PORT_A)


def test_a_rollback_from_the_record_loads_the_old_version_with_its_old_values(
        ansible_module, veth, bpffs_root, deployment, bpf_object):
    obj = bpf_object("globals_port")
    v1 = ok(ansible_module("bpf_deployment", args(veth, deployment, bpffs_root, obj, PORT_A, keep_versions=0)))
    v2 = ok(ansible_module("bpf_deployment", args(veth, deployment, bpffs_root, obj, PORT_B, keep_versions=0)))
    assert not (bpffs_root / deployment / v1["version"]).exists(), "keep_versions 0 keeps only the current version"
    counts_only(veth, bpffs_root, deployment, PORT_B)

    back = {"name": deployment, "state": "rolled_back", "rollback_to": "previous", "bpffs_root": str(bpffs_root),
            "attach": args(veth, deployment, bpffs_root, obj, PORT_A)["attach"]}
    rolled = ok(ansible_module("bpf_deployment", back))
    assert rolled["changed"] and rolled["version"] == v1["version"] != v2["version"], rolled
    assert rodata_port(bpffs_root, deployment, v1["version"]) == PORT_A
    counts_only(veth, bpffs_root, deployment, PORT_A)


def test_bpf_program_four_steps_and_the_other_kinds_of_globals(ansible_module, bpffs_root, deployment, bpf_object):
    wanted = {"target_port": PORT_A, "mode": "MATCH_DROP", "limits": {"max_len": 1500, "ttl_min": 1},
              "tag": "ab", "seen_packets": 7, "burst": 3}
    a = {"name": deployment, "src": str(bpf_object("globals_port")), "bpffs_root": str(bpffs_root), "globals": wanted}
    results = four_steps(ansible_module, "bpf_program", a)
    version = results[1]["version"]
    assert [r["version"] for r in results] == [version] * 4
    assert results[1]["globals"] == {"target_port": PORT_A, "mode": "MATCH_DROP", "tag": [97, 98, 0, 0],
                                     "limits": {"max_len": 1500, "ttl_min": 1, "reserved": [0, 0, 0]},
                                     "seen_packets": 7, "burst": 3}
    info = bpftool("prog", "show", "pinned", str(bpffs_root / deployment / version / "progs" / PROGRAM))
    sections = {}
    for map_id in info["map_ids"]:
        value = (bpftool("map", "dump", "id", str(map_id))[0].get("formatted") or {}).get("value")
        if isinstance(value, dict):
            sections.update(value)
    assert {k: v for item in sections[".rodata"] for k, v in item.items()}["mode"] == "MATCH_DROP"
    assert sections[".bss"] == [{"seen_packets": 7}]
    assert sections[".data.cfg"] == [{"burst": 3}], "a custom data section is set like the others"
    # no globals is yet another version: the object's own values
    plain = ok(ansible_module("bpf_program", dict(a, globals=None)))
    assert plain["changed"] and plain["version"] != version and "globals" not in plain


def test_bad_globals_are_refused_by_name_and_change_nothing(ansible_module, veth, bpffs_root, deployment, bpf_object):
    obj = bpf_object("globals_port")
    ok(ansible_module("bpf_deployment", args(veth, deployment, bpffs_root, obj, PORT_A)))

    def snapshot():
        return (listing(bpffs_root), listing(record_dir(bpffs_root)), attached_id(veth), hits(bpffs_root, deployment))

    before = snapshot()
    bad = [({"targt_port": 1}, "no global 'targt_port' (its globals: burst, limits, mode, seen_packets, tag, target_port)"),
           ({"target_port": "http"}, "globals.target_port: expected an integer"),
           ({"target_port": 70000}, "globals.target_port: 70000 does not fit in 16 unsigned bits (0..65535)"),
           ({"limits": {"ttl": 1}}, "globals.limits: no field ttl"),
           ({"port_hits": 1}, "no global 'port_hits'")]
    # the refusals as the tasks of one playbook (ModuleRun.steps), the first two in check mode too
    runs = [(wanted, words, check) for index, (wanted, words) in enumerate(bad)
            for check in ((True, False) if index < 2 else (False,))]
    results = ansible_module.steps("bpf_deployment", [
        {"args": args(veth, deployment, bpffs_root, obj, PORT_A, globals=wanted), "check": check}
        for wanted, _words, check in runs])
    for (_wanted, words, _check), result in zip(runs, results):
        assert_one_line_failure(result, words)
    assert snapshot() == before, "a refused globals run changed the host"
    refused = ansible_module("bpf_program", {"name": deployment, "src": str(bpf_object("counter")),
                                             "bpffs_root": str(bpffs_root), "globals": {"target_port": 1}})
    assert_one_line_failure(refused, "no global 'target_port' (its globals: none)")
    assert snapshot() == before
    counts_only(veth, bpffs_root, deployment, PORT_A)
