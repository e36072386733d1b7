# -*- coding: utf-8 -*-
# Copyright: contributors to ebpf.deploy
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private to ebpf.deploy: read a BPF object's code and lint it, without loading anything.

Pure Python (stdlib only, runs on the controller and on hosts):

- ``read_object_code(data)`` reads the ELF (through _elf): each program's instructions (bytes),
  its section, and the relocations that say which map an ``ld_imm64`` instruction refers to. libbpf
  cannot give us that last part before a load (it applies map relocations only when loading).
- ``decode(insns)`` turns 8-byte instructions into ``Insn`` (opcode, dst/src registers, offset,
  immediate); ``ld_imm64`` takes two slots and keeps the index of its first one, so indexes match
  the verifier log and ``llvm-objdump -d``.
- ``helper_ids(insns)``: the helper ids of the ``call`` instructions (src_reg 0).
- ``find_races(insns, map_refs, map_types)``: a non-atomic read-modify-write of a value obtained
  from ``bpf_map_lookup_elem`` on a map that is shared between CPUs (not per-CPU)::

      r0 = bpf_map_lookup_elem(map, key)     call 1 (r1 = the map, from ld_imm64)
      if r0 == 0 goto ...                    the NULL check
      r1 = *(u64 *)(r0 + 0)                  LDX from the value
      r1 += 1                                ALU on the loaded register
      *(u64 *)(r0 + 0) = r1                  STX back to the same pointer + offset  <- reported

  Two CPUs running this at once both read N and both write N + 1: an increment is lost. The
  atomic form (``lock *(u64 *)(r0 + 0) += r1``, BPF_STX | BPF_ATOMIC with BPF_ADD) is fine.

The tracking is deliberately simple: one linear pass over the instructions, register copies and
constant pointer offsets followed, every register clobbered by a call forgotten. It finds the
pattern clang emits for ``*value += 1`` and does not claim to prove the absence of races.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Iterable, Optional

from ansible_collections.ebpf.deploy.plugins.module_utils import _elf as elf
from ansible_collections.ebpf.deploy.plugins.module_utils._uapi import PERCPU_MAP_TYPES

INSN_SIZE = 8

# Instruction classes and fields (include/uapi/linux/bpf.h, bpf_common.h).
BPF_LD, BPF_LDX, BPF_ST, BPF_STX, BPF_ALU, BPF_JMP, BPF_JMP32, BPF_ALU64 = range(8)
BPF_K, BPF_X = 0x00, 0x08
BPF_IMM, BPF_MEM, BPF_ATOMIC = 0x00, 0x60, 0xC0
BPF_DW = 0x18
BPF_CALL, BPF_EXIT = 0x80, 0x90
BPF_MOV = 0xB0
BPF_ADD = 0x00
BPF_FETCH = 0x01
BPF_CMPXCHG = 0xF0 | BPF_FETCH
BPF_PSEUDO_CALL = 1
BPF_PSEUDO_KFUNC_CALL = 2
BPF_FUNC_map_lookup_elem = 1
LD_IMM64 = BPF_LD | BPF_IMM | BPF_DW  # 0x18
SIZE_BYTES = {0x00: 4, 0x08: 2, 0x10: 1, 0x18: 8}  # BPF_W, BPF_H, BPF_B, BPF_DW
ALU_OPS = {0x00: "add", 0x10: "sub", 0x20: "mul", 0x40: "or", 0x50: "and", 0xA0: "xor"}

RACE_FIX = ("use an atomic add (__sync_fetch_and_add(value, 1), which compiles to "
            "'lock *(u64 *)(rX + off) += rY') or a per-CPU map (BPF_MAP_TYPE_PERCPU_ARRAY / "
            "PERCPU_HASH) summed in user space")


@dataclass(frozen=True)
class Insn:
    index: int
    code: int
    dst: int
    src: int
    off: int
    imm: int  # for ld_imm64: the 64-bit immediate of both slots

    @property
    def cls(self) -> int:
        return self.code & 0x07

    @property
    def is_call(self) -> bool:
        return self.code == (BPF_JMP | BPF_CALL)

    @property
    def is_helper_call(self) -> bool:
        return self.is_call and self.src == 0


def decode(insns: bytes, *, big_endian: bool = False) -> list[Insn]:
    """8-byte BPF instructions → Insn list; an ld_imm64 pair becomes one Insn at its first slot."""
    if len(insns) % INSN_SIZE:
        raise ValueError(f"instruction bytes not a multiple of 8 ({len(insns)})")
    fmt = ">BBhi" if big_endian else "<BBhi"
    out: list[Insn] = []
    count = len(insns) // INSN_SIZE
    index = 0
    while index < count:
        code, regs, off, imm = struct.unpack_from(fmt, insns, index * INSN_SIZE)
        dst, src = (regs >> 4, regs & 0x0F) if big_endian else (regs & 0x0F, regs >> 4)
        if code == LD_IMM64 and index + 1 < count:
            hi = struct.unpack_from(fmt, insns, (index + 1) * INSN_SIZE)[3]
            imm = (imm & 0xFFFFFFFF) | ((hi & 0xFFFFFFFF) << 32)
            out.append(Insn(index, code, dst, src, off, imm))
            index += 2
            continue
        out.append(Insn(index, code, dst, src, off, imm))
        index += 1
    return out


def helper_ids(insns: Iterable[Insn]) -> list[int]:
    """Sorted distinct helper ids called (``call N`` with src_reg 0)."""
    return sorted({insn.imm for insn in insns if insn.is_helper_call})


def has_subprogram_calls(insns: Iterable[Insn]) -> bool:
    return any(insn.is_call and insn.src == BPF_PSEUDO_CALL for insn in insns)


# --- the read-modify-write finder ---------------------------------------------------------------
@dataclass(frozen=True)
class _MapRef:
    map: Optional[str]


@dataclass(frozen=True)
class _ValuePtr:
    map: Optional[str]
    lookup: int  # index of the lookup call
    off: int = 0


@dataclass(frozen=True)
class _Loaded:
    map: Optional[str]
    lookup: int
    off: int  # value offset loaded from
    size: int
    load: int  # index of the LDX
    op: Optional[str] = None  # set once an ALU op touched the loaded value
    alu: Optional[int] = None


@dataclass(frozen=True)
class RaceFinding:
    insn: int         # the STX that writes the value back
    load_insn: int    # the LDX that read it
    alu_insn: int     # the ALU op in between
    lookup_insn: int  # the bpf_map_lookup_elem call
    map: Optional[str]
    offset: int
    size: int
    op: str

    def message(self, program: Optional[str] = None) -> str:
        where = f"program '{program}' " if program else ""
        target = f"map '{self.map}'" if self.map else "a map value"
        return (f"{where}insn {self.insn}: non-atomic read-modify-write of {target} "
                f"(value offset {self.offset}, {self.size} bytes): load at insn {self.load_insn}, "
                f"{self.op} at insn {self.alu_insn}, store at insn {self.insn}; concurrent CPUs "
                f"lose updates - {RACE_FIX}")

    def to_dict(self) -> dict:
        return {"insn": self.insn, "load_insn": self.load_insn, "alu_insn": self.alu_insn,
                "lookup_insn": self.lookup_insn, "map": self.map, "offset": self.offset,
                "size": self.size, "op": self.op, "fix": RACE_FIX}


def find_races(insns: list[Insn], *, map_refs: Optional[dict] = None,
               map_types: Optional[dict] = None) -> list[RaceFinding]:
    """Non-atomic read-modify-writes of map values shared between CPUs.

    map_refs: {insn index of an ld_imm64: map name} (from the ELF relocations);
    map_types: {map name: BPF_MAP_TYPE_* number}; maps of a per-CPU type are skipped. A lookup on
    a map that cannot be named is still checked (reported with map None).
    """
    map_refs = map_refs or {}
    map_types = map_types or {}
    regs: dict[int, object] = {}
    findings: list[RaceFinding] = []
    for insn in insns:
        cls = insn.cls
        if insn.code == LD_IMM64:
            if insn.index in map_refs or insn.src in (1, 2, 5, 6):  # BPF_PSEUDO_MAP_* forms
                regs[insn.dst] = _MapRef(map_refs.get(insn.index))
            else:
                regs.pop(insn.dst, None)
        elif insn.is_call:
            target = regs.get(1)
            for reg in range(6):
                regs.pop(reg, None)
            if insn.is_helper_call and insn.imm == BPF_FUNC_map_lookup_elem and isinstance(target, _MapRef):
                if map_types.get(target.map) not in PERCPU_MAP_TYPES:  # per CPU: not shared, no race
                    regs[0] = _ValuePtr(target.map, insn.index)
        elif cls == BPF_ALU64 and insn.code == (BPF_ALU64 | BPF_MOV | BPF_X):
            if insn.src in regs:
                regs[insn.dst] = regs[insn.src]
            else:
                regs.pop(insn.dst, None)
        elif cls in (BPF_ALU, BPF_ALU64):
            _alu(regs, insn)
        elif cls == BPF_LDX and (insn.code & 0xE0) == BPF_MEM:
            base = regs.get(insn.src)
            if isinstance(base, _ValuePtr):
                regs[insn.dst] = _Loaded(base.map, base.lookup, base.off + insn.off,
                                         SIZE_BYTES[insn.code & 0x18], insn.index)
            else:
                regs.pop(insn.dst, None)
        elif cls == BPF_STX and (insn.code & 0xE0) == BPF_MEM:
            base, value = regs.get(insn.dst), regs.get(insn.src)
            if (isinstance(base, _ValuePtr) and isinstance(value, _Loaded) and value.op
                    and value.map == base.map and value.off == base.off + insn.off):
                findings.append(RaceFinding(insn=insn.index, load_insn=value.load, alu_insn=value.alu,
                                            lookup_insn=value.lookup, map=value.map, offset=value.off,
                                            size=SIZE_BYTES[insn.code & 0x18], op=value.op))
        elif cls == BPF_LD:
            regs.pop(0, None)  # legacy packet loads write r0
        elif cls == BPF_STX and (insn.code & 0xE0) == BPF_ATOMIC:
            # Atomics are the fix, not a finding. With BPF_FETCH (and xchg) they write src;
            # cmpxchg writes r0.
            if insn.imm & BPF_FETCH:
                regs.pop(insn.src, None)
            if insn.imm == BPF_CMPXCHG:
                regs.pop(0, None)
        # BPF_ST and jumps leave the registers alone.
    return findings


def _alu(regs: dict, insn: Insn) -> None:
    state = regs.get(insn.dst)
    op = insn.code & 0xF0
    by_const = (insn.code & 0x08) == BPF_K
    if isinstance(state, _ValuePtr) and insn.cls == BPF_ALU64 and by_const and op in (0x00, 0x10):
        delta = insn.imm if op == 0x00 else -insn.imm
        regs[insn.dst] = _ValuePtr(state.map, state.lookup, state.off + delta)
    elif isinstance(state, _Loaded) and op in ALU_OPS:
        regs[insn.dst] = _Loaded(state.map, state.lookup, state.off, state.size, state.load,
                                 op=state.op or ALU_OPS[op], alu=state.alu if state.op else insn.index)
    else:
        regs.pop(insn.dst, None)


# --- the programs of an object, read from its ELF (_elf) ---------------------------------------
@dataclass
class ProgramCode:
    """One program as the ELF holds it (before libbpf relocates anything)."""

    name: str
    section: str
    insns: bytes
    map_refs: dict = field(default_factory=dict)  # ld_imm64 index → map symbol name
    subprogram_insns: bytes = b""                 # .text functions it may call (all of them)

    @property
    def insn_cnt(self) -> int:
        return len(self.insns) // INSN_SIZE


@dataclass
class ObjectCode:
    programs: list
    license: Optional[str]
    big_endian: bool = False


class NotABpfObject(ValueError):
    pass


def read_object_code(data: bytes) -> ObjectCode:
    """Programs (name, section, instruction bytes, map references) and license of a BPF ELF."""
    if data[:4] != elf.ELF_MAGIC or len(data) < elf.HEADER_SIZE_64:
        raise NotABpfObject("not an ELF file")
    if data[4] != elf.ELFCLASS64:
        raise NotABpfObject("not a 64-bit ELF file (BPF objects are ELF64)")
    header = elf.read_header(data)
    if header.e_machine != elf.EM_BPF:
        raise NotABpfObject(f"ELF machine {header.e_machine} is not BPF ({elf.EM_BPF})")
    sections = elf.read_sections(data, header)
    symbols = elf.read_symbols(sections, header)
    relocs = elf.read_relocations(sections, symbols, header)

    map_sections = {s.index for s in sections if s.name in (".maps", "maps") or s.name.startswith("maps/")}
    text_idx = next((s.index for s in sections if s.name == ".text"), None)
    subprogs = sections[text_idx].data if text_idx is not None else b""

    programs = []
    for sym in symbols:
        if sym.type != elf.STT_FUNC or sym.bind not in (elf.STB_GLOBAL, elf.STB_WEAK):
            continue
        if sym.shndx >= len(sections) or sym.shndx == text_idx:
            continue
        sec = sections[sym.shndx]
        if not sec.header.flags & elf.SHF_EXECINSTR:
            continue
        start, size = sym.value, sym.size or (sec.header.size - sym.value)
        map_refs = {}
        for r_off, target in relocs.get(sym.shndx, {}).items():
            if start <= r_off < start + size and target.shndx in map_sections:
                map_refs[(r_off - start) // INSN_SIZE] = target.name
        programs.append(ProgramCode(name=sym.name, section=sec.name, insns=sec.data[start:start + size],
                                    map_refs=map_refs, subprogram_insns=subprogs))
    license_sec = next((s for s in sections if s.name == "license"), None)
    license = license_sec.data.split(b"\0", 1)[0].decode("ascii", "replace") if license_sec else None
    return ObjectCode(programs=programs, license=license, big_endian=header.big_endian)


def lint_program(prog: ProgramCode, *, map_types: Optional[dict] = None,
                 big_endian: bool = False) -> list[RaceFinding]:
    """find_races() over one program read by read_object_code()."""
    return find_races(decode(prog.insns, big_endian=big_endian), map_refs=prog.map_refs,
                      map_types=map_types)


def program_helper_ids(prog: ProgramCode, *, big_endian: bool = False) -> list[int]:
    """Helper ids a program calls, including those of the .text subprograms when it calls any."""
    insns = decode(prog.insns, big_endian=big_endian)
    ids = set(helper_ids(insns))
    if prog.subprogram_insns and has_subprogram_calls(insns):
        ids.update(helper_ids(decode(prog.subprogram_insns, big_endian=big_endian)))
    return sorted(ids)
