# -*- coding: utf-8 -*-
# Copyright: contributors to ebpf.deploy
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private to ebpf.deploy: health checks of a switch — what is read around the soak, and the verdict.

The switch's own module run (bpf_deployment with ``health``) soaks and reads the host after it has
switched and released its lock, so a stage costs the controller one round trip per host instead of
one per observation; the confirm watcher is the safety net when that run never reports back.
``observations`` turns what was read (in the shape of the results the rollout role registers) into
the inputs of the checks, and ``evaluate`` judges each check: plain Python the unit tests cover,
used by the module on the host and by the ``health_evaluate`` filter on the controller alike.
"""
from __future__ import annotations

import time
from typing import Any, Callable, Dict, List, Optional, Tuple

from ansible_collections.ebpf.deploy.plugins.module_utils._dmesg import matches as bpf_line
from ansible_collections.ebpf.deploy.plugins.module_utils._errors import EbpfDeployError, InvalidInput

# check types that compare what was read before the soak with what was read after it
BEFORE_AND_AFTER = ("program_runs", "interface", "dmesg")
CHECK_TYPES = ("attached", "program_runs", "map", "interface", "dmesg", "command")


# --- the verdict --------------------------------------------------------------------------------

def jmespath_condition(data: Any, query: str, condition: Optional[str] = None) -> bool:
    """True when the JMESPath ``query`` over ``data``, followed by ``condition`` (e.g. "> `0`"), holds.

    The condition is appended to the query, so any JMESPath comparison works; without a
    condition the query itself must yield a truthy value.
    """
    jmespath = _jmespath()
    expression = f"({query}) {condition}" if condition else query
    try:
        return bool(jmespath.search(expression, data))
    except jmespath.exceptions.JMESPathError as exc:
        raise InvalidInput(f"invalid health query {expression!r}: {exc}") from None


def _jmespath():
    try:
        import jmespath  # pylint: disable=import-outside-toplevel
    except ImportError:
        raise InvalidInput("map health checks need the jmespath Python package (Debian: python3-jmespath, "
                           "which ebpf.deploy.host installs)") from None
    return jmespath


def _counter_delta(before: dict, after: dict, key: str) -> int:
    return int(after.get(key, 0)) - int(before.get(key, 0))


def _check_attached(check: dict, obs: dict) -> Tuple[bool, str]:
    attachments = obs.get("attached", [])
    if not attachments:
        return False, "no attachment was checked"
    drifted = [a["name"] for a in attachments if not a.get("ok")]
    if drifted:
        return False, "not attached as wanted: " + ", ".join(drifted)
    return True, f"{len(attachments)} attachment(s) as wanted"


def _check_program_runs(check: dict, obs: dict) -> Tuple[bool, str]:
    minimum = int(check.get("min_runs", 1))
    runs = obs.get("program_runs", {})
    if not runs:
        return False, "no run counts were gathered (are the programs loaded?)"
    low = {name: count for name, count in runs.items() if count < minimum}
    if low:
        return False, "ran fewer than %d times during the soak: %s" % (
            minimum, ", ".join(f"{name} ({count})" for name, count in sorted(low.items())))
    return True, ", ".join(f"{name} ran {count} times" for name, count in sorted(runs.items()))


def _check_map(check: dict, obs: dict, index: int) -> Tuple[bool, str]:
    entries = obs.get("maps", {}).get(str(index))
    if entries is None:
        return False, f"map {check.get('map')!r} was not read"
    query = check.get("query", "length(@)")
    condition = check.get("condition")
    passed = jmespath_condition(entries, query, condition)
    value = _jmespath().search(query, entries)
    return passed, f"map {check.get('map')}: {query} = {value!r}" + (f", wanted {condition}" if condition else "")


def _check_interface(check: dict, obs: dict) -> Tuple[bool, str]:
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


def _check_dmesg(check: dict, obs: dict) -> Tuple[bool, str]:
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


def _check_command(check: dict, obs: dict, index: int) -> Tuple[bool, str]:
    result = obs.get("commands", {}).get(str(index))
    if result is None:
        return False, "the command did not run"
    rc = result.get("rc")
    output = (result.get("stderr") or result.get("stdout") or result.get("msg") or "").strip().splitlines()
    tail = f": {output[-1]}" if output else ""
    return rc == 0, f"{shown_command(check.get('cmd', []))} exited {rc}{tail}"


def shown_command(cmd: list) -> str:
    """The command as a one-line message shows it: a script shipped inline (``python3 -c <source>``)
    as its line count, not its source."""
    def shown(arg: Any) -> str:
        text = str(arg)
        if "\n" in text:
            return f"<{len(text.strip().splitlines())}-line script>"
        return text if len(text) <= 120 else text[:117] + "..."
    return " ".join(map(shown, cmd))


_EVALUATORS: Dict[str, Callable[[dict, dict, int], Tuple[bool, str]]] = {
    "attached": lambda check, obs, index: _check_attached(check, obs),
    "program_runs": lambda check, obs, index: _check_program_runs(check, obs),
    "map": _check_map,
    "interface": lambda check, obs, index: _check_interface(check, obs),
    "dmesg": lambda check, obs, index: _check_dmesg(check, obs),
    "command": _check_command,
}


def validate(checks: List[dict]) -> None:
    for index, check in enumerate(checks or []):
        kind = check.get("type") if isinstance(check, dict) else None
        if kind not in _EVALUATORS:
            raise InvalidInput(f"health check {index}: unknown type {kind!r} (one of {', '.join(CHECK_TYPES)})")


def evaluate(checks: List[dict], observations: dict, *, errors_fail: bool = False) -> List[dict]:
    """One result per check: {index, type, name, passed, detail}. A check that cannot be judged
    (a bad map query, no jmespath) raises InvalidInput, or with ``errors_fail`` is a failed check."""
    validate(checks)
    results = []
    for index, check in enumerate(checks or []):
        kind = check["type"]
        try:
            passed, detail = _EVALUATORS[kind](check, observations, index)
        except InvalidInput as err:
            if not errors_fail:
                raise
            passed, detail = False, err.msg
        results.append({"index": index, "type": kind, "name": check.get("name") or kind,
                        "passed": bool(passed), "detail": detail})
    return results


# --- the observations ---------------------------------------------------------------------------

def _results(registered: Optional[dict]) -> List[dict]:
    """The items of a registered loop that ran (not skipped)."""
    return [r for r in (registered or {}).get("results", []) if not r.get("skipped")]


def _ebpf_facts(registered: Optional[dict]) -> dict:
    return ((registered or {}).get("ansible_facts") or {}).get("ebpf") or {}


def _interfaces_by_name(facts: dict) -> dict:
    """bpf_facts' interface list as {name: counters}; interfaces of a named netns as 'netns/name'."""
    out = {}
    for entry in facts.get("interfaces", []):
        key = f"{entry['netns']}/{entry['interface']}" if entry.get("netns") else entry["interface"]
        out[key] = dict(entry, xdp_dropped=entry.get("xdp_drops") or 0)
    return out


def _hook_link(want: dict, links: Dict[str, dict], taken: set) -> Optional[str]:
    """The pin name (``<target>:<hook>``) of the deployment's link other than XDP that ``want``
    names: by its hook and interface where it gives them, else the first one not yet judged."""
    hook, interface = want.get("hook"), want.get("interface")
    where = None
    if interface:
        from ansible_collections.ebpf.deploy.plugins.module_utils._pins import link_pin_name  # pylint: disable=import-outside-toplevel
        try:
            where = link_pin_name(interface, want.get("netns"), kind="any").rsplit(":", 1)[0] + ":"
        except InvalidInput:
            return None
    for name, link in links.items():
        if name in taken or link["hook"] == "xdp" or (hook and link["hook"] != hook):
            continue
        if where is None or name.startswith(where):
            return name
    return None


def _attached_from_facts(facts: dict, deployments: list) -> list:
    """Each wanted attachment: does its target run the deployment's current program (and, for
    XDP, mode)? XDP from the interfaces, every other hook from the links pinned under links/."""
    by_interface = {(e.get("netns") or None, e["interface"]): e for e in facts.get("xdp", [])}
    found = []
    for dep in deployments:
        state = (facts.get("deployments") or {}).get(dep["name"]) or {}
        programs = (state.get("versions") or {}).get(state.get("current")) or {}
        links = state.get("attachments") or {}
        taken: set = set()
        for want in dep.get("attach") or []:
            wanted_id = programs.get(want["program"])
            pin_name = _hook_link(want, links, taken) if want.get("hook") != "xdp" else None
            if pin_name is None and want.get("hook") in (None, "xdp") and want.get("interface"):
                entry = by_interface.get((want.get("netns") or None, want["interface"]))
                found.append(_judged(f"{dep['name']} {want['program']} on {want['interface']}",
                                     _xdp_problem(entry, want, wanted_id)))
                continue
            taken.add(pin_name)
            found.append(_judged(f"{dep['name']} {want['program']} on {pin_name or want.get('hook') or 'its hook'}",
                                 _link_problem(links.get(pin_name), wanted_id)))
    return found


def _judged(label: str, problem: Optional[str]) -> dict:
    return {"name": f"{label} ({problem})" if problem else label, "ok": problem is None}


def _xdp_problem(entry: Optional[dict], want: dict, wanted_id: Optional[int]) -> Optional[str]:
    if entry is None:
        return "interface not found"
    if not entry.get("prog_id"):
        return "no XDP program attached"
    if entry["prog_id"] != wanted_id:
        return f"program id {entry['prog_id']} attached, not {wanted_id}"
    if want.get("mode") and entry.get("mode") != want["mode"]:
        return f"mode {entry.get('mode')}, not {want['mode']}"
    return None


def _link_problem(link: Optional[dict], wanted_id: Optional[int]) -> Optional[str]:
    if link is None:
        return "no link pinned"
    if not link.get("prog_id"):
        return "the pinned link is gone from the kernel"
    if link["prog_id"] != wanted_id:
        return f"program id {link['prog_id']} attached, not {wanted_id}"
    return None


def _attached_from_switch(registered: Optional[dict]) -> list:
    """Each attachment as the bpf_deployment run of the switch left it."""
    found = []
    for result in _results(registered):
        name = (result.get("item") or {}).get("name")
        for entry in result.get("attach") or []:
            label = f"{name} {entry.get('program')} on {entry.get('interface') or entry.get('hook')}"
            ok = not result.get("failed") and bool(entry.get("prog_id"))
            found.append({"name": label if ok else f"{label} (not attached)", "ok": ok})
    return found


def observations(raw: dict) -> dict:
    """The observations ``evaluate`` reads, from what was read around the soak.

    raw: facts_before/facts_after (bpf_facts results, either may be skipped), switch (the
    bpf_deployment loop), maps (bpf_map dump results, each with its ``__rollout_check_index``),
    commands (one result per check, skipped for the checks that are no command), deployments (the
    deployments being rolled out, with their ``attach`` lists).

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


# --- on the host, in the switch's run -----------------------------------------------------------

def check_request(health: dict, confirm_timeout: Optional[float]) -> None:
    """Refused before the switch changes anything: checks the host cannot judge, a soak the
    confirm watcher would cut short."""
    validate(health.get("checks") or [])
    soak = health.get("soak_seconds") or 0
    if soak < 0:
        raise InvalidInput(f"health.soak_seconds must be 0 or more, got {soak:g}")
    if confirm_timeout and soak >= confirm_timeout:
        raise InvalidInput(f"health.soak_seconds ({soak:g} s) must be shorter than confirm_timeout "
                           f"({confirm_timeout:g} s): the host would roll the switch back during its soak")
    for index, dep in enumerate(health.get("deployments") or []):
        if not isinstance(dep, dict) or not isinstance(dep.get("name"), str) or not isinstance(dep.get("attach", []), list):
            raise InvalidInput(f"health.deployments[{index}] needs a name and an attach list")


def _netns_names(checks: List[dict], deployments: List[dict]) -> List[str]:
    """The named network namespaces whose interfaces the checks read."""
    names = [a.get("netns") for d in deployments for a in d.get("attach") or []]
    names += [c.get("netns") for c in checks]
    return sorted({n for n in names if n})


def _run_command(argv: List[Any]) -> dict:
    from ansible_collections.ebpf.deploy.plugins.module_utils import _process  # pylint: disable=import-outside-toplevel
    try:
        proc = _process.run([str(a) for a in argv])
    except OSError as exc:
        return {"rc": None, "msg": f"{argv[0] if argv else ''}: {exc.strerror or exc}"}
    return {"rc": proc.returncode, "stdout": proc.stdout, "stderr": proc.stderr}


def _read_map(check: dict, index: int, *, default_deployment: str, bpffs_root: str) -> dict:
    from ansible_collections.ebpf.deploy.plugins.module_utils import _map  # pylint: disable=import-outside-toplevel
    params = {"deployment": check.get("deployment") or default_deployment, "map": check.get("map"),
              "key_type": check.get("key_type"), "value_type": check.get("value_type"), "dump": True,
              "bpffs_root": bpffs_root}
    try:
        result = _map.MapManager(_map.Request.from_params(params), check_mode=True).run().as_dict()
    except EbpfDeployError as err:
        return {"__rollout_check_index": index, "failed": True, "msg": err.msg}
    return {"__rollout_check_index": index, "entries": result.get("entries")}


def on_host(health: dict, *, deployments: List[dict], bpffs_root: str) -> dict:
    """Soak, read the host and judge every check (after the switch, its lock released). Never
    raises for what it reads: a read that fails is a failed check, so the role rolls back.
    ``deployments``: those the checks judge, each with its ``name`` and ``attach`` list."""
    from ansible_collections.ebpf.deploy.plugins.module_utils import _facts  # pylint: disable=import-outside-toplevel

    checks = list(health.get("checks") or [])
    validate(checks)
    soak = float(health.get("soak_seconds") or 0)
    kinds = {c["type"] for c in checks}
    subsets = ["programs", "links", "xdp"] + (["interfaces"] if "interface" in kinds else []) + (["dmesg"] if "dmesg" in kinds else [])
    netns = _netns_names(checks, deployments)
    started = time.monotonic()
    raw: dict = {"deployments": deployments}
    try:
        if kinds & set(BEFORE_AND_AFTER):
            raw["facts_before"] = {"ansible_facts": {"ebpf": _facts.gather(subsets, bpffs_root=bpffs_root,
                                                                           xdp_netns=netns)}}
        cursor = _ebpf_facts(raw.get("facts_before")).get("dmesg_cursor")
        # always read after the soak (a soak of 0 too): `attached` is judged from the kernel
        raw["facts_after"] = {"ansible_facts": {"ebpf": _facts.gather(subsets, bpffs_root=bpffs_root, xdp_netns=netns,
                                                                      dmesg_since=cursor, stats_seconds=soak)}}
    except EbpfDeployError as err:
        return _verdict([{"index": None, "type": "read", "name": "read the host", "passed": False,
                          "detail": f"reading the host around the soak failed: {err.msg}"}], soak, started)
    # probes run before the maps are read: what they send through the program is counted
    raw["commands"] = {"results": [_run_command(c.get("cmd") or []) if c["type"] == "command" else {"skipped": True}
                                   for c in checks]}
    raw["maps"] = {"results": [_read_map(c, i, default_deployment=deployments[0]["name"], bpffs_root=bpffs_root)
                               for i, c in enumerate(checks) if c["type"] == "map"]}
    return _verdict(evaluate(checks, observations(raw), errors_fail=True), soak, started)


def _verdict(checks: List[dict], soak: float, started: float) -> dict:
    return {"passed": all(c["passed"] for c in checks), "checks": checks, "soak_seconds": soak,
            "seconds": round(time.monotonic() - started, 3)}
