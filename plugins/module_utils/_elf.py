# -*- coding: utf-8 -*-
# Copyright: contributors to ebpf.deploy
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private to ebpf.deploy: the one ELF reader (pure Python, stdlib only; runs on the controller).

A BPF object is an ELF relocatable (``clang -target bpf -c``). What the collection needs of it
before libbpf opens it, or what libbpf does not give before a load, is read here:

- ``read_header(data)``: class (32/64-bit), byte order, type, machine and the section header
  table's place (``ElfError`` when the header is cut short);
- ``section_headers(data, header)``: each section's raw header, for checking a file's bounds;
- ``read_sections(data)``: the sections with their names and contents (NOBITS ones are empty);
- ``read_symbols(data, sections, header)`` and ``read_relocations(...)`` (ELF64): the symbol
  table and, per section, which symbol each relocated byte offset refers to;
- ``symbol_file_offset(data, name)`` (ELF64 executables and shared libraries): where a function
  named in ``.symtab`` or ``.dynsym`` lies in the file, through the PT_LOAD program headers (what
  the kernel's uprobe PMU takes as its offset).

_objects checks that a file is a complete BPF object and reads its license; _race_lint reads each
program's instructions and the maps its ``ld_imm64`` instructions refer to; _hook_tracing finds a
uprobe's offset in a binary.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Dict, List, Optional

ELF_MAGIC = b"\x7fELF"
ELFCLASS32, ELFCLASS64 = 1, 2
ELFDATA2LSB, ELFDATA2MSB = 1, 2
EM_BPF = 247
ET_REL = 1
SHT_PROGBITS, SHT_SYMTAB, SHT_STRTAB, SHT_NOBITS, SHT_REL, SHT_DYNSYM = 1, 2, 3, 8, 9, 11
PT_LOAD = 1
SHN_UNDEF = 0
SHF_EXECINSTR = 0x4
STT_FUNC = 2
STB_GLOBAL, STB_WEAK = 1, 2
SHDR_SIZE_32, SHDR_SIZE_64 = 40, 64  # sizeof(Elf32_Shdr), sizeof(Elf64_Shdr)
SYM_SIZE_64, REL_SIZE_64 = 24, 16    # sizeof(Elf64_Sym), sizeof(Elf64_Rel)
PHDR_SIZE_64 = 56                    # sizeof(Elf64_Phdr)
HEADER_SIZE_32, HEADER_SIZE_64 = 52, 64
# e_machine and e_type values, named for messages about a file that is not a BPF object
MACHINES = {
    0: "no machine", 3: "x86 (i386)", 8: "MIPS", 20: "PowerPC", 21: "PowerPC64", 22: "s390",
    40: "ARM", 62: "x86-64", 183: "AArch64", 243: "RISC-V", 258: "LoongArch", 247: "BPF",
}
ELF_TYPES = {0: "ET_NONE", 1: "ET_REL", 2: "ET_EXEC", 3: "ET_DYN", 4: "ET_CORE"}


class ElfError(ValueError):
    """The bytes are not the ELF they claim to be (cut short, or a table out of bounds)."""


@dataclass(frozen=True)
class ElfHeader:
    endian: str          # "<" or ">" for struct
    is64: bool
    e_type: int
    e_machine: int
    shoff: int
    shentsize: int
    shnum: int
    shstrndx: int

    @property
    def big_endian(self) -> bool:
        return self.endian == ">"


@dataclass(frozen=True)
class SectionHeader:
    name_off: int
    type: int
    flags: int
    offset: int
    size: int
    link: int
    info: int
    entsize: int


@dataclass(frozen=True)
class Section:
    index: int
    name: str
    header: SectionHeader
    data: bytes


@dataclass(frozen=True)
class Symbol:
    name: str
    type: int
    bind: int
    shndx: int
    value: int
    size: int


def read_header(data: bytes) -> ElfHeader:
    """The ELF header of ``data``, whose first 16 bytes (magic, class, byte order) are checked."""
    endian = ">" if data[5] == ELFDATA2MSB else "<"
    is64 = data[4] == ELFCLASS64
    need = HEADER_SIZE_64 if is64 else HEADER_SIZE_32
    if len(data) < need:
        raise ElfError(f"truncated object: {len(data)} bytes, shorter than the {need}-byte ELF header")
    e_type, e_machine = struct.unpack_from(endian + "HH", data, 16)
    if is64:
        (shoff,) = struct.unpack_from(endian + "Q", data, 0x28)
        shentsize, shnum, shstrndx = struct.unpack_from(endian + "HHH", data, 0x3A)
    else:
        (shoff,) = struct.unpack_from(endian + "I", data, 0x20)
        shentsize, shnum, shstrndx = struct.unpack_from(endian + "HHH", data, 0x2E)
    return ElfHeader(endian, is64, e_type, e_machine, shoff, shentsize, shnum, shstrndx)


def section_headers(data: bytes, header: ElfHeader) -> List[SectionHeader]:
    """Every section header; the table must lie inside ``data`` (checked by the caller)."""
    fmt = header.endian + ("IIQQQQIIQQ" if header.is64 else "IIIIIIIIII")
    out = []
    for index in range(header.shnum):
        (name_off, sh_type, flags, _addr, offset, size, link, info, _align,
         entsize) = struct.unpack_from(fmt, data, header.shoff + index * header.shentsize)
        out.append(SectionHeader(name_off, sh_type, flags, offset, size, link, info, entsize))
    return out


def _name(table: bytes, offset: int) -> str:
    end = table.find(b"\0", offset)
    return table[offset:end if end >= 0 else None].decode("utf-8", "replace")


def read_sections(data: bytes, header: Optional[ElfHeader] = None) -> List[Section]:
    """The sections in table order, named from the section name table ([] without one)."""
    header = header or read_header(data)
    headers = section_headers(data, header)
    if header.shstrndx >= len(headers):
        return []
    names = headers[header.shstrndx]
    strtab = data[names.offset:names.offset + names.size]
    return [Section(index, _name(strtab, sh.name_off), sh,
                    b"" if sh.type == SHT_NOBITS else data[sh.offset:sh.offset + sh.size])
            for index, sh in enumerate(headers)]


def read_symbols(sections: List[Section], header: ElfHeader, *, table: int = SHT_SYMTAB) -> List[Symbol]:
    """The ELF64 symbol table (``table``: SHT_SYMTAB, or SHT_DYNSYM for the dynamic symbols), in
    order (its index is what a relocation names); [] without one."""
    symtab = next((s for s in sections if s.header.type == table), None)
    if symtab is None:
        return []
    strtab = sections[symtab.header.link].data
    out = []
    for off in range(0, symtab.header.size, SYM_SIZE_64):
        name, info, _other, shndx, value, size = struct.unpack_from(header.endian + "IBBHQQ", symtab.data, off)
        out.append(Symbol(_name(strtab, name) if name else "", info & 0xF, info >> 4, shndx, value, size))
    return out


def read_relocations(sections: List[Section], symbols: List[Symbol],
                     header: ElfHeader) -> Dict[int, Dict[int, Symbol]]:
    """ELF64 SHT_REL sections: {index of the section they apply to: {byte offset: symbol}}."""
    relocs: Dict[int, Dict[int, Symbol]] = {}
    if not symbols:
        return relocs
    for sec in sections:
        if sec.header.type != SHT_REL:
            continue
        table = relocs.setdefault(sec.header.info, {})
        for off in range(0, sec.header.size, REL_SIZE_64):
            r_offset, r_info = struct.unpack_from(header.endian + "QQ", sec.data, off)
            table[r_offset] = symbols[r_info >> 32]
    return relocs


@dataclass(frozen=True)
class Segment:
    """A PT_LOAD program header: where ``memsz`` bytes at ``vaddr`` come from in the file."""

    offset: int
    vaddr: int
    memsz: int


def load_segments(data: bytes, header: ElfHeader) -> List[Segment]:
    """The ELF64 PT_LOAD program headers (e_phoff, e_phentsize, e_phnum); [] without any."""
    (phoff,) = struct.unpack_from(header.endian + "Q", data, 0x20)
    phentsize, phnum = struct.unpack_from(header.endian + "HH", data, 0x36)
    if phoff + phnum * max(phentsize, PHDR_SIZE_64) > len(data):
        raise ElfError("the program header table runs past the end of the file")
    out = []
    for index in range(phnum):
        p_type, _flags, offset, vaddr, _paddr, _filesz, memsz, _align = struct.unpack_from(
            header.endian + "IIQQQQQQ", data, phoff + index * phentsize)
        if p_type == PT_LOAD:
            out.append(Segment(offset, vaddr, memsz))
    return out


def symbol_file_offset(data: bytes, name: str) -> Optional[int]:
    """The file offset of the defined function ``name`` in an ELF64 executable or shared library
    (``.symtab`` first, then ``.dynsym``: stripped libraries keep only the latter), or None when
    the file defines no such function. Its address becomes a file offset through the PT_LOAD
    segment that holds it, as libbpf does for ``bpf_program__attach_uprobe``."""
    header = read_header(data)
    if not header.is64:
        raise ElfError("only 64-bit ELF files are read for uprobe symbols")
    sections = read_sections(data, header)
    for table in (SHT_SYMTAB, SHT_DYNSYM):
        for sym in read_symbols(sections, header, table=table):
            if sym.name == name and sym.type == STT_FUNC and sym.shndx != SHN_UNDEF:
                return vaddr_to_offset(load_segments(data, header), sym.value)
    return None


def vaddr_to_offset(segments: List[Segment], vaddr: int) -> Optional[int]:
    """A virtual address as a file offset, through the segment that maps it (pure)."""
    for seg in segments:
        if seg.vaddr <= vaddr < seg.vaddr + seg.memsz:
            return vaddr - seg.vaddr + seg.offset
    return None
