# -*- coding: utf-8 -*-
# Copyright: contributors to ebpf.deploy
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private to ebpf.deploy: a version's own tables (``_objects.is_per_version_map``: a statically
initialised PROG_ARRAY or map of maps, pinned at ``<deployment>/<version>/maps/<map>``), and
pinning one again when its pin was removed by hand.

The version's programs still hold such a table, so it is found by their map ids. A map of maps
keeps its slots without a pin; a PROG_ARRAY does not: the kernel empties it when the last file
(pin or descriptor) goes, to break the program → table → program cycle. Its slots are therefore
recorded at load (``recorded_slots``, in the version's metadata as ``per_version_maps``) and written
again from the version's pinned programs when it is pinned again.

No Ansible here.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Dict, List, Optional

from ansible_collections.ebpf.deploy.plugins.module_utils import _libbpf as libbpf
from ansible_collections.ebpf.deploy.plugins.module_utils._errors import InvalidInput
from ansible_collections.ebpf.deploy.plugins.module_utils._objects import SLOT_INITIALISED_TYPES
from ansible_collections.ebpf.deploy.plugins.module_utils._uapi import MAP_TYPES

PROG_ARRAY = MAP_TYPES["prog_array"]


def recorded_slots(table_fd: int, max_entries: int, programs: Dict[int, str]) -> Dict[str, str]:
    """A loaded PROG_ARRAY's slots as the version's metadata keeps them: {slot: program name}
    (``programs``: program id -> name of the object's loaded programs)."""
    slots = {}
    for slot in range(max_entries):
        value = libbpf.map_lookup(table_fd, struct.pack("<I", slot), 4)
        prog_id = struct.unpack("<I", value)[0] if value is not None else None   # None: an empty slot
        if prog_id in programs:
            slots[str(slot)] = programs[prog_id]
    return slots


@dataclass(frozen=True)
class LostTable:
    """A version's own table whose pin is gone, and the live table its programs hold."""
    name: str
    map_id: int
    map_type: int
    slots: Dict[str, str]       # PROG_ARRAY: {slot: program} to write again; {} for a map of maps


def find_lost(dep, version: str, recorded: Dict[str, Optional[Dict[str, str]]],
              live: Dict[str, tuple], *, deployment: str) -> List[LostTable]:
    """The tables of ``recorded`` ({name: slots, None when not recorded}) whose pin under the
    version is gone; ``live``: the maps the version's programs hold, by kernel name ({name: (id,
    MapSpec)}). Refused in one line, before anything changes, when one cannot be pinned again as
    it ran."""
    lost = []
    for name, slots in sorted(recorded.items()):
        pin = dep.version_map_pin(version, name)
        if pin.exists() or pin.is_symlink():
            continue
        held = live.get(name[:libbpf.BPF_OBJ_NAME_LEN - 1])
        if held is None or held[1].type not in SLOT_INITIALISED_TYPES:
            raise InvalidInput(f"version {version} of deployment '{deployment}' lost its own table '{name}' "
                               f"({pin} is gone) and no program of the version holds it any more; "
                               "deploy the version again from src", map=name, version=version)
        if held[1].type == PROG_ARRAY and slots is None:
            raise InvalidInput(f"version {version} of deployment '{deployment}' lost its own table '{name}' "
                               f"({pin} is gone): the kernel emptied that PROG_ARRAY with its last pin, and "
                               "the version's slots were not recorded at its load; deploy the version again "
                               "from src", map=name, version=version)
        lost.append(LostTable(name, held[0], held[1].type, dict(slots or {}) if held[1].type == PROG_ARRAY else {}))
    return lost


def pin_again(dep, version: str, lost: List[LostTable]) -> None:
    """Pin each lost table again, and write a PROG_ARRAY's slots from the version's pinned programs."""
    if lost:
        (dep.version_dir(version) / "maps").mkdir(exist_ok=True)
    for table in lost:
        with libbpf.closing_fd(libbpf.map_fd_by_id(table.map_id)) as fd:
            libbpf.obj_pin(fd, str(dep.version_map_pin(version, table.name)))
            for slot, program in sorted(table.slots.items(), key=lambda item: int(item[0])):
                with libbpf.closing_fd(libbpf.obj_get(str(dep.progs_dir(version) / program))) as prog_fd:
                    libbpf.map_update(fd, struct.pack("<I", int(slot)), struct.pack("<I", prog_fd))


def describe(dep, version: str, lost: List[LostTable]) -> List[str]:
    """One diff line per lost table: ``<pin> pinned again (map id 7 …; slots 0 → callee written again)``."""
    lines = []
    for table in lost:
        slots = ", ".join(f"{slot} \u2192 {program}" for slot, program in sorted(table.slots.items()))
        written = f"; slots {slots} written again" if slots else ""
        lines.append(f"{dep.version_map_pin(version, table.name)} pinned again (map id {table.map_id}, held by "
                     f"version {version}'s programs{written})")
    return lines
