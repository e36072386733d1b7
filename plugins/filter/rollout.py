"""Canary rollout helpers: the order of the hosts (the `canary` group first, then by `rollout_wave`),
the hosts that already run the wanted state, and the versions a switch moved between."""
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


def rollout_versions(results: list) -> list:
    """Per deployment, from the bpf_deployment results of the switch: the version before and after,
    whether the switch is pending in the host's record (what the commit confirms and a rollback
    gives back) and until when (its confirm deadline, epoch seconds, None without a watcher), and
    whether anything changed."""
    out = []
    for result in results:
        # a run that failed undid itself; a host lost in the run (unreachable) reported nothing
        if result.get("skipped") or result.get("failed") or result.get("unreachable"):
            continue
        switched = result.get("action", "none") != "none"
        pending = ((result.get("record") or {}).get("pending") or {}) if result.get("pending") else {}
        out.append({"name": (result.get("item") or {}).get("name"),
                    "before": result.get("previous_version") if switched else result.get("version"),
                    "after": result.get("version"), "changed": switched or bool(result.get("pending")),
                    "pending": bool(result.get("pending")), "deadline": pending.get("deadline"),
                    "converged": bool(result.get("changed"))})
    return out


def rollout_converged(hosts: list, hostvars: Mapping[str, Any]) -> list:
    """The hosts whose check-mode bpf_deployment runs (``__rollout_converged_check``) all ran and
    would change nothing: they already run the wanted state."""
    def converged(host: str) -> bool:
        check = hostvars[host].get("__rollout_converged_check") or {}
        results = check.get("results") or []
        # `action` is in every answer of the module that ran to the end; the task has
        # failed_when: false, so a refusal shows only as a result without it
        return bool(results) and all(
            r.get("action") == "none" and not r.get("changed") and not r.get("failed") and not r.get("unreachable")
            for r in results)
    return [host for host in hosts if converged(host)]


def rollout_unreachable(registered: list) -> list:
    """The messages of the registered results (or loop items) that found their host unreachable."""
    found = []
    for result in registered:
        for item in [result, *((result or {}).get("results") or [])]:
            if isinstance(item, dict) and item.get("unreachable"):
                found.append(str(item.get("msg") or "unreachable"))
    return found


class FilterModule:
    """Canary ordering for playbooks/canary.yml."""

    def filters(self) -> dict:
        return {"rollout_order": rollout_order, "rollout_versions": rollout_versions,
                "rollout_converged": rollout_converged, "rollout_unreachable": rollout_unreachable}
