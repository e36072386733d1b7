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

Map memory estimate (``map_memory``), after the allocators in kernel/bpf/arraymap.c, hashtab.c,
ringbuf.c, queue_stack_maps.c, lpm_trie.c. It is an upper-bound estimate for planning, not the
kernel's exact accounting (``bpftool map show`` reports ``bytes_memlock`` for a live map)::

    array                 round_up(value, 8) * max_entries
    percpu_array          (round_up(value, 8) * possible_cpus + 8) * max_entries
    prog/perf_event/cgroup array, array_of_maps:   8 * max_entries  (one pointer per slot)
    hash, lru_hash        (HTAB_ELEM + round_up(key, 8) + round_up(value, 8)) * entries
                          + 16 * roundup_pow_of_two(max_entries)          (buckets)
                          entries = max_entries, + possible_cpus spare elements for a
                          preallocated non-LRU hash; preallocation is the default (BPF_F_NO_PREALLOC
                          makes it on demand, the estimate is then the most it can grow to)
    percpu_hash, lru_percpu_hash   (HTAB_ELEM + round_up(key, 8) + 8) * max_entries
                          + round_up(value, 8) * possible_cpus * max_entries + buckets
    lpm_trie              (LPM_NODE + key + value) * max_entries   (allocated on demand)
    queue, stack          value * (max_entries + 1)
    ringbuf               max_entries (data pages) + 2 pages (consumer/producer)
    anything else         (key + value) * max_entries

HTAB_ELEM is 48 bytes on 64-bit (struct htab_elem: hash node, hash, lru/free-list links), LPM_NODE
32 bytes.
"""
from __future__ import annotations

import os
import resource
from typing import Optional

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

# BPF_MAP_TYPE_* numbers (include/uapi/linux/bpf.h).
HASH, ARRAY, PROG_ARRAY, PERF_EVENT_ARRAY, PERCPU_HASH, PERCPU_ARRAY = 1, 2, 3, 4, 5, 6
STACK_TRACE, CGROUP_ARRAY, LRU_HASH, LRU_PERCPU_HASH, LPM_TRIE, ARRAY_OF_MAPS = 7, 8, 9, 10, 11, 12
HASH_OF_MAPS = 13
QUEUE, STACK = 22, 23
RINGBUF = 27
BPF_F_NO_PREALLOC = 1

HTAB_ELEM = 48
HTAB_BUCKET = 16
LPM_NODE = 32
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def round_up(value: int, align: int) -> int:
    return (value + align - 1) // align * align


def roundup_pow_of_two(value: int) -> int:
    return 1 if value <= 1 else 1 << (value - 1).bit_length()


def map_memory(*, map_type: int, key_size: int, value_size: int, max_entries: int,
               flags: int = 0, possible_cpus: int = 1) -> dict:
    """Estimated bytes for one map: {"bytes": n, "formula": "..."} (see the module docstring)."""
    key, value, entries = int(key_size), int(value_size), int(max_entries)
    cpus = max(1, int(possible_cpus))
    val8 = round_up(value, 8)
    if map_type == ARRAY:
        return _est(val8 * entries, f"round_up({value}, 8) * {entries}")
    if map_type == PERCPU_ARRAY:
        return _est((val8 * cpus + 8) * entries, f"(round_up({value}, 8) * {cpus} cpus + 8) * {entries}")
    if map_type in (PROG_ARRAY, PERF_EVENT_ARRAY, CGROUP_ARRAY, ARRAY_OF_MAPS):
        return _est(8 * entries, f"8 * {entries}")
    if map_type in (HASH, LRU_HASH, HASH_OF_MAPS):
        spare = cpus if map_type != LRU_HASH and not flags & BPF_F_NO_PREALLOC else 0
        elems = (HTAB_ELEM + round_up(key, 8) + val8) * (entries + spare)
        buckets = HTAB_BUCKET * roundup_pow_of_two(entries)
        return _est(elems + buckets, f"({HTAB_ELEM} + round_up({key}, 8) + round_up({value}, 8)) * "
                                     f"({entries} + {spare}) + {HTAB_BUCKET} * {roundup_pow_of_two(entries)}")
    if map_type in (PERCPU_HASH, LRU_PERCPU_HASH):
        elems = (HTAB_ELEM + round_up(key, 8) + 8) * entries + val8 * cpus * entries
        buckets = HTAB_BUCKET * roundup_pow_of_two(entries)
        return _est(elems + buckets, f"({HTAB_ELEM} + round_up({key}, 8) + 8) * {entries} + "
                                     f"round_up({value}, 8) * {cpus} cpus * {entries} + "
                                     f"{HTAB_BUCKET} * {roundup_pow_of_two(entries)}")
    if map_type == LPM_TRIE:
        return _est((LPM_NODE + key + value) * entries, f"({LPM_NODE} + {key} + {value}) * {entries}")
    if map_type in (QUEUE, STACK):
        return _est(value * (entries + 1), f"{value} * ({entries} + 1)")
    if map_type == RINGBUF:
        return _est(entries + 2 * PAGE_SIZE, f"{entries} + 2 * {PAGE_SIZE}")
    return _est((key + value) * entries, f"({key} + {value}) * {entries}")


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
    return (major, minor) < (5, 11)


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


def _read_int(path: str) -> Optional[int]:
    try:
        with open(path, encoding="ascii") as handle:
            text = handle.read().strip()
    except OSError:
        return None
    if text == "max":
        return None
    try:
        return int(text)
    except ValueError:
        return None


def _ancestors(base: str, path: str) -> list[str]:
    """base/a/b/c, base/a/b, base/a, base: the cgroup and every parent (nearest first)."""
    parts = [p for p in path.split("/") if p]
    return [os.path.join(base, *parts[:i]) for i in range(len(parts), -1, -1)]


def memory_cgroup(*, proc_cgroup: str = "/proc/self/cgroup", root: str = CGROUP_ROOT) -> dict:
    """The memory cgroup of this process: version, path, effective limit, usage, headroom.

    limit/available are None when no limit applies (or the cgroup cannot be read).
    """
    try:
        with open(proc_cgroup, encoding="utf-8") as handle:
            paths = parse_proc_cgroup(handle.read())
    except OSError:
        return {"version": None, "path": None, "limit": None, "usage": None, "available": None}
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
        limits = [value for value in (_read_int(os.path.join(d, limit_file)) for d in dirs)
                  if value is not None and value < _UNLIMITED_V1]
        limit = min(limits) if limits else None
        usage = _read_int(os.path.join(dirs[0], usage_file))
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
