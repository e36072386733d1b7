# -*- coding: utf-8 -*-
# Copyright: contributors to ebpf.deploy
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private to ebpf.deploy: how much BPF may use on this host, and how much a map will take.

Host limits (read, never changed):

- RLIMIT_MEMLOCK of this process. Kernels before 5.11 charge BPF maps and programs against it;
  from 5.11 on BPF memory is charged to the memory cgroup instead (``memlock_applies``).
- The memory cgroup of this process: cgroup v2 (``0::/path`` in /proc/self/cgroup →
  /sys/fs/cgroup/<path>/memory.max, memory.current) or v1 (``N:memory:/path`` →
  /sys/fs/cgroup/memory/<path>/memory.limit_in_bytes, memory.usage_in_bytes). The effective limit
  is the smallest along the path up to the root.
- MemAvailable from /proc/meminfo.
- The kernel's fixed limits: 512 bytes of stack per program (MAX_BPF_STACK), 1,000,000 processed
  instructions per verification (BPF_COMPLEXITY_LIMIT_INSNS, also the largest program a
  privileged user may load), 4096 instructions for unprivileged loads (BPF_MAXINSNS) and 33 tail
  calls in a chain (MAX_TAIL_CALL_CNT).

Map memory (``map_memory``): the one figure for a map everywhere (bpf_preflight, bpf_program,
bpf_map). It follows the kernel's own accounting, ``map->ops->map_mem_usage`` (Linux >= 6.4), which
is what fdinfo's ``memlock:`` line and bpftool's ``bytes_memlock`` report for a live map and what
the memory cgroup is charged; tests/integration/test_limits_memory.py compares the two on real
maps. For a map that allocates on demand (BPF_F_NO_PREALLOC hashes, lpm_trie, devmap entries) it
is the most the map can grow to. Sizes on 64-bit (struct sizes of Linux 6.18 x86-64; another
kernel differs by a few hundred bytes in the fixed part only)::

    array                 ARRAY + round_up(value, 8) * max_entries
                          (BPF_F_MMAPABLE: both parts rounded up to pages)
    percpu_array          ARRAY + (8 + round_up(value, 8) * possible_cpus) * max_entries
    prog/perf_event/cgroup array, array_of_maps:   ARRAY + 8 * max_entries  (one pointer a slot)
    hash, lru_hash, hash_of_maps
                          HTAB + 16 * roundup_pow_of_two(max_entries)         (buckets)
                          + 32 * possible_cpus                                 (bucket lock counts)
                          + (HTAB_ELEM + round_up(key, 8) + round_up(value, 8)) * entries
                          preallocated (the default): entries = max_entries, + possible_cpus spare
                          elements and their per-CPU pointers for a non-LRU hash;
                          BPF_F_NO_PREALLOC: entries = max_entries, 8 bytes more each
    percpu_hash, lru_percpu_hash   the same with an 8-byte pointer for the value in the element,
                          + round_up(value, 8) * possible_cpus * max_entries (BPF_F_NO_PREALLOC:
                          16 bytes more each)
    lpm_trie              (LPM_NODE + key - 4 + value) * max_entries        (allocated on demand)
    queue, stack          ARRAY + value * (max_entries + 1)
    ringbuf               RINGBUF + (3 + max_entries / page) pages + (3 + 2 * max_entries / page) * 8
    devmap                DTAB + (8 + DTAB_NETDEV) * max_entries
    devmap_hash           DTAB + 8 * roundup_pow_of_two(max_entries) + DTAB_NETDEV * max_entries
    anything else         (key + value) * max_entries

ARRAY, HTAB, RINGBUF and DTAB are sizeof(struct bpf_array), (struct bpf_htab), (struct
bpf_ringbuf_map), (struct bpf_dtab); HTAB_ELEM is struct htab_elem, LPM_NODE struct lpm_trie_node,
DTAB_NETDEV struct bpf_dtab_netdev.

Before 5.11 the kernel charged RLIMIT_MEMLOCK instead of the memory cgroup (``memlock_applies``,
``MEMCG_ACCOUNTING_SINCE``: the one place that says so); ``memory_limits`` lists what bounds BPF
memory on this kernel, tightest first, for the messages that explain an ENOMEM or EPERM.
"""
from __future__ import annotations

import os
import resource
from typing import List, Optional, Tuple

from ansible_collections.ebpf.deploy.plugins.module_utils._procfs import read_int, read_text
from ansible_collections.ebpf.deploy.plugins.module_utils._uapi import (
    BPF_F_MMAPABLE, BPF_F_NO_PREALLOC, MAP_TYPES, PERCPU_MAP_TYPES,
)

# Fixed kernel limits (include/linux/bpf.h, include/linux/bpf_verifier.h, filter.h).
MAX_BPF_STACK = 512
BPF_COMPLEXITY_LIMIT_INSNS = 1_000_000
BPF_MAXINSNS = 4096
MAX_TAIL_CALL_CNT = 33

KERNEL_LIMITS = {
    "stack_bytes": MAX_BPF_STACK,
    "processed_insns": BPF_COMPLEXITY_LIMIT_INSNS,
    "program_insns_privileged": BPF_COMPLEXITY_LIMIT_INSNS,
    "program_insns_unprivileged": BPF_MAXINSNS,
    "tail_call_depth": MAX_TAIL_CALL_CNT,
}

CGROUP_ROOT = "/sys/fs/cgroup"
# A v1 "no limit" is PAGE_COUNTER_MAX * PAGE_SIZE, a huge number: treat anything this big as none.
_UNLIMITED_V1 = 1 << 60

# Linux 5.11 charges BPF memory to the memory cgroup; before, to RLIMIT_MEMLOCK.
MEMCG_ACCOUNTING_SINCE = (5, 11)

# map types by name (_uapi)
_T = MAP_TYPES
HASH, ARRAY, PERCPU_HASH, PERCPU_ARRAY = _T["hash"], _T["array"], _T["percpu_hash"], _T["percpu_array"]
LRU_HASH, LRU_PERCPU_HASH, HASH_OF_MAPS = _T["lru_hash"], _T["lru_percpu_hash"], _T["hash_of_maps"]
PROG_ARRAY, PERF_EVENT_ARRAY, LPM_TRIE, RINGBUF = _T["prog_array"], _T["perf_event_array"], _T["lpm_trie"], _T["ringbuf"]
POINTER_ARRAYS = frozenset(_T[name] for name in ("prog_array", "perf_event_array", "cgroup_array", "array_of_maps"))
QUEUES = frozenset({_T["queue"], _T["stack"]})
DEVMAP, DEVMAP_HASH = _T["devmap"], _T["devmap_hash"]

# Kernel structures, bytes on 64-bit (Linux 6.18 x86-64; see the module docstring).
ARRAY_STRUCT = 312        # struct bpf_array (also struct bpf_queue_stack)
HTAB_STRUCT = 896         # struct bpf_htab
RINGBUF_STRUCT = 304      # struct bpf_ringbuf_map
DTAB_STRUCT = 344         # struct bpf_dtab
HTAB_ELEM = 48            # struct htab_elem, before its key and value
HTAB_BUCKET = 16          # struct bucket
HTAB_LOCK_COUNTS = 8 * 4  # HASHTAB_MAP_LOCK_COUNT ints per possible CPU
LLIST_NODE = 8            # what an element allocated on demand carries more
LPM_NODE = 24             # struct lpm_trie_node, before its data and value
LPM_PREFIXLEN = 4         # the key's leading u32, not stored in the node's data
DTAB_NETDEV = 64          # struct bpf_dtab_netdev, one per entry set
RINGBUF_META_PAGES = 3    # RINGBUF_NR_META_PAGES: the consumer and producer pages and the header's
POINTER = 8
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def round_up(value: int, align: int) -> int:
    return (value + align - 1) // align * align


def roundup_pow_of_two(value: int) -> int:
    return 1 if value <= 1 else 1 << (value - 1).bit_length()


def map_memory(*, map_type: int, key_size: int, value_size: int, max_entries: int,
               flags: int = 0, possible_cpus: int = 1) -> dict:
    """Bytes one map takes in the kernel: {"bytes": n, "formula": "..."} (see the module docstring)."""
    key, value, entries = int(key_size), int(value_size), int(max_entries)
    cpus = max(1, int(possible_cpus))
    val8 = round_up(value, 8)
    if map_type == ARRAY:
        if flags & BPF_F_MMAPABLE:
            size = round_up(ARRAY_STRUCT, PAGE_SIZE) + round_up(val8 * entries, PAGE_SIZE)
            return _est(size, f"page_align({ARRAY_STRUCT}) + page_align(round_up({value}, 8) * {entries})")
        return _est(ARRAY_STRUCT + val8 * entries, f"{ARRAY_STRUCT} + round_up({value}, 8) * {entries}")
    if map_type == PERCPU_ARRAY:
        return _est(ARRAY_STRUCT + (POINTER + val8 * cpus) * entries,
                    f"{ARRAY_STRUCT} + ({POINTER} + round_up({value}, 8) * {cpus} cpus) * {entries}")
    if map_type in POINTER_ARRAYS:
        return _est(ARRAY_STRUCT + POINTER * entries, f"{ARRAY_STRUCT} + {POINTER} * {entries}")
    if map_type in (HASH, LRU_HASH, HASH_OF_MAPS, PERCPU_HASH, LRU_PERCPU_HASH):
        return _hash_memory(map_type, key, value, entries, flags, cpus)
    if map_type == LPM_TRIE:
        node = LPM_NODE + max(key - LPM_PREFIXLEN, 0) + value
        return _est(node * entries, f"({LPM_NODE} + {key} - {LPM_PREFIXLEN} + {value}) * {entries}")
    if map_type in QUEUES:
        return _est(ARRAY_STRUCT + value * (entries + 1), f"{ARRAY_STRUCT} + {value} * ({entries} + 1)")
    if map_type == RINGBUF:
        data_pages = entries // PAGE_SIZE
        size = (RINGBUF_STRUCT + (RINGBUF_META_PAGES + data_pages) * PAGE_SIZE
                + (RINGBUF_META_PAGES + 2 * data_pages) * POINTER)
        return _est(size, f"{RINGBUF_STRUCT} + ({RINGBUF_META_PAGES} + {data_pages}) * {PAGE_SIZE} + "
                          f"({RINGBUF_META_PAGES} + 2 * {data_pages}) * {POINTER}")
    if map_type == DEVMAP:
        return _est(DTAB_STRUCT + (POINTER + DTAB_NETDEV) * entries,
                    f"{DTAB_STRUCT} + ({POINTER} + {DTAB_NETDEV}) * {entries}")
    if map_type == DEVMAP_HASH:
        buckets = roundup_pow_of_two(entries)
        return _est(DTAB_STRUCT + POINTER * buckets + DTAB_NETDEV * entries,
                    f"{DTAB_STRUCT} + {POINTER} * {buckets} + {DTAB_NETDEV} * {entries}")
    return _est((key + value) * entries, f"({key} + {value}) * {entries}")


def map_spec_memory(spec, possible_cpus: int) -> dict:
    """map_memory of a map as an object declares it (an _objects.MapSpec: type, key_size,
    value_size, max_entries, map_flags). A PERF_EVENT_ARRAY declared with max_entries 0 gets one
    slot per possible CPU from libbpf."""
    entries = spec.max_entries
    if spec.type == PERF_EVENT_ARRAY and not entries:
        entries = possible_cpus
    return map_memory(map_type=spec.type, key_size=spec.key_size, value_size=spec.value_size,
                      max_entries=entries, flags=spec.map_flags, possible_cpus=possible_cpus)


def _hash_memory(map_type: int, key: int, value: int, entries: int, flags: int, cpus: int) -> dict:
    """htab_map_mem_usage (kernel/bpf/hashtab.c): the table, then preallocated or on-demand elements."""
    percpu = map_type in PERCPU_MAP_TYPES
    lru = map_type in (LRU_HASH, LRU_PERCPU_HASH)
    val8 = round_up(value, 8)
    elem = HTAB_ELEM + round_up(key, 8) + (POINTER if percpu else val8)
    buckets = roundup_pow_of_two(entries)
    size = HTAB_STRUCT + HTAB_BUCKET * buckets + HTAB_LOCK_COUNTS * cpus
    formula = f"{HTAB_STRUCT} + {HTAB_BUCKET} * {buckets} + {HTAB_LOCK_COUNTS} * {cpus} cpus"
    elem_text = f"({HTAB_ELEM} + round_up({key}, 8) + {POINTER if percpu else f'round_up({value}, 8)'})"
    if flags & BPF_F_NO_PREALLOC:
        extra = LLIST_NODE + (LLIST_NODE + POINTER if percpu else 0)
        size += (elem + extra) * entries
        formula += f" + ({elem_text} + {extra}) * {entries}"
    else:
        spare = cpus if not (percpu or lru) else 0
        size += elem * (entries + spare)
        formula += f" + {elem_text} * ({entries} + {spare})"
        if spare:
            size += POINTER * cpus
            formula += f" + {POINTER} * {cpus} cpus"
    if percpu:
        size += val8 * cpus * entries
        formula += f" + round_up({value}, 8) * {cpus} cpus * {entries}"
    return _est(size, formula)


def _est(size: int, formula: str) -> dict:
    return {"bytes": int(size), "formula": formula}


def human_bytes(size: Optional[int]) -> str:
    if size is None:
        return "unlimited"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if value < 1024 or unit == "PiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


# --- host limits -------------------------------------------------------------------------------
def possible_cpus(path: str = "/sys/devices/system/cpu/possible") -> int:
    """Number of possible CPUs ("0-7,9" → 9), what per-CPU maps allocate for."""
    try:
        with open(path, encoding="ascii") as handle:
            return parse_cpu_list(handle.read())
    except OSError:
        return os.cpu_count() or 1


def parse_cpu_list(text: str) -> int:
    count = 0
    for part in text.strip().split(","):
        if not part:
            continue
        bounds = part.split("-", 1)
        count += (int(bounds[1]) - int(bounds[0]) + 1) if len(bounds) == 2 else 1
    return max(count, 1)


def memlock() -> dict:
    soft, hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    return {"soft": None if soft == resource.RLIM_INFINITY else soft,
            "hard": None if hard == resource.RLIM_INFINITY else hard}


def memlock_applies(release: Optional[str] = None) -> bool:
    """Does the kernel charge BPF memory to RLIMIT_MEMLOCK? (before 5.11: yes)."""
    release = release or os.uname().release
    try:
        major, minor = (int(part) for part in release.split("-")[0].split(".")[:2])
    except ValueError:
        return True
    return (major, minor) < MEMCG_ACCOUNTING_SINCE


def mem_available(path: str = "/proc/meminfo") -> Optional[int]:
    """MemAvailable in bytes (None if the kernel does not say)."""
    try:
        with open(path, encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def parse_proc_cgroup(text: str) -> dict:
    """/proc/<pid>/cgroup → {"v2": path or None, "v1_memory": path or None}."""
    out: dict = {"v2": None, "v1_memory": None}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        controllers, path = parts[1], parts[2]
        if controllers == "":
            out["v2"] = path
        elif "memory" in controllers.split(","):
            out["v1_memory"] = path
    return out


def _ancestors(base: str, path: str) -> list[str]:
    """base/a/b/c, base/a/b, base/a, base: the cgroup and every parent (nearest first)."""
    parts = [p for p in path.split("/") if p]
    return [os.path.join(base, *parts[:i]) for i in range(len(parts), -1, -1)]


def memory_cgroup(*, proc_cgroup: str = "/proc/self/cgroup", root: str = CGROUP_ROOT) -> dict:
    """The memory cgroup of this process: version, path, effective limit, usage, headroom.

    limit/available are None when no limit applies (or the cgroup cannot be read).
    """
    text = read_text(proc_cgroup)
    if text is None:
        return {"version": None, "path": None, "limit": None, "usage": None, "available": None}
    paths = parse_proc_cgroup(text)
    candidates = []
    if paths["v2"] is not None and os.path.exists(os.path.join(root, "cgroup.controllers")):
        candidates.append((2, paths["v2"], root, "memory.max", "memory.current"))
    if paths["v1_memory"] is not None:
        candidates.append((1, paths["v1_memory"], os.path.join(root, "memory"),
                           "memory.limit_in_bytes", "memory.usage_in_bytes"))
    if paths["v2"] is not None and os.path.isdir(os.path.join(root, "unified")):
        candidates.append((2, paths["v2"], os.path.join(root, "unified"), "memory.max", "memory.current"))
    for version, path, base, limit_file, usage_file in candidates:
        dirs = _ancestors(base, path)
        if not any(os.path.exists(os.path.join(d, limit_file)) or os.path.exists(os.path.join(d, usage_file))
                   for d in dirs):
            continue
        limits = [value for value in (read_int(os.path.join(d, limit_file)) for d in dirs)
                  if value is not None and value < _UNLIMITED_V1]
        limit = min(limits) if limits else None
        usage = read_int(os.path.join(dirs[0], usage_file))
        available = None if limit is None else max(0, limit - (usage or 0))
        return {"version": version, "path": path, "limit": limit, "usage": usage, "available": available}
    return {"version": None, "path": paths["v2"] or paths["v1_memory"], "limit": None, "usage": None,
            "available": None}


def host_limits() -> dict:
    """Everything above as one dict, what bpf_facts returns under ``limits``."""
    lock = memlock()
    applies = memlock_applies()
    cgroup = memory_cgroup()
    available = mem_available()
    return {
        "memlock": lock,
        "memlock_applies": applies,
        "memory_cgroup": cgroup,
        "mem_available": available,
        "possible_cpus": possible_cpus(),
        "kernel": dict(KERNEL_LIMITS),
        "bpf_memory_budget": memory_budget(memlock_soft=lock["soft"], memlock_applies=applies,
                                           cgroup_available=cgroup["available"], mem_available=available),
    }


def memory_budget(*, memlock_soft: Optional[int], memlock_applies: bool,
                  cgroup_available: Optional[int], mem_available: Optional[int]) -> dict:
    """The smallest of what memlock (if it applies), the cgroup and free memory leave for BPF.

    {"bytes": n or None, "limited_by": "memlock"|"memory_cgroup"|"mem_available"|None}
    """
    options = []
    if memlock_applies and memlock_soft is not None:
        options.append((memlock_soft, "memlock"))
    if cgroup_available is not None:
        options.append((cgroup_available, "memory_cgroup"))
    if mem_available is not None:
        options.append((mem_available, "mem_available"))
    if not options:
        return {"bytes": None, "limited_by": None}
    size, source = min(options)
    return {"bytes": size, "limited_by": source}


def memory_limits() -> List[Tuple[str, int]]:
    """What bounds BPF memory for this process on this kernel: [(what, bytes available)], tightest
    first. RLIMIT_MEMLOCK only where the kernel charges it (``memlock_applies``), else the memory
    cgroup; MemAvailable always."""
    limits: List[Tuple[str, int]] = []
    if memlock_applies():
        soft = memlock()["soft"]
        if soft is not None:
            limits.append((f"RLIMIT_MEMLOCK ({soft} bytes)", soft))
    cgroup = memory_cgroup()
    if cgroup["available"] is not None:
        limit_file = "memory.max" if cgroup["version"] == 2 else "memory.limit_in_bytes"
        limits.append((f"memory cgroup {cgroup['path']} ({limit_file} {cgroup['limit']}, "
                       f"memory usage {cgroup['usage'] or 0})", cgroup["available"]))
    available = mem_available()
    if available is not None:
        limits.append(("MemAvailable in /proc/meminfo", available))
    return sorted(limits, key=lambda item: item[1])


def charged_to(release: Optional[str] = None) -> str:
    """Where this kernel charges BPF memory, as the messages about ENOMEM/EPERM name it."""
    since = ".".join(str(part) for part in MEMCG_ACCOUNTING_SINCE)
    if memlock_applies(release):
        return f"RLIMIT_MEMLOCK (ulimit -l; kernels before {since} charge BPF memory to it)"
    return (f"the memory cgroup limit of this process (memory.max; kernels since {since} charge BPF "
            "memory to the cgroup, not to RLIMIT_MEMLOCK)")
