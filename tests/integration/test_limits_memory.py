"""The one map memory figure (_limits.map_memory) against the running kernel's own.

Since Linux 6.4 every map reports what it allocated (``map->ops->map_mem_usage``) on the
``memlock:`` line of its fdinfo, the figure bpftool shows as ``bytes_memlock`` and the one the
memory cgroup is charged (kernels >= 5.11). Real maps of each type the model knows are created
here (named ``ebpfd_mem``, never pinned, closed at the end) and the model must give the kernel's
number: the part that grows with max_entries to the byte (two sizes of each map, the difference
compared), the fixed part (the map's struct, which differs between kernel builds) within
``FIXED_SLACK`` bytes. bpf_map's own ``memory_estimate`` of a map it creates is checked against
the pinned map's bytes_memlock the same way, and a map allocated on demand, once full, reaches
the model's figure.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from xdp_helpers import bpftool

from ansible_collections.ebpf.deploy.plugins.module_utils import _libbpf as libbpf
from ansible_collections.ebpf.deploy.plugins.module_utils import _limits
from ansible_collections.ebpf.deploy.plugins.module_utils._map import path_lock_name
from ansible_collections.ebpf.deploy.plugins.module_utils._procfs import read_fdinfo
from ansible_collections.ebpf.deploy.plugins.module_utils._uapi import BPF_F_MMAPABLE, BPF_F_NO_PREALLOC, MAP_TYPES

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create maps"),
    pytest.mark.skipif(_limits.memlock_applies() or tuple(int(p) for p in os.uname().release.split(".")[:2]) < (6, 4),
                       reason="fdinfo's memlock is the kernel's real figure from Linux 6.4 on"),
]

LOCK_DIR = Path("/run/ebpf_deploy/locks")

# The structs (bpf_array, bpf_htab, bpf_ringbuf_map) of another kernel build may differ by this much.
FIXED_SLACK = 512

# (type, key, value, two max_entries, flags): every kind of layout the model has
MAPS = [
    ("hash", 4, 8, (1000, 4096), 0),
    ("hash", 16, 100, (64, 1024), 0),
    ("lru_hash", 4, 8, (1024, 4096), 0),
    ("percpu_hash", 4, 8, (1000, 4096), 0),
    ("lru_percpu_hash", 4, 8, (1024, 2048), 0),
    ("array", 4, 8, (1, 1024), 0),
    ("array", 4, 100, (4096, 8192), BPF_F_MMAPABLE),
    ("percpu_array", 4, 8, (16, 1024), 0),
    ("prog_array", 4, 4, (16, 1024), 0),
    ("queue", 0, 16, (16, 1024), 0),
    ("ringbuf", 0, 0, (1 << 16, 1 << 20), 0),
]


def kernel_bytes(map_type: int, key: int, value: int, entries: int, flags: int, *, fill: int = 0) -> int:
    """fdinfo's memlock of a new map, after ``fill`` entries (keys 0..fill-1) are written."""
    fd = libbpf.map_create(map_type, "ebpfd_mem", key, value, entries, flags=flags)
    try:
        for index in range(fill):
            libbpf.map_update(fd, index.to_bytes(key, "little"), bytes(value))
        return int(read_fdinfo(fd)["memlock"])
    finally:
        os.close(fd)


def model_bytes(map_type: int, key: int, value: int, entries: int, flags: int) -> int:
    return _limits.map_memory(map_type=map_type, key_size=key, value_size=value, max_entries=entries, flags=flags,
                              possible_cpus=libbpf.num_possible_cpus())["bytes"]


@pytest.mark.parametrize("type_name,key,value,sizes,flags", MAPS,
                         ids=[f"{m[0]}-{m[1]}-{m[2]}-{m[4]}" for m in MAPS])
def test_the_model_gives_the_kernels_figure(type_name, key, value, sizes, flags):
    map_type = MAP_TYPES[type_name]
    small, large = (kernel_bytes(map_type, key, value, n, flags) for n in sizes)
    model_small, model_large = (model_bytes(map_type, key, value, n, flags) for n in sizes)
    assert model_large - model_small == large - small, (
        f"{type_name}: the kernel grows by {large - small} B from {sizes[0]} to {sizes[1]} entries, "
        f"the model by {model_large - model_small} B")
    assert abs(model_small - small) <= FIXED_SLACK, (type_name, model_small, small)
    assert abs(model_large - large) <= FIXED_SLACK, (type_name, model_large, large)


def test_a_map_allocated_on_demand_reaches_its_estimate_when_full():
    """BPF_F_NO_PREALLOC: the kernel counts the elements there are, the model the most there can be."""
    map_type, flags = MAP_TYPES["hash"], BPF_F_NO_PREALLOC
    model = model_bytes(map_type, 4, 8, 256, flags)
    empty = kernel_bytes(map_type, 4, 8, 256, flags)
    full = kernel_bytes(map_type, 4, 8, 256, flags, fill=256)
    assert empty < full and abs(model - full) <= FIXED_SLACK, (empty, full, model)


def test_bpf_map_reports_the_kernels_figure_for_the_map_it_creates(ansible_module, bpffs_root):
    bpffs_root.mkdir(parents=True, exist_ok=True)
    pin = bpffs_root / "ebpfd_mem"
    create = {"type": "hash", "key_size": 4, "value_size": 8, "max_entries": 1024}
    result = ansible_module("bpf_map", {"path": str(pin), "create": create})
    assert not result["failed"], result
    shown = bpftool("map", "show", "pinned", str(pin))
    assert abs(result["memory_estimate"] - shown["bytes_memlock"]) <= FIXED_SLACK, (result["memory_estimate"], shown)
    assert result["memory_estimate"] == model_bytes(MAP_TYPES["hash"], 4, 8, 1024, 0)
    pin.unlink()
    (LOCK_DIR / f"{path_lock_name(str(pin))}.lock").unlink(missing_ok=True)
