"""ebpf.deploy.bpf_facts against the real kernel, checked against bpftool, ip and /proc.

A counter deployed with bpf_program (fresh bpffs root `ebpfd_test_*`, deployment `ebpfd_*`) is
attached with xdp_attach to a veth in a fresh namespace (`ebpfd-bf-*`); the facts must show the
program with its deployment and version, its map, its link and the XDP attachment with its mode,
and agree with `bpftool prog/map/link/net show -j`. The kernel log window is proven with marker
lines written to /dev/kmsg (`ebpfd-test: ...`).
"""
from __future__ import annotations

import os
import secrets
import subprocess
from pathlib import Path

import pytest
from ansible_collections.ebpf.deploy.plugins.module_utils import _dmesg

from tests.helpers import bpftool
from tests.integration import xdp_helpers as h

VETH_TAG = "bf"
PROGRAM = "xdp_packet_counter"


def facts_of(result: dict) -> dict:
    assert not result["failed"], result
    assert result["changed"] is False
    return result["ansible_facts"]["ebpf"]


def deploy(ansible_module, bpffs_root, deployment, obj) -> dict:
    res = ansible_module("bpf_program", {"name": deployment, "src": str(obj), "bpffs_root": str(bpffs_root)})
    assert not res["failed"], res
    return res


def attach(ansible_module, veth, bpffs_root, deployment, version, mode="generic") -> str:
    """xdp_attach (a pinned bpf_link); by hand with `ip link ... pinned` if the module fails."""
    res = ansible_module("xdp_attach", {"interface": veth.host_if, "netns": veth.host_ns, "deployment": deployment,
                                        "program": PROGRAM, "bpffs_root": str(bpffs_root), "mode": mode})
    if not res["failed"]:
        return "xdp_attach"
    pin = Path(bpffs_root) / deployment / version / "progs" / PROGRAM
    veth.ip_link("xdpgeneric" if mode == "generic" else "xdpdrv", "pinned", str(pin))
    return "ip"


def test_facts_show_the_deployment_its_attachment_and_agree_with_bpftool(
        ansible_module, bpffs_root, bpf_object, deployment, veth):
    deployed = deploy(ansible_module, bpffs_root, deployment, bpf_object("counter"))
    version = deployed["version"]
    prog_id = deployed["programs"][0]["id"]
    how = attach(ansible_module, veth, bpffs_root, deployment, version)
    args = {"bpffs_root": str(bpffs_root), "xdp_netns": [veth.host_ns],
            "gather_subset": ["programs", "maps", "links", "xdp", "interfaces"]}
    check = facts_of(ansible_module("bpf_facts", args, check=True))
    ebpf = facts_of(ansible_module("bpf_facts", args))
    assert ebpf["gather_subset"] == ["programs", "maps", "links", "xdp", "interfaces"]

    # The program, its deployment and version, as bpftool shows it.
    (prog,) = [p for p in ebpf["programs"] if p["id"] == prog_id]
    assert prog["deployment"] == deployment and prog["version"] == version and prog["program"] == PROGRAM
    assert str(Path(bpffs_root) / deployment / version / "progs" / PROGRAM) in prog["pins"]
    tool = h.prog_info_by_id(prog_id)
    # The kernel keeps 15 characters of the name; bpftool prints the full one from BTF, which the
    # pin layout gives us as `program`.
    assert prog["name"] == tool["name"][:15] and prog["program"] == tool["name"]
    for key in ("id", "type", "tag", "gpl_compatible", "loaded_at", "uid", "bytes_xlated", "jited",
                "bytes_jited", "bytes_memlock", "map_ids", "btf_id"):
        if key in tool:
            assert prog[key] == tool[key], key
    assert prog["verified_insns"] == deployed["programs"][0]["verified_insns"]
    assert any(p["id"] == prog_id and p["deployment"] == deployment for p in check["programs"])

    # Every program both list: same type and tag (other runs may load/unload meanwhile).
    ours = {p["id"]: p for p in ebpf["programs"]}
    listed = [t for t in bpftool("prog", "show") if t["id"] in ours]
    assert listed and all(ours[t["id"]]["tag"] == t["tag"] and ours[t["id"]]["type"] == t["type"] for t in listed)

    # Its map.
    (map_id,) = prog["map_ids"]
    (fmap,) = [m for m in ebpf["maps"] if m["id"] == map_id]
    tmap = bpftool("map", "show", "id", str(map_id))
    assert (fmap["name"], fmap["type"], fmap["key_size"], fmap["value_size"], fmap["max_entries"], fmap["flags"]) == \
        (tmap["name"], tmap["type"], tmap["bytes_key"], tmap["bytes_value"], tmap["max_entries"], tmap["flags"])
    assert fmap["bytes_memlock"] == tmap["bytes_memlock"]
    assert fmap["deployment"] == deployment
    assert str(Path(bpffs_root) / deployment / "maps" / "pkt_count") in fmap["pins"]

    # The deployment summary.
    dep = ebpf["deployments"][deployment]
    assert dep["current"] == version and dep["versions"] == {version: {PROGRAM: prog_id}}
    assert dep["maps"] == {"pkt_count": map_id}

    # The XDP attachment, as `bpftool net show` sees it inside the namespace.
    (xdp,) = [x for x in ebpf["xdp"] if x["interface"] == veth.host_if and x["netns"] == veth.host_ns]
    assert (xdp["prog_id"], xdp["mode"]) == (prog_id, "generic")
    net = bpftool("net", "show", netns=veth.host_ns)
    (tnet,) = [x for x in net[0]["xdp"] if x["devname"] == veth.host_if]
    assert (tnet["id"], tnet["mode"], tnet["ifindex"]) == (prog_id, "generic", xdp["ifindex"])
    assert not [x for x in ebpf["xdp"] if x["netns"] is None and x["prog_id"] == prog_id]

    # The bpf_link that holds it (when xdp_attach made it).
    if how == "xdp_attach":
        links = [k for k in ebpf["links"] if k["prog_id"] == prog_id]
        assert len(links) == 1
        link = links[0]
        assert link["deployment"] == deployment and link["interface"] == veth.host_if and link["netns"] == veth.host_ns
        tlink = bpftool("link", "show", "id", str(link["id"]))
        assert (tlink["type"], tlink["prog_id"]) == (link["type"], prog_id)
        assert tlink.get("ifindex", link["ifindex"]) == link["ifindex"] == xdp["ifindex"]
        assert dep["links"] and list(dep["links"].values()) == [link["id"]]


def test_interface_counters_follow_the_traffic(ansible_module, bpffs_root, bpf_object, deployment, veth):
    """rx counters agree with `ip -s link`; a dropping program in native mode shows up in xdp_drops."""
    deployed = deploy(ansible_module, bpffs_root, deployment, bpf_object("counter_drop"))
    attach(ansible_module, veth, bpffs_root, deployment, deployed["version"], mode="native")
    args = {"gather_subset": ["interfaces"], "xdp_netns": [veth.host_ns]}

    def counters():
        ebpf = facts_of(ansible_module("bpf_facts", args))
        (entry,) = [i for i in ebpf["interfaces"] if i["interface"] == veth.host_if and i["netns"] == veth.host_ns]
        return entry

    before = counters()
    sent = veth.send(200)
    after = counters()
    ip = veth.host_counters()
    assert after["rx_dropped"] == ip["rx_dropped"]
    assert after["rx_packets"] == ip["rx_packets"]
    if before["xdp_drops"] is None:
        pytest.skip("this veth driver reports no XDP counters")
    assert after["xdp_drops"] - before["xdp_drops"] >= sent
    assert any("xdp" in key for key in after["xdp_stats"])


def test_dmesg_since_a_cursor_has_new_bpf_lines_and_nothing_older(ansible_module):
    token = secrets.token_hex(4)
    first = facts_of(ansible_module("bpf_facts", {"gather_subset": ["dmesg"]}))
    cursor = first["dmesg_cursor"]
    boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    assert cursor.startswith(f"{boot}:") and first["dmesg"]["cursor"] == cursor  # the boot travels along
    seq = int(cursor.rpartition(":")[2])
    _dmesg.write_kmsg(f"ebpfd-test: XDP marker {token}", level=4)
    _dmesg.write_kmsg(f"ebpfd-test: plain marker {token}", level=6)   # not a BPF/XDP line
    _dmesg.write_kmsg(f"ebpfd-test: bpf_jit marker {token}", level=6)

    window = facts_of(ansible_module("bpf_facts", {"gather_subset": ["dmesg"], "dmesg_since": cursor}))
    lines = window["dmesg"]["lines"]
    messages = [line["message"] for line in lines]
    assert f"ebpfd-test: XDP marker {token}" in messages
    assert f"ebpfd-test: bpf_jit marker {token}" in messages
    assert not [m for m in messages if f"plain marker {token}" in m]
    assert all(line["seq"] > seq for line in lines) and not window["dmesg"]["rebooted"]
    marker = next(line for line in lines if line["message"] == f"ebpfd-test: XDP marker {token}")
    assert marker["level"] == "warning"
    assert int(window["dmesg_cursor"].rpartition(":")[2]) >= marker["seq"] + 2  # the two lines after it too
    illegal = [m for m in messages if "Illegal XDP return value" in m]
    assert all(_dmesg.matches(m) for m in illegal)  # the real kernel warning, only if it happened

    # From the new cursor, none of the markers come back.
    again = facts_of(ansible_module("bpf_facts", {"gather_subset": ["dmesg"],
                                                  "dmesg_since": window["dmesg_cursor"]}))
    assert not [line for line in again["dmesg"]["lines"] if token in line["message"]]
    assert int(again["dmesg_cursor"].rpartition(":")[2]) >= int(window["dmesg_cursor"].rpartition(":")[2])

    # A cursor of another boot: the window says so and holds this boot's lines only.
    other = "00000000-0000-4000-8000-000000000000"
    rebooted = facts_of(ansible_module("bpf_facts", {"gather_subset": ["dmesg"], "dmesg_since": f"{other}:{seq}"}))
    assert rebooted["dmesg"]["rebooted"] and rebooted["dmesg"]["since_boot_id"] == other
    assert rebooted["dmesg"]["boot_id"] == boot and rebooted["dmesg_cursor"].startswith(f"{boot}:")
    assert not [m for m in (line["message"] for line in rebooted["dmesg"]["lines"]) if m.startswith("LSM: ")]


def _proc_int(path: str) -> int:
    return int(Path(path).read_text().strip())


def test_kernel_features_and_limits(ansible_module):
    ebpf = facts_of(ansible_module("bpf_facts", {"gather_subset": ["kernel", "features", "limits"]}))
    kernel = ebpf["kernel"]
    assert kernel["release"] == subprocess.run(["uname", "-r"], capture_output=True, text=True,
                                               check=True).stdout.strip()
    assert kernel["btf"] == Path("/sys/kernel/btf/vmlinux").exists()
    assert kernel["jit_enable"] == _proc_int("/proc/sys/net/core/bpf_jit_enable")
    assert kernel["jit_harden"] == _proc_int("/proc/sys/net/core/bpf_jit_harden")
    assert kernel["unprivileged_bpf_disabled"] == _proc_int("/proc/sys/kernel/unprivileged_bpf_disabled")
    assert kernel["bpf_stats_enabled"] == bool(_proc_int("/proc/sys/kernel/bpf_stats_enabled"))
    assert "/sys/fs/bpf" in kernel["bpffs"]
    assert kernel["boot_id"] == Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    lockdown = Path("/sys/kernel/security/lockdown")
    assert (kernel["lockdown"] is None) == (not lockdown.exists())

    features = ebpf["features"]
    assert Path(features["cache_file"]).name == f"features-{kernel['boot_id']}.json"
    assert Path(features["cache_file"]).exists()
    probe = subprocess.run(["bpftool", "feature", "probe", "kernel"], capture_output=True, text=True,
                           check=True).stdout
    for name, available in features["program_types"].items():
        line = f"eBPF program_type {name} is available"
        if line in probe or line.replace("is available", "is NOT available") in probe:
            assert available == (line in probe), name
    assert features["program_types"]["xdp"] is True
    assert "bpf_map_lookup_elem" in features["helpers"]["xdp"]
    assert "bpf_skb_store_bytes" not in features["helpers"]["xdp"]  # an skb-only helper
    assert "bpf_skb_store_bytes" in features["helpers"]["sched_cls"]
    assert features["map_types"]["array"] is True
    cached = facts_of(ansible_module("bpf_facts", {"gather_subset": ["features"]}))["features"]
    assert cached["cached"] is True and cached["program_types"] == features["program_types"]

    limits = ebpf["limits"]
    assert limits["kernel"]["stack_bytes"] == 512 and limits["kernel"]["processed_insns"] == 1_000_000
    assert limits["kernel"]["tail_call_depth"] == 33
    meminfo = Path("/proc/meminfo").read_text()
    assert limits["mem_available"] is not None and "MemAvailable" in meminfo
    assert limits["bpf_memory_budget"]["bytes"] > 0


def test_default_subsets_and_a_missing_namespace(ansible_module):
    # (an empty argument dict would reach ad hoc `ansible -a '{}'` as a raw parameter)
    ebpf = facts_of(ansible_module("bpf_facts", {"bpffs_root": "/sys/fs/bpf/ebpf_deploy"}))
    assert ebpf["gather_subset"] == ["kernel", "programs", "maps", "links", "xdp", "interfaces", "limits", "dmesg",
                                     "record"]
    assert "features" not in ebpf
    lo = [x for x in ebpf["xdp"] if x["interface"] == "lo" and x["netns"] is None]
    assert lo and lo[0]["ifindex"] == 1
    missing = ansible_module("bpf_facts", {"gather_subset": ["xdp"], "xdp_netns": ["ebpfd-bf-missing"]})
    assert missing["failed"] and "ebpfd-bf-missing" in missing["msg"]
    bad = ansible_module("bpf_facts", {"gather_subset": ["nope"]})
    assert bad["failed"] and "unknown subset" in bad["msg"]


def test_stats_seconds_counts_program_runs_only_in_its_window(ansible_module, bpffs_root, bpf_object,
                                                              deployment, veth):
    """run_cnt grows while stats_seconds holds the kernel's stats fd, and not after it (the sysctl stays off)."""
    deployed = deploy(ansible_module, bpffs_root, deployment, bpf_object("counter"))
    attach(ansible_module, veth, bpffs_root, deployment, deployed["version"])
    args = {"gather_subset": ["programs"], "bpffs_root": str(bpffs_root)}

    def runs(result: dict) -> int:
        (program,) = [p for p in facts_of(result)["programs"] if p["deployment"] == deployment]
        return program["run_cnt"] or 0

    stats_sysctl = _proc_int("/proc/sys/kernel/bpf_stats_enabled")
    before = runs(ansible_module("bpf_facts", args))
    # about 8 s of traffic around the 2 s window: on a loaded machine `ansible` takes seconds to start
    sender = veth.start_sender(2400, pps=300)
    try:
        during = runs(ansible_module("bpf_facts", dict(args, stats_seconds=2)))
    finally:
        sender.communicate(timeout=60)
    assert during - before >= 100, f"only {during - before} runs counted in a 2 s window at 300 pps"
    assert _proc_int("/proc/sys/kernel/bpf_stats_enabled") == stats_sysctl, "the stats sysctl was changed"
    # BPF_ENABLE_STATS is global: a test on another worker that soaks health checks counts runs too
    if stats_sysctl == 0 and os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") == "1":
        veth.send(200)
        assert runs(ansible_module("bpf_facts", args)) == during, "statistics stayed on after the module"
