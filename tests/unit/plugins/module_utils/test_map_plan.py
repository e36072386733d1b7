"""bpf_map planning without a kernel: what is added/changed/removed, capacity and memory checks,
and the write loop that restores the snapshot when a write fails midway."""
from __future__ import annotations

import errno
from pathlib import Path

import pytest

from ansible_collections.ebpf.deploy.plugins.module_utils import _limits as lim
from ansible_collections.ebpf.deploy.plugins.module_utils import _map as m
from ansible_collections.ebpf.deploy.plugins.module_utils._errors import InvalidInput, SyscallError

REPO = Path(__file__).resolve().parents[4]


def k(n: int) -> bytes:
    return n.to_bytes(4, "little")


def v(n: int) -> bytes:
    return n.to_bytes(8, "little")


def want(*pairs) -> list:
    return [m.Desired(k(key), v(value), v(value), key, value) for key, value in pairs]


# --- plan -----------------------------------------------------------------------------------------
def test_only_missing_and_different_entries_are_planned():
    current = {k(1): v(10), k(2): v(20), k(3): v(30)}
    plan = m.plan_entries(current, want((1, 10), (2, 21), (4, 40)), purge=False)
    assert [d.key for d in plan.add] == [k(4)]
    assert [(d.key, old) for d, old in plan.change] == [(k(2), v(20))]
    assert plan.remove == []
    assert plan.unchanged == [k(1)]
    assert plan.changed


def test_purge_removes_only_unlisted_entries():
    current = {k(1): v(10), k(2): v(20), k(3): v(30)}
    plan = m.plan_entries(current, want((1, 10)), purge=True)
    assert plan.remove == [(k(2), v(20)), (k(3), v(30))]
    assert not plan.add and not plan.change


def test_the_same_entries_again_plan_nothing():
    current = {k(1): v(10)}
    plan = m.plan_entries(current, want((1, 10)), purge=True)
    assert not plan.changed and plan.unchanged == [k(1)]


def test_purge_with_no_entries_empties_the_map():
    plan = m.plan_entries({k(1): v(1), k(2): v(2)}, [], purge=True)
    assert [key for key, _old in plan.remove] == [k(1), k(2)]


def test_arrays_count_zero_as_empty_and_remove_by_zeroing():
    zero = v(0)
    current = {k(0): v(5), k(1): zero, k(2): v(7)}
    plan = m.plan_entries(current, want((2, 7)), purge=True, zero_value=zero)
    assert plan.remove == [(k(0), v(5))]          # k(1) is already zero: nothing to do
    assert not plan.add and plan.unchanged == [k(2)]


def test_without_overwrite_existing_keys_keep_their_values():
    current = {k(1): v(17), k(2): v(0)}
    plan = m.plan_entries(current, want((1, 0), (3, 0)), purge=False, overwrite=False)
    assert [d.key for d in plan.add] == [k(3)] and not plan.change
    assert plan.unchanged == [k(1)]
    # arrays: a zero slot is "missing" and gets the listed value
    plan = m.plan_entries({k(0): v(0), k(1): v(4)}, want((0, 9), (1, 9)), purge=False,
                          zero_value=v(0), overwrite=False)
    assert [d.key for d, _old in plan.change] == [k(0)] and plan.unchanged == [k(1)]


def test_struct_fields_not_given_keep_their_current_value():
    current = {"rate": 1, "burst": 2, "flags": [0, 0], "bytes": 12345, "inner": {"a": 1, "b": 2}}
    merged = m.merge_fields(current, {"rate": 10, "flags": [1], "inner": {"b": 3}})
    assert merged == {"rate": 10, "burst": 2, "flags": [1], "bytes": 12345, "inner": {"a": 1, "b": 3}}


def test_duplicate_keys_same_value_are_one_entry_different_values_refused():
    assert len(m.dedupe(want((1, 1), (1, 1)))) == 1
    with pytest.raises(InvalidInput, match=r"key 1 is listed twice with different values \(1 and 2\)"):
        m.dedupe(want((1, 1), (1, 2)), show=lambda raw: int.from_bytes(raw, "little"))


# --- capacity -------------------------------------------------------------------------------------
def test_more_entries_than_max_entries_is_refused_naming_the_numbers():
    plan = m.plan_entries({}, want(*[(n, 0) for n in range(5)]), purge=False)
    with pytest.raises(InvalidInput, match=r"5 entries requested but map blocklist holds at most 4"):
        m.check_capacity(plan, current_count=0, desired_count=5, max_entries=4, map_name="blocklist")


def test_entries_already_there_count_unless_purged():
    current = {k(n): v(n) for n in range(3)}
    plan = m.plan_entries(current, want((10, 0), (11, 0)), purge=False)
    with pytest.raises(InvalidInput, match=r"would hold 5 entries \(3 now, \+2 added, -0 removed\) but max_entries is 4"):
        m.check_capacity(plan, current_count=3, desired_count=2, max_entries=4, map_name="t")
    plan = m.plan_entries(current, want((10, 0), (11, 0)), purge=True)
    m.check_capacity(plan, current_count=3, desired_count=2, max_entries=4, map_name="t")


# --- writing with rollback ------------------------------------------------------------------------
class FakeMap(m.Writer):
    def __init__(self, data, fail_on=None):
        self.data = dict(data)
        self.fail_on = fail_on
        self.log = []

    def update(self, key, value):
        if key == self.fail_on:
            raise SyscallError("bpf_map_update_elem", errno.E2BIG, "map fd 3")
        self.log.append(("update", key))
        self.data[key] = value

    def remove(self, key):
        self.log.append(("delete", key))
        self.data.pop(key)

    def restore(self, key, old):
        if old is None:
            self.data.pop(key)
        else:
            self.data[key] = old


def test_apply_writes_removes_first_then_changes_then_adds():
    before = {k(1): v(1), k(2): v(2)}
    fake = FakeMap(before)
    plan = m.plan_entries(before, want((1, 9), (3, 3)), purge=True)
    assert m.apply_plan(plan, fake) == 3
    assert fake.log == [("delete", k(2)), ("update", k(1)), ("update", k(3))]
    assert fake.data == {k(1): v(9), k(3): v(3)}


def test_a_failed_write_midway_restores_the_snapshot():
    before = {k(1): v(1), k(2): v(2)}
    fake = FakeMap(before, fail_on=k(5))
    plan = m.plan_entries(before, want((1, 9), (3, 3), (4, 4), (5, 5)), purge=True)
    with pytest.raises(SyscallError) as exc:
        m.apply_plan(plan, fake)
    assert fake.data == before
    assert exc.value.details["rolled_back"] is True
    assert exc.value.details["writes_undone"] == 4
    assert "the map was restored: 4 writes undone" in exc.value.msg


def test_a_failed_first_write_says_nothing_was_written():
    fake = FakeMap({}, fail_on=k(1))
    with pytest.raises(SyscallError, match="nothing was written"):
        m.apply_plan(m.plan_entries({}, want((1, 1)), purge=False), fake)


def test_pad_percpu_restores_slot_layout():
    assert m.pad_percpu(b"\x01\x00\x00\x00\x02\x00\x00\x00", 4) == b"\x01\0\0\0\0\0\0\0\x02\0\0\0\0\0\0\0"
    assert m.pad_percpu(v(1) + v(2), 8) == v(1) + v(2)


# --- memory ---------------------------------------------------------------------------------------
def test_memory_estimate_follows_the_kernel_layout():
    # bpf_map's figure is _limits.map_memory's: the hash table and its buckets, the elements
    # (48 + round_up(key) + round_up(value)), spares for a preallocated hash; see test_limits
    def estimate(map_type, key, value, entries, ncpus):
        return lim.map_memory(map_type=map_type, key_size=key, value_size=value, max_entries=entries,
                              possible_cpus=ncpus)["bytes"]
    table = lim.HTAB_STRUCT + 16 * 1024 + lim.HTAB_LOCK_COUNTS * 2
    assert estimate(m.MAP_HASH, 4, 8, 1024, 2) == table + (48 + 8 + 8) * (1024 + 2) + 8 * 2
    assert estimate(m.MAP_HASH, 4, 8, 1000, 2) == table + (48 + 8 + 8) * (1000 + 2) + 8 * 2
    assert estimate(m.MAP_ARRAY, 4, 4, 10, 2) == lim.ARRAY_STRUCT + 8 * 10
    assert estimate(m.MAP_PERCPU_ARRAY, 4, 8, 10, 4) == lim.ARRAY_STRUCT + (8 + 32) * 10
    big = estimate(m.MAP_ARRAY, 4, 4096, 100_000_000, 2)
    assert big > 400 * 10 ** 9


def test_check_memory_names_the_numbers_and_the_limit():
    spec = {"name": "huge", "type": "array", "key_size": 4, "value_size": 4096, "max_entries": 1 << 20}
    limits = [("memory cgroup /test (memory.max 1048576, memory.current 0)", 1 << 20), ("MemAvailable", 1 << 40)]
    with pytest.raises(InvalidInput) as exc:
        m.check_memory(spec, 4 << 30, limits)
    text = exc.value.msg
    assert "map huge (array, key 4 + value 4096 bytes x 1048576 entries)" in text
    assert "about 4096.0 MiB (4294967296 bytes)" in text and "only 1.0 MiB (1048576 bytes)" in text
    assert "memory cgroup /test" in text
    m.check_memory(spec, 1 << 10, limits)


# --- integers headed for ctypes (issue 16) -------------------------------------------------------
@pytest.mark.parametrize("item", ["key_size", "value_size", "max_entries"])
def test_create_sizes_beyond_u32_are_refused_not_truncated(item):
    """c_uint32(2**32 + 1) is 1: `max_entries: 4294967297` made a one-entry map."""
    create = {"type": "hash", "key_size": 4, "value_size": 8, "max_entries": 16, item: 2 ** 32 + 1}
    manager = m.MapManager(m.Request.from_params({"path": "/sys/fs/bpf/ebpfd_x", "create": create}))
    manager.pin = "/sys/fs/bpf/ebpfd_x"
    with pytest.raises(InvalidInput) as err:
        manager._create_spec()
    assert err.value.msg == f"create.{item} 4294967297 is out of range (1..4294967295)"


def test_a_prog_array_program_id_beyond_u32_is_refused_before_any_kernel_call():
    """A PROG_ARRAY value 4294967301 wrote program 5 (the id's low 32 bits)."""
    manager = m.MapManager(m.Request(path="/sys/fs/bpf/ebpfd_x"))
    with pytest.raises(InvalidInput) as err:
        manager._program_fd(2 ** 32 + 5)
    assert err.value.msg == "PROG_ARRAY value (a program id) 4294967301 is out of range (1..4294967295)"


@pytest.mark.parametrize("call, args", [
    ("prog_fd_by_id", (2 ** 32 + 5,)), ("map_fd_by_id", (2 ** 32,)), ("link_fd_by_id", (-1,)),
    ("map_create", (2, "ebpfd_x", 4, 8, 2 ** 32 + 1)), ("link_create", (3, 2 ** 31, 37)),
])
def test_the_libbpf_binding_refuses_integers_its_c_arguments_cannot_hold(call, args):
    from ansible_collections.ebpf.deploy.plugins.module_utils import _libbpf
    with pytest.raises(InvalidInput, match=r"is out of range \("):
        getattr(_libbpf, call)(*args)


# --- per-CPU maps with a BTF struct value (issue 16) ----------------------------------------------
def test_percpu_struct_fields_not_listed_keep_their_value_on_every_cpu():
    """A per-CPU entry listing some fields zeroed the others on every run (a counter the program
    keeps reset, and the task never settled)."""
    import os
    from types import SimpleNamespace

    from ansible_collections.ebpf.deploy.plugins.module_utils._btf import Btf
    from ansible_collections.ebpf.deploy.plugins.module_utils._codec import make_codec
    from ansible_collections.ebpf.deploy.plugins.module_utils._objects import elf_sections

    obj = Path(os.environ.get("EBPF_DEPLOY_BPF_DIR", REPO / "build" / "bpf")) / "struct_value.bpf.o"
    if not obj.exists():
        pytest.skip(f"{obj} missing: run `make bpf`")
    btf = Btf(elf_sections(obj.read_bytes())[".BTF"])
    struct_id = btf.find("rate_cfg", "STRUCT")
    value_codec = make_codec("btf", 16, btf=btf, type_id=struct_id)
    key_codec = make_codec("u32", 4)
    info = SimpleNamespace(type=m.MAP_PERCPU_ARRAY, name="cfg", key_size=4, value_size=16, max_entries=1, id=1)
    ncpus = 3
    per_cpu = [{"rate": 1000, "burst": 32, "flags": [1, 2], "bytes": 100 * (cpu + 1)} for cpu in range(ncpus)]
    current = {k(0): b"".join(value_codec.encode(v) for v in per_cpu)}
    manager = m.MapManager(m.Request(path="/sys/fs/bpf/ebpfd_x"))

    (same,) = manager._desired([{"key": 0, "value": {"rate": 1000}}], current, info, key_codec, value_codec, ncpus)
    assert same.value == current[k(0)], "a field not listed changed"
    assert m.plan_entries(current, [same], purge=False).unchanged == [k(0)]

    (changed,) = manager._desired([{"key": 0, "value": {"rate": 2000}}], current, info, key_codec, value_codec,
                                  ncpus)
    written = [value_codec.decode(changed.value[cpu * 16:(cpu + 1) * 16]) for cpu in range(ncpus)]
    assert written == [dict(v, rate=2000) for v in per_cpu]
    # one value per CPU: each merged over that CPU's current value
    (listed,) = manager._desired([{"key": 0, "value": [{"burst": 1}, {"burst": 2}, {"burst": 3}]}], current, info,
                                 key_codec, value_codec, ncpus)
    assert [value_codec.decode(listed.value[c * 16:(c + 1) * 16])["bytes"] for c in range(ncpus)] == [100, 200, 300]


# --- the bytes a write and a restore use (one helper for bpf_map and the deployment's undo) --------
def test_an_emptied_array_entry_is_zeros_of_every_cpu_and_a_hash_entry_has_none():
    from types import SimpleNamespace
    array = SimpleNamespace(type=m.MAP_ARRAY, value_size=6)
    percpu = SimpleNamespace(type=m.MAP_PERCPU_ARRAY, value_size=6)
    hashed = SimpleNamespace(type=m.MAP_HASH, value_size=6)
    assert m.empty_array_value(array, 4) == bytes(6)
    assert m.empty_array_value(percpu, 4) == bytes(24)
    assert m.empty_array_value(hashed, 4) is None


def test_values_as_read_are_written_back_padded_per_cpu_and_unchanged_otherwise():
    from types import SimpleNamespace
    owned = []
    percpu = m.value_to_write(SimpleNamespace(type=m.MAP_PERCPU_HASH, value_size=4), owned.append)
    plain = m.value_to_write(SimpleNamespace(type=m.MAP_HASH, value_size=4), owned.append)
    assert percpu(b"\x01\x00\x00\x00\x02\x00\x00\x00") == b"\x01" + bytes(7) + b"\x02" + bytes(7)
    assert plain(b"\x01\x02\x03\x04") == b"\x01\x02\x03\x04"
    assert owned == []


# --- BPF_F_LOCK: exactly for values that hold a bpf_spin_lock ------------------------------------------
def fixture_btf(stem: str):
    import os

    from ansible_collections.ebpf.deploy.plugins.module_utils._btf import Btf
    from ansible_collections.ebpf.deploy.plugins.module_utils._objects import elf_sections

    obj = Path(os.environ.get("EBPF_DEPLOY_BPF_DIR", REPO / "build" / "bpf")) / f"{stem}.bpf.o"
    if not obj.exists():
        pytest.skip(f"{obj} missing: run `make bpf`")
    return Btf(elf_sections(obj.read_bytes())[".BTF"])


def test_the_lock_flag_is_chosen_exactly_for_values_with_a_spin_lock():
    from ansible_collections.ebpf.deploy.plugins.module_utils import _uapi as uapi

    locked = fixture_btf("spin_lock_pair")
    pair = locked.find("pair", "STRUCT")
    assert m.value_lock_field(locked, pair) == "lock"
    assert m.MapHandle(fd=-1, pin="", info=None, lock_field="lock").lock_flags == uapi.BPF_F_LOCK == 4
    # the lock alone is no value with a lock in it; a u64, a struct without one, no BTF: no flag
    assert m.value_lock_field(locked, locked.find("bpf_spin_lock", "STRUCT")) is None
    plain = fixture_btf("struct_value")
    assert m.value_lock_field(plain, plain.find("rate_cfg", "STRUCT")) is None
    assert m.value_lock_field(plain, plain.find("__u64", "TYPEDEF")) is None
    assert m.value_lock_field(None, pair) is None and m.value_lock_field(locked, 0) is None
    assert m.MapHandle(fd=-1, pin="", info=None).lock_flags == 0


def test_a_value_that_sets_the_lock_is_refused_by_name():
    from types import SimpleNamespace

    from ansible_collections.ebpf.deploy.plugins.module_utils._codec import make_codec

    btf = fixture_btf("spin_lock_pair")
    pair = btf.find("pair", "STRUCT")
    info = SimpleNamespace(type=m.MAP_HASH, name="pairs", key_size=4, value_size=24, max_entries=16, id=1)
    manager = m.MapManager(m.Request(path="/sys/fs/bpf/ebpfd_x"))
    manager.handle = m.MapHandle(fd=-1, pin="", info=info, btf=btf, value_type_id=pair, lock_field="lock")
    codecs = make_codec("u32", 4), make_codec("btf", 24, btf=btf, type_id=pair)
    (ok,) = manager._desired([{"key": 0, "value": {"a": 1, "b": 1}}], {}, info, *codecs, 1)
    assert codecs[1].decode(ok.value) == {"lock": {"val": 0}, "a": 1, "b": 1}
    with pytest.raises(InvalidInput, match=r"value field 'lock' is the value's bpf_spin_lock.*nothing was written"):
        manager._desired([{"key": 0, "value": {"lock": {"val": 1}, "a": 1}}], {}, info, *codecs, 1)
