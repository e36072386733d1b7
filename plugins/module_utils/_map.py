# -*- coding: utf-8 -*-
# Copyright: contributors to ebpf.deploy
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private to ebpf.deploy: the bpf_map manager — pinned maps and their entries, declaratively.

One run is: resolve the map (a deployment's map, any pinned map, or a standalone map to create and
pin) → read its entries from the kernel → encode and validate every requested entry (types, sizes,
program types, capacity, memory) → plan add/change/remove → write only the difference (never in
check mode), restoring the snapshot if a write fails midway → report.

The pure parts (``Desired``, ``Plan``, ``plan_entries``, ``check_capacity``, ``apply_plan``,
``check_memory``) take bytes and plain values so they are unit tested without a kernel;
``MapManager`` does the kernel work through ``_libbpf``. No Ansible here: ``run()`` returns a
``MapResult`` and raises ``EbpfDeployError`` for the module to turn into ``fail_json``.
"""
from __future__ import annotations

import errno as _errno
import hashlib
import os
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from ansible_collections.ebpf.deploy.plugins.module_utils import _libbpf as libbpf
from ansible_collections.ebpf.deploy.plugins.module_utils import _uapi as uapi
from ansible_collections.ebpf.deploy.plugins.module_utils._btf import Btf, BtfError, spin_lock_field
from ansible_collections.ebpf.deploy.plugins.module_utils._codec import (
    Codec, TYPE_NAMES, decode_percpu, encode_percpu, make_codec, round_up8, split_percpu,
)
from ansible_collections.ebpf.deploy.plugins.module_utils._errors import (
    EbpfDeployError, InvalidInput, MapConflict, SyscallError, UnsupportedFeature, errno_name,
)
from ansible_collections.ebpf.deploy.plugins.module_utils._map_diff import entries_diff
from ansible_collections.ebpf.deploy.plugins.module_utils._request import known_params
from ansible_collections.ebpf.deploy.plugins.module_utils._result import Result
from ansible_collections.ebpf.deploy.plugins.module_utils._lock import deployment_lock
from ansible_collections.ebpf.deploy.plugins.module_utils._pins import (
    DEFAULT_BPFFS_ROOT, Deployment, is_bpffs, validate_path,
)
from ansible_collections.ebpf.deploy.plugins.module_utils._procfs import read_fdinfo

# The map types bpf_map manages (numbers: _uapi), by the names its ``create.type`` takes.
MAP_TYPES = {name: uapi.MAP_TYPES[name] for name in (
    "hash", "array", "prog_array", "percpu_hash", "percpu_array", "lru_hash", "lru_percpu_hash", "lpm_trie",
    "devmap", "devmap_hash")}
MAP_HASH, MAP_ARRAY, MAP_PROG_ARRAY = MAP_TYPES["hash"], MAP_TYPES["array"], MAP_TYPES["prog_array"]
MAP_PERCPU_HASH, MAP_PERCPU_ARRAY = MAP_TYPES["percpu_hash"], MAP_TYPES["percpu_array"]
MAP_LRU_HASH, MAP_LRU_PERCPU_HASH = MAP_TYPES["lru_hash"], MAP_TYPES["lru_percpu_hash"]
MAP_LPM_TRIE, MAP_DEVMAP, MAP_DEVMAP_HASH = MAP_TYPES["lpm_trie"], MAP_TYPES["devmap"], MAP_TYPES["devmap_hash"]
# Maps whose every key exists (0..max_entries-1) and cannot be deleted: "removing" writes zeros.
ZEROED_ON_REMOVE = frozenset({MAP_ARRAY, MAP_PERCPU_ARRAY})
INDEXED = frozenset({MAP_ARRAY, MAP_PERCPU_ARRAY, MAP_PROG_ARRAY, MAP_DEVMAP})
PERCPU = uapi.PERCPU_MAP_TYPES
HASHES = frozenset({MAP_HASH, MAP_PERCPU_HASH, MAP_LRU_HASH, MAP_LRU_PERCPU_HASH, MAP_LPM_TRIE,
                    MAP_DEVMAP_HASH})

# The flags ``create.flags`` takes (values: _uapi).
MAP_FLAGS = {name: uapi.MAP_FLAGS[name] for name in (
    "no_prealloc", "no_common_lru", "rdonly", "wronly", "zero_seed", "rdonly_prog", "wronly_prog", "mmapable",
    "preserve_elems")}
# Flags the kernel adds by itself (kernel/bpf/devmap.c: lookups return a pointer into the entry).
IMPLIED_FLAGS = {MAP_DEVMAP: MAP_FLAGS["rdonly_prog"], MAP_DEVMAP_HASH: MAP_FLAGS["rdonly_prog"]}
MAP_NAME_RE = r"[^A-Za-z0-9_.]"   # what a map name may not hold (compiled when a map is created)


# --- the plan (pure) ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Desired:
    """One requested entry: ``value`` is what the kernel will read back (the comparison),
    ``write`` what is written (they differ for PROG_ARRAY: program id vs. program fd)."""
    key: bytes
    value: bytes
    write: bytes
    given_key: Any = None
    given_value: Any = None


@dataclass
class Plan:
    add: List[Desired] = field(default_factory=list)
    change: List[Tuple[Desired, bytes]] = field(default_factory=list)     # (desired, old value)
    remove: List[Tuple[bytes, bytes]] = field(default_factory=list)       # (key, old value)
    unchanged: List[bytes] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.add or self.change or self.remove)


def dedupe(desired: Sequence[Desired], show: Callable[[bytes], Any] = bytes.hex) -> List[Desired]:
    """Drop repeated keys; the same key twice with different values is refused."""
    seen: Dict[bytes, Desired] = {}
    for item in desired:
        other = seen.get(item.key)
        if other is None:
            seen[item.key] = item
        elif other.value != item.value:
            raise InvalidInput(f"key {show(item.key)} is listed twice with different values "
                               f"({other.given_value!r} and {item.given_value!r})")
    return list(seen.values())


def plan_entries(current: Dict[bytes, bytes], desired: Sequence[Desired], *, purge: bool,
                 zero_value: Optional[bytes] = None, overwrite: bool = True) -> Plan:
    """What to write so the map holds ``desired`` (and, with ``purge``, nothing else).

    ``zero_value`` marks array semantics: every key exists, an entry equal to it counts as empty
    and removing an entry writes it. ``overwrite=False`` leaves the value of a key that exists
    alone (counters kept by the program); in an array, only a zero entry counts as missing.
    """
    plan = Plan()
    wanted = {item.key: item for item in desired}
    for key, item in wanted.items():
        old = current.get(key)
        if old is None:
            plan.add.append(item)
        elif old == item.value:
            plan.unchanged.append(key)
        elif not overwrite and (zero_value is None or old != zero_value):
            plan.unchanged.append(key)
        else:
            plan.change.append((item, old))
    if purge:
        for key, old in current.items():
            if key in wanted:
                continue
            if zero_value is not None and old == zero_value:
                continue
            plan.remove.append((key, old))
    return plan


def check_capacity(plan: Plan, *, current_count: int, desired_count: int, max_entries: int,
                   map_name: str) -> None:
    """Refuse a plan that would hold more entries than the map's max_entries."""
    if desired_count > max_entries:
        raise InvalidInput(f"{desired_count} entries requested but map {map_name} holds at most "
                           f"{max_entries} (max_entries)", requested=desired_count,
                           max_entries=max_entries)
    final = current_count + len(plan.add) - len(plan.remove)
    if final > max_entries:
        raise InvalidInput(f"map {map_name} would hold {final} entries ({current_count} now, "
                           f"+{len(plan.add)} added, -{len(plan.remove)} removed) but max_entries is "
                           f"{max_entries}: purge unlisted entries or use a larger map",
                           requested=final, max_entries=max_entries)


class Writer:
    """What ``apply_plan`` needs from a map (a fake in unit tests, the kernel in ``KernelWriter``)."""

    def update(self, key: bytes, value: bytes) -> None:
        raise NotImplementedError

    def remove(self, key: bytes) -> None:
        raise NotImplementedError

    def restore(self, key: bytes, old: Optional[bytes]) -> None:
        """Put back a value as it was read (None: the key did not exist)."""
        raise NotImplementedError


def apply_plan(plan: Plan, writer: Writer) -> int:
    """Remove, change, then add; on a failure restore what was written (newest first) and re-raise
    with ``rolled_back`` (and ``rollback_errors`` if restoring failed too). Returns writes done."""
    done: List[Tuple[bytes, Optional[bytes]]] = []
    try:
        for key, old in plan.remove:
            writer.remove(key)
            done.append((key, old))
        for item, old in plan.change:
            writer.update(item.key, item.write)
            done.append((item.key, old))
        for item in plan.add:
            writer.update(item.key, item.write)
            done.append((item.key, None))
    except EbpfDeployError as err:
        errors = []
        for key, old in reversed(done):
            try:
                writer.restore(key, old)
            except EbpfDeployError as undo:
                errors.append(f"{key.hex()}: {undo.msg}")
        err.details["rolled_back"] = not errors
        err.details["writes_undone"] = len(done) - len(errors)
        if errors:
            err.details["rollback_errors"] = errors
            err.msg += f" (restoring the map failed for {len(errors)} entries)"
        else:
            err.msg += f" (the map was restored: {len(done)} writes undone)" if done else " (nothing was written)"
        err.args = (err.msg,)
        raise
    return len(done)


# --- memory (the figure and the host's limits: _limits) ------------------------------------------
def _mib(size: int) -> str:
    return f"{size / (1 << 20):.1f} MiB"


def check_memory(spec: dict, estimate: int, limits: List[Tuple[str, int]]) -> None:
    if limits and estimate > limits[0][1]:
        what, available = limits[0]
        raise InvalidInput(
            f"map {spec['name']} ({spec['type']}, key {spec['key_size']} + value {spec['value_size']} bytes "
            f"x {spec['max_entries']} entries) would need about {_mib(estimate)} ({estimate} bytes) but "
            f"only {_mib(available)} ({available} bytes) is available: {what}",
            estimated_bytes=estimate, available_bytes=available, limit=what)


# --- kernel side ----------------------------------------------------------------------------------
@dataclass
class MapHandle:
    fd: int
    pin: str
    info: Any                      # _libbpf.MapInfo
    btf: Optional[Btf] = None
    btf_id: int = 0
    key_type_id: int = 0
    value_type_id: int = 0
    lock_field: Optional[str] = None   # the value's bpf_spin_lock member (value_lock_field)

    @property
    def lock_flags(self) -> int:
        """BPF_F_LOCK for every lookup and update of a value that holds a bpf_spin_lock."""
        return uapi.BPF_F_LOCK if self.lock_field is not None else 0


def value_lock_field(btf: Optional[Btf], value_type_id: int) -> Optional[str]:
    """The member of the map's value that is its bpf_spin_lock, None when it has none (or no BTF to
    tell). Such a value is copied under its lock (BPF_F_LOCK), so a read or a write never tears
    against a program updating it under the lock; the lock itself is the kernel's, never written."""
    if btf is None or not value_type_id:
        return None
    try:
        return spin_lock_field(btf, value_type_id)
    except BtfError:
        return None


class KernelWriter(Writer):
    """Writes through bpf_map_update_elem/delete_elem; restores PROG_ARRAY slots by program id."""

    def __init__(self, handle: MapHandle, zero_write: Optional[bytes], *, name: str,
                 restore_value: Callable[[bytes], bytes], show_key: Callable[[bytes], Any]) -> None:
        self.handle = handle
        self.zero_write = zero_write
        self.name = name
        self.restore_value = restore_value
        self.show_key = show_key

    def update(self, key: bytes, value: bytes) -> None:
        try:
            libbpf.map_update(self.handle.fd, key, value, self.handle.lock_flags)
        except SyscallError as err:
            raise self._error(err, key) from None

    def remove(self, key: bytes) -> None:
        if self.zero_write is not None:
            self.update(key, self.zero_write)
            return
        try:
            libbpf.map_delete(self.handle.fd, key)
        except SyscallError as err:
            raise self._error(err, key) from None

    def restore(self, key: bytes, old: Optional[bytes]) -> None:
        if old is None:
            self.remove(key)
        else:
            self.update(key, self.restore_value(old))

    def _error(self, err: SyscallError, key: bytes) -> EbpfDeployError:
        """Name the map and the key; a full map or memory limit says the numbers."""
        info = self.handle.info
        try:
            shown = self.show_key(key)
        except (EbpfDeployError, ValueError):
            shown = key.hex()
        if err.errno in (_errno.E2BIG, _errno.ENOMEM, _errno.ENOSPC):
            from ansible_collections.ebpf.deploy.plugins.module_utils import _limits  # pylint: disable=import-outside-toplevel
            return InvalidInput(
                f"map {self.name} refused key {shown!r}: {os.strerror(err.errno)} ({errno_name(err.errno)}); "
                f"the map holds at most {info.max_entries} entries (max_entries) of key {info.key_size} + "
                f"value {info.value_size} bytes, or the memory limit is reached: {_limits.charged_to()}",
                errno=err.errno, max_entries=info.max_entries, syscall=err.syscall)
        return SyscallError(err.syscall, err.errno, f"map {self.name} ({self.handle.pin}), key {shown!r}")


def prior_entries(plan: Plan) -> List[dict]:
    """What a plan overwrites, as the host's record keeps it: key and old value (hex, None when
    the key did not exist), as read (per-CPU values compact, PROG_ARRAY slots as program ids)."""
    prior = [{"key": key.hex(), "old": old.hex()} for key, old in plan.remove]
    prior += [{"key": item.key.hex(), "old": old.hex()} for item, old in plan.change]
    prior += [{"key": item.key.hex(), "old": None} for item in plan.add]
    return prior


def empty_array_value(info, ncpus: int) -> Optional[bytes]:
    """What an emptied entry of an array map holds, as compared (None: its entries can be deleted)."""
    if info.type not in ZEROED_ON_REMOVE:
        return None
    return bytes(info.value_size * ncpus if info.type in PERCPU else info.value_size)


def value_to_write(info, own: Callable[[int], int]) -> Callable[[bytes], bytes]:
    """Bytes as read/compared -> bytes to write: per-CPU slots padded, PROG_ARRAY ids as fds
    (each fd is handed to ``own``, whose caller closes it after the writes)."""
    if info.type in PERCPU:
        return lambda old: pad_percpu(old, info.value_size)
    if info.type != MAP_PROG_ARRAY:
        return lambda old: old

    def program_fd(old: bytes) -> bytes:
        fd = own(libbpf.prog_fd_by_id(int.from_bytes(old, "little")))
        return fd.to_bytes(4, "little")
    return program_fd


def restore_entries(pin: str, prior: List[dict]) -> int:
    """Write back what ``prior_entries`` recorded (newest first); returns the entries restored."""
    fd = libbpf.obj_get(pin)
    held: List[int] = []
    try:
        if libbpf.fd_kind(fd) != "map":
            raise InvalidInput(f"{pin} is not a map: its entries cannot be restored")
        info = libbpf.map_info(fd)

        def own(prog_fd: int) -> int:
            held.append(prog_fd)
            return prog_fd
        restore = value_to_write(info, own)
        zero = empty_array_value(info, libbpf.num_possible_cpus())
        writer = KernelWriter(MapHandle(fd=fd, pin=pin, info=info), restore(zero) if zero is not None else None,
                              name=info.name, restore_value=restore, show_key=bytes.hex)
        for item in reversed(prior):
            key = bytes.fromhex(item["key"])
            old = bytes.fromhex(item["old"]) if item.get("old") is not None else None
            try:
                writer.restore(key, old)
            except SyscallError as err:
                if old is not None or err.errno != _errno.ENOENT:
                    raise
        return len(prior)
    finally:
        for prog_fd in held:
            libbpf.close(prog_fd)
        libbpf.close(fd)


def path_lock_name(pin: str) -> str:
    """The lock of a map known only by its pin path (a lock name cannot hold '/')."""
    return "map-" + hashlib.sha256(os.path.normpath(pin).encode()).hexdigest()[:16]


def merge_fields(current: Any, given: Any) -> Any:
    """``given`` over ``current``, mapping by mapping: fields not given keep their current value."""
    if isinstance(current, dict) and isinstance(given, dict):
        out = dict(current)
        for name, value in given.items():
            out[name] = merge_fields(current.get(name), value) if name in current else value
        return out
    return given


def merge_percpu(compact: bytes, given: Any, codec: Codec, size: int, ncpus: int) -> Any:
    """A per-CPU struct value over the current one, CPU by CPU: ``{rate: 5}`` (every CPU) or a list
    with one mapping per CPU; the fields not given keep each CPU's own value (a counter the
    program keeps per CPU is not reset)."""
    olds = [codec.decode(compact[cpu * size:(cpu + 1) * size]) for cpu in range(ncpus)]
    if isinstance(given, dict):
        return [merge_fields(old, given) for old in olds]
    if isinstance(given, list) and len(given) == ncpus:
        return [merge_fields(old, new) if isinstance(new, dict) else new for old, new in zip(olds, given)]
    return given


@dataclass(frozen=True)
class Request:
    """The bpf_map task's parameters (None given = the default)."""
    deployment: Optional[str] = None
    map: Optional[str] = None
    path: Optional[str] = None
    create: Optional[dict] = None
    bpffs_root: str = DEFAULT_BPFFS_ROOT
    key_type: Optional[str] = None
    value_type: Optional[str] = None
    entries: Optional[List[dict]] = None    # None: only read (and return) the entries
    value_deployment: Optional[str] = None
    overwrite: bool = True
    purge: bool = False
    dump: bool = False
    state: str = "present"
    lock_timeout: float = 60.0

    @classmethod
    def from_params(cls, params: dict) -> "Request":
        return cls(**known_params(cls, params))

    def validate(self) -> None:
        if bool(self.deployment) == bool(self.path):
            raise InvalidInput("give either deployment (with map) or path")
        if self.deployment and not self.map:
            raise InvalidInput("deployment needs map: the name of one of its maps")
        if self.create and not self.path:
            raise InvalidInput("create needs path: where the standalone map is pinned")
        if self.path:
            validate_path(self.path, "path")
        if self.path and not os.path.isabs(self.path):
            raise InvalidInput(f"path must be absolute, got {self.path!r}")
        for option in ("key_type", "value_type"):
            value = getattr(self, option)
            if value and value not in TYPE_NAMES:
                raise InvalidInput(f"{option} {value!r} is not one of {', '.join(TYPE_NAMES)}")
        if self.state == "absent" and self.deployment:
            raise InvalidInput("state=absent unpins a standalone map (path); a deployment's maps are "
                               "removed with its programs (ebpf.deploy.bpf_program state=absent)")
        for index, entry in enumerate(self.entries or []):
            if not isinstance(entry, dict) or "key" not in entry or entry.get("key") is None:
                raise InvalidInput(f"entries[{index}] needs a key")
            if entry.get("value") is None:
                raise InvalidInput(f"entries[{index}] (key {entry['key']!r}) needs a value")


@dataclass
class MapResult(Result):
    """One bpf_map run; ``extra`` holds entries (when read) and memory_estimate (a map created)."""
    map: Optional[dict] = None
    added: List[Any] = field(default_factory=list)
    changed_keys: List[Any] = field(default_factory=list)
    removed: List[Any] = field(default_factory=list)

    keep_none = ("map",)

    @property
    def pin(self) -> Optional[str]:
        return (self.map or {}).get("pin")


@dataclass
class EntriesPlan:
    """What a present run read and decided before anything is written (``MapManager._plan``)."""
    handle: Optional[MapHandle]     # None: the map is created (create, nothing pinned yet)
    spec: Optional[dict]            # the map to create
    info: Any                       # _libbpf.MapInfo, or _SpecInfo for a map to create
    ncpus: int
    key_codec: Codec
    value_codec: Codec
    zero: Optional[bytes]           # empty_array_value
    current: Dict[bytes, bytes]
    plan: Plan

    @property
    def created(self) -> bool:
        return self.handle is None


def per_version_table_refused(deployment: str, map_name: str, pin, type_name: str) -> InvalidInput:
    """A ``maps:`` entry or bpf_map task naming a PROG_ARRAY or map of maps the object initialises:
    refused. Its slots are the version's own (set by libbpf from ``.values`` at load, switched with
    the version, restored by a rollback); a write would change a version without changing its digest."""
    return InvalidInput(f"map '{map_name}' of deployment '{deployment}' is a {type_name} map its object "
                        f"initialises (.values), one per version ({pin}): its slots change only with the "
                        "version, so it is not written by maps: or bpf_map; change .values in the object instead",
                        map=map_name, pin=str(pin), map_type=type_name)


class MapManager:
    """One bpf_map task: ``MapManager(request, check_mode=..., diff_mode=...).run() -> MapResult``."""

    def __init__(self, request: Request, *, check_mode: bool = False, diff_mode: bool = False,
                 before_write: Optional[Callable[[str, List[dict]], None]] = None) -> None:
        self.req = request
        self.check_mode = check_mode
        self.diff_mode = diff_mode
        # bpf_deployment's transaction: told the prior bytes of every entry before it is written
        self.before_write = before_write
        self.result = MapResult()
        self.handle: Optional[MapHandle] = None
        self._fds: List[int] = []

    # ---- entry point
    def run(self) -> MapResult:
        req = self.req
        try:
            req.validate()
            if req.deployment:
                dep = Deployment(req.bpffs_root or DEFAULT_BPFFS_ROOT, req.deployment)
                self.deployment: Optional[Deployment] = dep
                self.pin = str(dep.map_pin(req.map))
                lock_name = req.deployment
            else:
                self.deployment = None
                self.pin = os.path.normpath(req.path)
                lock_name = path_lock_name(self.pin)
            with deployment_lock(lock_name, float(req.lock_timeout or 60)):
                if req.state == "absent":
                    return self._absent()
                return self._present()
        finally:
            for fd in self._fds:
                try:
                    libbpf.close(fd)
                except OSError:
                    pass
            self._fds.clear()

    def _own(self, fd: int) -> int:
        self._fds.append(fd)
        return fd

    # ---- state: absent
    def _absent(self) -> MapResult:
        pin = self.pin
        if not os.path.lexists(pin):
            self.result.extra["entries"] = None
            return self.result
        if os.path.islink(pin):
            # the checks below would read the map it points at, and unlink would remove the link only
            raise InvalidInput(f"{pin} is a symlink (to {os.readlink(pin)}), not a map's pin: not removed; "
                               "give the path of the pin itself")
        fd = self._own(libbpf.obj_get(pin))
        if libbpf.fd_kind(fd) != "map":
            raise InvalidInput(f"{pin} is pinned but is not a map ({libbpf.fd_kind(fd)}): not removed")
        info = libbpf.map_info(fd)
        self.result.map = self._map_result(MapHandle(fd=fd, pin=pin, info=info))
        self.result.changed = True
        if self.diff_mode:
            self.result.diff = {"before": {"pin": pin, "map_id": info.id}, "after": {"pin": None}}
        if not self.check_mode:
            os.unlink(pin)
        return self.result

    # ---- state: present: plan -> act -> report
    def _present(self) -> MapResult:
        planned = self._plan()
        handle = planned.handle if self.check_mode else self._act(planned)
        return self._report(planned, handle)

    def _plan(self) -> EntriesPlan:
        """Everything is read and validated before anything is written."""
        req = self.req
        handle, spec = self._resolve()
        self.handle = handle
        info = handle.info if handle else _SpecInfo(spec)
        ncpus = libbpf.num_possible_cpus()
        if info.type not in MAP_TYPES.values():
            raise UnsupportedFeature(f"map {info.name} is a {libbpf.map_type_name(info.type)} map: bpf_map writes "
                                     f"entries of {', '.join(MAP_TYPES)} maps")
        key_codec, value_codec = self._codecs(handle, info)
        zero = empty_array_value(info, ncpus)
        if req.entries is None and req.purge:
            raise InvalidInput("purge needs entries (use entries: [] to empty the map)")
        current = self._read(handle, info, ncpus) if handle else {}
        desired = self._desired(req.entries or [], current, info, key_codec, value_codec, ncpus)
        plan = plan_entries(current, desired, purge=bool(req.purge), zero_value=zero,
                            overwrite=req.overwrite is not False)
        if info.type in HASHES:
            check_capacity(plan, current_count=len(current), desired_count=len(desired),
                           max_entries=info.max_entries, map_name=info.name)
        return EntriesPlan(handle=handle, spec=spec, info=info, ncpus=ncpus, key_codec=key_codec,
                           value_codec=value_codec, zero=zero, current=current, plan=plan)

    def _act(self, planned: EntriesPlan) -> MapHandle:
        """Create the map if asked, then write the plan (restoring what was written if a write fails)."""
        handle = planned.handle or self._create(planned.spec)
        plan, info = planned.plan, planned.info
        if not plan.changed:
            return handle
        if self.before_write is not None:
            self.before_write(self.pin, prior_entries(plan))
        restore = value_to_write(info, self._own)
        zero_write = restore(planned.zero) if planned.zero is not None else None
        writer = KernelWriter(handle, zero_write, name=info.name, restore_value=restore,
                              show_key=planned.key_codec.decode)
        try:
            apply_plan(plan, writer)
        except EbpfDeployError as err:
            if planned.created:  # the map did not exist before this run: leave none behind
                os.unlink(self.pin)
                err.msg += "; the new map was unpinned again"
                err.args = (err.msg,)
            raise
        return handle

    def _report(self, planned: EntriesPlan, handle: Optional[MapHandle]) -> MapResult:
        plan, info, spec = planned.plan, planned.info, planned.spec
        key_codec, value_codec = planned.key_codec, planned.value_codec
        decode = self._decoder(info, key_codec, value_codec, planned.ncpus)
        result = self.result
        result.changed = planned.created or plan.changed
        result.map = self._map_result(handle) if handle else dict(spec, id=None, pin=self.pin, btf=None)
        result.map["key_type"] = key_codec.name
        result.map["value_type"] = "program" if info.type == MAP_PROG_ARRAY else value_codec.name
        result.added = [decode.key(item.key) for item in plan.add]
        result.changed_keys = [decode.key(item.key) for item, _old in plan.change]
        result.removed = [decode.key(key) for key, _old in plan.remove]
        if self.diff_mode:
            result.diff = self._diff(plan, decode, planned.created, spec)
        if self.req.entries is None or self.req.dump:
            if handle and not self.check_mode:
                final = self._read(handle, info, planned.ncpus)
            else:
                final = dict(planned.current)
                for key, _old in plan.remove:
                    if planned.zero is None:
                        final.pop(key, None)
                    else:
                        final[key] = planned.zero
                for item, _old in plan.change:
                    final[item.key] = item.value
                for item in plan.add:
                    final[item.key] = item.value
            result.extra["entries"] = [decode.entry(key, final[key])
                                       for key in sorted(final, key=key_codec.sort_key)]
        return result

    # ---- resolving the map
    def _resolve(self) -> Tuple[Optional[MapHandle], Optional[dict]]:
        """(handle of the pinned map, None) or (None, spec to create) in check mode/creation."""
        spec = self._create_spec() if self.req.create else None
        pin = self.pin
        if not os.path.lexists(pin):
            if self.deployment is not None:
                current = self.deployment.current_version()
                own = self.deployment.version_map_pin(current, self.req.map) if current else None
                if own is not None and os.path.lexists(own):
                    raise per_version_table_refused(self.deployment.name, self.req.map, own, _pinned_type_name(own))
                maps = ", ".join(self.deployment.pinned_maps()) or "none"
                raise InvalidInput(f"deployment '{self.deployment.name}' has no pinned map "
                                   f"'{self.req.map}' under {self.deployment.maps_dir} (pinned maps: {maps})")
            if spec is None:
                raise InvalidInput(f"no map is pinned at {pin}: give create to make a standalone map")
            if not is_bpffs(os.path.dirname(pin) or "/"):
                raise InvalidInput(f"{pin} is not on a bpf filesystem (mount -t bpf bpf /sys/fs/bpf)")
            self._check_create(spec)
            return None, spec
        fd = self._own(libbpf.obj_get(pin))
        kind = libbpf.fd_kind(fd)
        if kind != "map":
            raise InvalidInput(f"{pin} is a pinned {kind}, not a map")
        handle = MapHandle(fd=fd, pin=pin, info=libbpf.map_info(fd))
        if spec is not None:
            self._compare_spec(handle, spec)
        self._load_btf(handle)
        return handle, None

    def _create_spec(self) -> dict:
        create = self.req.create
        type_name = str(create.get("type") or "").lower()
        if type_name not in MAP_TYPES:
            raise InvalidInput(f"create.type {create.get('type')!r} is not one of {', '.join(MAP_TYPES)}")
        flags = 0
        for flag in create.get("flags") or []:
            if flag not in MAP_FLAGS:
                raise InvalidInput(f"create.flags: unknown flag {flag!r} (known: {', '.join(MAP_FLAGS)})")
            flags |= MAP_FLAGS[flag]
        spec = {"type": type_name, "map_type": MAP_TYPES[type_name], "flags": flags}
        for item in ("key_size", "value_size", "max_entries"):
            value = create.get(item)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise InvalidInput(f"create.{item} must be a positive integer, got {value!r}")
            spec[item] = libbpf.checked_int(value, f"create.{item}", low=1)
        if spec["map_type"] in (MAP_ARRAY, MAP_PERCPU_ARRAY, MAP_PROG_ARRAY, MAP_DEVMAP) and spec["key_size"] != 4:
            raise InvalidInput(f"a {type_name} map has 4-byte keys (u32 index), got key_size {spec['key_size']}")
        if spec["map_type"] in (MAP_PROG_ARRAY, MAP_DEVMAP, MAP_DEVMAP_HASH) and spec["value_size"] != 4:
            raise InvalidInput(f"a {type_name} map has 4-byte values, got value_size {spec['value_size']}")
        if spec["map_type"] == MAP_LPM_TRIE and not flags & MAP_FLAGS["no_prealloc"]:
            raise InvalidInput("an lpm_trie map needs flags: [no_prealloc]")
        name = create.get("name") or os.path.basename(self.pin)
        spec["name"] = re.sub(MAP_NAME_RE, "_", name)[:uapi.BPF_OBJ_NAME_LEN - 1]
        return spec

    def _check_create(self, spec: dict) -> None:
        # the memory model is needed by a standalone map's creation only, not by a run on an existing map
        from ansible_collections.ebpf.deploy.plugins.module_utils import _limits  # pylint: disable=import-outside-toplevel
        ncpus = libbpf.num_possible_cpus()
        estimate = _limits.map_memory(map_type=spec["map_type"], key_size=spec["key_size"],
                                      value_size=spec["value_size"], max_entries=spec["max_entries"],
                                      flags=spec["flags"], possible_cpus=ncpus)["bytes"]
        check_memory(spec, estimate, _limits.memory_limits())
        self.result.extra["memory_estimate"] = estimate

    def _compare_spec(self, handle: MapHandle, spec: dict) -> None:
        info = handle.info
        pinned = {"type": libbpf.map_type_name(info.type), "key_size": info.key_size,
                  "value_size": info.value_size, "max_entries": info.max_entries, "flags": info.map_flags}
        wanted = {key: spec[key] for key in pinned}
        implied = IMPLIED_FLAGS.get(info.type, 0)
        if pinned["flags"] & ~implied == wanted["flags"] & ~implied:
            wanted["flags"] = pinned["flags"]
        diffs = [f"{key}: {pinned[key]} → {wanted[key]}" for key in pinned if pinned[key] != wanted[key]]
        if diffs:
            raise MapConflict(f"the map pinned at {handle.pin} differs from create: {', '.join(diffs)} "
                              "(remove it with state=absent first to re-create it)",
                              pinned=pinned, wanted=wanted)

    def _create(self, spec: dict) -> MapHandle:
        try:
            fd = self._own(libbpf.map_create(spec["map_type"], spec["name"], spec["key_size"],
                                             spec["value_size"], spec["max_entries"], flags=spec["flags"]))
        except SyscallError as err:
            if err.errno in (_errno.ENOMEM, _errno.E2BIG):
                estimate = self.result.extra.get("memory_estimate") or 0
                raise InvalidInput(
                    f"the kernel refused to create map {spec['name']} ({spec['type']}, key "
                    f"{spec['key_size']} + value {spec['value_size']} bytes x {spec['max_entries']} "
                    f"entries, about {_mib(estimate)} ({estimate} bytes) estimated): "
                    f"{os.strerror(err.errno)} ({errno_name(err.errno)}) - {err.hint}",
                    errno=err.errno, estimated_bytes=estimate, syscall=err.syscall) from None
            raise
        os.makedirs(os.path.dirname(self.pin), exist_ok=True)
        libbpf.obj_pin(fd, self.pin)
        return MapHandle(fd=fd, pin=self.pin, info=libbpf.map_info(fd))

    def _load_btf(self, handle: MapHandle) -> None:
        btf_id, key_id, value_id = libbpf.map_btf_ids(handle.fd)
        handle.btf_id, handle.key_type_id, handle.value_type_id = btf_id, key_id, value_id
        if not btf_id or not (key_id or value_id):
            return
        try:
            handle.btf = Btf(libbpf.btf_raw(btf_id))
        except BtfError as err:
            if "btf" in (self.req.key_type, self.req.value_type):
                raise InvalidInput(f"the BTF of map {handle.info.name} (btf id {btf_id}) cannot be read: {err}") from None
            handle.btf = None
        handle.lock_field = value_lock_field(handle.btf, value_id)

    # ---- codecs
    def _codecs(self, handle: Optional[MapHandle], info) -> Tuple[Codec, Codec]:
        btf = handle.btf if handle else None
        key_id = handle.key_type_id if handle else 0
        value_id = handle.value_type_id if handle else 0
        key_type = self.req.key_type or self._default_type(info, btf, key_id, info.key_size, is_key=True)
        value_type = self.req.value_type or self._default_type(info, btf, value_id, info.value_size,
                                                               is_key=False)
        key_codec = make_codec(key_type, info.key_size, btf=btf, type_id=key_id, what="key")
        if info.type in (MAP_PROG_ARRAY,):
            value_type = "u32"
        value_codec = make_codec(value_type, info.value_size, btf=btf, type_id=value_id, what="value")
        return key_codec, value_codec

    @staticmethod
    def _default_type(info, btf: Optional[Btf], type_id: int, size: int, *, is_key: bool) -> str:
        if is_key and info.type in INDEXED:
            return "u32"
        if btf is not None and type_id:
            try:
                if btf.sizeof(type_id) == size:
                    return "btf"
            except BtfError:
                pass
        return "hex"

    # ---- reading
    def _read(self, handle: MapHandle, info, ncpus: int) -> Dict[bytes, bytes]:
        """key -> value as compared: per-CPU values without slot padding, PROG_ARRAY as program id."""
        out: Dict[bytes, bytes] = {}
        buffer = libbpf.value_buffer_size(info.type, info.value_size)
        for key in libbpf.map_keys(handle.fd, info.key_size):
            raw = libbpf.map_lookup(handle.fd, key, buffer, handle.lock_flags)
            if raw is None:  # an empty PROG_ARRAY slot, or deleted meanwhile
                continue
            if info.type in PERCPU:
                raw = b"".join(split_percpu(raw, info.value_size, ncpus))
            out[bytes(key)] = bytes(raw)
        return out

    # ---- the requested entries
    def _desired(self, entries: List[dict], current: Dict[bytes, bytes], info, key_codec: Codec,
                 value_codec: Codec, ncpus: int) -> List[Desired]:
        out: List[Desired] = []
        errors: List[str] = []
        owner = self._prog_array_owner(info) if info.type == MAP_PROG_ARRAY and entries else None
        for index, entry in enumerate(entries):
            try:
                key = key_codec.encode(entry["key"], what="key")
                if info.type in INDEXED:
                    slot = int.from_bytes(key, "little")
                    if slot >= info.max_entries:
                        raise InvalidInput(f"key {entry['key']!r} is out of range: map {info.name} has "
                                           f"{info.max_entries} slots (0..{info.max_entries - 1})")
                if info.type == MAP_PROG_ARRAY:
                    value, write, found = self._program_value(entry["value"], owner, info)
                    if owner is None:  # no owner yet: the first program of the batch sets the type
                        owner = found
                elif info.type in PERCPU:
                    given = entry["value"]
                    if value_codec.is_struct and key in current:
                        # per CPU: fields not listed keep that CPU's current value
                        given = merge_percpu(current[key], given, value_codec, info.value_size, ncpus)
                    padded = encode_percpu(given, value_codec, ncpus)
                    write = padded
                    value = b"".join(split_percpu(padded, info.value_size, ncpus))
                else:
                    given = entry["value"]
                    lock = self.handle.lock_field if self.handle else None
                    if lock is not None and isinstance(given, dict) and lock in given:
                        raise InvalidInput(f"value field {lock!r} is the value's bpf_spin_lock, which the kernel "
                                           "keeps (writes go under it): leave it out")
                    if value_codec.is_struct and isinstance(given, dict) and key in current:
                        # fields not listed keep their current value (e.g. counters the program keeps)
                        given = merge_fields(value_codec.decode(current[key]), given)
                    value = write = value_codec.encode(given, what="value")
                out.append(Desired(key, value, write, entry["key"], entry["value"]))
            except EbpfDeployError as err:
                errors.append(f"entries[{index}]: {err.msg}")
        if errors:
            first = errors[0] if len(errors) == 1 else f"{len(errors)} entries are invalid: " + "; ".join(errors[:5])
            raise InvalidInput(f"{first} — nothing was written", errors=errors,
                               key_size=info.key_size, value_size=info.value_size)
        return dedupe(out, show=key_codec.decode)

    # ---- PROG_ARRAY
    def _prog_array_owner(self, info) -> Optional[dict]:
        """The program type a PROG_ARRAY accepts: its owner (fdinfo) or the programs that use it."""
        if self.handle is None:
            return None
        fdinfo = read_fdinfo(self.handle.fd)
        if fdinfo.get("owner_prog_type", "").isdigit():
            prog_type = int(fdinfo["owner_prog_type"])
            return {"type": prog_type, "type_name": libbpf.prog_type_name(prog_type), "source": "the type of its owner"}
        for prog_id in libbpf.prog_ids():
            try:
                fd = libbpf.prog_fd_by_id(prog_id)
            except SyscallError:
                continue
            with libbpf.closing_fd(fd):
                try:
                    pinfo = libbpf.prog_info(fd)
                except SyscallError:
                    continue
            if info.id in pinfo.map_ids:
                return {"type": pinfo.type, "type_name": pinfo.type_name,
                        "source": f"program {pinfo.name} (id {pinfo.id}) uses it"}
        return None

    def _program_fd(self, value: Any) -> Tuple[int, str]:
        if isinstance(value, int) and not isinstance(value, bool):
            libbpf.checked_int(value, "PROG_ARRAY value (a program id)", low=1)
            return self._own(libbpf.prog_fd_by_id(value)), f"program id {value}"
        if not isinstance(value, str) or not value:
            raise InvalidInput(f"a PROG_ARRAY value is a program name, a pinned program path or a "
                               f"program id, got {value!r}")
        if value.startswith("/"):
            path = value
        else:
            dep_name = self.req.value_deployment or self.req.deployment
            if not dep_name:
                raise InvalidInput(f"program {value!r}: give value_deployment (or a pinned path) to say "
                                   "which deployment's program it is")
            dep = Deployment(self.req.bpffs_root or DEFAULT_BPFFS_ROOT, dep_name)
            path = str(dep.program_pin(value))
            if not os.path.lexists(path):
                progs = ", ".join(dep.pinned_programs(dep.current_version() or "")) if dep.current_version() else "none"
                raise InvalidInput(f"deployment '{dep_name}' has no program {value!r} in its current "
                                   f"version (programs: {progs})")
        if not os.path.lexists(path):
            raise InvalidInput(f"no program is pinned at {path}")
        fd = self._own(libbpf.obj_get(path))
        if libbpf.fd_kind(fd) != "prog":
            raise InvalidInput(f"{path} is a pinned {libbpf.fd_kind(fd)}, not a program")
        return fd, path

    def _program_value(self, value: Any, owner: Optional[dict], info) -> Tuple[bytes, bytes, dict]:
        """(program id to compare, program fd to write, the program's type as an owner would be)."""
        fd, where = self._program_fd(value)
        pinfo = libbpf.prog_info(fd)
        if owner is not None and pinfo.type != owner["type"]:
            shown = f"{value!r}" if where == value else f"{value!r} ({where})"
            raise InvalidInput(f"program {shown} is a {pinfo.type_name} program but "
                               f"PROG_ARRAY {info.name} holds {owner['type_name']} programs "
                               f"({owner['source']}): a tail call cannot cross program types",
                               program_type=pinfo.type_name, table_type=owner["type_name"])
        this = {"type": pinfo.type, "type_name": pinfo.type_name,
                "source": f"program {value!r} earlier in entries"}
        return pinfo.id.to_bytes(4, "little"), fd.to_bytes(4, "little"), this

    # ---- reporting
    def _decoder(self, info, key_codec: Codec, value_codec: Codec, ncpus: int) -> "_Decoder":
        return _Decoder(info, key_codec, value_codec, ncpus)

    def _map_result(self, handle: MapHandle) -> dict:
        info = handle.info
        btf = None
        if handle.btf is not None:
            btf = {"id": handle.btf_id}
            for what, type_id in (("key", handle.key_type_id), ("value", handle.value_type_id)):
                if type_id:
                    try:
                        btf[what] = handle.btf.describe(type_id)
                    except BtfError:
                        btf[what] = {"type_id": type_id}
        return {"id": info.id, "name": info.name, "type": libbpf.map_type_name(info.type),
                "key_size": info.key_size, "value_size": info.value_size,
                "max_entries": info.max_entries, "flags": info.map_flags, "pin": handle.pin, "btf": btf}

    def _diff(self, plan: Plan, decode: "_Decoder", created: bool, spec: Optional[dict]) -> dict:
        in_key_order = sorted(plan.remove, key=lambda removed: decode.key_codec.sort_key(removed[0]))
        diff = entries_diff(removed=[decode.entry(key, old) for key, old in in_key_order],
                            changed=[(decode.entry(item.key, old), decode.entry(item.key, item.value))
                                     for item, old in plan.change],
                            added=[decode.entry(item.key, item.value) for item in plan.add])
        if created and spec:
            diff["before"]["map"] = None
            diff["after"]["map"] = {k: spec[k] for k in ("type", "key_size", "value_size", "max_entries", "name")}
        return diff


class _SpecInfo:
    """A MapInfo look-alike for a map that is not created yet (check mode)."""

    def __init__(self, spec: dict) -> None:
        self.id = None
        self.type = spec["map_type"]
        self.name = spec["name"]
        self.key_size = spec["key_size"]
        self.value_size = spec["value_size"]
        self.max_entries = spec["max_entries"]
        self.map_flags = spec["flags"]


class _Decoder:
    """Bytes as compared (see MapManager._read) -> the YAML shape of keys and entries."""

    def __init__(self, info, key_codec: Codec, value_codec: Codec, ncpus: int) -> None:
        self.info = info
        self.key_codec = key_codec
        self.value_codec = value_codec
        self.ncpus = ncpus

    def key(self, raw: bytes) -> Any:
        return self.key_codec.decode(raw)

    def entry(self, key: bytes, value: bytes) -> dict:
        out = {"key": self.key(key)}
        if self.info.type == MAP_PROG_ARRAY:
            prog_id = int.from_bytes(value, "little")
            out["value"] = prog_id
            out["program"] = _program_name(prog_id)
        elif self.info.type in PERCPU:
            values, total = decode_percpu(pad_percpu(value, self.info.value_size), self.value_codec,
                                          self.ncpus)
            out["value"] = total if total is not None else values
            out["per_cpu"] = values   # not "values": Jinja would find dict.values()
            out["sum"] = total
        else:
            out["value"] = self.value_codec.decode(value)
        return out


def pad_percpu(compact: bytes, size: int) -> bytes:
    """Per-CPU values back-to-back (as compared) -> one 8-byte aligned slot per CPU (as written)."""
    pad = bytes(round_up8(size) - size)
    return b"".join(compact[index:index + size] + pad for index in range(0, len(compact), size))


def _program_name(prog_id: int) -> Optional[str]:
    try:
        fd = libbpf.prog_fd_by_id(prog_id)
    except SyscallError:
        return None
    with libbpf.closing_fd(fd):
        try:
            return libbpf.prog_info(fd).name
        except SyscallError:
            return None


def _pinned_type_name(pin) -> str:
    """The map type of what is pinned at ``pin``, as the refusals name it (``prog_array``)."""
    try:
        with libbpf.closing_fd(libbpf.obj_get(str(pin))) as fd:
            return libbpf.map_type_name(libbpf.map_info(fd).type)
    except SyscallError:
        return "per-version"
