"""_limits: map memory estimates and host limit readers (on fake /proc and cgroup trees)."""
from __future__ import annotations

import pytest

from ansible_collections.ebpf.deploy.plugins.module_utils import _limits as lim
from ansible_collections.ebpf.deploy.plugins.module_utils._objects import MapSpec
from ansible_collections.ebpf.deploy.plugins.module_utils._uapi import MAP_TYPES


def test_array_is_value_rounded_to_8_times_entries():
    assert lim.map_memory(map_type=lim.ARRAY, key_size=4, value_size=8, max_entries=1)["bytes"] == lim.ARRAY_STRUCT + 8
    assert lim.map_memory(map_type=lim.ARRAY, key_size=4, value_size=5, max_entries=10)["bytes"] == \
        lim.ARRAY_STRUCT + 80


def test_the_oversized_fixture_map_is_two_pebibytes():
    est = lim.map_memory(map_type=lim.ARRAY, key_size=4, value_size=1 << 31, max_entries=1 << 20)
    assert est["bytes"] == lim.ARRAY_STRUCT + (1 << 51) and lim.human_bytes(est["bytes"]) == "2.0 PiB"
    assert "312 + round_up(2147483648, 8) * 1048576" == est["formula"]


def test_percpu_array_multiplies_by_possible_cpus():
    est = lim.map_memory(map_type=lim.PERCPU_ARRAY, key_size=4, value_size=8, max_entries=4, possible_cpus=16)
    assert est["bytes"] == lim.ARRAY_STRUCT + (8 * 16 + 8) * 4


def test_hash_prealloc_counts_elements_spare_elements_and_buckets():
    est = lim.map_memory(map_type=lim.HASH, key_size=4, value_size=8, max_entries=4096, possible_cpus=2)
    table = lim.HTAB_STRUCT + lim.HTAB_BUCKET * 4096 + lim.HTAB_LOCK_COUNTS * 2
    assert est["bytes"] == table + (lim.HTAB_ELEM + 8 + 8) * (4096 + 2) + 8 * 2
    no_prealloc = lim.map_memory(map_type=lim.HASH, key_size=4, value_size=8, max_entries=4096,
                                 flags=lim.BPF_F_NO_PREALLOC, possible_cpus=2)
    assert no_prealloc["bytes"] == table + (lim.HTAB_ELEM + 8 + 8 + lim.LLIST_NODE) * 4096


def test_percpu_hash_and_buckets_round_to_a_power_of_two():
    est = lim.map_memory(map_type=lim.PERCPU_HASH, key_size=4, value_size=8, max_entries=1000, possible_cpus=4)
    table = lim.HTAB_STRUCT + lim.HTAB_BUCKET * 1024 + lim.HTAB_LOCK_COUNTS * 4
    assert est["bytes"] == table + (lim.HTAB_ELEM + 8 + 8) * 1000 + 8 * 4 * 1000


def test_other_types():
    pages = (1 << 16) // lim.PAGE_SIZE
    assert lim.map_memory(map_type=lim.RINGBUF, key_size=0, value_size=0, max_entries=1 << 16)["bytes"] == \
        lim.RINGBUF_STRUCT + (3 + pages) * lim.PAGE_SIZE + (3 + 2 * pages) * 8
    assert lim.map_memory(map_type=lim.PROG_ARRAY, key_size=4, value_size=4, max_entries=4)["bytes"] == \
        lim.ARRAY_STRUCT + 32
    assert lim.map_memory(map_type=MAP_TYPES["queue"], key_size=0, value_size=16, max_entries=9)["bytes"] == \
        lim.ARRAY_STRUCT + 160
    assert lim.map_memory(map_type=lim.LPM_TRIE, key_size=8, value_size=8, max_entries=2)["bytes"] == \
        (lim.LPM_NODE + 4 + 8) * 2
    assert lim.map_memory(map_type=999, key_size=4, value_size=4, max_entries=10)["bytes"] == 80


# What fdinfo's memlock said for these maps on Linux 6.18 x86-64 with 2 possible CPUs (4 KiB pages);
# tests/integration/test_limits_memory.py asks the running kernel the same.
KERNEL_6_18 = [
    ("hash", 4, 8, 1024, 0, 83024), ("hash", 4, 8, 1000, 0, 81488), ("hash", 16, 100, 4096, 0, 754976),
    ("lru_hash", 4, 8, 1024, 0, 82880), ("percpu_hash", 4, 8, 1024, 0, 99264),
    ("lru_percpu_hash", 4, 8, 1000, 0, 97344), ("array", 4, 8, 1, 0, 320), ("array", 4, 100, 4096, 0, 426296),
    ("array", 4, 8, 1024, lim.BPF_F_MMAPABLE, 12288), ("percpu_array", 4, 8, 1024, 0, 24888),
    ("prog_array", 4, 4, 1024, 0, 8504), ("perf_event_array", 4, 4, 16, 0, 440), ("queue", 0, 16, 1024, 0, 16712),
    ("ringbuf", 0, 0, 1 << 16, 0, 78408), ("ringbuf", 0, 0, 1 << 20, 0, 1065288),
]


@pytest.mark.skipif(lim.PAGE_SIZE != 4096, reason="figures taken with 4 KiB pages")
@pytest.mark.parametrize("type_name,key,value,entries,flags,kernel", KERNEL_6_18)
def test_the_figure_is_the_kernels(type_name, key, value, entries, flags, kernel):
    est = lim.map_memory(map_type=MAP_TYPES[type_name], key_size=key, value_size=value, max_entries=entries,
                         flags=flags, possible_cpus=2)
    assert est["bytes"] == kernel, est["formula"]


def test_one_hash_map_one_figure():
    """bpf_map said 86,016 B, bpf_preflight 82,048 B (82,176 B on 4 CPUs) and bpf_program 12,288 B
    for this map; the kernel 83,024 B. Every caller now goes through map_memory."""
    spec = MapSpec(name="pkt_count", type=lim.HASH, type_name="hash", key_size=4, value_size=8, max_entries=1024)
    assert lim.map_spec_memory(spec, 2)["bytes"] == 83024
    perf = MapSpec(name="events", type=lim.PERF_EVENT_ARRAY, type_name="perf_event_array", key_size=4,
                   value_size=4, max_entries=0)
    assert lim.map_spec_memory(perf, 8)["bytes"] == lim.ARRAY_STRUCT + 8 * 8   # libbpf: one slot per CPU


def test_cpu_list_and_memlock_era():
    assert lim.parse_cpu_list("0-7,9\n") == 9
    assert lim.parse_cpu_list("0") == 1
    assert lim.memlock_applies("5.10.0-28-amd64")
    assert not lim.memlock_applies("5.11.0")
    assert not lim.memlock_applies("6.18.44-fc")
    assert "RLIMIT_MEMLOCK (ulimit -l" in lim.charged_to("5.10.0-28-amd64")
    assert "memory cgroup" in lim.charged_to("6.1.0") and "not to RLIMIT_MEMLOCK" in lim.charged_to("6.1.0")


def test_memory_limits_are_read_from_this_host():
    limits = lim.memory_limits()
    assert limits, "at least MemAvailable"
    assert limits == sorted(limits, key=lambda item: item[1])
    assert any(name.startswith("MemAvailable") for name, _bytes in limits)
    assert any(name.startswith("RLIMIT_MEMLOCK") for name, _bytes in limits) == (
        lim.memlock_applies() and lim.memlock()["soft"] is not None)


def test_mem_available(tmp_path):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       1000 kB\nMemAvailable:    512 kB\n")
    assert lim.mem_available(str(meminfo)) == 512 * 1024
    assert lim.mem_available(str(tmp_path / "missing")) is None


def test_parse_proc_cgroup_v1_and_v2():
    text = "12:memory:/docker/abc\n4:cpu,cpuacct:/\n0::/system.slice/x.service\n"
    assert lim.parse_proc_cgroup(text) == {"v2": "/system.slice/x.service", "v1_memory": "/docker/abc"}
    assert lim.parse_proc_cgroup("0::/\n") == {"v2": "/", "v1_memory": None}


def _cg(root, rel, **files):
    path = root.joinpath(*[p for p in rel.split("/") if p])
    path.mkdir(parents=True, exist_ok=True)
    for name, value in files.items():
        (path / name.replace("_", ".", 1)).write_text(value + "\n")
    return path


def test_memory_cgroup_v2_takes_the_smallest_limit_up_the_tree(tmp_path):
    (tmp_path / "cgroup.controllers").write_text("memory\n")
    _cg(tmp_path, "/a", memory_max="1048576")
    _cg(tmp_path, "/a/b", memory_max="max", memory_current="262144")
    proc = tmp_path / "proc_cgroup"
    proc.write_text("0::/a/b\n")
    cg = lim.memory_cgroup(proc_cgroup=str(proc), root=str(tmp_path))
    assert cg == {"version": 2, "path": "/a/b", "limit": 1048576, "usage": 262144, "available": 786432}


def test_memory_cgroup_v1_unlimited_and_limited(tmp_path):
    _cg(tmp_path, "memory", memory_limit_in_bytes="9223372036854771712")
    _cg(tmp_path, "memory/job", memory_limit_in_bytes="9223372036854771712", memory_usage_in_bytes="100")
    proc = tmp_path / "proc_cgroup"
    proc.write_text("4:memory:/job\n0::/\n")
    cg = lim.memory_cgroup(proc_cgroup=str(proc), root=str(tmp_path))
    assert cg["version"] == 1 and cg["limit"] is None and cg["available"] is None and cg["usage"] == 100
    (tmp_path / "memory" / "job" / "memory.limit_in_bytes").write_text("1000\n")
    assert lim.memory_cgroup(proc_cgroup=str(proc), root=str(tmp_path))["available"] == 900


def test_memory_budget_is_the_smallest_applicable_limit():
    assert lim.memory_budget(memlock_soft=64 << 10, memlock_applies=True, cgroup_available=1 << 20,
                             mem_available=1 << 30) == {"bytes": 64 << 10, "limited_by": "memlock"}
    assert lim.memory_budget(memlock_soft=64 << 10, memlock_applies=False, cgroup_available=1 << 20,
                             mem_available=1 << 30) == {"bytes": 1 << 20, "limited_by": "memory_cgroup"}
    assert lim.memory_budget(memlock_soft=None, memlock_applies=True, cgroup_available=None,
                             mem_available=None) == {"bytes": None, "limited_by": None}


def test_host_limits_on_this_host():
    facts = lim.host_limits()
    assert facts["kernel"] == {"stack_bytes": 512, "processed_insns": 1_000_000,
                               "program_insns_privileged": 1_000_000, "program_insns_unprivileged": 4096,
                               "tail_call_depth": 33}
    assert facts["possible_cpus"] >= 1
    assert set(facts["memlock"]) == {"soft", "hard"}


@pytest.mark.parametrize("size,text", [(None, "unlimited"), (512, "512 B"), (3 << 20, "3.0 MiB"), (1 << 51, "2.0 PiB")])
def test_human_bytes(size, text):
    assert lim.human_bytes(size) == text
