"""The BTF reader on a real blob (the .BTF section clang wrote into struct_value.bpf.o) and on
hand-built blobs for the layouts that fixture lacks (bitfields, enums, unions, anonymous members)."""
from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest

from ansible_collections.ebpf.deploy.plugins.module_utils._btf import Btf, BtfError, members_at
from ansible_collections.ebpf.deploy.plugins.module_utils._codec import CodecError, make_codec

REPO = Path(__file__).resolve().parents[4]
BPF_DIR = Path(os.environ.get("EBPF_DEPLOY_BPF_DIR", REPO / "build" / "bpf"))


def elf_section(path: Path, name: str) -> bytes:
    """A section of a 64-bit little-endian ELF file, read with the standard library only."""
    data = path.read_bytes()
    assert data[:4] == b"\x7fELF" and data[4] == 2 and data[5] == 1, "not a 64-bit LE ELF"
    (shoff,) = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)

    def header(index):
        return struct.unpack_from("<IIQQQQIIQQ", data, shoff + index * shentsize)

    names = header(shstrndx)
    for index in range(shnum):
        sh = header(index)
        start = names[4] + sh[0]
        if data[start:data.index(b"\0", start)].decode() == name:
            return data[sh[4]:sh[4] + sh[5]]
    raise AssertionError(f"{path} has no {name} section")


@pytest.fixture(scope="module")
def real_btf() -> Btf:
    obj = BPF_DIR / "struct_value.bpf.o"
    if not obj.exists():
        pytest.skip(f"{obj} missing: run `make bpf`")
    return Btf(elf_section(obj, ".BTF"))


# --- the real blob --------------------------------------------------------------------------------
def test_real_blob_has_the_struct_with_its_layout(real_btf):
    struct_id = real_btf.find("rate_cfg", "STRUCT")
    assert real_btf.sizeof(struct_id) == 16
    assert members_at(real_btf, struct_id) == [("rate", 0, 4), ("burst", 4, 2), ("flags", 6, 2), ("bytes", 8, 8)]
    assert real_btf.type_name(struct_id) == "struct rate_cfg"
    # every kind clang emits is parsed (VAR, DATASEC, FUNC, FUNC_PROTO included)
    kinds = {t.kind_name for t in real_btf.types.values()}
    assert {"INT", "PTR", "ARRAY", "STRUCT", "TYPEDEF", "VAR", "DATASEC", "FUNC", "FUNC_PROTO"} <= kinds


def test_real_struct_round_trips_by_field_name(real_btf):
    struct_id = real_btf.find("rate_cfg", "STRUCT")
    value = {"rate": 1000, "burst": 3, "flags": [1, 2], "bytes": 2 ** 40}
    raw = real_btf.encode(struct_id, value)
    assert raw == struct.pack("<IH2BQ", 1000, 3, 1, 2, 2 ** 40)
    assert real_btf.decode(struct_id, raw) == value


def test_missing_fields_are_zero_and_unknown_ones_refused(real_btf):
    struct_id = real_btf.find("rate_cfg", "STRUCT")
    assert real_btf.decode(struct_id, real_btf.encode(struct_id, {"rate": 5})) == {
        "rate": 5, "burst": 0, "flags": [0, 0], "bytes": 0}
    with pytest.raises(BtfError, match=r"no field burts \(fields: rate, burst, flags, bytes\)"):
        real_btf.encode(struct_id, {"burts": 1})
    with pytest.raises(BtfError, match=r"struct rate_cfg.burst: 65536 does not fit in 16 unsigned bits"):
        real_btf.encode(struct_id, {"burst": 65536})
    with pytest.raises(BtfError, match=r"flags: 3 items do not fit in 2"):
        real_btf.encode(struct_id, {"flags": [1, 2, 3]})
    with pytest.raises(BtfError, match="expected a mapping by field name"):
        real_btf.encode(struct_id, 5)


def test_btf_codec_checks_the_size_against_the_map(real_btf):
    struct_id = real_btf.find("rate_cfg", "STRUCT")
    codec = make_codec("btf", 16, btf=real_btf, type_id=struct_id)
    assert codec.decode(codec.encode({"rate": 1}))["rate"] == 1
    with pytest.raises(CodecError, match="is 16 bytes but the map's value size is 24 bytes"):
        make_codec("btf", 24, btf=real_btf, type_id=struct_id)
    with pytest.raises(CodecError, match=r"value \{'rate': -1\}: struct rate_cfg.rate: -1 does not fit"):
        codec.encode({"rate": -1})


def test_typedef_key_is_an_integer(real_btf):
    u32 = real_btf.find("__u32", "TYPEDEF")
    assert real_btf.sizeof(u32) == 4
    assert real_btf.encode(u32, 7) == b"\x07\x00\x00\x00"


# --- hand-built blobs ----------------------------------------------------------------------------
class Builder:
    """Writes a raw BTF blob type by type (ids from 1)."""

    def __init__(self):
        self.strings = bytearray(b"\0")
        self.types = bytearray()
        self.count = 0

    def s(self, name):
        if not name:
            return 0
        off = len(self.strings)
        self.strings += name.encode() + b"\0"
        return off

    def add(self, name, kind, vlen, size_or_type, extra=b"", kind_flag=0):
        self.types += struct.pack("<III", self.s(name), (kind_flag << 31) | (kind << 24) | vlen, size_or_type) + extra
        self.count += 1
        return self.count

    def int(self, name, size, bits=None, signed=False, boolean=False):
        enc = (1 if signed else 0) | (4 if boolean else 0)
        return self.add(name, 1, 0, size, struct.pack("<I", (enc << 24) | (bits or size * 8)))

    def struct(self, name, size, members, kind=4, bitfields=False):
        extra = b"".join(struct.pack("<III", self.s(m[0]), m[1],
                                     (m[3] << 24 | m[2]) if bitfields else m[2]) for m in members)
        return self.add(name, kind, len(members), size, extra, kind_flag=1 if bitfields else 0)

    def array(self, elem, index, n):
        return self.add("", 3, 0, 0, struct.pack("<III", elem, index, n))

    def enum(self, name, size, values, signed=False):
        extra = b"".join(struct.pack("<Ii", self.s(k), v) for k, v in values.items())
        return self.add(name, 6, len(values), size, extra, kind_flag=1 if signed else 0)

    def blob(self):
        hdr = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(self.types), len(self.types), len(self.strings))
        return hdr + bytes(self.types) + bytes(self.strings)


def test_bitfields_enums_unions_and_anonymous_members():
    b = Builder()
    u32 = b.int("unsigned int", 4)
    s16 = b.int("short", 2, signed=True)
    u8 = b.int("unsigned char", 1)
    boolean = b.int("_Bool", 1, boolean=True)
    mode = b.enum("mode", 4, {"MODE_OFF": 0, "MODE_FAST": 1, "MODE_SLOW": 7})
    name = b.array(u8, u32, 4)
    anon = b.struct("", 4, [("lo", s16, 0, 0), ("hi", s16, 16, 0)])
    union = b.struct("u", 4, [("word", u32, 0, 0), ("half", s16, 0, 0)], kind=5)
    outer = b.struct("cfg", 24, [
        ("enabled", u32, 0, 1), ("prio", u32, 1, 3), ("rest", u32, 4, 28),
        ("mode", mode, 32, 0), ("name", name, 64, 0), ("", anon, 96, 0),
        ("alias", union, 128, 0), ("on", boolean, 160, 0),
    ], bitfields=True)
    btf = Btf(b.blob())
    assert btf.sizeof(outer) == 24
    value = {"enabled": 1, "prio": 5, "rest": 2 ** 28 - 1, "mode": "MODE_SLOW", "name": "eth",
             "lo": -2, "hi": 3, "alias": {"half": -1}, "on": True}
    raw = btf.encode(outer, value)
    first = struct.unpack_from("<I", raw, 0)[0]
    assert first == 1 | (5 << 1) | ((2 ** 28 - 1) << 4)
    assert raw[4:8] == struct.pack("<I", 7)
    assert raw[8:12] == b"eth\0"
    assert raw[12:16] == struct.pack("<hh", -2, 3)
    assert raw[16:20] == b"\xff\xff\0\0"
    decoded = btf.decode(outer, raw)
    assert decoded["prio"] == 5 and decoded["rest"] == 2 ** 28 - 1
    assert decoded["mode"] == "MODE_SLOW"
    assert decoded["name"] == [ord("e"), ord("t"), ord("h"), 0]
    assert decoded["lo"] == -2 and decoded["hi"] == 3
    assert decoded["alias"] == {"word": 0xFFFF, "half": -1}
    assert decoded["on"] is True
    # the decoded form encodes to the same bytes
    assert btf.encode(outer, decoded) == raw
    with pytest.raises(BtfError, match=r"prio: 8 does not fit in 3 unsigned bits"):
        btf.encode(outer, {"prio": 8})
    with pytest.raises(BtfError, match="is not one of MODE_OFF, MODE_FAST, MODE_SLOW"):
        btf.encode(outer, {"mode": "MODE_TURBO"})
    with pytest.raises(BtfError, match="alias: union members word, half disagree"):
        btf.encode(outer, {"alias": {"word": 0x10000, "half": 1}})


def test_bad_blobs_are_refused():
    with pytest.raises(BtfError, match="not BTF"):
        Btf(b"\0" * 24)
    with pytest.raises(BtfError, match="too short"):
        Btf(b"\x9f\xeb")
    b = Builder()
    b.int("int", 4)
    blob = bytearray(b.blob())
    struct.pack_into("<I", blob, 12, 1000)  # type_len past the end
    with pytest.raises(BtfError, match="past the end"):
        Btf(bytes(blob))
    with pytest.raises(BtfError, match="type id 9 does not exist"):
        Btf(b.blob()).sizeof(9)
