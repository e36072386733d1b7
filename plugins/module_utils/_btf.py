# -*- coding: utf-8 -*-
# Copyright: contributors to ebpf.deploy
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private to ebpf.deploy: a pure Python reader of raw BTF, enough to write map values by field name.

``Btf(blob)`` parses the header, the type section and the string section of a raw BTF blob (the
``.BTF`` ELF section of an object, or what the kernel returns for a map's BTF id). Types are
numbered from 1 (0 is void) in the order they appear, as the kernel numbers them.

``encode(type_id, value)`` writes a YAML value as the bytes of that type: a struct or union from a
mapping by field name (missing fields are zero, unknown ones are refused with the known names),
an array from a list (a string for ``char``/``u8`` arrays), an enum from its name or number, an
integer from a number (bitfields included). ``decode(type_id, raw)`` is the reverse, with enums
shown by name when the number has one. Each DATASEC keeps its variables' offsets and sizes and each
VAR its linkage, for the load-time globals (``_globals``); ``function()`` finds a FUNC by name
(the function an freplace program replaces).

No Ansible, no kernel access.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

BTF_MAGIC = 0xEB9F

KINDS = {
    0: "UNKN", 1: "INT", 2: "PTR", 3: "ARRAY", 4: "STRUCT", 5: "UNION", 6: "ENUM", 7: "FWD",
    8: "TYPEDEF", 9: "VOLATILE", 10: "CONST", 11: "RESTRICT", 12: "FUNC", 13: "FUNC_PROTO",
    14: "VAR", 15: "DATASEC", 16: "FLOAT", 17: "DECL_TAG", 18: "TYPE_TAG", 19: "ENUM64",
}
# Kinds that only qualify another type: the value is written as the type they point to.
MODIFIERS = ("TYPEDEF", "VOLATILE", "CONST", "RESTRICT", "TYPE_TAG")

# a FUNC's linkage (its vlen): only a global function of a loaded program can be replaced (freplace)
FUNC_LINKAGE = {0: "static", 1: "global", 2: "extern"}

INT_SIGNED = 1 << 0
INT_CHAR = 1 << 1
INT_BOOL = 1 << 2

_MAX_RESOLVE_DEPTH = 32


class BtfError(ValueError):
    """The blob is not valid BTF, or a value does not match the type it is written as."""


@dataclass
class Member:
    name: str
    type_id: int
    bit_offset: int
    bitfield_size: int = 0      # 0: not a bitfield


@dataclass
class SectionVar:
    """One variable of a DATASEC: its VAR type id, byte offset and size in the section."""
    type_id: int
    offset: int
    size: int


@dataclass
class BtfType:
    type_id: int
    kind: int
    name: str
    size_or_type: int
    vlen: int = 0
    kind_flag: bool = False
    # INT
    int_encoding: int = 0
    int_offset: int = 0
    int_bits: int = 0
    # ARRAY
    elem_type: int = 0
    index_type: int = 0
    nelems: int = 0
    # STRUCT / UNION
    members: List[Member] = field(default_factory=list)
    # ENUM / ENUM64: name -> value
    enumerators: Dict[str, int] = field(default_factory=dict)
    # VAR: static (0), global (1) or extern (2)
    linkage: int = 0
    # DATASEC: its variables with their place in the section
    section_vars: List[SectionVar] = field(default_factory=list)

    @property
    def kind_name(self) -> str:
        return KINDS.get(self.kind, f"KIND{self.kind}")


class Btf:
    """A parsed BTF blob: ``types[type_id]``, ``sizeof``, ``encode``/``decode`` of values."""

    def __init__(self, blob: bytes) -> None:
        self.blob = bytes(blob)
        self.types: Dict[int, BtfType] = {}
        self._parse()

    # --- parsing ----------------------------------------------------------------------------
    def _parse(self) -> None:
        blob = self.blob
        if len(blob) < 24:
            raise BtfError(f"BTF blob too short ({len(blob)} bytes)")
        magic_le = struct.unpack_from("<H", blob, 0)[0]
        if magic_le == BTF_MAGIC:
            self.order = "<"
        elif struct.unpack_from(">H", blob, 0)[0] == BTF_MAGIC:
            self.order = ">"
        else:
            raise BtfError(f"not BTF: magic {magic_le:#06x}, expected {BTF_MAGIC:#06x}")
        o = self.order
        _magic, self.version, self.flags, hdr_len = struct.unpack_from(o + "HBBI", blob, 0)
        type_off, type_len, str_off, str_len = struct.unpack_from(o + "IIII", blob, 8)
        if self.version != 1:
            raise BtfError(f"unsupported BTF version {self.version}")
        types_start, strings_start = hdr_len + type_off, hdr_len + str_off
        if types_start + type_len > len(blob) or strings_start + str_len > len(blob):
            raise BtfError("BTF sections run past the end of the blob")
        self.strings = blob[strings_start:strings_start + str_len]
        self._parse_types(blob[types_start:types_start + type_len])

    def string(self, offset: int) -> str:
        if offset >= len(self.strings):
            raise BtfError(f"string offset {offset} outside the string section")
        end = self.strings.index(b"\0", offset)
        return self.strings[offset:end].decode("utf-8", "replace")

    def _parse_types(self, data: bytes) -> None:
        o = self.order
        pos = 0
        type_id = 1
        while pos < len(data):
            if pos + 12 > len(data):
                raise BtfError(f"truncated type {type_id}")
            name_off, info, size_or_type = struct.unpack_from(o + "III", data, pos)
            pos += 12
            kind = (info >> 24) & 0x1F
            vlen = info & 0xFFFF
            t = BtfType(type_id, kind, self.string(name_off), size_or_type, vlen, bool(info >> 31))
            name = t.kind_name
            if name == "INT":
                (value,) = struct.unpack_from(o + "I", data, pos)
                pos += 4
                t.int_encoding = (value >> 24) & 0x0F
                t.int_offset = (value >> 16) & 0xFF
                t.int_bits = value & 0xFF
            elif name == "ARRAY":
                t.elem_type, t.index_type, t.nelems = struct.unpack_from(o + "III", data, pos)
                pos += 12
            elif name in ("STRUCT", "UNION"):
                for _index in range(vlen):
                    m_name, m_type, m_offset = struct.unpack_from(o + "III", data, pos)
                    pos += 12
                    if t.kind_flag:
                        t.members.append(Member(self.string(m_name), m_type, m_offset & 0xFFFFFF,
                                                m_offset >> 24))
                    else:
                        t.members.append(Member(self.string(m_name), m_type, m_offset))
            elif name == "ENUM":
                signed = t.kind_flag
                for _index in range(vlen):
                    e_name, e_val = struct.unpack_from(o + ("Ii" if signed else "II"), data, pos)
                    pos += 8
                    t.enumerators[self.string(e_name)] = e_val
            elif name == "ENUM64":
                for _index in range(vlen):
                    e_name, lo, hi = struct.unpack_from(o + "III", data, pos)
                    pos += 12
                    value = (hi << 32) | lo
                    if t.kind_flag and value >= 1 << 63:
                        value -= 1 << 64
                    t.enumerators[self.string(e_name)] = value
            elif name == "FUNC_PROTO":
                pos += 8 * vlen
            elif name == "VAR":
                (t.linkage,) = struct.unpack_from(o + "I", data, pos)
                pos += 4
            elif name == "DATASEC":
                for _index in range(vlen):
                    t.section_vars.append(SectionVar(*struct.unpack_from(o + "III", data, pos)))
                    pos += 12
            elif name == "DECL_TAG":
                pos += 4
            elif name == "UNKN" or kind not in KINDS:
                raise BtfError(f"unknown BTF kind {kind} for type {type_id}")
            self.types[type_id] = t
            type_id += 1
        if pos != len(data):
            raise BtfError("type section does not end on a type boundary")

    # --- questions ----------------------------------------------------------------------------
    def get(self, type_id: int) -> BtfType:
        try:
            return self.types[type_id]
        except KeyError:
            raise BtfError(f"BTF type id {type_id} does not exist (this BTF has "
                           f"{len(self.types)} types)") from None

    def find(self, name: str, kind: Optional[str] = None) -> int:
        """The id of the first type called ``name`` (of ``kind``, e.g. ``STRUCT``)."""
        for type_id, t in self.types.items():
            if t.name == name and (kind is None or t.kind_name == kind):
                return type_id
        raise BtfError(f"no BTF type named {name!r}")

    def function(self, name: str) -> Optional[BtfType]:
        """The FUNC called ``name`` (its ``vlen`` is its linkage, FUNC_LINKAGE), None when there is none."""
        return next((t for t in self.types.values() if t.kind_name == "FUNC" and t.name == name), None)

    def resolve(self, type_id: int) -> BtfType:
        """Skip typedefs and qualifiers: the type whose layout a value has."""
        for _depth in range(_MAX_RESOLVE_DEPTH):
            if type_id == 0:
                raise BtfError("void has no value")
            t = self.get(type_id)
            if t.kind_name not in MODIFIERS:
                return t
            type_id = t.size_or_type
        raise BtfError(f"BTF type chain too deep at id {type_id}")

    def type_name(self, type_id: int) -> str:
        """A C-like name: ``struct rate_cfg``, ``__u32``, ``u8[2]``."""
        if type_id == 0:
            return "void"
        t = self.get(type_id)
        kind = t.kind_name
        if kind in ("STRUCT", "UNION", "ENUM", "ENUM64"):
            word = "enum" if kind.startswith("ENUM") else kind.lower()
            return f"{word} {t.name or '(anon)'}"
        if kind == "ARRAY":
            return f"{self.type_name(t.elem_type)}[{t.nelems}]"
        if kind == "PTR":
            return f"{self.type_name(t.size_or_type)} *"
        if kind in ("CONST", "VOLATILE", "RESTRICT") and not t.name:
            return f"{kind.lower()} {self.type_name(t.size_or_type)}"
        return t.name or kind.lower()

    def sizeof(self, type_id: int) -> int:
        t = self.resolve(type_id)
        kind = t.kind_name
        if kind in ("INT", "STRUCT", "UNION", "ENUM", "ENUM64", "FLOAT", "DATASEC"):
            return t.size_or_type
        if kind == "PTR":
            return 8
        if kind == "ARRAY":
            return t.nelems * self.sizeof(t.elem_type)
        raise BtfError(f"{self.type_name(type_id)} ({kind}) has no size")

    def describe(self, type_id: int) -> dict:
        """A small summary for results: name, size and, for structs, the members."""
        t = self.resolve(type_id)
        out: dict = {"type_id": type_id, "name": self.type_name(type_id), "size": self.sizeof(type_id)}
        if t.members:
            out["members"] = [{"name": m.name, "type": self.type_name(m.type_id),
                               "offset": m.bit_offset // 8} for m in t.members]
        return out

    # --- encode ------------------------------------------------------------------------------
    def encode(self, type_id: int, value: Any, *, path: Optional[str] = None) -> bytes:
        """``path`` names the value in messages (default: the type's name)."""
        size = self.sizeof(type_id)
        buf = bytearray(size)
        self._write(type_id, value, buf, 0, path or self.type_name(type_id))
        return bytes(buf)

    def _write(self, type_id: int, value: Any, buf: bytearray, bit_off: int, path: str,
               bits: int = 0) -> None:
        t = self.resolve(type_id)
        kind = t.kind_name
        if kind == "INT":
            width = bits or t.int_bits
            self._write_int(_int_of(value, path, boolean=bool(t.int_encoding & INT_BOOL)),
                            buf, bit_off + t.int_offset, width, t.size_or_type,
                            bool(t.int_encoding & INT_SIGNED), path)
        elif kind in ("ENUM", "ENUM64"):
            number = self._enum_value(t, value, path)
            width = bits or 8 * t.size_or_type
            signed = t.kind_flag or any(v < 0 for v in t.enumerators.values())
            self._write_int(number, buf, bit_off, width, t.size_or_type, signed, path)
        elif kind == "PTR":
            self._write_int(_int_of(value, path), buf, bit_off, 64, 8, False, path)
        elif kind == "FLOAT":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise BtfError(f"{path}: expected a number, got {type(value).__name__}")
            fmt = {2: "e", 4: "f", 8: "d"}.get(t.size_or_type)
            if fmt is None:
                raise BtfError(f"{path}: {t.size_or_type}-byte floats are not supported")
            struct.pack_into(self.order + fmt, buf, bit_off // 8, float(value))
        elif kind == "ARRAY":
            self._write_array(t, value, buf, bit_off, path)
        elif kind in ("STRUCT", "UNION"):
            self._write_struct(t, value, buf, bit_off, path)
        else:
            raise BtfError(f"{path}: cannot write a value of BTF kind {kind}")

    def _write_int(self, number: int, buf: bytearray, bit_off: int, width: int, size: int,
                   signed: bool, path: str) -> None:
        low = -(1 << (width - 1)) if signed else 0
        high = (1 << (width - 1)) - 1 if signed else (1 << width) - 1
        if not low <= number <= high:
            raise BtfError(f"{path}: {number} does not fit in {width} {'signed' if signed else 'unsigned'} "
                           f"bits ({low}..{high})")
        if bit_off % 8 == 0 and width == 8 * size:
            order = "little" if self.order == "<" else "big"
            start = bit_off // 8
            buf[start:start + size] = number.to_bytes(size, order, signed=signed)
            return
        if self.order != "<":
            raise BtfError(f"{path}: bitfields are only supported in little-endian BTF")
        number &= (1 << width) - 1
        first, last = bit_off // 8, (bit_off + width + 7) // 8
        span = int.from_bytes(buf[first:last], "little")
        shift = bit_off - 8 * first
        span &= ~(((1 << width) - 1) << shift)
        span |= number << shift
        buf[first:last] = span.to_bytes(last - first, "little")

    def _enum_value(self, t: BtfType, value: Any, path: str) -> int:
        if isinstance(value, str) and value in t.enumerators:
            return t.enumerators[value]
        if isinstance(value, str):
            try:
                return int(value, 0)
            except ValueError:
                raise BtfError(f"{path}: {value!r} is not one of {', '.join(t.enumerators) or '(none)'}") from None
        return _int_of(value, path)

    def _write_array(self, t: BtfType, value: Any, buf: bytearray, bit_off: int, path: str) -> None:
        elem = self.resolve(t.elem_type)
        elem_size = self.sizeof(t.elem_type)
        if isinstance(value, (str, bytes)) and elem.kind_name == "INT" and elem_size == 1:
            data = value.encode("utf-8") if isinstance(value, str) else value
            if len(data) > t.nelems:
                raise BtfError(f"{path}: {len(data)} bytes do not fit in {t.nelems}")
            start = bit_off // 8
            buf[start:start + len(data)] = data
            return
        if not isinstance(value, list):
            raise BtfError(f"{path}: expected a list of {t.nelems}, got {type(value).__name__}")
        if len(value) > t.nelems:
            raise BtfError(f"{path}: {len(value)} items do not fit in {t.nelems}")
        for index, item in enumerate(value):
            self._write(t.elem_type, item, buf, bit_off + 8 * elem_size * index, f"{path}[{index}]")

    def _write_struct(self, t: BtfType, value: Any, buf: bytearray, bit_off: int, path: str) -> None:
        if not isinstance(value, dict):
            raise BtfError(f"{path}: expected a mapping by field name "
                           f"({', '.join(self.field_names(t))}), got {type(value).__name__}")
        known = self.field_names(t)
        unknown = [key for key in value if key not in known]
        if unknown:
            raise BtfError(f"{path}: no field {', '.join(map(str, unknown))} "
                           f"(fields: {', '.join(known)})")
        for member in t.members:
            if member.name:
                if member.name in value:
                    self._write(member.type_id, value[member.name], buf, bit_off + member.bit_offset,
                                f"{path}.{member.name}", member.bitfield_size)
            else:  # an anonymous struct/union: its fields are written as the parent's
                inner = self.resolve(member.type_id)
                sub = {k: v for k, v in value.items() if k in self.field_names(inner)}
                if sub:
                    self._write_struct(inner, sub, buf, bit_off + member.bit_offset, path)
        if t.kind_name == "UNION" and len(value) > 1:
            # members share their bytes: several are fine only when they say the same thing
            raw = bytes(buf)
            for member in t.members:
                if member.name in value:
                    back = self._read(member.type_id, raw, bit_off + member.bit_offset, member.bitfield_size)
                    if back != _normalized(self, member.type_id, value[member.name]):
                        raise BtfError(f"{path}: union members {', '.join(value)} disagree; "
                                       f"give one of them")

    def field_names(self, t: BtfType) -> List[str]:
        names: List[str] = []
        for member in t.members:
            if member.name:
                names.append(member.name)
            else:
                names.extend(self.field_names(self.resolve(member.type_id)))
        return names

    # --- decode ------------------------------------------------------------------------------
    def decode(self, type_id: int, raw: bytes) -> Any:
        size = self.sizeof(type_id)
        if len(raw) < size:
            raise BtfError(f"{self.type_name(type_id)} needs {size} bytes, got {len(raw)}")
        return self._read(type_id, bytes(raw), 0)

    def _read(self, type_id: int, raw: bytes, bit_off: int, bits: int = 0) -> Any:
        t = self.resolve(type_id)
        kind = t.kind_name
        if kind == "INT":
            number = self._read_int(raw, bit_off + t.int_offset, bits or t.int_bits, t.size_or_type,
                                    bool(t.int_encoding & INT_SIGNED))
            return bool(number) if t.int_encoding & INT_BOOL else number
        if kind in ("ENUM", "ENUM64"):
            signed = t.kind_flag or any(v < 0 for v in t.enumerators.values())
            number = self._read_int(raw, bit_off, bits or 8 * t.size_or_type, t.size_or_type, signed)
            for name, value in t.enumerators.items():
                if value == number:
                    return name
            return number
        if kind == "PTR":
            return self._read_int(raw, bit_off, 64, 8, False)
        if kind == "FLOAT":
            fmt = {2: "e", 4: "f", 8: "d"}.get(t.size_or_type)
            if fmt is None:
                raise BtfError(f"{t.size_or_type}-byte floats are not supported")
            return struct.unpack_from(self.order + fmt, raw, bit_off // 8)[0]
        if kind == "ARRAY":
            elem_size = self.sizeof(t.elem_type)
            return [self._read(t.elem_type, raw, bit_off + 8 * elem_size * i) for i in range(t.nelems)]
        if kind in ("STRUCT", "UNION"):
            out: Dict[str, Any] = {}
            for member in t.members:
                value = self._read(member.type_id, raw, bit_off + member.bit_offset, member.bitfield_size)
                if member.name:
                    out[member.name] = value
                elif isinstance(value, dict):
                    out.update(value)
            return out
        raise BtfError(f"cannot read a value of BTF kind {kind}")

    def _read_int(self, raw: bytes, bit_off: int, width: int, size: int, signed: bool) -> int:
        if bit_off % 8 == 0 and width == 8 * size:
            start = bit_off // 8
            return int.from_bytes(raw[start:start + size], "little" if self.order == "<" else "big",
                                  signed=signed)
        first, last = bit_off // 8, (bit_off + width + 7) // 8
        span = int.from_bytes(raw[first:last], "little")
        number = (span >> (bit_off - 8 * first)) & ((1 << width) - 1)
        if signed and number >= 1 << (width - 1):
            number -= 1 << width
        return number


def _normalized(btf: Btf, type_id: int, value: Any) -> Any:
    """A value as decode() would show it (``"0x10"`` -> 16, ``"eth"`` -> a list of bytes)."""
    return btf.decode(type_id, btf.encode(type_id, value))


def _int_of(value: Any, path: str, *, boolean: bool = False) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        if boolean and text.lower() in ("true", "false"):
            return int(text.lower() == "true")
        try:
            return int(text.replace("_", ""), 0)
        except ValueError:
            pass
    raise BtfError(f"{path}: expected an integer, got {value!r}")


def members_at(btf: Btf, type_id: int) -> List[Tuple[str, int, int]]:
    """(name, byte offset, size) of a struct's members, for messages and tests."""
    t = btf.resolve(type_id)
    return [(m.name, m.bit_offset // 8, btf.sizeof(m.type_id)) for m in t.members]


SPIN_LOCK = "bpf_spin_lock"


def spin_lock_field(btf: Btf, type_id: int) -> Optional[str]:
    """The name of the member of a map value that is its ``struct bpf_spin_lock``, None without one.
    The kernel looks for the lock among the value struct's own members only (btf_find_field), and a
    value holding one is read and written under it with BPF_F_LOCK (a copy that never tears
    against a program updating the value under the lock)."""
    value = btf.resolve(type_id)
    if value.kind_name != "STRUCT":
        return None
    for member in value.members:
        inner = btf.resolve(member.type_id)
        if inner.kind_name == "STRUCT" and inner.name == SPIN_LOCK:
            return member.name
    return None
