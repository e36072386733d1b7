"""_elf: the one ELF reader, on hand-made ELFs and on a compiled fixture (objects and race lint read it)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from ansible_collections.ebpf.deploy.plugins.module_utils import _elf as elf

from test_objects import make_elf

BPF_DIR = Path(os.environ.get("EBPF_DEPLOY_BPF_DIR", Path(__file__).resolve().parents[4] / "build" / "bpf"))


def test_header_and_named_sections_of_a_minimal_elf():
    data = make_elf(sections=((".text", b"\x95" + b"\0" * 7), ("license", b"GPL\0")))
    header = elf.read_header(data)
    assert (header.is64, header.big_endian, header.e_machine, header.e_type) == (True, False, elf.EM_BPF, elf.ET_REL)
    sections = elf.read_sections(data, header)
    assert [s.name for s in sections] == ["", ".text", "license", ".shstrtab"]
    assert [s.index for s in sections] == [0, 1, 2, 3]
    assert sections[2].data == b"GPL\0" and sections[1].header.size == 8
    assert elf.read_symbols(sections, header) == [] and elf.read_relocations(sections, [], header) == {}


def test_a_cut_header_is_an_elf_error():
    with pytest.raises(elf.ElfError, match="shorter than the 64-byte ELF header"):
        elf.read_header(make_elf()[:40])
    with pytest.raises(elf.ElfError, match="shorter than the 52-byte ELF header"):
        elf.read_header(b"\x7fELF" + bytes([1, 1, 1]) + b"\0" * 30)


def test_symbols_and_relocations_of_a_compiled_object():
    path = BPF_DIR / "counter_drop.bpf.o"
    if not path.exists():
        pytest.skip(f"{path} missing: run `make bpf`")
    data = path.read_bytes()
    header = elf.read_header(data)
    sections = elf.read_sections(data, header)
    symbols = elf.read_symbols(sections, header)
    maps = next(s.index for s in sections if s.name == ".maps")
    assert any(sym.shndx == maps and sym.name for sym in symbols), "the map symbols"
    relocs = elf.read_relocations(sections, symbols, header)
    assert any(target.shndx == maps for table in relocs.values() for target in table.values()), \
        "a program's ld_imm64 of a map is relocated against the map's symbol"
