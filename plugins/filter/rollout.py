"""Order of a canary rollout: hosts of the `canary` group first, then by `rollout_wave`."""
from __future__ import annotations

from typing import Any, Mapping


def rollout_order(hosts: list, hostvars: Mapping[str, Any], canary_group: str = "canary") -> list:
    """The hosts, canary group first, then by their `rollout_wave` (lowest first, none last),
    keeping inventory order within a wave (a stable sort)."""
    def key(host: str) -> tuple:
        host_vars = hostvars[host]
        if canary_group in (host_vars.get("group_names") or []):
            return (0, 0)
        wave = host_vars.get("rollout_wave")
        return (1, int(wave)) if wave is not None else (2, 0)
    return sorted(hosts, key=key)


class FilterModule:
    """Canary ordering for playbooks/canary.yml."""

    def filters(self) -> dict:
        return {"rollout_order": rollout_order}
