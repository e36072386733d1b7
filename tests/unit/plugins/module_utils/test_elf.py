"""_elf: the one ELF reader, on hand-made ELFs and on a compiled fixture (objects and race lint read it)."""
from __future__ import annotations

import os
import struct
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


def make_shared_object(symbols, segments, *, table=elf.SHT_DYNSYM) -> bytes:
    """A little-endian ELF64 ET_DYN for x86-64 with one symbol table (``table``) of
    ``(name, type, shndx, value)`` and PT_LOAD headers of ``(offset, vaddr, memsz)``."""
    strtab = b"\0" + b"".join(name.encode() + b"\0" for name, *_rest in symbols)
    syms, name_off = [b"\0" * elf.SYM_SIZE_64], 1
    for name, sym_type, shndx, value in symbols:
        syms.append(struct.pack("<IBBHQQ", name_off, (elf.STB_GLOBAL << 4) | sym_type, 0, shndx, value, 16))
        name_off += len(name) + 1
    symtab = b"".join(syms)
    shstr = b"\0.text\0.strtab\0.symbols\0.shstrtab\0"
    phoff = 64
    phdrs = b"".join(struct.pack("<IIQQQQQQ", 1, 5, off, vaddr, vaddr, memsz, memsz, 0x1000)
                     for off, vaddr, memsz in segments)
    text_off = phoff + len(phdrs)
    text = b"\xc3" * 16
    str_off = text_off + len(text)
    sym_off = str_off + len(strtab)
    shstr_off = sym_off + len(symtab)
    shoff = shstr_off + len(shstr)
    shdrs = b"".join([
        b"\0" * 64,
        struct.pack("<IIQQQQIIQQ", 1, elf.SHT_PROGBITS, elf.SHF_EXECINSTR, 0, text_off, len(text), 0, 0, 16, 0),
        struct.pack("<IIQQQQIIQQ", 7, elf.SHT_STRTAB, 0, 0, str_off, len(strtab), 0, 0, 1, 0),
        struct.pack("<IIQQQQIIQQ", 15, table, 0, 0, sym_off, len(symtab), 2, 1, 8, elf.SYM_SIZE_64),
        struct.pack("<IIQQQQIIQQ", 24, elf.SHT_STRTAB, 0, 0, shstr_off, len(shstr), 0, 0, 1, 0),
    ])
    ident = b"\x7fELF" + bytes([2, 1, 1]) + b"\0" * 9
    header = ident + struct.pack("<HHIQQQIHHHHHH", 3, 62, 1, 0, phoff, shoff, 0, 64, elf.PHDR_SIZE_64,
                                 len(segments), 64, 5, 4)
    return header + phdrs + text + strtab + symtab + shstr + shdrs


SEGMENTS = ((0, 0, 0x800), (0x1000, 0x401000, 0x200), (0x3000, 0x603000, 0x100))
SYMBOLS = (("puts", elf.STT_FUNC, 0, 0), ("environ", 1, 1, 0x603010), ("getpid", elf.STT_FUNC, 1, 0x401040),
           ("outside", elf.STT_FUNC, 1, 0x900000))


@pytest.mark.parametrize("table", [elf.SHT_DYNSYM, elf.SHT_SYMTAB])
def test_a_function_s_file_offset_comes_through_its_load_segment(table):
    data = make_shared_object(SYMBOLS, SEGMENTS, table=table)
    assert elf.symbol_file_offset(data, "getpid") == 0x1040            # 0x401040 - 0x401000 + 0x1000
    assert elf.symbol_file_offset(data, "puts") is None                # undefined: another library's
    assert elf.symbol_file_offset(data, "environ") is None             # an object, not a function
    assert elf.symbol_file_offset(data, "ebpfd_nope") is None
    assert elf.symbol_file_offset(data, "outside") is None             # in no PT_LOAD segment


def test_segments_and_addresses():
    data = make_shared_object(SYMBOLS, SEGMENTS)
    segments = elf.load_segments(data, elf.read_header(data))
    assert segments == [elf.Segment(*seg) for seg in SEGMENTS]
    assert elf.vaddr_to_offset(segments, 0x6030ff) == 0x30ff and elf.vaddr_to_offset(segments, 0x603100) is None
    with pytest.raises(elf.ElfError, match="program header table runs past"):
        elf.load_segments(data[:100], elf.read_header(data))
    with pytest.raises(elf.ElfError, match="only 64-bit"):
        elf.symbol_file_offset(b"\x7fELF" + bytes([1, 1, 1]) + b"\0" * 60, "getpid")
