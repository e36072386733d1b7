"""ebpf.deploy.bpf_preflight against the real kernel, with the compiled fixtures.

Each flagged case is checked for the finding (severity, check, program/map/insn) and for what must
NOT happen (no map created for the oversized one). The absent program type is the real kernel's:
an object with a `lirc_mode2` program, compiled here, on a kernel without CONFIG_BPF_LIRC_MODE2
(skipped where the kernel has it; tests/unit/.../test_preflight.py simulates the feature table).
The GPL-only helper table is re-checked against the running kernel's verifier.
"""
from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
from ansible_collections.ebpf.deploy.plugins.module_utils import _features, _libbpf
from ansible_collections.ebpf.deploy.plugins.module_utils._preflight import GPL_ONLY_HELPERS

from tests.helpers import bpftool
LIRC_SRC = r"""
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
SEC("lirc_mode2")
int ebpfd_lirc(unsigned int *sample)
{
    return 0;
}
char LICENSE[] SEC("license") = "GPL";
"""


def preflight(ansible_module, obj, *, check=False, **kw) -> dict:
    args = {"src": str(obj)}
    args.update(kw)
    return ansible_module("bpf_preflight", args, check=check)


def by_check(result: dict, check: str) -> list:
    return [f for f in result["findings"] if f["check"] == check]


def map_names() -> set:
    return {m.get("name") for m in bpftool("map", "show") or []}


def test_clean_counter_passes_with_no_finding(ansible_module, bpf_object):
    for check in (True, False):
        res = preflight(ansible_module, bpf_object("counter"), check=check)
        assert not res["failed"] and res["passed"] and not res["changed"], res
        assert res["findings"] == [] and res["counts"] == {"error": 0, "warning": 0, "info": 0}
        assert res["license"] == "GPL" and res["gpl_compatible"]
        (prog,) = res["programs"]
        assert prog["name"] == "xdp_packet_counter" and prog["type"] == "xdp"
        assert prog["helpers"] == ["bpf_map_lookup_elem#1"]
        # one u64 in an array: 8 bytes of value and the map's struct bpf_array, what the kernel counts
        assert res["memory"]["maps"][0]["name"] == "pkt_count" and res["memory"]["total"] == 312 + 8


def test_dry_verify_reports_the_verifiers_figures_and_leaves_nothing_loaded(ansible_module, bpf_object):
    before = {p["id"] for p in bpftool("prog", "show")}
    res = preflight(ansible_module, bpf_object("counter"), dry_verify=True)
    assert res["passed"] and res["findings"] == [] and res["dry_verify"] == {"requested": True, "done": True}
    (prog,) = res["programs"]
    assert prog["verified_insns"] > 0 and prog["processed_insns"] == prog["verified_insns"]
    assert prog["stack_depth"] == 8  # the u32 key, rounded to 8
    after = bpftool("prog", "show")
    assert not [p for p in after if p["id"] not in before and p.get("name", "").startswith("xdp_packet_coun")
                and p.get("tag") == prog.get("tag")]
    rejected = preflight(ansible_module, bpf_object("reject_stack_limit"), dry_verify=True)
    assert rejected["failed"]
    (finding,) = by_check(rejected, "verifier")
    assert finding["severity"] == "error" and "stack" in finding["message"]


def test_oversized_map_is_flagged_before_any_creation_is_tried(ansible_module, bpf_object):
    before = map_names()
    res = preflight(ansible_module, bpf_object("map_too_large"), dry_verify=True)
    assert res["failed"] and not res["passed"]
    (memory,) = by_check(res, "memory")
    assert memory["severity"] == "error" and memory["map"] == "huge" and "2.0 PiB" in memory["message"]
    (limit,) = by_check(res, "map_limits")
    assert limit["map"] == "huge" and "INT_MAX" in limit["message"]
    assert res["dry_verify"]["done"] is False and "skipped" in res["dry_verify"]
    assert "huge" not in map_names() - before
    assert res["msg"].startswith("preflight failed")


def test_gpl_only_helper_in_a_non_gpl_object(ansible_module, bpf_object):
    res = preflight(ansible_module, bpf_object("reject_gpl_helper"))
    assert res["failed"]
    (finding,) = by_check(res, "gpl_helper")
    assert finding["severity"] == "error" and finding["program"] == "xdp_gpl_helper"
    assert "bpf_trace_printk#6" in finding["message"] and "'Proprietary'" in finding["message"]
    assert res["gpl_compatible"] is False


def _store_index(obj: Path) -> int:
    """The racy store's index, from llvm-objdump (an independent decoder)."""
    out = subprocess.run(["llvm-objdump", "-d", str(obj)], capture_output=True, text=True, check=True).stdout
    stores = [int(m.group(1)) for m in re.finditer(r"^\s*(\d+):\s.*\*\(u64 \*\)\(r0 \+ 0\) = r\d", out, re.M)]
    assert len(stores) == 1, out
    return stores[0]


def test_racy_counter_is_a_warning_with_its_instruction_index(ansible_module, bpf_object):
    obj = bpf_object("racy_counter")
    res = preflight(ansible_module, obj)
    assert not res["failed"] and res["passed"]  # a warning does not fail at fail_on=error
    (finding,) = by_check(res, "race")
    assert finding["severity"] == "warning" and finding["program"] == "xdp_racy_counter"
    assert finding["map"] == "racy_count" and finding["insn"] == _store_index(obj)
    assert "__sync_fetch_and_add" in finding["message"] and "per-CPU" in finding["message"]
    strict = preflight(ansible_module, obj, fail_on="warning")
    assert strict["failed"] and by_check(strict, "race")


def _lirc_object(tmp: Path) -> Path:
    arch = subprocess.run(["gcc", "-dumpmachine"], capture_output=True, text=True, check=False).stdout.strip()
    src, out = tmp / "ebpfd_lirc.bpf.c", tmp / "ebpfd_lirc.bpf.o"
    src.write_text(LIRC_SRC)
    subprocess.run(["clang", "-O2", "-g", "-target", "bpf", f"-I/usr/include/{arch or 'x86_64-linux-gnu'}",
                    "-c", str(src), "-o", str(out)], check=True)
    return out


def test_program_type_the_kernel_lacks(ansible_module, tmp_path):
    lirc = _libbpf.prog_type_from_name("lirc_mode2")[0]
    if _libbpf.probe_prog_type(lirc):
        pytest.skip("this kernel offers lirc_mode2 (CONFIG_BPF_LIRC_MODE2); the unit test simulates it")
    res = preflight(ansible_module, _lirc_object(tmp_path))
    assert res["failed"]
    (finding,) = by_check(res, "program_type")
    assert finding["severity"] == "error" and finding["program"] == "ebpfd_lirc"
    assert "lirc_mode2" in finding["message"]


def test_pinned_map_conflict(ansible_module, bpffs_root, bpf_object, deployment):
    deployed = ansible_module("bpf_program", {"name": deployment, "src": str(bpf_object("counter")),
                                              "bpffs_root": str(bpffs_root)})
    assert not deployed["failed"], deployed
    same = preflight(ansible_module, bpf_object("counter"), name=deployment, bpffs_root=str(bpffs_root))
    assert same["passed"] and same["findings"] == [] and same["memory"]["maps"][0]["reused"]
    res = preflight(ansible_module, bpf_object("map_conflict"), name=deployment, bpffs_root=str(bpffs_root),
                    check=True)
    assert res["failed"]
    (finding,) = by_check(res, "pinned_map")
    assert finding["map"] == "pkt_count" and finding["severity"] == "error"
    assert "type array \u2192 hash" in finding["message"] and "max_entries 1 \u2192 4096" in finding["message"]
    assert finding["details"]["pinned"]["type"] == "array" and finding["details"]["wanted"]["type"] == "hash"
    assert finding["details"]["pin"] == str(Path(bpffs_root) / deployment / "maps" / "pkt_count")


def test_gpl_table_agrees_with_this_kernels_verifier():
    """Every helper this kernel offers xdp/tc/kprobe/tracepoint programs: GPL-restricted iff in the table."""
    data = _features.features()
    ids = data["program_type_ids"]
    restricted, seen = set(), set()
    for type_name in ("xdp", "sched_cls", "kprobe", "tracepoint", "perf_event", "cgroup_skb"):
        for helper_id in data["helper_ids"].get(type_name) or []:
            if helper_id in seen:
                continue
            fd, _err, log = _libbpf.prog_load_raw(ids[type_name], _features._call_exit(helper_id),
                                                  license="Proprietary", log_size=4096)
            if fd >= 0:
                os.close(fd)
            # check_helper_call() tests the license right after finding the helper, before any
            # argument: a helper this type offers is either refused for the license or not GPL-only.
            seen.add(helper_id)
            if "GPL-restricted" in log:
                restricted.add(helper_id)
    assert len(seen) > 100 and len(restricted) > 20, (len(seen), len(restricted))
    assert restricted == GPL_ONLY_HELPERS & seen, (sorted(restricted - GPL_ONLY_HELPERS),
                                                   sorted((GPL_ONLY_HELPERS & seen) - restricted))
