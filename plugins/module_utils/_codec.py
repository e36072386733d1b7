# -*- coding: utf-8 -*-
# Copyright: contributors to ebpf.deploy
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private to ebpf.deploy: map keys and values as YAML writes them <-> the bytes the kernel holds.

A codec turns one YAML value into exactly ``size`` bytes and back. Integers are little-endian
(``u8``..``u64``, ``s8``..``s64``; ``be16``/``be32`` for ports and the like in network order),
addresses are in network order (``ipv4``, ``ipv6``, ``mac``), ``hex`` is any size, and ``btf``
describes a struct by field name (see ``_btf``). A value that does not fit the map's key or value
size is refused with ``CodecError`` before anything is written.

Per-CPU maps hold one slot per possible CPU, each rounded up to 8 bytes; ``encode_percpu`` writes
the same value into every slot unless a list with one value per CPU is given.

Pure Python, no Ansible and no kernel access.
"""
from __future__ import annotations

import ipaddress
import re
import struct
from typing import Any, Callable, List, Optional, Tuple

from ansible_collections.ebpf.deploy.plugins.module_utils._btf import Btf, BtfError
from ansible_collections.ebpf.deploy.plugins.module_utils._errors import InvalidInput


class CodecError(InvalidInput):
    """A key or value cannot be written as the requested type, or does not fit the map."""


INT_TYPES = {
    # name: (size, signed, byte order)
    "u8": (1, False, "little"), "u16": (2, False, "little"),
    "u32": (4, False, "little"), "u64": (8, False, "little"),
    "s8": (1, True, "little"), "s16": (2, True, "little"),
    "s32": (4, True, "little"), "s64": (8, True, "little"),
    "be16": (2, False, "big"), "be32": (4, False, "big"), "be64": (8, False, "big"),
}
FIXED_TYPES = {"ipv4": 4, "ipv6": 16, "mac": 6}
TYPE_NAMES = sorted(INT_TYPES) + sorted(FIXED_TYPES) + ["hex", "btf"]

# patterns of the mac and hex types, compiled (and cached by re) when a run uses those types
_HEX_SEPARATORS = r"[\s:._-]"
_MAC = r"^[0-9a-fA-F]{2}([:-]?)[0-9a-fA-F]{2}(\1[0-9a-fA-F]{2}){4}$"


def round_up8(size: int) -> int:
    """The size of one per-CPU slot for a value of ``size`` bytes."""
    return (size + 7) // 8 * 8


class Codec:
    """One type: ``encode(value) -> bytes`` of exactly ``size`` bytes, ``decode(bytes) -> value``."""

    def __init__(self, name: str, size: int, *, encode: Callable[[Any], bytes],
                 decode: Callable[[bytes], Any], numeric: bool = False, is_struct: bool = False,
                 sort_key: Optional[Callable[[bytes], Any]] = None) -> None:
        self.name = name
        self.size = size
        self.is_struct = is_struct
        self._encode = encode
        self._decode = decode
        self.numeric = numeric
        self._sort_key = sort_key

    def encode(self, value: Any, *, what: str = "value") -> bytes:
        try:
            raw = self._encode(value)
        except CodecError as err:
            raise CodecError(f"{what} {_show(value)}: {err.msg}", type=self.name) from None
        except BtfError as err:  # already names the field: "struct rate_cfg.rate: ..."
            raise CodecError(f"{what} {_show(value)}: {err}", type=self.name) from None
        except (ValueError, TypeError, OverflowError, struct.error) as err:
            raise CodecError(f"{what} {_show(value)} is not a valid {self.name}: {err}",
                             type=self.name) from None
        if len(raw) != self.size:
            raise CodecError(f"{what} {_show(value)} is {len(raw)} bytes as {self.name}, "
                             f"but the map's {what} size is {self.size} bytes", type=self.name)
        return raw

    def decode(self, raw: bytes) -> Any:
        return self._decode(bytes(raw[:self.size]))

    def sort_key(self, raw: bytes) -> Any:
        """Entries are listed in this order: numbers by value, addresses and bytes as bytes."""
        if self._sort_key is not None:
            return self._sort_key(raw)
        return bytes(raw)

    def __repr__(self) -> str:
        return f"Codec({self.name}, {self.size})"


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# --- the codecs -----------------------------------------------------------------------------------
def _to_int(value: Any) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        return int(value.strip().replace("_", ""), 0)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise CodecError(f"expected an integer, got {type(value).__name__}")


def int_codec(name: str) -> Codec:
    size, signed, order = INT_TYPES[name]
    low = -(1 << (8 * size - 1)) if signed else 0
    high = (1 << (8 * size - 1)) - 1 if signed else (1 << (8 * size)) - 1

    def encode(value: Any) -> bytes:
        number = _to_int(value)
        if not low <= number <= high:
            raise CodecError(f"{number} is out of range for {name} ({low}..{high})")
        return number.to_bytes(size, order, signed=signed)

    def decode(raw: bytes) -> int:
        return int.from_bytes(raw, order, signed=signed)

    return Codec(name, size, encode=encode, decode=decode, numeric=True, sort_key=decode)


def _ip_codec(name: str, version: int, size: int) -> Codec:
    cls = ipaddress.IPv4Address if version == 4 else ipaddress.IPv6Address

    def encode(value: Any) -> bytes:
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise CodecError(f"expected an IPv{version} address, got {type(value).__name__}")
        return cls(value.strip() if isinstance(value, str) else value).packed

    def decode(raw: bytes) -> str:
        return str(cls(raw))

    return Codec(name, size, encode=encode, decode=decode)


def _mac_encode(value: Any) -> bytes:
    if not isinstance(value, str) or not re.match(_MAC, value.strip()):
        raise CodecError("expected a MAC address like 02:00:00:00:00:01")
    return bytes.fromhex(re.sub(_HEX_SEPARATORS, "", value.strip()))


def _mac_decode(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


def parse_hex(value: Any) -> bytes:
    """``"0a000001"``, ``"0x0a000001"``, ``"0a 00 00 01"`` or ``"0a:00:00:01"`` -> bytes."""
    if not isinstance(value, str):
        raise CodecError(f"hex values are strings (quote them in YAML), got {type(value).__name__}")
    text = re.sub(_HEX_SEPARATORS, "", value.strip())
    if text[:2].lower() == "0x":
        text = text[2:]
    if len(text) % 2:
        raise CodecError("hex needs an even number of digits")
    return bytes.fromhex(text)


def hex_codec(size: int) -> Codec:
    return Codec("hex", size, encode=parse_hex, decode=lambda raw: raw.hex())


def btf_codec(btf: Btf, type_id: int, size: int) -> Codec:
    """A struct (or any BTF type) as a mapping by field name, arrays as lists."""
    name = f"btf:{btf.type_name(type_id)}"

    def encode(value: Any) -> bytes:
        return btf.encode(type_id, value)

    def decode(raw: bytes) -> Any:
        return btf.decode(type_id, raw)

    kind = btf.resolve(type_id).kind_name
    numeric = kind == "INT"
    return Codec(name, size, encode=encode, decode=decode, numeric=numeric,
                 is_struct=kind in ("STRUCT", "UNION"),
                 sort_key=(lambda raw: btf.decode(type_id, raw)) if numeric else None)


def make_codec(type_name: str, size: int, *, btf: Optional[Btf] = None, type_id: int = 0,
               what: str = "value") -> Codec:
    """The codec for ``type_name`` on a map whose key/value (``what``) is ``size`` bytes.

    Fixed-size types must match the size exactly; ``btf`` needs the map's BTF and type id.
    """
    if type_name in INT_TYPES:
        codec = int_codec(type_name)
    elif type_name == "ipv4":
        codec = _ip_codec("ipv4", 4, 4)
    elif type_name == "ipv6":
        codec = _ip_codec("ipv6", 6, 16)
    elif type_name == "mac":
        codec = Codec("mac", 6, encode=_mac_encode, decode=_mac_decode)
    elif type_name == "hex":
        return hex_codec(size)
    elif type_name == "btf":
        if btf is None or not type_id:
            raise CodecError(f"{what}_type btf needs a map that carries BTF for its {what}; "
                             f"this one has none: use one of {', '.join(TYPE_NAMES[:-1])}")
        btf_size = btf.sizeof(type_id)
        if btf_size != size:
            raise CodecError(f"the BTF {what} type {btf.type_name(type_id)} is {btf_size} bytes "
                             f"but the map's {what} size is {size} bytes")
        return btf_codec(btf, type_id, size)
    else:
        raise CodecError(f"unknown {what}_type {type_name!r}: use one of {', '.join(TYPE_NAMES)}")
    if codec.size != size:
        raise CodecError(f"{what}_type {type_name} is {codec.size} bytes but the map's {what} size is "
                         f"{size} bytes", **{f"{what}_size": size, f"{what}_type": type_name})
    return codec


# --- per-CPU values -----------------------------------------------------------------------------
def encode_percpu(value: Any, codec: Codec, ncpus: int, *, what: str = "value") -> bytes:
    """One slot per possible CPU (8-byte aligned): the same value everywhere, or a list per CPU."""
    slot = round_up8(codec.size)
    if isinstance(value, list):
        if len(value) != ncpus:
            raise CodecError(f"{what} {_show(value)} lists {len(value)} per-CPU values but this host "
                             f"has {ncpus} possible CPUs: give one value for all CPUs or one per CPU")
        values = value
    else:
        values = [value] * ncpus
    out = bytearray()
    for cpu, item in enumerate(values):
        raw = codec.encode(item, what=f"{what} (CPU {cpu})" if isinstance(value, list) else what)
        out += raw + bytes(slot - len(raw))
    return bytes(out)


def split_percpu(raw: bytes, size: int, ncpus: int) -> List[bytes]:
    slot = round_up8(size)
    return [bytes(raw[cpu * slot:cpu * slot + size]) for cpu in range(ncpus)]


def decode_percpu(raw: bytes, codec: Codec, ncpus: int) -> Tuple[list, Any]:
    """(the value of every CPU, their sum) — the sum is None when the values are not numbers."""
    values = [codec.decode(part) for part in split_percpu(raw, codec.size, ncpus)]
    return values, sum_values(values)


def sum_values(values: list) -> Any:
    """Add per-CPU values: integers, and mappings/lists of integers field by field."""
    if not values:
        return None
    first = values[0]
    if isinstance(first, bool):
        return None
    if isinstance(first, (int, float)):
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            return sum(values)
        return None
    if isinstance(first, dict):
        out = {}
        for field in first:
            total = sum_values([v.get(field) for v in values])
            if total is None:
                return None
            out[field] = total
        return out
    if isinstance(first, list):
        if any(not isinstance(v, list) or len(v) != len(first) for v in values):
            return None
        out_list = []
        for index in range(len(first)):
            total = sum_values([v[index] for v in values])
            if total is None:
                return None
            out_list.append(total)
        return out_list
    return None
