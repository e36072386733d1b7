# -*- coding: utf-8 -*-
# Copyright: contributors to ebpf.deploy
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private to ebpf.deploy: what a BPF object *is*, as pure values (specs), and how to open one.

* ``check_bpf_elf(data)`` refuses a file that is not an ELF, an ELF of another machine, or a
  truncated one, in one line, in pure Python (the action plugin runs it on the controller).
* ``MapSpec``/``ProgramSpec``/``ObjectSpec`` are values read from the ELF by libbpf without
  loading; ``diff_map_spec`` compares a pinned map with the object's field by field and
  ``describe_map_conflict`` says it in one line ("map 'm': type array → hash, max_entries 1 → 4096").
* ``statically_initialised_maps`` names the maps whose slots the object itself fills at load
  (``.values = { [0] = &prog }``): relocations in ``.rel.maps`` into that map's variable;
  ``is_per_version_map`` says which of them are one per version (a PROG_ARRAY, a map of maps).
* ``read_source`` reads the object on the host (inline ``content`` or the file ``src``).
* ``compute_version`` is the deployment version: 12 hex chars of sha256 over the object bytes and
  the canonical JSON of the options that change what gets loaded.

No Ansible here. libbpf is imported lazily (only ``open_object`` needs it).
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
from dataclasses import asdict, dataclass
from typing import Dict, List, Optional, Tuple

from ansible_collections.ebpf.deploy.plugins.module_utils import _elf as elf
from ansible_collections.ebpf.deploy.plugins.module_utils._errors import InvalidInput
from ansible_collections.ebpf.deploy.plugins.module_utils._uapi import MAP_TYPES

VERSION_LEN = 12

# Map fields compared against a pinned map, in the order they are reported.
MAP_SPEC_FIELDS = ("type", "key_size", "value_size", "max_entries", "map_flags")


# --------------------------------------------------------------------------- ELF checks (pure)
def check_bpf_elf(data: bytes, *, source: str = "object") -> None:
    """Raise InvalidInput (one line) unless ``data`` is a complete ELF relocatable for BPF."""
    if len(data) < 16 or data[:4] != elf.ELF_MAGIC:
        head = data[:8].hex(" ") if data else "empty"
        raise InvalidInput(f"{source} is not an ELF file (first bytes: {head}); "
                           "expected a BPF object built with clang -target bpf")
    if data[4] not in (1, 2) or data[5] not in (1, 2):
        raise InvalidInput(f"{source} has an invalid ELF class/byte order ({data[4]}/{data[5]})")
    try:
        header = elf.read_header(data)
    except elf.ElfError as exc:
        raise InvalidInput(str(exc)) from None
    if header.e_machine != elf.EM_BPF:
        machine = elf.MACHINES.get(header.e_machine, "unknown")
        raise InvalidInput(f"{source} is an ELF for {machine} (e_machine {header.e_machine}), not a BPF "
                           f"object (e_machine {elf.EM_BPF}); build it with clang -target bpf")
    if header.e_type != elf.ET_REL:
        raise InvalidInput(f"{source} is a BPF ELF of type {elf.ELF_TYPES.get(header.e_type, header.e_type)}, "
                           "not a relocatable object (ET_REL) as clang -c produces")
    is64, shentsize, shnum = header.is64, header.shentsize, header.shnum
    header_size = elf.SHDR_SIZE_64 if is64 else elf.SHDR_SIZE_32
    if shnum and shentsize < header_size:
        raise InvalidInput(f"malformed object: {source} declares {shentsize}-byte section headers "
                           f"(e_shentsize), but an ELF{64 if is64 else 32} section header is "
                           f"{header_size} bytes")
    table_end = header.shoff + shentsize * shnum
    if shnum == 0 or table_end > len(data):
        raise InvalidInput(f"truncated object: {source} has {len(data)} bytes but its section "
                           f"header table ends at byte {table_end}")
    for index, sh in enumerate(elf.section_headers(data, header)):
        if sh.type != elf.SHT_NOBITS and sh.offset + sh.size > len(data):
            raise InvalidInput(f"truncated object: {source} section {index} ends at byte "
                               f"{sh.offset + sh.size}, past the end of the file ({len(data)} bytes)")


def elf_sections(data: bytes) -> Dict[str, bytes]:
    """Section name -> contents of a checked ELF (NOBITS sections are empty)."""
    return {section.name: section.data for section in elf.read_sections(data)}


def statically_initialised_maps(data: bytes) -> frozenset:
    """Names of the maps declared with initial slots (``.values = { [0] = &prog }``): libbpf writes
    those slots into the map at load, so whatever map the object loads into changes then.
    Clang leaves one relocation in ``.rel.maps`` per initialised slot, at a byte offset inside the
    map's variable in ``.maps``. (An ELF32 or symbol-less object has none.)"""
    header = elf.read_header(data)
    if not header.is64:
        return frozenset()
    sections = elf.read_sections(data, header)
    maps = next((s for s in sections if s.name == ".maps"), None)
    if maps is None:
        return frozenset()
    symbols = elf.read_symbols(sections, header)
    offsets = elf.read_relocations(sections, symbols, header).get(maps.index, {})
    return frozenset(sym.name for sym in symbols
                     if sym.shndx == maps.index and sym.name and sym.size
                     and any(sym.value <= off < sym.value + sym.size for off in offsets))


# The map types whose slots libbpf fills from ``.values``: a PROG_ARRAY after the programs load
# (into a reused map as well), a map of maps when libbpf creates it (a reused one keeps its slots,
# so the object's own inner maps would silently not be there). Either way the slots belong to the
# object: such a map is one per version, never the deployment's shared pin.
SLOT_INITIALISED_TYPES = frozenset({MAP_TYPES["prog_array"], MAP_TYPES["array_of_maps"],
                                    MAP_TYPES["hash_of_maps"]})


def is_per_version_map(name: str, map_type: int, initialised: frozenset) -> bool:
    """A map whose slots the object declares (``.values``) and libbpf writes at load: its own per
    version (``initialised``: ``statically_initialised_maps`` of the object)."""
    return name in initialised and map_type in SLOT_INITIALISED_TYPES


def object_license(data: bytes) -> Optional[str]:
    """The ``license`` section's string (``GPL``), or None when the object has none."""
    raw = elf_sections(data).get("license")
    if raw is None:
        return None
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")


# --------------------------------------------------------------------------- digests and version
def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def canonical_json(value) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def compute_version(data: bytes, options: dict) -> str:
    """12 hex chars of sha256(object bytes + canonical JSON of the load-affecting options)."""
    digest = hashlib.sha256(data)
    digest.update(canonical_json(options).encode())
    return digest.hexdigest()[:VERSION_LEN]


def encode_content(data: bytes) -> str:
    """An object as the action plugins send it inline in the module arguments."""
    return base64.b64encode(data).decode("ascii")


def decode_content(content: str, *, source: str = "object") -> bytes:
    try:
        return base64.b64decode(content, validate=True)
    except (ValueError, TypeError):
        raise InvalidInput(f"content of {source} is not base64") from None


def read_source(src: Optional[str], content: Optional[str], *, label: str) -> bytes:
    """The object's bytes on the host: ``content`` (base64, sent inline by the action plugin) when
    given, else the file ``src``. Refused in one line: a missing file, a directory, or anything
    that is not a regular file (a FIFO or a device would block, holding the deployment lock, or
    never end)."""
    if content is not None:
        return decode_content(content, source=label)
    try:
        if not stat.S_ISREG(os.stat(src).st_mode) and not os.path.isdir(src):
            raise InvalidInput(f"src {src} is not a regular file, not a BPF object")
        with open(src, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        raise InvalidInput(f"src {src} does not exist on the host") from None
    except IsADirectoryError:
        raise InvalidInput(f"src {src} is a directory, not a BPF object") from None
    except OSError as exc:
        raise InvalidInput(f"cannot read src {src}: {exc.strerror}") from None


def parse_checksum(checksum: str) -> Tuple[str, str]:
    """``sha256:<hex>`` (or bare hex) -> (algorithm, lowercase hex); only sha256 is accepted."""
    algo, _sep, value = checksum.strip().rpartition(":")
    algo = (algo or "sha256").lower()
    value = value.lower()
    if algo != "sha256" or len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise InvalidInput(f"checksum must be 'sha256:<64 hex digits>', got {checksum!r}")
    return algo, value


def verify_checksum(data: bytes, checksum: Optional[str], *, source: str = "object") -> str:
    """Return the sha256 of ``data``; raise InvalidInput when it differs from ``checksum``."""
    actual = sha256_hex(data)
    if checksum:
        _algo, expected = parse_checksum(checksum)
        if actual != expected:
            raise InvalidInput(f"checksum mismatch for {source}: expected sha256:{expected}, "
                               f"got sha256:{actual}")
    return actual


# --------------------------------------------------------------------------- specs (pure values)
@dataclass(frozen=True)
class MapSpec:
    """A map as declared in an object (or as the kernel reports a pinned one)."""
    name: str
    type: int
    type_name: str
    key_size: int
    value_size: int
    max_entries: int
    map_flags: int = 0
    internal: bool = False
    # a PROG_ARRAY or map of maps whose slots the object fills at load: one per version
    # (is_per_version_map; see _program.plan_map)
    per_version: bool = False

    def as_dict(self) -> dict:
        return {"name": self.name, "type": self.type_name, "key_size": self.key_size,
                "value_size": self.value_size, "max_entries": self.max_entries,
                "map_flags": self.map_flags}


@dataclass(frozen=True)
class ProgramSpec:
    """A program as declared in an object: name, ELF section and the type libbpf derives."""
    name: str
    section: str
    type: int
    type_name: str
    expected_attach_type: int
    insn_cnt: int

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ObjectSpec:
    """Everything read from an object without loading it."""
    digest: str
    size: int
    license: Optional[str]
    programs: Tuple[ProgramSpec, ...]
    maps: Tuple[MapSpec, ...]

    def program(self, name: str) -> Optional[ProgramSpec]:
        return next((p for p in self.programs if p.name == name), None)

    def map(self, name: str) -> Optional[MapSpec]:
        return next((m for m in self.maps if m.name == name), None)

    @property
    def program_names(self) -> List[str]:
        return [p.name for p in self.programs]


def _flags_text(value: int) -> str:
    return hex(value) if value else "0"


def diff_map_spec(pinned: MapSpec, wanted: MapSpec) -> List[Tuple[str, str, str]]:
    """Fields that differ: [(field, pinned value, wanted value)] as display text.

    A PERF_EVENT_ARRAY declared with max_entries 0 gets one slot per CPU from libbpf, so its
    max_entries is not compared.
    """
    changes = []
    for name in MAP_SPEC_FIELDS:
        if name == "type":
            if pinned.type != wanted.type:
                changes.append(("type", pinned.type_name, wanted.type_name))
            continue
        before, after = getattr(pinned, name), getattr(wanted, name)
        if name == "max_entries" and wanted.type == MAP_TYPES["perf_event_array"] and after == 0:
            continue
        if before != after:
            if name == "map_flags":
                changes.append((name, _flags_text(before), _flags_text(after)))
            else:
                changes.append((name, str(before), str(after)))
    return changes


def describe_map_conflict(name: str, changes: List[Tuple[str, str, str]]) -> str:
    """``map 'pkt_count': type array → hash, max_entries 1 → 4096``"""
    parts = ", ".join(f"{field} {before} \u2192 {after}" for field, before, after in changes)
    return f"map '{name}': {parts}"


# --------------------------------------------------------------------------- libbpf-backed
def open_object(data: bytes, *, name: str = "object", source: Optional[str] = None):
    """Check the ELF, open it with libbpf without loading; returns (BpfObject, ObjectSpec).

    The caller owns the BpfObject (close it). Refusals are InvalidInput in one line.
    """
    from ansible_collections.ebpf.deploy.plugins.module_utils import _libbpf

    label = source or name
    check_bpf_elf(data, source=label)
    try:
        obj = _libbpf.BpfObject.open(data, name=name)
    except _libbpf.ObjectOpenError as exc:
        raise InvalidInput(f"libbpf cannot open {label}: {exc.reason}",
                           libbpf_messages=exc.messages) from None
    try:
        initialised = statically_initialised_maps(data)
        for bpf_map in obj.maps():
            # libbpf pins a map declared __uint(pinning, LIBBPF_PIN_BY_NAME) by itself at load, at
            # /sys/fs/bpf/<map>: outside the deployment, in check mode and in a dry load as well,
            # and shared with whatever else has that name. The collection pins every map of a
            # deployment itself, under <deployment>/maps, and only when the run may change the host.
            bpf_map.set_pin_path(None)
        programs = tuple(
            ProgramSpec(name=p.name, section=p.section, type=p.type, type_name=p.type_name,
                        expected_attach_type=p.expected_attach_type, insn_cnt=p.insn_cnt)
            for p in obj.programs())
        maps = tuple(
            MapSpec(name=m.name, type=m.type, type_name=m.type_name, key_size=m.key_size,
                    value_size=m.value_size, max_entries=m.max_entries, map_flags=m.map_flags,
                    internal=m.is_internal,
                    per_version=is_per_version_map(m.name, m.type, initialised))
            for m in obj.maps())
    except Exception:
        obj.close()
        raise
    spec = ObjectSpec(digest=sha256_hex(data), size=len(data), license=object_license(data),
                      programs=programs, maps=maps)
    return obj, spec


def map_spec_from_info(info) -> MapSpec:
    """A MapSpec from a _libbpf.MapInfo (the kernel's view of a pinned map)."""
    return MapSpec(name=info.name, type=info.type, type_name=info.type_name, key_size=info.key_size,
                   value_size=info.value_size, max_entries=info.max_entries, map_flags=info.map_flags)
