"""The host-side health verdict's pure parts: what is refused before the switch, a check that
cannot be judged on the host, and how the role reads the verdict the switch reported."""
from __future__ import annotations

import pytest

from ansible_collections.ebpf.deploy.plugins.filter.health import health_reported
from ansible_collections.ebpf.deploy.plugins.module_utils import _health
from ansible_collections.ebpf.deploy.plugins.module_utils._errors import InvalidInput


@pytest.mark.parametrize("health, timeout, message", [
    ({"checks": [{"type": "ebpfd_bogus"}]}, None, "unknown type 'ebpfd_bogus'"),
    ({"checks": ["attached"]}, None, "unknown type None"),
    ({"checks": [], "soak_seconds": -1}, None, "0 or more"),
    ({"checks": [], "soak_seconds": 30}, 30, "must be shorter than confirm_timeout (30 s)"),
    ({"checks": [], "deployments": [{"attach": []}]}, None, "deployments[0] needs a name"),
])
def test_what_the_host_cannot_judge_is_refused(health, timeout, message):
    with pytest.raises(InvalidInput) as err:
        _health.check_request(health, timeout)
    assert message in err.value.msg


def test_a_soak_inside_the_timeout_or_without_a_watcher_is_accepted():
    _health.check_request({"checks": [{"type": "attached"}], "soak_seconds": 10}, 300)
    _health.check_request({"checks": [{"type": "attached"}], "soak_seconds": 10}, 0)


def test_on_the_host_a_check_that_cannot_be_judged_fails_alone():
    checks = [{"type": "map", "map": "m", "query": "[0].value", "condition": "> `0` ]]"},
              {"type": "command", "cmd": ["true"]}]
    obs = {"maps": {"0": [{"key": 0, "value": 1}]}, "commands": {"1": {"rc": 0}}}
    with pytest.raises(InvalidInput):
        _health.evaluate(checks, obs)
    bad, good = _health.evaluate(checks, obs, errors_fail=True)
    assert not bad["passed"] and "invalid health query" in bad["detail"]
    assert good["passed"]


def test_the_role_reads_every_reported_verdict_and_fails_without_one():
    switch = {"results": [{"item": {"name": "a"}, "changed": True},
                          {"item": {"name": "b"}, "health": {"passed": False, "checks": [
                              {"index": 0, "type": "attached", "name": "attached", "passed": True, "detail": "ok"},
                              {"index": 1, "type": "dmesg", "name": "dmesg", "passed": False, "detail": "2 lines"}]}}]}
    assert [c["passed"] for c in health_reported(switch)] == [True, False]
    for silent in ({"results": [{"item": {"name": "a"}, "unreachable": True, "msg": "gone"}]}, {}, None):
        (only,) = health_reported(silent)
        assert not only["passed"] and "no health verdict" in only["detail"]
