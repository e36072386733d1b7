"""bpf_map's --diff rendering without a kernel: keyed by map key, per-CPU as the sum, PROG_ARRAY
slots by program, long sides cut with "N more"."""
from __future__ import annotations

from ansible_collections.ebpf.deploy.plugins.module_utils import _map_diff as d


def e(key, value) -> dict:
    return {"key": key, "value": value}


def test_a_change_is_one_key_on_both_sides_adds_and_removes_on_theirs():
    diff = d.entries_diff(removed=[e("10.0.0.9", 3)], changed=[(e("10.0.0.1", 20), e("10.0.0.1", 0))],
                          added=[e("10.0.0.2", 0)])
    assert diff == {"before": {"entries": {"10.0.0.1": 20, "10.0.0.9": 3}},
                    "after": {"entries": {"10.0.0.1": 0, "10.0.0.2": 0}}}


def test_nothing_planned_is_two_empty_sides():
    assert d.entries_diff(removed=[], changed=[], added=[]) == {"before": {"entries": {}}, "after": {"entries": {}}}


def test_keys_are_text_structs_compact_json():
    assert d.key_label(7) == "7"
    assert d.key_label({"port": 80, "addr": "10.0.0.1"}) == '{"addr":"10.0.0.1","port":80}'
    assert d.key_label([1, 2]) == "[1,2]"
    diff = d.entries_diff(removed=[], changed=[], added=[e({"b": 2, "a": 1}, {"rate": 5})])
    assert diff["after"]["entries"] == {'{"a":1,"b":2}': {"rate": 5}}


def test_per_cpu_values_are_shown_as_their_sum_or_the_list_without_one():
    summed = {"key": 1, "value": 6, "per_cpu": [1, 2, 3], "sum": 6}
    unsummable = {"key": 2, "value": [{"a": 1}, {"a": 2}], "per_cpu": [{"a": 1}, {"a": 2}], "sum": None}
    assert d.shown_value(summed) == 6
    assert d.shown_value(unsummable) == [{"a": 1}, {"a": 2}]
    diff = d.entries_diff(removed=[], changed=[({"key": 1, "value": 3, "per_cpu": [1, 1, 1], "sum": 3}, summed)],
                          added=[])
    assert diff == {"before": {"entries": {"1": 3}}, "after": {"entries": {"1": 6}}}


def test_prog_array_slots_name_the_program_and_its_id():
    assert d.shown_value({"key": 0, "value": 42, "program": "xdp_stage"}) == "xdp_stage (id 42)"
    assert d.shown_value({"key": 0, "value": 42, "program": None}) == "unknown program (id 42)"


def test_a_long_purge_is_cut_at_the_limit_and_counted():
    removed = [e(n, n) for n in range(d.DIFF_LIMIT + 35)]
    diff = d.entries_diff(removed=removed, changed=[], added=[])
    assert list(diff["before"]["entries"]) == [str(n) for n in range(d.DIFF_LIMIT)]
    assert diff["before"]["more"] == "35 more"
    assert diff["after"] == {"entries": {}}


def test_exactly_the_limit_is_not_cut():
    diff = d.entries_diff(removed=[], changed=[], added=[e(n, 0) for n in range(d.DIFF_LIMIT)])
    assert len(diff["after"]["entries"]) == d.DIFF_LIMIT and "more" not in diff["after"]


def test_the_cut_keeps_both_halves_of_every_change():
    changed = [(e(n, 1), e(n, 2)) for n in (100, 101)]
    removed = [e(n, n) for n in range(30)]
    diff = d.entries_diff(removed=removed, changed=changed, added=[], limit=5)
    assert {"100", "101"} <= set(diff["before"]["entries"]) and set(diff["after"]["entries"]) == {"100", "101"}
    assert diff["before"]["more"] == "27 more"
