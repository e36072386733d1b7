"""Health evaluation filters: the rollout's checks judged on the controller, from observations a
playbook registered (the role itself has the switch's run judge them on the host).

The logic is plugins/module_utils/_health.py, shared with bpf_deployment's ``health`` option; these
filters only turn its errors into filter errors.
"""
from __future__ import annotations

import functools
from typing import Any

from ansible.errors import AnsibleFilterError

from ansible_collections.ebpf.deploy.plugins.module_utils import _health
from ansible_collections.ebpf.deploy.plugins.module_utils._errors import InvalidInput


def _filter_errors(func):
    @functools.wraps(func)
    def wrapped(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except InvalidInput as err:
            raise AnsibleFilterError(err.msg) from None
    return wrapped


jmespath_condition = _filter_errors(_health.jmespath_condition)
health_evaluate = _filter_errors(_health.evaluate)
health_observations = _filter_errors(_health.observations)


def health_reported(switch: Any) -> list:
    """The check results the switch's bpf_deployment runs reported (``health``), one list; a stage
    whose run reported none (the host stopped answering, the run failed) gets one failed check."""
    reported = [r["health"] for r in (switch or {}).get("results", [])
                if isinstance(r, dict) and isinstance(r.get("health"), dict) and "checks" in r["health"]]
    if not reported:
        return [{"index": None, "type": "health", "name": "health", "passed": False,
                 "detail": "the switch reported no health verdict (the run failed or the host did not answer)"}]
    return [check for verdict in reported for check in verdict["checks"]]


class FilterModule:
    """Health evaluation filters for ebpf.deploy.rollout."""

    def filters(self) -> dict:
        return {
            "health_evaluate": health_evaluate,
            "health_observations": health_observations,
            "health_reported": health_reported,
            "jmespath_condition": jmespath_condition,
        }
