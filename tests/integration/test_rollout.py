"""The rollout role and playbooks/canary.yml against real lab hosts over SSH, on the real kernel.

One lab of four hosts (`canary` is host 1) serves every case; each case starts from a known
fleet state and reads the result back from the hosts themselves (bpf_facts over SSH), not from
what the playbook said.
"""
from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import pytest

from tests.lab import labctl

REPO = Path(__file__).resolve().parents[2]
BPF = REPO / "build" / "bpf"
SERIAL = [1, 1, "100%"]          # stages: h1 (canary) | h2 | h3 h4
GOOD, NEXT, DROPS = "counter", "counter_v2", "counter_drop"


@pytest.fixture(scope="module")
def lab():
    with labctl.running(count=4) as hosts:
        yield hosts


def rollout(lab, obj: str, *, on_failure: str = "rollback_host", fail_on: str | None = None,
            program: str = "xdp_packet_counter", extra: dict | None = None,
            tmp_path: Path, check: bool = False) -> tuple[subprocess.CompletedProcess, dict]:
    """canary.yml of the counter deployment with `obj`; a probe fails on host `fail_on` if given;
    with `check`, in check and diff mode."""
    probe = ["/bin/true"] if fail_on is None else ["/usr/bin/test", "{{ inventory_hostname }}", "!=", fail_on]
    variables = {
        "rollout_deployments": [{"name": "pktcount", "src": str(BPF / f"{obj}.bpf.o"),
                                 "attach": [{"interface": "eth0", "program": program}]}],
        "rollout_health": {"soak_seconds": 0, "checks": [
            {"type": "attached"}, {"type": "command", "name": "probe", "cmd": probe},
            {"type": "dmesg", "ignore": ["ebpfd-test"]}]},   # other tests write marker lines
        "rollout_on_failure": on_failure,
        "rollout_serial": SERIAL,
        **(extra or {}),
    }
    vars_file = tmp_path / f"vars-{obj}.json"
    vars_file.write_text(json.dumps(variables))
    report = tmp_path / "report.json"
    proc = subprocess.run(
        ["ansible-playbook", "-i", str(lab.inventory), str(REPO / "playbooks" / "canary.yml"), "-e", f"@{vars_file}"]
        + (["--check", "--diff"] if check else []),
        capture_output=True, text=True, cwd=REPO, timeout=600, check=False,
        env=labctl.ansible_env(EBPF_DEPLOY_ROLLOUT_REPORT=str(report), ANSIBLE_SHOW_CUSTOM_STATS="1",
                               ANSIBLE_CALLBACK_RESULT_FORMAT="json"))
    (tmp_path / f"playbook-{obj}.log").write_text(proc.stdout + proc.stderr)   # kept by pytest for a look
    summary = json.loads(report.read_text()) if report.exists() else {}
    report.unlink(missing_ok=True)
    return proc, {entry["host"]: entry for entry in summary.get("hosts", [])}


def custom_stats(proc: subprocess.CompletedProcess) -> dict:
    """What the run published with set_stats (the default callback prints it as one RUN: line)."""
    (line,) = [line for line in proc.stdout.splitlines() if line.startswith("\tRUN: ")] or [None]
    assert line, "no custom stats were published:\n" + proc.stdout[-2000:]
    return json.loads(line[len("\tRUN: "):])


def fleet(lab) -> dict:
    """Per host: the deployment's current version and versions pinned, and the program on eth0."""
    proc = lab.ansible("all", "ebpf.deploy.bpf_facts", json.dumps({"gather_subset": ["programs", "xdp"]}))
    results = labctl.parse_oneline(proc.stdout)
    out = {}
    for host, result in results.items():
        assert "ansible_facts" in result, f"{host}: {result}"
        facts = result["ansible_facts"]["ebpf"]
        dep = facts.get("deployments", {}).get("pktcount", {})
        programs = {p["id"]: p for p in facts["programs"]}
        (eth0,) = [x for x in facts["xdp"] if x["interface"] == "eth0"]
        attached = programs.get(eth0["prog_id"], {})
        out[host] = {"current": dep.get("current"), "versions": sorted(dep.get("versions", {})),
                     "attached_version": attached.get("version") if attached.get("deployment") == "pktcount" else None}
    assert len(out) == lab.count, f"facts from {sorted(out)} only: {proc.stdout}\n{proc.stderr}"
    return out


def version_of(lab, obj: str) -> str:
    """The version the module computes for an object (a check-mode load on the canary)."""
    proc = lab.ansible("canary", "ebpf.deploy.bpf_program",
                       json.dumps({"name": "pktcount", "src": str(BPF / f"{obj}.bpf.o")}), "--check")
    (result,) = labctl.parse_oneline(proc.stdout).values()
    return result["version"]


def hosts(lab) -> list[str]:
    return [f"{lab.prefix}-h{n}" for n in range(1, lab.count + 1)]


def assert_fleet_on(state: dict, version: str | None, names: list[str]) -> None:
    for name in names:
        assert state[name]["current"] == version, f"{name}: {state[name]}"
        assert state[name]["attached_version"] == version, f"{name} runs {state[name]['attached_version']}"


def ensure_fleet_on_good(lab, tmp_path) -> str:
    """Each case starts from every host on the good version (a rollout only when one is off it)."""
    good = version_of(lab, GOOD)
    state = fleet(lab)
    if any(state[h]["current"] != good or state[h]["attached_version"] != good for h in hosts(lab)):
        proc, _summary = rollout(lab, GOOD, tmp_path=tmp_path)
        assert proc.returncode == 0, proc.stdout[-3000:]
    return good


def test_rollout_goes_stage_by_stage_and_a_rerun_changes_nothing(lab, tmp_path):
    proc, summary = rollout(lab, GOOD, tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:]
    good = version_of(lab, GOOD)
    assert [summary[h]["stage"] for h in hosts(lab)] == [1, 2, 3, 3]
    assert {summary[h]["status"] for h in hosts(lab)} == {"committed"}
    assert {summary[h]["record"] for h in hosts(lab)} == {"committed"}, summary
    published = custom_stats(proc)["ebpf_deploy_rollout"]
    assert {h: (r["status"], r["versions"][0]["after"]) for h, r in published.items()} == \
        {h: ("committed", good) for h in hosts(lab)}, published
    assert_fleet_on(fleet(lab), good, hosts(lab))
    for host in hosts(lab):
        sent = lab.traffic(host, count=300)
        assert sent["sent"] == 300

    again, summary = rollout(lab, GOOD, tmp_path=tmp_path)
    assert again.returncode == 0, again.stdout[-3000:]
    assert {summary[h]["status"] for h in hosts(lab)} == {"unchanged"}
    assert {r["status"] for r in custom_stats(again)["ebpf_deploy_rollout"].values()} == {"unchanged"}
    recap = [line for line in again.stdout.splitlines() if line.startswith(lab.prefix) and "changed=" in line]
    assert len(recap) == lab.count and all("changed=0" in line for line in recap), recap


def test_check_mode_previews_every_stage_and_changes_nothing(lab, tmp_path):
    """`--check --diff` of a new version: every host, stage by stage, says it would switch, no
    health check is judged (nothing was switched), and the fleet is exactly as before."""
    good = ensure_fleet_on_good(lab, tmp_path)
    before = fleet(lab)
    proc, summary = rollout(lab, NEXT, tmp_path=tmp_path, check=True)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert [summary[h]["stage"] for h in hosts(lab)] == [1, 2, 3, 3], summary
    assert {summary[h]["status"] for h in hosts(lab)} == {"would_switch"}, summary
    assert {summary[h]["record"] for h in hosts(lab)} == {"committed"}, summary
    assert "check mode: nothing was switched" in proc.stdout, proc.stdout[-3000:]
    assert fleet(lab) == before
    assert_fleet_on(before, good, hosts(lab))


def test_dropping_version_fails_health_on_the_canary_and_never_reaches_the_fleet(lab, tmp_path):
    good = ensure_fleet_on_good(lab, tmp_path)
    drops = version_of(lab, DROPS)
    variables = tmp_path / "drop.json"
    variables.write_text(json.dumps({
        "rollout_deployments": [{"name": "pktcount", "src": str(BPF / f"{DROPS}.bpf.o"),
                                 "attach": [{"interface": "eth0", "program": "xdp_packet_counter"}]}],
        "rollout_health": {"soak_seconds": 0, "checks": [
            {"type": "attached"},
            {"type": "command", "name": "peer reachable",
             "cmd": ["{{ ansible_python_interpreter }}", str(REPO / "examples" / "probes" / "reach.py"),
                     "{{ lab_peer_address }}", "9"]}]},
        "rollout_serial": SERIAL}))
    proc = subprocess.run(["ansible-playbook", "-i", str(lab.inventory), str(REPO / "playbooks" / "canary.yml"),
                           "-e", f"@{variables}"], capture_output=True, text=True, cwd=REPO, timeout=600,
                          check=False, env=labctl.ansible_env())
    assert proc.returncode != 0, "the dropping version was not stopped"
    assert "rolled back on" in proc.stdout and "peer reachable" in proc.stdout
    state = fleet(lab)
    assert_fleet_on(state, good, hosts(lab))
    for host in hosts(lab)[1:]:
        assert drops not in state[host]["versions"], f"{host} saw the bad version"
    assert state[hosts(lab)[0]]["versions"].count(drops) <= 1, "canary keeps it pinned only as history"


def test_verifier_rejection_on_the_canary_never_reaches_another_host(lab, tmp_path):
    good = ensure_fleet_on_good(lab, tmp_path)
    proc, summary = rollout(lab, "reject_map_lookup", tmp_path=tmp_path)
    assert proc.returncode != 0
    canary = hosts(lab)[0]
    assert summary[canary]["status"] in ("refused", "rolled_back"), summary[canary]
    assert "rejected by the verifier" in " ".join(summary[canary]["reasons"]), summary[canary]
    assert set(summary) == {canary}, f"other hosts were touched: {sorted(summary)}"
    assert_fleet_on(fleet(lab), good, hosts(lab))


def test_preflight_refuses_on_the_canary_before_anything_is_loaded(lab, tmp_path):
    """racy_counter has a non-atomic update of a shared map value: a preflight warning, fatal here."""
    good = ensure_fleet_on_good(lab, tmp_path)
    racy = version_of(lab, "racy_counter")
    proc, summary = rollout(lab, "racy_counter", program="xdp_racy_counter",
                            extra={"rollout_preflight_fail_on": "warning"}, tmp_path=tmp_path)
    assert proc.returncode != 0
    canary = hosts(lab)[0]
    assert summary[canary]["status"] == "refused", summary[canary]
    reasons = " ".join(summary[canary]["reasons"])
    assert "preflight refused racy_counter.bpf.o" in reasons and "non-atomic read-modify-write" in reasons, reasons
    assert set(summary) == {canary}, f"other hosts were touched: {sorted(summary)}"
    state = fleet(lab)
    assert_fleet_on(state, good, hosts(lab))
    assert racy not in state[canary]["versions"], "the refused object was loaded on the canary"


def test_a_halted_canary_stays_pending_in_the_summary_and_its_watcher_reverts_it(lab, tmp_path):
    """rollout_on_failure: halt leaves the failed canary as it is: the summary says its record is
    pending until the confirm deadline, and at that deadline the host returns to the committed
    version by itself."""
    good, new = ensure_fleet_on_good(lab, tmp_path), version_of(lab, NEXT)
    h1 = hosts(lab)[0]
    proc, summary = rollout(lab, NEXT, on_failure="halt", fail_on=h1, extra={"rollout_confirm_timeout": 6},
                            tmp_path=tmp_path)
    assert proc.returncode != 0
    assert set(summary) == {h1} and summary[h1]["status"] == "halted", summary
    assert summary[h1]["record"].startswith("pending until "), summary[h1]
    assert f"{h1}" in proc.stdout and "pending until " in proc.stdout.split("ROLLOUT SUMMARY")[-1], proc.stdout[-2000:]
    assert [(v["after"], v["pending"]) for v in summary[h1]["versions"]] == [(new, True)], summary[h1]
    deadline = time.monotonic() + 6 + 20   # (on a loaded machine the deadline may have passed already)
    while fleet(lab)[h1]["attached_version"] != good and time.monotonic() < deadline:
        time.sleep(1)
    assert_fleet_on(fleet(lab), good, hosts(lab))


def test_rollback_stage_returns_the_whole_failing_stage_only(lab, tmp_path):
    good, new = ensure_fleet_on_good(lab, tmp_path), version_of(lab, NEXT)
    h1, h2, h3, h4 = hosts(lab)
    proc, summary = rollout(lab, NEXT, on_failure="rollback_stage", fail_on=h3, tmp_path=tmp_path)
    assert proc.returncode != 0
    assert (summary[h3]["status"], summary[h4]["status"]) == ("rolled_back", "rolled_back"), summary
    state = fleet(lab)
    assert_fleet_on(state, new, [h1, h2])      # earlier stages keep the new version
    assert_fleet_on(state, good, [h3, h4])     # the failing stage is all previous


def test_rollback_all_returns_earlier_stages_too(lab, tmp_path):
    good = ensure_fleet_on_good(lab, tmp_path)
    h1, h2, h3, h4 = hosts(lab)
    proc, summary = rollout(lab, NEXT, on_failure="rollback_all", fail_on=h3, tmp_path=tmp_path)
    assert proc.returncode != 0
    assert summary[h3]["status"] == "rolled_back" and summary[h4]["status"] == "rolled_back", summary
    # the artifacts agree with the summary, for the earlier stages rewritten after the failure too
    published = custom_stats(proc)["ebpf_deploy_rollout"]
    assert {h: r["status"] for h, r in published.items()} == {h: summary[h]["status"] for h in hosts(lab)}, published
    assert published[h1]["status"] == "rolled_back", published
    assert_fleet_on(fleet(lab), good, [h1, h2, h3, h4])


def test_rollback_playbook_returns_to_the_previous_version(lab, tmp_path):
    good, new = ensure_fleet_on_good(lab, tmp_path), version_of(lab, NEXT)
    proc, _summary = rollout(lab, NEXT, tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert_fleet_on(fleet(lab), new, hosts(lab))
    variables = tmp_path / "rollback.json"
    variables.write_text(json.dumps({"rollout_deployments": [
        {"name": "pktcount", "src": "unused", "attach": [{"interface": "eth0", "program": "xdp_packet_counter"}]}]}))
    back = subprocess.run(["ansible-playbook", "-i", str(lab.inventory), str(REPO / "playbooks" / "rollback.yml"),
                           "-e", f"@{variables}"], capture_output=True, text=True, cwd=REPO, timeout=600,
                          check=False, env=labctl.ansible_env())
    assert back.returncode == 0, back.stdout[-3000:]
    assert_fleet_on(fleet(lab), good, hosts(lab))
    # the record marked the version it left: a second run changes nothing, never forward to `new`
    again = subprocess.run(["ansible-playbook", "-i", str(lab.inventory), str(REPO / "playbooks" / "rollback.yml"),
                            "-e", f"@{variables}"], capture_output=True, text=True, cwd=REPO, timeout=600,
                           check=False, env=labctl.ansible_env())
    assert again.returncode == 0 and re.search(r"changed=0 .*", again.stdout), again.stdout[-3000:]
    assert " changed=1" not in again.stdout, again.stdout[-3000:]
    assert_fleet_on(fleet(lab), good, hosts(lab))


def test_summary_only_for_rollouts(lab):
    """Other playbooks and ad hoc runs with the callback enabled print no rollout summary."""
    args = {"name": "x", "src": "/nonexist", "remote_src": True}
    proc = lab.ansible("canary", "ebpf.deploy.bpf_program", json.dumps(args))
    (result,) = labctl.parse_oneline(proc.stdout).values()
    assert result["_status"].startswith("FAILED") and "does not exist" in result["msg"]
    assert "ROLLOUT SUMMARY" not in proc.stdout


def counter_value(lab, which: str) -> int:
    proc = lab.ansible(which, "ebpf.deploy.bpf_map", json.dumps(
        {"deployment": "pktcount", "map": "pkt_count", "key_type": "u32", "value_type": "u64", "dump": True}))
    (result,) = labctl.parse_oneline(proc.stdout).values()
    assert not result.get("failed"), result
    return sum(e["value"] for e in result["entries"])


def test_a_renamed_program_on_one_more_interface_rolls_back_on_the_canary(lab, tmp_path):
    """v2 (the blocklist) has another program name and also attaches mgmt0; its health fails on the
    canary: the canary ends on v1 with v1's program on eth0 counting real packets, mgmt0 as it was,
    and the rest of the fleet never sees v2."""
    good = ensure_fleet_on_good(lab, tmp_path)
    h1 = hosts(lab)[0]
    renamed = [{"name": "pktcount", "src": str(BPF / "blocklist.bpf.o"),
                "attach": [{"interface": "eth0", "program": "xdp_blocklist"},
                           {"interface": "mgmt0", "program": "xdp_blocklist", "mode": "generic"}]}]
    proc, summary = rollout(lab, "blocklist", fail_on=h1, extra={"rollout_deployments": renamed},
                            tmp_path=tmp_path)
    assert proc.returncode != 0, proc.stdout[-3000:]
    assert summary[h1]["status"] == "rolled_back", summary
    assert all(h not in summary or summary[h]["status"] != "committed" for h in hosts(lab)[1:]), summary
    assert_fleet_on(fleet(lab), good, hosts(lab))
    mgmt = lab.ansible(h1, "ebpf.deploy.bpf_facts", json.dumps({"gather_subset": ["xdp"]}))
    (facts,) = labctl.parse_oneline(mgmt.stdout).values()
    (mgmt0,) = [x for x in facts["ansible_facts"]["ebpf"]["xdp"] if x["interface"] == "mgmt0"]
    assert mgmt0["prog_id"] is None, f"mgmt0 kept v2's program: {mgmt0}"
    before = counter_value(lab, h1)
    lab.traffic(1, count=300)
    assert counter_value(lab, h1) >= before + 300, "v1's program does not count on the canary"
