"""canary.yml on the VM lab hosts (the session's `vm_lab`, conftest.py): a canary whose sshd stops
mid-stage reverts by itself with its guest's own watcher, and one rollout over the netns host and
both VMs with a VM as the canary. Run by the same pytest worker as test_vm_hooks.py when `make vm`
balances its two workers (each with a lab of its own); the helpers are test_vm_lab.py's.
"""
from __future__ import annotations

import base64
import json
import subprocess
import time
from pathlib import Path

import yaml

from tests.integration.test_vm_lab import PROGRAM, REPO, on_vms, ssh_json, vms, xdp_on_eth0
from tests.lab import labctl


def wait_for_sshd(lab, vm, seconds: float = 180) -> None:
    """Until the VM answers SSH again (the tests after a cut need it), at most `seconds`."""
    back = time.monotonic() + seconds
    while vm and lab.ssh(vm, "true", timeout=10).returncode != 0 and time.monotonic() < back:
        time.sleep(2)


def record_of(lab, vm: str, name: str) -> dict:
    """The deployment's state.json on the VM, read with cat (not the modules)."""
    return ssh_json(lab, vm, f"cat /var/lib/ebpf_deploy/root-*/{name}/state.json")


# Armed inside each guest before the rollout (a transient unit of its own, outside ssh.service): the
# moment the deployment's record says pending (the switch's run has armed the watcher and goes on to
# load, attach and soak), it keeps that record, kills ssh.service's whole cgroup (ssh.service has
# KillMode=process, and without libpam-systemd every session - the running module with it - is in
# that cgroup), stops the unit and its socket before Restart= brings sshd back, and starts sshd
# again 75 s later. Polled in the guest, the cut cannot come late because the controller is slow.
CUT_ON_PENDING = """
import glob, json, subprocess, sys, time
name, until = sys.argv[1], time.time() + 900
while time.time() < until:
    for path in glob.glob(f"/var/lib/ebpf_deploy/root-*/{name}/state.json"):
        try:
            with open(path, encoding="utf-8") as handle:
                state = json.load(handle)
        except (OSError, ValueError):
            continue
        if state.get("pending"):
            with open("/run/ebpfd-cut.json", "w", encoding="utf-8") as handle:
                json.dump({"at": time.time(), "state": state}, handle)
            for cmd in (["systemctl", "stop", "ssh.socket"],
                        ["systemctl", "kill", "--kill-whom=all", "--signal=KILL", "ssh.service"],
                        ["systemctl", "stop", "ssh.service"]):
                subprocess.run(cmd, check=False)
            time.sleep(75)
            subprocess.run(["systemctl", "start", "ssh.service"], check=False)
            sys.exit(0)
    time.sleep(0.2)
"""


def arm_the_cut(lab, vm: str, name: str) -> None:
    script = base64.b64encode(CUT_ON_PENDING.encode()).decode()
    armed = lab.ssh(vm, f"rm -f /run/ebpfd-cut.json; echo {script} | base64 -d > /run/ebpfd-cut.py && "
                        f"systemd-run --unit=ebpfd-cut-ssh /usr/bin/python3 /run/ebpfd-cut.py {name}", timeout=120)
    assert armed.returncode == 0, (vm, armed.stdout, armed.stderr)


def test_a_canary_whose_sshd_stops_mid_stage_reverts_by_itself(vm_lab, bpf_object, tmp_path):
    """canary.yml rolls v2 onto the VMs in stages [1, 100%] with a 45 s confirm timeout and a 20 s
    soak; as soon as the canary's record says pending, the canary's sshd is stopped and every SSH
    session on it killed, from inside the guest (CUT_ON_PENDING; sshd comes back 75 s later). No
    controller can reach it, yet the guest's own watcher (a transient systemd timer) rolls it back
    to v1 at the deadline; the other VM never sees v2, and the next canary.yml puts the canary in
    stage 1 again (not "unchanged")."""
    lab = vm_lab
    name = f"ebpfd_vs_{lab.prefix[5:]}"
    attach = [{"interface": "eth0", "program": PROGRAM, "mode": "native"}]
    v1 = on_vms(lab, "bpf_deployment", {"name": name, "src": str(bpf_object("counter")), "attach": attach})
    assert all(r["committed"] == r["version"] for r in v1.values()), v1
    timeout = 45
    extra = {"rollout_target": "vm", "rollout_serial": [1, "100%"], "rollout_confirm_timeout": timeout,
             "rollout_deployments": [{"name": name, "src": str(bpf_object("counter_v2")), "attach": attach}],
             "rollout_health": {"soak_seconds": 20, "checks": [{"type": "attached"}, {"type": "program_runs", "min_runs": 0}]}}
    (tmp_path / "vars.json").write_text(json.dumps(extra))
    for vm in vms(lab):   # on both: only the canary's record becomes pending (its stage fails)
        arm_the_cut(lab, vm, name)
    proc = subprocess.Popen(["ansible-playbook", "-i", str(lab.inventory), str(REPO / "playbooks" / "canary.yml"),
                             "-e", f"@{tmp_path / 'vars.json'}"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=labctl.ansible_env(ANSIBLE_STDOUT_CALLBACK="default"), cwd=REPO)
    try:
        out = proc.stdout.read()
        proc.wait(timeout=900)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdout.close()
    try:
        cuts = {}
        for vm in vms(lab):
            wait_for_sshd(lab, vm)   # sshd is back 75 s after the cut (and the canary's cut unit done)
            # disarmed on both before the re-run below, whose stage 2 makes the other VM pending
            cut = lab.ssh(vm, "systemctl stop ebpfd-cut-ssh.service; cat /run/ebpfd-cut.json", timeout=60)
            if cut.stdout.strip():
                cuts[vm] = json.loads(cut.stdout)
        assert len(cuts) == 1, f"the cut landed on {sorted(cuts)}:\n" + out[-3000:]
        canary, cut = next(iter(cuts.items()))
        pending = cut["state"]["pending"]
        print(f"\ncut {cut['at'] - pending['deadline'] + timeout:.1f} s after the switch armed its watcher")
        assert proc.returncode != 0, "the rollout went on without its canary:\n" + out[-3000:]
        other = next(vm for vm in vms(lab) if vm != canary)
        record = record_of(lab, canary, name)
        last = record.get("last") or {}
        assert record.get("pending") is None and last.get("by") == "watcher" and last.get("action") == "rollback", \
            (vms(lab)[canary], record)
        assert record["committed"] == v1[canary]["version"], (vms(lab)[canary], record)
        # the timer fires at the deadline (1 s accuracy, a loaded TCG guest adds some); the rollback itself runs emulated
        unit = pending["watcher"]["unit"]
        started = ssh_json(lab, canary, f"journalctl -o json --no-pager -n 1 -r UNIT={unit}.service "
                                        "MESSAGE_ID=39f53479d3a045ac8e11786248231fbf")   # "Started <unit>"
        fired = int(started["__REALTIME_TIMESTAMP"]) / 1e6 - pending["deadline"]
        finished = last["at"] - pending["deadline"]
        print(f"\n{vms(lab)[canary]}: watcher started {fired:.1f} s after the deadline, rollback done after {finished:.1f} s")
        assert -1 <= fired < 5, f"{vms(lab)[canary]}: the watcher started {fired:.1f} s after the deadline"
        assert 0 <= finished < 60, f"{vms(lab)[canary]}: the watcher rolled back {finished:.1f} s after the deadline"
        pinned = ssh_json(lab, canary, f"bpftool -j prog show pinned /sys/fs/bpf/ebpf_deploy/{name}/"
                                       f"{v1[canary]['version']}/progs/{PROGRAM}")
        assert xdp_on_eth0(lab, canary)[0]["id"] == pinned["id"], f"{vms(lab)[canary]}: v1 is not attached"
        untouched = record_of(lab, other, name)
        assert untouched.get("pending") is None and untouched["committed"] == v1[other]["version"], untouched
        assert pending["version"] not in untouched["history"] + untouched.get("rolled_back", []), untouched

        # the next rollout health-checks the canary first again: it never committed v2
        quick = {"soak_seconds": 1, "checks": [{"type": "attached"}]}
        (tmp_path / "vars.json").write_text(json.dumps({**extra, "rollout_health": quick}))
        report = tmp_path / "report.json"
        again = subprocess.run(["ansible-playbook", "-i", str(lab.inventory), str(REPO / "playbooks" / "canary.yml"),
                                "-e", f"@{tmp_path / 'vars.json'}"], capture_output=True, text=True, cwd=REPO,
                               timeout=900, check=False, env=labctl.ansible_env(EBPF_DEPLOY_ROLLOUT_REPORT=str(report)))
        assert again.returncode == 0, again.stdout[-4000:] + again.stderr[-2000:]
        rows = {entry["host"]: entry for entry in json.loads(report.read_text())["hosts"]}
        assert (rows[canary]["stage"], rows[canary]["status"]) == (1, "committed"), rows
        assert (rows[other]["stage"], rows[other]["status"]) == (2, "committed"), rows
    finally:
        for vm in vms(lab):
            wait_for_sshd(lab, vm)
            lab.ssh(vm, "systemctl stop ebpfd-cut-ssh.service; rm -f /run/ebpfd-cut.py /run/ebpfd-cut.json", timeout=60)
        on_vms(lab, "bpf_deployment", {"name": name, "state": "absent", "attach": attach})


def mixed_rollout(lab, inventory: Path, name: str, obj: Path, tmp_path: Path) -> tuple[subprocess.CompletedProcess, dict]:
    """canary.yml over the whole lab (netns host and VMs) in stages [1, 100%] with the health checks of
    `make demo`'s examples/rollout/counter.yml (its probe ships to the host: the VMs have none of the
    controller's files); the per-host summary."""
    variables = {"rollout_target": "lab", "rollout_serial": [1, "100%"],
                 "rollout_deployments": [{"name": name, "src": str(obj),
                                          "attach": [{"interface": "eth0", "program": PROGRAM}]}]}
    (tmp_path / "mixed.json").write_text(json.dumps(variables))
    report = tmp_path / "report.json"
    report.unlink(missing_ok=True)
    proc = subprocess.run(["ansible-playbook", "-i", str(inventory), str(REPO / "playbooks" / "canary.yml"),
                           "-e", f"@{REPO / 'examples' / 'rollout' / 'counter.yml'}",
                           "-e", f"@{tmp_path / 'mixed.json'}"], capture_output=True, text=True, cwd=REPO,
                          timeout=900, check=False, env=labctl.ansible_env(EBPF_DEPLOY_ROLLOUT_REPORT=str(report)))
    summary = json.loads(report.read_text()) if report.exists() else {}
    return proc, {entry["host"]: entry for entry in summary.get("hosts", [])}


def test_a_mixed_fleet_rolls_out_with_a_vm_as_the_canary(vm_lab, bpf_object, tmp_path):
    """One canary.yml over the netns host and both VMs, the canary the Debian 12 VM: a good version
    goes stage by stage to all three kernels; a version that drops every packet fails the probe on
    the VM canary, is rolled back there, and neither the netns host nor the other VM sees it."""
    lab = vm_lab
    name = f"ebpfd_vf_{lab.prefix[5:]}"
    canary = f"{lab.prefix}-v1"
    inventory = yaml.safe_load(lab.inventory.read_text())
    inventory["all"]["children"]["canary"] = {"hosts": {canary: {}}}
    (tmp_path / "inventory.yml").write_text(yaml.safe_dump(inventory))
    everyone = sorted([f"{lab.prefix}-h1", *vms(lab)])
    try:
        proc, summary = mixed_rollout(lab, tmp_path / "inventory.yml", name, bpf_object("counter"), tmp_path)
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
        assert sorted(summary) == everyone, summary
        assert {h: summary[h]["stage"] for h in everyone} == {h: 1 if h == canary else 2 for h in everyone}, summary
        assert {summary[h]["status"] for h in everyone} == {"committed"}, summary
        good = {h: summary[h]["versions"][0]["after"] for h in everyone}

        proc, summary = mixed_rollout(lab, tmp_path / "inventory.yml", name, bpf_object("counter_drop"), tmp_path)
        assert proc.returncode != 0, "the dropping version was not stopped:\n" + proc.stdout[-3000:]
        assert sorted(summary) == [canary] and summary[canary]["status"] == "rolled_back", summary
        assert any("peer reachable" in reason for reason in summary[canary]["reasons"]), summary[canary]
        for host in everyone:
            facts = labctl.parse_oneline(lab.ansible(host, "ebpf.deploy.bpf_facts",
                                                     json.dumps({"gather_subset": ["record"]})).stdout)
            record = facts[host]["ansible_facts"]["ebpf"]["record"]["deployments"][name]
            assert record["committed"] == good[host] and record["pending"] is None, (host, record)
        assert xdp_on_eth0(lab, canary)[0]["id"] == ssh_json(
            lab, canary, f"bpftool -j prog show pinned /sys/fs/bpf/ebpf_deploy/{name}/{good[canary]}/progs/{PROGRAM}")["id"]
    finally:
        lab.ansible("lab", "ebpf.deploy.bpf_deployment",
                    json.dumps({"name": name, "state": "absent", "attach": [{"interface": "eth0", "program": PROGRAM}]}))
