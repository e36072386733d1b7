"""Load-time globals (_globals): finding a variable through the DATASECs of the object's BTF,
encoding its value with the map value codec, refusing by name, and the version digest. A hand-built
blob has the layout of tests/bpf/globals_port.bpf.c; the fixture itself is opened with libbpf
(no load) when it is built."""
from __future__ import annotations

import struct

import pytest

from ansible_collections.ebpf.deploy.plugins.module_utils import _globals as globals_
from ansible_collections.ebpf.deploy.plugins.module_utils._btf import Btf
from ansible_collections.ebpf.deploy.plugins.module_utils._errors import InvalidInput
from ansible_collections.ebpf.deploy.plugins.module_utils._objects import compute_version
from ansible_collections.ebpf.deploy.plugins.module_utils._program import Request, state_view, versioned_options
from tests.unit.plugins.module_utils.test_btf import BPF_DIR, Builder

VAR, DATASEC, CONST, VOLATILE = 14, 15, 10, 9
STATIC, GLOBAL, EXTERN = 0, 1, 2


class DataBuilder(Builder):
    """Builder with the kinds globals live in: qualifiers, VAR and DATASEC."""

    def qualified(self, kind, type_id):
        return self.add("", kind, 0, type_id)

    def var(self, name, type_id, linkage=GLOBAL):
        return self.add(name, VAR, 0, type_id, struct.pack("<I", linkage))

    def datasec(self, name, size, entries):
        extra = b"".join(struct.pack("<III", *entry) for entry in entries)
        return self.add(name, DATASEC, len(entries), size, extra)


def fixture_btf() -> Btf:
    """target_port (u16), mode (enum), limits (struct) in .rodata; seen_packets in .bss; tag (u8[4])
    in .data; a .kconfig extern; a variable of a section without a map (.data.unused)."""
    b = DataBuilder()
    u8 = b.int("__u8", 1)
    u16 = b.int("__u16", 2)
    u32 = b.int("__u32", 4)
    index = b.int("int", 4, signed=True)
    mode = b.enum("match_mode", 4, {"MATCH_COUNT": 0, "MATCH_DROP": 1})
    reserved = b.array(u8, index, 3)
    limits = b.struct("limits", 8, [("max_len", u32, 0), ("ttl_min", u8, 32), ("reserved", reserved, 40)])
    const_u16 = b.qualified(CONST, b.qualified(VOLATILE, u16))
    const_mode = b.qualified(CONST, b.qualified(VOLATILE, mode))
    const_limits = b.qualified(CONST, b.qualified(VOLATILE, limits))
    tag = b.array(u8, index, 4)
    v_port = b.var("target_port", const_u16)
    v_mode = b.var("mode", const_mode)
    v_limits = b.var("limits", const_limits)
    v_seen = b.var("seen_packets", u32, STATIC)
    v_tag = b.var("tag", tag)
    v_kconfig = b.var("LINUX_KERNEL_VERSION", u32, EXTERN)
    v_unused = b.var("spare", u32)
    b.datasec(".rodata", 16, [(v_port, 0, 2), (v_mode, 4, 4), (v_limits, 8, 8)])
    b.datasec(".bss", 4, [(v_seen, 0, 4)])
    b.datasec(".data", 4, [(v_tag, 0, 4)])
    b.datasec(".kconfig", 4, [(v_kconfig, 0, 4)])
    b.datasec(".data.unused", 4, [(v_unused, 0, 4)])
    return Btf(b.blob())


SECTIONS = (".rodata", ".bss", ".data")   # the sections the object has a map for


def resolve(wanted, sections=SECTIONS):
    return globals_.resolve(fixture_btf(), wanted, sections=sections, label="globals_port.bpf.o")


def refusal(wanted, sections=SECTIONS) -> str:
    with pytest.raises(InvalidInput) as err:
        resolve(wanted, sections)
    assert "\n" not in err.value.msg
    return err.value.msg


# --- finding the variables ------------------------------------------------------------------------
def test_variables_are_found_with_their_section_offset_and_size():
    found = globals_.variables(fixture_btf())
    assert (found["target_port"].section, found["target_port"].offset, found["target_port"].size) == (".rodata", 0, 2)
    assert (found["limits"].section, found["limits"].offset, found["limits"].size) == (".rodata", 8, 8)
    assert (found["seen_packets"].section, found["tag"].section) == (".bss", ".data")
    assert found["LINUX_KERNEL_VERSION"].extern and not found["mode"].extern
    assert globals_.settable(found, SECTIONS) == ["limits", "mode", "seen_packets", "tag", "target_port"]
    assert globals_.data_sections(fixture_btf()) == [".bss", ".data", ".data.unused", ".rodata"]


@pytest.mark.parametrize("section, expected", [
    (".rodata", True), (".data", True), (".bss", True), (".rodata.cfg", True), (".data.buf", True),
    (".kconfig", False), (".ksyms", False), (".maps", False), ("license", False), (".rodata_x", False)])
def test_data_sections(section, expected):
    assert globals_.is_data_section(section) is expected


# --- encoding ----------------------------------------------------------------------------------------
def test_values_are_encoded_at_their_offsets_and_read_back_normalized():
    writes = resolve({"target_port": "0x35", "mode": "MATCH_DROP", "limits": {"max_len": 1500, "ttl_min": 2},
                      "tag": "ab", "seen_packets": 7})
    assert writes.values == {"target_port": 53, "mode": "MATCH_DROP",
                             "limits": {"max_len": 1500, "ttl_min": 2, "reserved": [0, 0, 0]},
                             "tag": [97, 98, 0, 0], "seen_packets": 7}
    rodata = globals_.patched(bytes(16), writes.sections[".rodata"])
    assert rodata == struct.pack("<HxxIIB3x", 53, 1, 1500, 2)
    assert globals_.patched(b"ebpf", writes.sections[".data"]) == b"ab\0\0"
    assert globals_.patched(bytes(4), writes.sections[".bss"]) == struct.pack("<I", 7)


def test_only_the_written_bytes_change():
    writes = resolve({"mode": 1})
    assert globals_.patched(b"\xff" * 16, writes.sections[".rodata"]) == b"\xff" * 4 + b"\x01\0\0\0" + b"\xff" * 8


def test_no_globals_writes_nothing_and_needs_no_btf():
    assert globals_.resolve(None, {}, sections=()).sections == {}
    assert globals_.resolve(None, None, sections=()).values == {}


# --- refusals ----------------------------------------------------------------------------------------
def test_an_unknown_name_is_refused_with_the_globals_the_object_has():
    assert refusal({"targt_port": 1}) == ("globals: globals_port.bpf.o has no global 'targt_port' (its globals: "
                                          "limits, mode, seen_packets, tag, target_port)")


def test_wrong_types_and_out_of_range_values_are_refused_by_name():
    assert refusal({"target_port": 70000}).startswith("globals.target_port: 70000 does not fit in 16 unsigned bits")
    assert refusal({"target_port": "http"}).startswith("globals.target_port: expected an integer, got 'http'")
    assert refusal({"target_port": [1]}).startswith("globals.target_port: expected an integer")
    assert refusal({"mode": "MATCH_ALL"}).startswith("globals.mode: 'MATCH_ALL' is not one of MATCH_COUNT, MATCH_DROP")
    assert refusal({"limits": {"ttl_min": 256}}).startswith("globals.limits.ttl_min: 256 does not fit")
    assert refusal({"limits": {"ttl": 1}}).startswith("globals.limits: no field ttl (fields: max_len, ttl_min, reserved)")
    assert refusal({"limits": 5}).startswith("globals.limits: expected a mapping by field name")
    assert refusal({"tag": [1, 2, 3, 4, 5]}).startswith("globals.tag: 5 items do not fit in 4")
    assert "(const volatile __u16 in .rodata)" in refusal({"target_port": -1})


def test_externs_sections_without_a_map_and_objects_without_btf_are_refused():
    assert "is an extern in .kconfig, which libbpf fills in" in refusal({"LINUX_KERNEL_VERSION": 1})
    assert refusal({"spare": 1}) == ("globals: spare is in section .data.unused, which globals_port.bpf.o has no "
                                     "map for (its data sections: .bss, .data, .rodata)")
    with pytest.raises(InvalidInput, match="carries no BTF"):
        globals_.resolve(None, {"target_port": 1}, sections=SECTIONS)
    # every name is checked before one is written: the first refusal comes with nothing returned
    with pytest.raises(InvalidInput, match="targt_port"):
        resolve({"target_port": 53, "targt_port": 1})


def test_a_write_past_the_section_is_refused():
    with pytest.raises(InvalidInput, match="runs past the section's 4 bytes"):
        globals_.patched(bytes(4), [(2, b"\0\0\0")])


def test_the_request_takes_globals_with_an_object_only():
    assert Request.from_params({"name": "demo", "src": "/x.o", "globals": {"target_port": 53}}).globals == {
        "target_port": 53}
    with pytest.raises(InvalidInput, match="globals are set when an object is loaded"):
        Request.from_params({"name": "demo", "version": "0123456789ab", "globals": {"target_port": 53}})
    with pytest.raises(InvalidInput, match="globals must be a mapping"):
        Request.from_params({"name": "demo", "src": "/x.o", "globals": ["target_port"]})


# --- the version digest -------------------------------------------------------------------------------
def test_the_values_are_part_of_the_version_digest():
    data = b"object bytes"
    options = {"programs": ["xdp_port_counter"], "program_type": None}

    def version(wanted):
        return compute_version(data, versioned_options(options, resolve(wanted).values))

    assert version({"target_port": 53}) == version({"target_port": "0x35"}) == version({"target_port": 53.0})
    assert version({"target_port": 53}) != version({"target_port": 54})
    assert version({"target_port": 53, "mode": 1}) == version({"mode": "MATCH_DROP", "target_port": 53})
    # without globals the options, and so every version made before globals existed, are unchanged
    assert versioned_options(options, {}) == options
    assert version({}) == compute_version(data, options)
    assert versioned_options(options, {"target_port": 53})["globals"] == {"target_port": 53}


def test_the_diff_shows_the_globals_of_a_version_that_has_some():
    assert "globals" not in state_view("0123456789ab", ["p"], {}, ["0123456789ab"])
    assert state_view("0123456789ab", ["p"], {}, ["0123456789ab"], {"target_port": 53})["globals"] == {
        "target_port": 53}


# --- the fixture, opened with libbpf (no load) ---------------------------------------------------------
def test_the_fixture_through_libbpf():
    from ansible_collections.ebpf.deploy.plugins.module_utils import _libbpf as libbpf
    obj_path = BPF_DIR / "globals_port.bpf.o"
    if not obj_path.exists() or not libbpf.available():
        pytest.skip(f"{obj_path} or libbpf.so.1 missing: run `make bpf`")
    with libbpf.BpfObject.open(obj_path.read_bytes(), name="globals_port") as obj:
        writes = globals_.resolve_in(obj, {"target_port": 53, "tag": "x", "burst": 3}, label="globals_port.bpf.o")
        assert sorted(writes.sections) == [".data", ".data.cfg", ".rodata"]   # a custom section has its map
        # libbpf filled in the offsets clang left 0: mode sits after target_port, limits after mode
        found = globals_.variables(Btf(obj.btf_raw()))
        assert [found[n].offset for n in ("target_port", "mode", "limits")] == [0, 4, 8]
        rodata = obj.section_map(".rodata")
        rodata.set_initial_value(globals_.patched(rodata.initial_value(), writes.sections[".rodata"]))
        assert rodata.initial_value()[:2] == struct.pack("<H", 53)
        assert rodata.initial_value()[8:12] == struct.pack("<I", 65535)   # the object's own value stays
        assert obj.section_map(".data").initial_value() == b"ebpf"          # not written yet
        assert obj.section_map(".data.nothing") is None
        cfg = obj.section_map(".data.cfg")
        cfg.set_initial_value(globals_.patched(cfg.initial_value(), writes.sections[".data.cfg"]))
        assert cfg.initial_value() == struct.pack("<I", 3)
