"""Pure object checks: ELF refusals in one line, map spec diffs, digests and versions."""
from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest

from ansible_collections.ebpf.deploy.plugins.module_utils._errors import InvalidInput
from ansible_collections.ebpf.deploy.plugins.module_utils._objects import (
    MapSpec,
    check_bpf_elf,
    compute_version,
    describe_map_conflict,
    diff_map_spec,
    elf_sections,
    encode_content,
    is_per_version_map,
    object_license,
    parse_checksum,
    read_source,
    statically_initialised_maps,
    verify_checksum,
)
from ansible_collections.ebpf.deploy.plugins.module_utils._uapi import MAP_TYPES

BPF_DIR = Path(os.environ.get("EBPF_DEPLOY_BPF_DIR", Path(__file__).resolve().parents[4] / "build" / "bpf"))


def make_elf(*, machine=247, e_type=1, sections=((".text", b"\x95" + b"\0" * 7), ("license", b"GPL\0"))):
    """A minimal little-endian ELF64 with the given sections (and a section name table)."""
    names = b"\0" + b"".join(n.encode() + b"\0" for n, _data in sections) + b".shstrtab\0"
    body = b"".join(data for _name, data in sections)
    header_size = 64
    data_off = header_size
    shstr_off = data_off + len(body)
    shoff = shstr_off + len(names)
    shnum = len(sections) + 2
    ident = b"\x7fELF" + bytes([2, 1, 1]) + b"\0" * 9
    header = ident + struct.pack("<HHIQQQIHHHHHH", e_type, machine, 1, 0, 0, shoff, 0, 64, 0, 0, 64,
                                 shnum, shnum - 1)
    shdrs = [b"\0" * 64]
    name_off, off = 1, data_off
    for name, payload in sections:
        shdrs.append(struct.pack("<IIQQQQIIQQ", name_off, 1, 0, 0, off, len(payload), 0, 0, 1, 0))
        name_off += len(name) + 1
        off += len(payload)
    shdrs.append(struct.pack("<IIQQQQIIQQ", name_off, 3, 0, 0, shstr_off, len(names), 0, 0, 1, 0))
    return header + body + names + b"".join(shdrs)


def test_minimal_bpf_elf_passes_and_has_its_license():
    data = make_elf()
    check_bpf_elf(data)
    assert set(elf_sections(data)) >= {".text", "license", ".shstrtab"}
    assert object_license(data) == "GPL"
    assert object_license(make_elf(sections=((".text", b"\0" * 8),))) is None


def short_section_headers(data: bytes, entsize: int) -> bytes:
    """An ELF64 whose e_shentsize says ``entsize`` and whose file ends where such a table would:
    reading a 64-byte header at each smaller step runs past the end (a struct.error traceback)."""
    (shoff,) = struct.unpack_from("<Q", data, 0x28)
    (shnum,) = struct.unpack_from("<H", data, 0x3C)
    patched = data[:0x3A] + struct.pack("<H", entsize) + data[0x3C:]
    return patched[:shoff + entsize * shnum]


@pytest.mark.parametrize("data,words", [
    (short_section_headers(make_elf(), 16), "malformed object: x.bpf.o declares 16-byte section headers"),
    (short_section_headers(make_elf(), 39), "an ELF64 section header is 64 bytes"),
    (b"", "not an ELF file"),
    (b"hello world, not an object", "not an ELF file"),
    (make_elf(machine=62), "ELF for x86-64 (e_machine 62), not a BPF object"),
    (make_elf(machine=183), "AArch64"),
    (make_elf(e_type=2), "not a relocatable object"),
    (make_elf()[:70], "truncated object"),
    (make_elf()[:-10], "truncated object"),
])
def test_refusals_are_one_line(data, words):
    with pytest.raises(InvalidInput) as err:
        check_bpf_elf(data, source="x.bpf.o")
    assert words in err.value.msg
    assert "\n" not in err.value.msg


def _spec(**kw):
    base = dict(name="pkt_count", type=2, type_name="array", key_size=4, value_size=8, max_entries=1, map_flags=0)
    base.update(kw)
    return MapSpec(**base)


def test_map_spec_diff_is_field_by_field():
    pinned, wanted = _spec(), _spec(type=1, type_name="hash", max_entries=4096)
    changes = diff_map_spec(pinned, wanted)
    assert changes == [("type", "array", "hash"), ("max_entries", "1", "4096")]
    assert describe_map_conflict("pkt_count", changes) == \
        "map 'pkt_count': type array \u2192 hash, max_entries 1 \u2192 4096"
    assert diff_map_spec(pinned, _spec()) == []
    assert diff_map_spec(pinned, _spec(map_flags=1, value_size=16)) == \
        [("value_size", "8", "16"), ("map_flags", "0", "0x1")]


def test_perf_event_array_with_zero_max_entries_is_not_a_conflict():
    pinned = _spec(type=4, type_name="perf_event_array", max_entries=8)
    assert diff_map_spec(pinned, _spec(type=4, type_name="perf_event_array", max_entries=0)) == []


def test_version_depends_on_bytes_and_load_options_only():
    data = make_elf()
    one = compute_version(data, {"programs": ["a"], "program_type": None})
    assert len(one) == 12 and all(c in "0123456789abcdef" for c in one)
    assert one == compute_version(data, {"program_type": None, "programs": ["a"]})  # canonical JSON
    assert one != compute_version(data, {"programs": ["a"], "program_type": "xdp"})
    assert one != compute_version(data + b"\0", {"programs": ["a"], "program_type": None})


def test_checksums():
    data = b"object"
    digest = verify_checksum(data, None)
    assert verify_checksum(data, f"sha256:{digest}") == digest
    assert verify_checksum(data, digest.upper()) == digest
    with pytest.raises(InvalidInput, match="checksum mismatch for x: expected sha256:0{64}"):
        verify_checksum(data, "sha256:" + "0" * 64, source="x")
    for bad in ("md5:abc", "sha256:xyz", "sha256:" + "0" * 63):
        with pytest.raises(InvalidInput, match="checksum must be"):
            parse_checksum(bad)


def test_the_object_is_read_from_content_or_a_regular_file_only(tmp_path):
    data = make_elf()
    assert read_source(None, encode_content(data), label="x.bpf.o") == data
    (tmp_path / "x.bpf.o").write_bytes(data)
    assert read_source(str(tmp_path / "x.bpf.o"), None, label="x.bpf.o") == data
    with pytest.raises(InvalidInput, match="does not exist on the host"):
        read_source(str(tmp_path / "missing.bpf.o"), None, label="missing.bpf.o")
    with pytest.raises(InvalidInput, match="is a directory, not a BPF object"):
        read_source(str(tmp_path), None, label="dir")
    fifo = tmp_path / "fifo.bpf.o"
    os.mkfifo(fifo)
    with pytest.raises(InvalidInput, match="is not a regular file"):   # and does not block on open
        read_source(str(fifo), None, label="fifo.bpf.o")


def fixture_bytes(stem: str) -> bytes:
    path = BPF_DIR / f"{stem}.bpf.o"
    if not path.exists():
        pytest.skip(f"{path} missing: run `make bpf`")
    return path.read_bytes()


@pytest.mark.parametrize("stem, initialised", [
    ("tailcall_static", {"jmp_table"}),      # .values = { [0] = &xdp_tail_callee }
    ("tailcall_static_v2", {"jmp_table"}),
    ("mapinmap_static", {"outer"}),          # .values = { [0] = &inner_v1 }
    ("mapinmap_static_v2", {"outer"}),
    ("tailcall", set()),                     # a PROG_ARRAY filled by maps: entries, not by the object
    ("counter_v2", set()),
])
def test_statically_initialised_maps_are_read_from_the_relocations_into_maps(stem, initialised):
    assert statically_initialised_maps(fixture_bytes(stem)) == initialised


@pytest.mark.parametrize("type_name, per_version", [
    ("prog_array", True), ("array_of_maps", True), ("hash_of_maps", True),
    ("array", False), ("hash", False), ("devmap", False),
])
def test_a_map_whose_slots_the_object_declares_is_per_version_only_when_libbpf_writes_them(type_name, per_version):
    initialised = frozenset({"table"})
    assert is_per_version_map("table", MAP_TYPES[type_name], initialised) is per_version
    assert is_per_version_map("other", MAP_TYPES[type_name], initialised) is False   # no .values: shared


def test_an_object_without_maps_has_no_initialised_map():
    assert statically_initialised_maps(make_elf()) == frozenset()
