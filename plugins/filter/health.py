"""Health evaluation for the rollout role: turns observations taken around a soak into check results.

The role gathers facts before and after the soak (interface counters, program run counts, map
dumps, kernel log lines, command results) and hands them here, so the decision logic is plain
Python that unit tests can cover, not Jinja spread over task files.
"""
from __future__ import annotations

from typing import Any

from ansible.errors import AnsibleFilterError

from ansible_collections.ebpf.deploy.plugins.module_utils._dmesg import matches as bpf_line

try:
    import jmespath
except ImportError:  # reported when a map check is evaluated
    jmespath = None


def jmespath_condition(data: Any, query: str, condition: str | None = None) -> bool:
    """True when the JMESPath `query` over `data`, followed by `condition` (e.g. "> `0`"), holds.

    The condition is appended to the query, so any JMESPath comparison works; without a
    condition the query itself must yield a truthy value.
    """
    if jmespath is None:
        raise AnsibleFilterError("the jmespath Python package is required on the controller for map health checks")
    expression = f"({query}) {condition}" if condition else query
    try:
        return bool(jmespath.search(expression, data))
    except jmespath.exceptions.JMESPathError as exc:
        raise AnsibleFilterError(f"invalid health query {expression!r}: {exc}") from exc


def _counter_delta(before: dict, after: dict, key: str) -> int:
    return int(after.get(key, 0)) - int(before.get(key, 0))


def _check_attached(check: dict, obs: dict) -> tuple[bool, str]:
    attachments = obs.get("attached", [])
    if not attachments:
        return False, "no attachment was checked"
    drifted = [a["name"] for a in attachments if not a.get("ok")]
    if drifted:
        return False, "not attached as wanted: " + ", ".join(drifted)
    return True, f"{len(attachments)} attachment(s) as wanted"


def _check_program_runs(check: dict, obs: dict) -> tuple[bool, str]:
    minimum = int(check.get("min_runs", 1))
    runs = obs.get("program_runs", {})
    if not runs:
        return False, "no run counts were gathered (are the programs loaded?)"
    low = {name: count for name, count in runs.items() if count < minimum}
    if low:
        return False, "ran fewer than %d times during the soak: %s" % (
            minimum, ", ".join(f"{name} ({count})" for name, count in sorted(low.items())))
    return True, ", ".join(f"{name} ran {count} times" for name, count in sorted(runs.items()))


def _check_map(check: dict, obs: dict, index: int) -> tuple[bool, str]:
    entries = obs.get("maps", {}).get(str(index))
    if entries is None:
        return False, f"map {check.get('map')!r} was not read"
    query = check.get("query", "length(@)")
    condition = check.get("condition")
    passed = jmespath_condition(entries, query, condition)
    value = jmespath.search(query, entries)
    return passed, f"map {check.get('map')}: {query} = {value!r}" + (f", wanted {condition}" if condition else "")


def _check_interface(check: dict, obs: dict) -> tuple[bool, str]:
    name = f"{check['netns']}/{check['interface']}" if check.get("netns") else check["interface"]
    before = obs.get("interfaces_before", {}).get(name)
    after = obs.get("interfaces_after", {}).get(name)
    if before is None or after is None:
        return False, f"interface {name} was not found"
    received = _counter_delta(before, after, "rx_packets")
    # XDP_DROP never reaches rx_dropped: drivers count it apart (ethtool xdp_drops, native mode)
    dropped = _counter_delta(before, after, "rx_dropped") + _counter_delta(before, after, "xdp_dropped")
    seen = received + dropped
    ratio = dropped / seen if seen else 0.0
    limit = float(check.get("max_drop_ratio", 0.0))
    min_packets = int(check.get("min_packets", 0))
    detail = f"{name}: {dropped} of {seen} packets dropped during the soak (ratio {ratio:.3f}, limit {limit})"
    if seen < min_packets:
        return False, f"{name}: only {seen} packets seen during the soak, wanted at least {min_packets}"
    return ratio <= limit, detail


def _check_dmesg(check: dict, obs: dict) -> tuple[bool, str]:
    if obs.get("dmesg_rebooted"):
        return False, ("the host rebooted during the soak (boot id changed): the kernel lines of the "
                       "earlier boot are gone, so the window cannot be judged")
    lines = obs.get("dmesg", [])
    ignore = check.get("ignore", [])
    relevant = [line for line in lines if bpf_line(_line_text(line))
                and not any(pattern in _line_text(line) for pattern in ignore)]
    if relevant:
        shown = "; ".join(_line_text(line) for line in relevant[:3])
        more = f" (+{len(relevant) - 3} more)" if len(relevant) > 3 else ""
        return False, f"{len(relevant)} new BPF/XDP kernel line(s): {shown}{more}"
    return True, "no new BPF/XDP kernel lines"


def _line_text(line: Any) -> str:
    return line.get("message", "") if isinstance(line, dict) else str(line)


def _check_command(check: dict, obs: dict, index: int) -> tuple[bool, str]:
    result = obs.get("commands", {}).get(str(index))
    if result is None:
        return False, "the command did not run"
    rc = result.get("rc")
    output = (result.get("stderr") or result.get("stdout") or result.get("msg") or "").strip().splitlines()
    tail = f": {output[-1]}" if output else ""
    return rc == 0, f"{' '.join(map(str, check.get('cmd', [])))} exited {rc}{tail}"


_EVALUATORS = {
    "attached": lambda check, obs, index: _check_attached(check, obs),
    "program_runs": lambda check, obs, index: _check_program_runs(check, obs),
    "map": _check_map,
    "interface": lambda check, obs, index: _check_interface(check, obs),
    "dmesg": lambda check, obs, index: _check_dmesg(check, obs),
    "command": _check_command,
}


def health_evaluate(checks: list[dict], observations: dict) -> list[dict]:
    """One result per check: {index, type, name, passed, detail}."""
    results = []
    for index, check in enumerate(checks or []):
        kind = check.get("type")
        evaluator = _EVALUATORS.get(kind)
        if evaluator is None:
            raise AnsibleFilterError(f"health check {index}: unknown type {kind!r} (one of {', '.join(_EVALUATORS)})")
        passed, detail = evaluator(check, observations, index)
        results.append({"index": index, "type": kind, "name": check.get("name") or kind,
                        "passed": bool(passed), "detail": detail})
    return results


def _results(registered: dict | None) -> list[dict]:
    """The items of a registered loop that ran (not skipped)."""
    return [r for r in (registered or {}).get("results", []) if not r.get("skipped")]


def _ebpf_facts(registered: dict | None) -> dict:
    return ((registered or {}).get("ansible_facts") or {}).get("ebpf") or {}


def _interfaces_by_name(facts: dict) -> dict:
    """bpf_facts' interface list as {name: counters}; interfaces of a named netns as 'netns/name'."""
    out = {}
    for entry in facts.get("interfaces", []):
        key = f"{entry['netns']}/{entry['interface']}" if entry.get("netns") else entry["interface"]
        out[key] = dict(entry, xdp_dropped=entry.get("xdp_drops") or 0)
    return out


def _attached_from_facts(facts: dict, deployments: list) -> list:
    """Each wanted attachment: does its interface run the deployment's current program (and mode)?"""
    by_interface = {(e.get("netns") or None, e["interface"]): e for e in facts.get("xdp", [])}
    found = []
    for dep in deployments:
        state = (facts.get("deployments") or {}).get(dep["name"]) or {}
        programs = (state.get("versions") or {}).get(state.get("current")) or {}
        for want in dep.get("attach") or []:
            label = f"{dep['name']} {want['program']} on {want['interface']}"
            entry = by_interface.get((want.get("netns") or None, want["interface"]))
            wanted_id = programs.get(want["program"])
            if entry is None:
                problem = "interface not found"
            elif not entry.get("prog_id"):
                problem = "no XDP program attached"
            elif entry["prog_id"] != wanted_id:
                problem = f"program id {entry['prog_id']} attached, not {wanted_id}"
            elif want.get("mode") and entry.get("mode") != want["mode"]:
                problem = f"mode {entry.get('mode')}, not {want['mode']}"
            else:
                problem = None
            found.append({"name": f"{label} ({problem})" if problem else label, "ok": problem is None})
    return found


def _attached_from_switch(registered: dict | None) -> list:
    """Each attachment as the bpf_deployment run of the switch left it."""
    found = []
    for result in _results(registered):
        name = (result.get("item") or {}).get("name")
        for entry in result.get("attach") or []:
            label = f"{name} {entry.get('program')} on {entry.get('interface')}"
            ok = not result.get("failed") and bool(entry.get("prog_id"))
            found.append({"name": label if ok else f"{label} (not attached)", "ok": ok})
    return found


def health_observations(raw: dict) -> dict:
    """Builds the observations health_evaluate reads from what the role registered around the soak.

    raw: facts_before/facts_after (bpf_facts results, either may be skipped), switch (the
    bpf_deployment loop), maps (bpf_map dump loop, index_var __rollout_check_index), commands
    (command loop), deployments (the deployments being rolled out, with their ``attach`` lists).

    ``attached`` is judged from the facts after the soak when they were read (the attachments must
    have survived it), else from what the switch itself reported.
    """
    before, after = _ebpf_facts(raw.get("facts_before")), _ebpf_facts(raw.get("facts_after"))
    deployments = [d if isinstance(d, dict) else {"name": d} for d in raw.get("deployments") or []]
    ours = {d["name"] for d in deployments}
    current = {name: dep.get("current") for name, dep in after.get("deployments", {}).items()}
    runs_before = {p["id"]: p.get("run_cnt") or 0 for p in before.get("programs", [])}
    program_runs = {}
    for program in after.get("programs", []):
        deployment = program.get("deployment")
        if deployment in ours and program.get("version") == current.get(deployment):
            name = f"{deployment}/{program.get('program') or program['name']}"
            program_runs[name] = int(program.get("run_cnt") or 0) - int(runs_before.get(program["id"], 0))
    attached = (_attached_from_facts(after, deployments) if raw.get("facts_after") and "xdp" in after
                else _attached_from_switch(raw.get("switch")))
    maps = {str(r["__rollout_check_index"]): (None if r.get("failed") else r.get("entries"))
            for r in _results(raw.get("maps"))}
    commands = {}
    for index, result in enumerate((raw.get("commands") or {}).get("results", [])):
        if not result.get("skipped"):
            commands[str(index)] = result
    return {
        "attached": attached,
        "program_runs": program_runs,
        "maps": maps,
        "interfaces_before": _interfaces_by_name(before),
        "interfaces_after": _interfaces_by_name(after),
        "dmesg": (after.get("dmesg") or {}).get("lines", []),
        "dmesg_rebooted": bool((after.get("dmesg") or {}).get("rebooted")),
        "commands": commands,
    }


class FilterModule:
    """Health evaluation filters for ebpf.deploy.rollout."""

    def filters(self) -> dict:
        return {
            "health_evaluate": health_evaluate,
            "health_observations": health_observations,
            "jmespath_condition": jmespath_condition,
        }
