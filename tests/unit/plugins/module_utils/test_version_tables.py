"""_version_tables: which lost per-version table pins can be pinned again, and what is said."""
from __future__ import annotations

import struct
from pathlib import Path

import pytest

from ansible_collections.ebpf.deploy.plugins.module_utils import _version_tables as vt
from ansible_collections.ebpf.deploy.plugins.module_utils._errors import InvalidInput
from ansible_collections.ebpf.deploy.plugins.module_utils._objects import MapSpec
from ansible_collections.ebpf.deploy.plugins.module_utils._uapi import MAP_TYPES


class FakeDeployment:
    def __init__(self, path: Path):
        self.path = path

    def version_map_pin(self, version: str, name: str) -> Path:
        return self.path / version / "maps" / name


def live(name: str, map_id: int, type_name: str) -> tuple:
    return map_id, MapSpec(name=name, type=MAP_TYPES[type_name], type_name=type_name, key_size=4,
                           value_size=4, max_entries=1)


def test_a_pinned_table_is_not_lost(tmp_path):
    dep = FakeDeployment(tmp_path)
    dep.version_map_pin("v1", "jmp_table").parent.mkdir(parents=True)
    dep.version_map_pin("v1", "jmp_table").touch()
    assert vt.find_lost(dep, "v1", {"jmp_table": {"0": "callee"}}, {}, deployment="d") == []


def test_a_lost_prog_array_comes_back_with_its_recorded_slots_and_a_map_of_maps_as_it_is(tmp_path):
    dep = FakeDeployment(tmp_path)
    found = vt.find_lost(dep, "v1", {"jmp_table": {"0": "callee"}, "outer": {}},
                         {"jmp_table": live("jmp_table", 7, "prog_array"), "outer": live("outer", 8, "array_of_maps")},
                         deployment="d")
    assert found == [vt.LostTable("jmp_table", 7, MAP_TYPES["prog_array"], {"0": "callee"}),
                     vt.LostTable("outer", 8, MAP_TYPES["array_of_maps"], {})]
    lines = vt.describe(dep, "v1", found)
    assert lines[0] == (f"{tmp_path}/v1/maps/jmp_table pinned again (map id 7, held by version v1's programs; "
                        "slots 0 \u2192 callee written again)")
    assert lines[1] == f"{tmp_path}/v1/maps/outer pinned again (map id 8, held by version v1's programs)"


@pytest.mark.parametrize("recorded, held, words", [
    ({"jmp_table": {"0": "callee"}}, {}, "no program of the version holds it"),
    ({"jmp_table": {"0": "callee"}}, {"jmp_table": live("jmp_table", 7, "array")}, "no program of the version"),
    ({"jmp_table": None}, {"jmp_table": live("jmp_table", 7, "prog_array")}, "slots were not recorded"),
])
def test_a_table_that_cannot_come_back_as_it_ran_is_refused_in_one_line(tmp_path, recorded, held, words):
    with pytest.raises(InvalidInput, match=words) as caught:
        vt.find_lost(FakeDeployment(tmp_path), "v1", recorded, held, deployment="d")
    assert "\n" not in caught.value.msg and "jmp_table" in caught.value.msg


def test_recorded_slots_name_the_programs_the_table_holds(monkeypatch):
    held = {0: 11, 2: 99}   # slot 2 holds a program of no name we know: not recorded
    monkeypatch.setattr(vt.libbpf, "map_lookup", lambda fd, key, size: (
        struct.pack("<I", held[struct.unpack("<I", key)[0]]) if struct.unpack("<I", key)[0] in held else None))
    assert vt.recorded_slots(3, 4, {11: "callee"}) == {"0": "callee"}
