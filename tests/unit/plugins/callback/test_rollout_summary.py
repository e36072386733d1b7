"""What the rollout summary says the host's record holds, from the role's status and the switch."""
from __future__ import annotations

import pytest

from ansible_collections.ebpf.deploy.plugins.callback.rollout_summary import record_state

SWITCHED = {"name": "pktcount", "before": "aaaa", "after": "bbbb", "changed": True, "pending": True,
            "deadline": 1764590400.0}


@pytest.mark.parametrize("status, expected", [
    ("committed", "committed"), ("unchanged", "committed"), ("rolled_back", "committed"),
    ("refused", "committed"), ("self_reverted", "self-reverted")])
def test_settled_hosts_show_what_their_record_holds(status, expected):
    assert record_state({"status": status, "versions": [SWITCHED]}) == expected


@pytest.mark.parametrize("status", ["halted", "unreachable"])
def test_an_unsettled_switch_shows_pending_until_its_earliest_deadline(status):
    later = dict(SWITCHED, name="other", deadline=SWITCHED["deadline"] + 60)
    assert record_state({"status": status, "versions": [later, SWITCHED]}) == "pending until 12:00:00 UTC"


def test_pending_without_a_watcher_and_unknown_states_say_so():
    assert record_state({"status": "halted", "versions": [dict(SWITCHED, deadline=None)]}) == "pending (no watcher)"
    assert record_state({"status": "unreachable", "versions": []}) == "-"
    assert record_state({"status": "failed"}) == "-"
