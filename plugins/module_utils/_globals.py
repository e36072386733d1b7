# -*- coding: utf-8 -*-
# Copyright: contributors to ebpf.deploy
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private to ebpf.deploy: load-time globals, ``globals: {name: value}`` as bytes of the object's
data sections, checked and encoded before anything is loaded.

libbpf turns each data section of an object (``.rodata``, ``.data``, ``.bss``, and the custom
``.rodata.*``/``.data.*``) into an internal map whose initial value is the section's bytes; what
that value holds at load is what the program's ``const volatile`` and other globals read. The
object's BTF has one DATASEC per section, listing each variable with its byte offset and size
(the BTF libbpf holds after open: clang leaves the offsets 0 in the ELF).

* ``variables(btf)`` every variable of every DATASEC (``GlobalVar``);
* ``resolve(btf, wanted, sections=...)`` refuses an unknown name (saying which globals exist), a
  variable in a section the object has no map for, an extern, a wrong type or an out-of-range
  value (the BTF value codec the map entries use), all in one line; otherwise returns the values
  as the codec reads them back (``"0x35"`` -> 53: what the version digest and the record keep)
  and the bytes to write per section;
* ``resolve_in(obj, wanted)`` the same against an object libbpf opened (its BTF and its maps);
* ``patched(initial, writes)`` a section's bytes with those writes.

Pure Python, no Ansible and no kernel access (``_libbpf`` reads and writes the initial values).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional, Tuple

from ansible_collections.ebpf.deploy.plugins.module_utils._btf import Btf, BtfError
from ansible_collections.ebpf.deploy.plugins.module_utils._errors import InvalidInput

DATA_SECTIONS = (".rodata", ".data", ".bss")
BTF_VAR_EXTERN = 2


def is_data_section(name: str) -> bool:
    """A section whose variables libbpf keeps in an internal map that globals may set."""
    return name in DATA_SECTIONS or name.startswith((".rodata.", ".data."))


@dataclass(frozen=True)
class GlobalVar:
    """One variable of a DATASEC: where it lives and its BTF type."""
    name: str
    section: str
    offset: int
    size: int
    type_id: int        # the VAR's type (qualifiers included: const volatile __u16)
    extern: bool = False


@dataclass
class Writes:
    """What ``resolve`` decided: the values by name and the bytes to write into each section."""
    values: Dict[str, Any] = field(default_factory=dict)
    sections: Dict[str, List[Tuple[int, bytes]]] = field(default_factory=dict)


def variables(btf: Btf) -> Dict[str, GlobalVar]:
    """Every variable of every DATASEC of ``btf``, by name (the first when a name repeats)."""
    out: Dict[str, GlobalVar] = {}
    for section in btf.types.values():
        if section.kind_name != "DATASEC":
            continue
        for entry in section.section_vars:
            var = btf.get(entry.type_id)
            if var.kind_name != "VAR" or var.name in out:
                continue
            out[var.name] = GlobalVar(var.name, section.name, entry.offset, entry.size, var.size_or_type,
                                      extern=var.linkage == BTF_VAR_EXTERN)
    return out


def settable(found: Dict[str, GlobalVar], sections: Iterable[str]) -> List[str]:
    """The names ``globals`` may set: in a data section the object has a map for, not an extern."""
    have = set(sections)
    return sorted(name for name, var in found.items()
                  if is_data_section(var.section) and var.section in have and not var.extern)


def resolve(btf: Optional[Btf], wanted: Dict[str, Any], *, sections: Iterable[str],
            label: str = "object") -> Writes:
    """Check and encode ``wanted`` against the object's BTF; ``sections`` are the data sections
    the object has an internal map for. Raises InvalidInput (one line) naming the global."""
    writes = Writes()
    if not wanted:
        return writes
    if btf is None:
        raise InvalidInput(f"globals: {label} carries no BTF, so its globals cannot be found "
                           "(build it with clang -g)")
    sections = list(sections)
    found = variables(btf)
    known = settable(found, sections)
    for name in sorted(wanted):
        var = found.get(name)
        if var is not None and var.extern:
            raise InvalidInput(f"globals: {name} is an extern in {var.section}, which libbpf fills in "
                               "itself at load", globals_known=known)
        if var is None or not is_data_section(var.section):   # a map or the license is no global
            raise InvalidInput(f"globals: {label} has no global {name!r} (its globals: "
                               f"{', '.join(known) or 'none'})", globals_known=known)
        if var.section not in sections:
            raise InvalidInput(f"globals: {name} is in section {var.section}, which {label} has no map "
                               f"for (its data sections: {', '.join(sorted(sections)) or 'none'})",
                               globals_known=known)
        raw = _encode(btf, var, wanted[name])
        writes.values[name] = btf.decode(var.type_id, raw)
        writes.sections.setdefault(var.section, []).append((var.offset, raw))
    return writes


def _encode(btf: Btf, var: GlobalVar, value: Any) -> bytes:
    try:
        raw = btf.encode(var.type_id, value, path=f"globals.{var.name}")
    except BtfError as err:   # already names the global and the field: "globals.limits.ttl_min: ..."
        raise InvalidInput(f"{err} ({btf.type_name(var.type_id)} in {var.section})", **{"global": var.name}) from None
    if len(raw) != var.size:
        raise InvalidInput(f"globals.{var.name}: its type is {len(raw)} bytes but {var.section} gives it "
                           f"{var.size}", **{"global": var.name})
    return raw


def data_sections(btf: Btf) -> List[str]:
    """The data sections ``btf`` has a DATASEC for."""
    return sorted(t.name for t in btf.types.values() if t.kind_name == "DATASEC" and is_data_section(t.name))


def resolve_in(obj, wanted: Dict[str, Any], *, label: str = "object") -> Writes:
    """``resolve`` against an object opened with libbpf (``_libbpf.BpfObject``): its BTF as libbpf
    holds it after open, and the data sections it made a map of."""
    raw = obj.btf_raw()
    try:
        btf = Btf(raw) if raw else None
    except BtfError as err:
        raise InvalidInput(f"globals: the BTF of {label} cannot be read: {err}") from None
    sections = [name for name in data_sections(btf) if obj.section_map(name) is not None] if btf else []
    return resolve(btf, wanted, sections=sections, label=label)


def patched(initial: bytes, writes: List[Tuple[int, bytes]]) -> bytes:
    """``initial`` with each (offset, bytes) of ``writes`` in place."""
    buf = bytearray(initial)
    for offset, raw in writes:
        if offset + len(raw) > len(buf):
            raise InvalidInput(f"globals: a write at byte {offset} of {len(raw)} bytes runs past the "
                               f"section's {len(buf)} bytes")
        buf[offset:offset + len(raw)] = raw
    return bytes(buf)
