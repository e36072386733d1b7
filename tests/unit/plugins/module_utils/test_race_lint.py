"""_race_lint: instruction decoding, helper ids, the ELF reader and the read-modify-write finder.

Synthetic programs are assembled here instruction by instruction (so each case is exact); the
compiled fixtures (build/bpf, `make bpf`) are checked too when they are there.
"""
from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest

from ansible_collections.ebpf.deploy.plugins.module_utils import _race_lint as rl

BPF_DIR = Path(os.environ.get("EBPF_DEPLOY_BPF_DIR", Path(__file__).resolve().parents[4] / "build" / "bpf"))


def ins(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


def ld_map(dst: int) -> bytes:  # r<dst> = map ll (relocated later: imm 0), two slots
    return ins(0x18, dst) + ins(0x00)


MOV64_IMM, MOV64_REG, ADD64_IMM, ADD64_REG, SUB64_IMM = 0xB7, 0xBF, 0x07, 0x0F, 0x17
LDX_DW, STX_DW, STX_W, ST_W = 0x79, 0x7B, 0x63, 0x62
ATOMIC_DW = 0xDB
CALL, EXIT, JEQ_IMM = 0x85, 0x95, 0x15


def prologue() -> bytes:
    """key = 0 on the stack, r2 = &key, r1 = map (insn 4-5), call lookup (6), NULL check (7)."""
    return (ins(MOV64_IMM, 1) + ins(STX_W, 10, 1, -4) + ins(MOV64_REG, 2, 10) + ins(ADD64_IMM, 2, imm=-4)
            + ld_map(1) + ins(CALL, imm=1) + ins(JEQ_IMM, 0, off=3))


def epilogue() -> bytes:
    return ins(MOV64_IMM, 0, imm=2) + ins(EXIT)


REFS = {4: "counts"}


def races(body: bytes, map_types=None):
    return rl.find_races(rl.decode(prologue() + body + epilogue()), map_refs=REFS,
                         map_types=map_types or {"counts": 2})


def test_decode_merges_ld_imm64_and_keeps_slot_indexes():
    insns = rl.decode(prologue() + epilogue())
    assert [i.index for i in insns] == [0, 1, 2, 3, 4, 6, 7, 8, 9]
    wide = rl.decode(ins(0x18, 1, imm=0x11223344) + ins(0, imm=0x55667788))
    assert wide[0].imm == 0x5566778811223344
    with pytest.raises(ValueError):
        rl.decode(b"\0" * 7)


def test_helper_ids_are_call_immediates_with_src_0():
    insns = rl.decode(ins(CALL, imm=6) + ins(CALL, src=1, imm=3) + ins(CALL, imm=1) + ins(CALL, imm=6) + ins(EXIT))
    assert rl.helper_ids(insns) == [1, 6]
    assert rl.has_subprogram_calls(insns)


def test_load_add_store_is_reported_at_the_store():
    found = races(ins(LDX_DW, 1, 0) + ins(ADD64_IMM, 1, imm=1) + ins(STX_DW, 0, 1))
    assert len(found) == 1
    race = found[0]
    assert (race.insn, race.load_insn, race.alu_insn, race.lookup_insn) == (10, 8, 9, 6)
    assert race.map == "counts" and race.offset == 0 and race.size == 8 and race.op == "add"
    assert "__sync_fetch_and_add" in race.message("p") and "per-CPU" in race.message("p")


def test_atomic_add_is_fine():
    assert races(ins(MOV64_IMM, 1, imm=1) + ins(ATOMIC_DW, 0, 1, imm=0x00)) == []


def test_per_cpu_maps_are_fine():
    body = ins(LDX_DW, 1, 0) + ins(ADD64_IMM, 1, imm=1) + ins(STX_DW, 0, 1)
    assert races(body, {"counts": 6}) == []   # PERCPU_ARRAY
    assert races(body, {"counts": 5}) == []   # PERCPU_HASH


def test_register_copies_and_pointer_offsets_are_followed():
    body = (ins(MOV64_REG, 6, 0) + ins(ADD64_IMM, 6, imm=8)      # r6 = r0 + 8
            + ins(LDX_DW, 3, 6) + ins(MOV64_REG, 4, 3)          # r3 = *(r6 + 0); r4 = r3
            + ins(ADD64_REG, 4, 5) + ins(STX_DW, 0, 4, off=8))  # r4 += r5; *(r0 + 8) = r4
    found = races(body)
    assert [(r.insn, r.offset, r.load_insn) for r in found] == [(13, 8, 10)]


def test_store_to_another_field_or_of_an_unmodified_value_is_not_a_race():
    assert races(ins(LDX_DW, 1, 0) + ins(ADD64_IMM, 1, imm=1) + ins(STX_DW, 0, 1, off=8)) == []
    assert races(ins(LDX_DW, 1, 0) + ins(STX_DW, 0, 1, off=8)) == []
    assert races(ins(MOV64_IMM, 1, imm=5) + ins(STX_DW, 0, 1)) == []


def test_a_call_clobbers_the_loaded_value():
    body = ins(MOV64_REG, 6, 0) + ins(LDX_DW, 1, 6) + ins(ADD64_IMM, 1, imm=1) + ins(CALL, imm=5) + ins(STX_DW, 6, 1)
    assert races(body) == []


def test_sub_is_a_read_modify_write_too():
    found = races(ins(LDX_DW, 1, 0) + ins(SUB64_IMM, 1, imm=1) + ins(STX_DW, 0, 1))
    assert found and found[0].op == "sub"


def test_a_map_without_a_name_is_still_checked():
    # Relocated code (as the kernel holds it) marks the map with BPF_PSEUDO_MAP_FD in src_reg.
    code = prologue().replace(ins(0x18, 1), ins(0x18, 1, 1))
    found = rl.find_races(rl.decode(code + ins(LDX_DW, 1, 0) + ins(ADD64_IMM, 1, imm=1)
                                    + ins(STX_DW, 0, 1) + epilogue()))
    assert found and found[0].map is None
    # An ld_imm64 of a plain constant (no relocation, src_reg 0) is not a map.
    assert rl.find_races(rl.decode(prologue() + ins(LDX_DW, 1, 0) + ins(ADD64_IMM, 1, imm=1)
                                   + ins(STX_DW, 0, 1) + epilogue())) == []


# --- the compiled fixtures ------------------------------------------------------------------------
def fixture_code(stem: str) -> rl.ObjectCode:
    path = BPF_DIR / f"{stem}.bpf.o"
    if not path.exists():
        pytest.skip(f"{path} missing: run `make bpf`")
    return rl.read_object_code(path.read_bytes())


def test_racy_counter_fixture_is_flagged_at_its_store():
    code = fixture_code("racy_counter")
    (prog,) = code.programs
    assert prog.name == "xdp_racy_counter" and prog.section == "xdp"
    assert set(prog.map_refs.values()) == {"racy_count"}
    (race,) = rl.lint_program(prog, map_types={"racy_count": 2})
    insns = {i.index: i for i in rl.decode(prog.insns)}
    assert insns[race.insn].code == STX_DW and insns[race.load_insn].code == LDX_DW
    assert race.load_insn < race.alu_insn < race.insn
    assert race.map == "racy_count"


@pytest.mark.parametrize("stem", ["counter", "blocklist", "tailcall", "map_conflict"])
def test_atomic_fixtures_are_clean(stem):
    code = fixture_code(stem)
    for prog in code.programs:
        assert rl.lint_program(prog) == [], prog.name


def test_reader_gives_license_helpers_and_map_references():
    code = fixture_code("reject_gpl_helper")
    assert code.license == "Proprietary"
    (prog,) = code.programs
    assert rl.program_helper_ids(prog) == [6]
    counter = fixture_code("map_conflict")
    assert rl.program_helper_ids(counter.programs[0]) == [1, 2]
    assert set(counter.programs[0].map_refs.values()) == {"pkt_count"}


def test_reader_refuses_what_is_not_a_bpf_object():
    with pytest.raises(rl.NotABpfObject):
        rl.read_object_code(b"not an elf at all" * 4)
    with pytest.raises(rl.NotABpfObject):
        rl.read_object_code(Path("/bin/true").read_bytes() if Path("/bin/true").exists() else b"\x7fELF" + b"\2" * 60)
