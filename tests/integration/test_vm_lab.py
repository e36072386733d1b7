"""VM hosts of the lab (roles/lab/files/labtool/, vm_*.py): real Debian 12 and 13 kernels under qemu.

One lab (session fixture `vm_lab` in conftest.py) with a netns host and two VMs, `<prefix>-v1` on
debian12 (kernel 6.1) and `<prefix>-v2` on debian13 (kernel 6.12), booted in parallel. Every module
runs over real SSH (127.0.0.1 port forwards) with the guests' own /usr/bin/python3 and Debian's
libbpf and pyroute2; each step runs on both VMs at once (`ansible vm ...`), and every assertion
names the kernel it is about. Packets come from each VM's traffic peer namespace through a tap to
the guest's virtio_net eth0, where the program is attached in native (driver) mode.
"""
from __future__ import annotations

import base64
import json
import os
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from tests.integration.test_bpf_program import REJECTS  # fixture -> program, error_kind, words on 6.18
from tests.lab import labctl

REPO = Path(__file__).resolve().parents[2]
BPF_DIR = Path(os.environ.get("EBPF_DEPLOY_BPF_DIR", REPO / "build" / "bpf"))
VERIFIER_DATA = REPO / "tests" / "unit" / "data" / "verifier"
KERNELS = {"debian12": "6.1", "debian13": "6.12"}
PROGRAM = "xdp_packet_counter"
# every tests/bpf/reject_*.bpf.c: test_bpf_program's table plus the stack limit (no insn: the check
# runs after the walk, over the call graph)
REJECTIONS = {**{f: (prog, kind) for f, (prog, kind, _words) in REJECTS.items()},
              "reject_stack_limit": ("xdp_stack_limit", "stack_limit")}


def vms(lab) -> dict[str, str]:
    """VM name -> image."""
    return {v["name"]: v["image"] for v in lab.vm_hosts}


def on_vms(lab, module: str, args: dict | str | None = None, *extra: str) -> dict[str, dict]:
    """Run a module on every VM at once; the per-host results (all VMs must answer)."""
    fqcn = module if "." in module else f"ebpf.deploy.{module}"
    proc = lab.ansible("vm", fqcn, json.dumps(args) if isinstance(args, dict) else args, *extra, timeout=600)
    results = labctl.parse_oneline(proc.stdout)
    assert sorted(results) == sorted(vms(lab)), proc.stdout + proc.stderr
    return results


def ssh_json(lab, vm: str, command: str):
    proc = lab.ssh(vm, command, timeout=120)
    assert proc.returncode == 0, (vm, command, proc.stdout, proc.stderr)
    return json.loads(proc.stdout)


def counter(lab, vm: str, name: str) -> int:
    """Key 0 of the deployment's pkt_count map, read with the guest's bpftool (not the modules)."""
    out = ssh_json(lab, vm, f"bpftool -j map lookup pinned /sys/fs/bpf/ebpf_deploy/{name}/maps/pkt_count key 0 0 0 0")
    if isinstance(out.get("formatted"), dict):
        return int(out["formatted"]["value"])
    return int.from_bytes(bytes(int(b, 16) for b in out["value"]), "little")


def xdp_on_eth0(lab, vm: str) -> list[dict]:
    return ssh_json(lab, vm, "bpftool -j net show dev eth0")[0].get("xdp", [])


def test_vms_come_up_in_their_groups_with_the_netns_host(vm_lab):
    lab = vm_lab
    assert vms(lab) == {f"{lab.prefix}-v1": "debian12", f"{lab.prefix}-v2": "debian13"}
    proc = subprocess.run(["ansible-inventory", "-i", str(lab.inventory), "--list"], capture_output=True,
                          text=True, env=labctl.ansible_env(), check=True)
    inv = json.loads(proc.stdout)
    assert sorted(inv["vm"]["hosts"]) == sorted(vms(lab))
    assert inv["netns"]["hosts"] == [f"{lab.prefix}-h1"]
    assert sorted(inv["lab"]["hosts"]) == sorted([f"{lab.prefix}-h1", *vms(lab)])
    for n, vm in enumerate(sorted(vms(lab)), start=1):
        hv = inv["_meta"]["hostvars"][vm]
        assert hv["ansible_host"] == "127.0.0.1" and hv["ansible_port"] == lab.vm(vm)["ssh_port"], hv
        assert hv["ansible_python_interpreter"] == "/usr/bin/python3"
        assert hv["lab_data_interface"] == "eth0" and hv["lab_peer_netns"] == f"{lab.prefix}-pv{n}"
        assert hv["lab_address"] == f"10.251.{128 + n}.1" and hv["lab_peer_address"] == f"10.251.{128 + n}.2"
    # status reads each VM's SSH banner with a 3 s timeout: a freshly booted TCG guest still busy with
    # its first-boot jobs may miss it once, so the lab gets a few reads to say up
    status = lab.status()
    for _retry in range(6):
        if status["up"]:
            break
        time.sleep(5)
        status = lab.status()
    assert status["up"], status
    assert {v["accel"] for v in lab.vm_hosts} <= {"kvm", "tcg"}


def test_each_vm_runs_its_own_kernel_and_system_python_over_ssh(vm_lab):
    lab = vm_lab
    facts = on_vms(lab, "ansible.builtin.setup", "gather_subset=min")
    here = os.uname().release
    for vm, image in vms(lab).items():
        f = facts[vm]["ansible_facts"]
        assert f["ansible_kernel"].startswith(KERNELS[image] + "."), (vm, f["ansible_kernel"])
        assert f["ansible_kernel"] != here
        assert f["ansible_python"]["executable"] == "/usr/bin/python3", (vm, f["ansible_python"])
    probe = on_vms(lab, "ansible.builtin.command",
                   "/usr/bin/python3 -c 'import sys, pyroute2; print(sys.prefix, pyroute2.__file__)'")
    for vm in vms(lab):
        prefix, pyroute2 = probe[vm]["stdout"].split()
        assert prefix == "/usr" and pyroute2.startswith("/usr/lib/python3/dist-packages/"), (vm, probe[vm])
        assert str(REPO) not in probe[vm]["stdout"], "a VM used something from the controller"


def test_host_role_prepares_the_vms_and_a_second_run_changes_nothing(vm_lab, tmp_path):
    lab = vm_lab
    playbook = tmp_path / "host.yml"
    playbook.write_text("---\n- name: Prepare the VM hosts\n  hosts: vm\n  gather_facts: false\n"
                        "  roles:\n    - role: ebpf.deploy.host\n")
    for run in (1, 2):
        proc = subprocess.run(["ansible-playbook", "-i", str(lab.inventory), str(playbook)], capture_output=True,
                              text=True, env=labctl.ansible_env(), cwd=REPO, timeout=600, check=False)
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
        recap = [line for line in proc.stdout.splitlines() if line.startswith(f"{lab.prefix}-v") and "ok=" in line]
        assert len(recap) == 2 and all("failed=0" in line for line in recap), recap
        if run == 2:
            assert all("changed=0" in line for line in recap), recap
    for vm in vms(lab):
        assert lab.ssh(vm, "stat -f -c %T /sys/fs/bpf").stdout.strip() == "bpf_fs"
        assert lab.ssh(vm, "mountpoint -q /sys/kernel/tracing").returncode == 0
        assert "bpf_jit_enable = 1" in lab.ssh(vm, "cat /etc/sysctl.d/60-ebpf-deploy.conf").stdout


def test_deploy_count_native_xdp_upgrade_roll_back_and_remove_on_both_kernels(vm_lab, bpf_object):
    lab = vm_lab
    name = f"ebpfd_vm_{lab.prefix[5:]}"
    attach = [{"program": PROGRAM, "interface": "eth0", "mode": "native"}]
    maps = [{"map": "pkt_count", "key_type": "u32", "value_type": "u64", "entries": [{"key": 0, "value": 0}],
             "overwrite": False}]
    spec = {"name": name, "src": str(bpf_object("counter")), "attach": attach, "maps": maps}

    v1 = on_vms(lab, "bpf_deployment", spec)
    for vm, image in vms(lab).items():
        r = v1[vm]
        assert r["_status"] == "CHANGED" and r["action"] == "load", (image, r)
        (xdp,) = xdp_on_eth0(lab, vm)
        assert xdp["mode"] == "driver" and xdp["id"] == r["attach"][0]["prog_id"], (image, xdp)
        assert lab.traffic(vm, count=500)["sent"] == 500
    time.sleep(0.5)
    for vm, image in vms(lab).items():
        assert counter(lab, vm, name) == 500, f"{image}: native XDP on virtio_net did not count the peer's packets"
    again = on_vms(lab, "bpf_deployment", spec)
    assert all(r["_status"] == "SUCCESS" and r["action"] == "none" for r in again.values()), again

    v2 = on_vms(lab, "bpf_deployment", {**spec, "src": str(bpf_object("counter_v2"))})
    for vm, image in vms(lab).items():
        r = v2[vm]
        assert r["_status"] == "CHANGED" and r["previous_version"] == v1[vm]["version"] != r["version"], (image, r)
        assert r["attach"][0]["action"] == "replace", (image, r)
        assert xdp_on_eth0(lab, vm)[0]["id"] == r["attach"][0]["prog_id"], image
        assert counter(lab, vm, name) == 500, f"{image}: the map did not survive the upgrade"
        assert lab.traffic(vm, count=100)["sent"] == 100
    time.sleep(0.5)
    for vm, image in vms(lab).items():
        assert counter(lab, vm, name) == 600, f"{image}: v2 did not count into the same map"

    back = on_vms(lab, "bpf_deployment", {"name": name, "version": "previous", "attach": attach})
    for vm, image in vms(lab).items():
        r = back[vm]
        assert r["_status"] == "CHANGED" and r["version"] == v1[vm]["version"], (image, r)
        assert xdp_on_eth0(lab, vm)[0]["id"] == r["attach"][0]["prog_id"] != v2[vm]["attach"][0]["prog_id"], image

    gone = on_vms(lab, "bpf_deployment", {"name": name, "state": "absent", "attach": attach})
    for vm, image in vms(lab).items():
        assert gone[vm]["_status"] == "CHANGED", (image, gone[vm])
        assert xdp_on_eth0(lab, vm) == [], image
        assert lab.ssh(vm, f"test -e /sys/fs/bpf/ebpf_deploy/{name}").returncode == 1, image
    assert all(r["_status"] == "SUCCESS" for r in on_vms(lab, "bpf_deployment",
                                                         {"name": name, "state": "absent", "attach": attach}).values())


def test_a_hook_one_kernel_lacks_is_refused_there_by_preflight_and_passes_on_the_other(vm_lab, bpf_object):
    """bpf_preflight of a tcx program (tcx links: kernel >= 6.6) on both VMs at once: Debian 12's 6.1
    refuses it by its hook, naming the kernel it runs (its libbpf 1.1 does not even know the section);
    Debian 13's 6.12 finds no error. Nothing is loaded or pinned either way."""
    lab = vm_lab
    results = on_vms(lab, "bpf_preflight", {"src": str(bpf_object("tcx_counter"))})
    for vm, image in vms(lab).items():
        r = results[vm]
        errors = [f for f in r.get("findings", []) if f["severity"] == "error"]
        release = lab.ssh(vm, "uname -r").stdout.strip()
        if image == "debian12":
            assert r["_status"].startswith("FAILED") and [f["check"] for f in errors] == ["hook"], (image, r)
            assert "tcx_ingress" in errors[0]["message"] and "kernel >= 6.6" in errors[0]["message"] \
                and release in errors[0]["message"], (image, errors[0]["message"])
            assert "\n" not in r["msg"], (image, r["msg"])
        else:
            assert r["_status"] == "SUCCESS" and errors == [], (image, r)
        left = [p for p in ssh_json(lab, vm, "bpftool -j prog show") if p.get("name") == "tcx_count"]
        assert left == [], (image, left)


def test_a_real_reboot_restores_the_committed_deployment_not_the_pending_one(vm_lab, bpf_object):
    """The host role's ebpf-deploy-restore.service, after `ansible.builtin.reboot`, with no Ansible run
    in between: the committed deployment is on eth0 again; the one pending at shutdown is not."""
    lab = vm_lab
    kept, pending = f"ebpfd_vk_{lab.prefix[5:]}", f"ebpfd_vp_{lab.prefix[5:]}"
    attach = [{"program": PROGRAM, "interface": "eth0", "mode": "native"}]
    committed = on_vms(lab, "bpf_deployment", {"name": kept, "src": str(bpf_object("counter")), "attach": attach})
    assert all(r["committed"] == r["version"] for r in committed.values()), committed
    staged = on_vms(lab, "bpf_deployment", {"name": pending, "src": str(bpf_object("counter_v2")),
                                            "confirm_timeout": 0})
    assert all(r["pending"] for r in staged.values()), staged
    for vm in vms(lab):
        assert lab.ssh(vm, "systemctl is-enabled ebpf-deploy-restore.service").returncode == 0, vm

    rebooted = on_vms(lab, "ansible.builtin.reboot", {"reboot_timeout": 900, "test_command": "true"})
    assert all(r["_status"] in ("CHANGED", "SUCCESS") for r in rebooted.values()), rebooted
    try:
        records = on_vms(lab, "bpf_facts", {"gather_subset": ["record"]})   # one run on both VMs
        for vm, image in vms(lab).items():
            (xdp,) = xdp_on_eth0(lab, vm)
            pinned = ssh_json(lab, vm, f"bpftool -j prog show pinned /sys/fs/bpf/ebpf_deploy/{kept}/"
                                       f"{committed[vm]['version']}/progs/{PROGRAM}")
            assert xdp["id"] == pinned["id"], f"{image}: the committed deployment is not attached after the reboot"
            assert lab.ssh(vm, f"test -e /sys/fs/bpf/ebpf_deploy/{pending}").returncode == 1, \
                f"{image}: a pending switch was restored at boot"
            unit = lab.ssh(vm, "systemctl is-active ebpf-deploy-restore.service; "
                               "journalctl -b -u ebpf-deploy-restore.service --no-pager -o cat")
            assert unit.stdout.startswith("active") and f"{kept}: restored" in unit.stdout, (image, unit.stdout)
            facts = records[vm]["ansible_facts"]["ebpf"]["record"]
            assert facts["last_restore"]["failed"] == 0, (image, facts)
            assert facts["deployments"][pending]["pending"] is None, (image, facts)
    finally:
        for name in (kept, pending):
            on_vms(lab, "bpf_deployment", {"name": name, "state": "absent", "attach": attach if name == kept else []})


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


@pytest.fixture(scope="module")
def rejections(vm_lab, tmp_path_factory) -> dict[str, dict[str, dict]]:
    """Every reject_* fixture loaded by bpf_program on both VMs in one playbook run (a loop per
    host, the hosts in parallel): {vm: {fixture: result}}."""
    lab = vm_lab
    out = tmp_path_factory.mktemp("rejections")
    playbook = out / "reject.yml"
    playbook.write_text(json.dumps([{
        "name": "Load every rejected fixture", "hosts": "vm", "gather_facts": False,
        "tasks": [
            {"name": "Load it", "ebpf.deploy.bpf_program": {"name": f"ebpfd_rej_{lab.prefix[5:]}",
                                                            "src": f"{BPF_DIR}/{{{{ item }}}}.bpf.o"},
             "loop": sorted(REJECTIONS), "register": "loaded", "ignore_errors": True},
            {"name": "Keep the results on the controller", "delegate_to": "localhost",
             "ansible.builtin.copy": {"content": "{{ loaded.results | to_json }}",
                                      "dest": f"{out}/{{{{ inventory_hostname }}}}.json", "mode": "0644"}},
        ]}]))
    proc = subprocess.run(["ansible-playbook", "-i", str(lab.inventory), str(playbook)], capture_output=True,
                          text=True, env=labctl.ansible_env(), cwd=REPO, timeout=900, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    return {vm: {r["item"]: r for r in json.loads((out / f"{vm}.json").read_text())} for vm in vms(lab)}


@pytest.mark.parametrize("fixture", sorted(REJECTIONS))
def test_verifier_rejections_are_classified_on_6_1_and_6_12_as_on_6_18(vm_lab, rejections, fixture):
    """Same error_kind and program as on this machine's kernel; the logs are kept as unit data
    (tests/unit/data/verifier/<kernel>/) when EBPF_DEPLOY_CAPTURE_VERIFIER=1."""
    lab = vm_lab
    program, kind = REJECTIONS[fixture]
    for vm, image in vms(lab).items():
        r = rejections[vm][fixture]
        assert r["failed"], (image, r)
        assert (r.get("program"), r.get("error_kind")) == (program, kind), \
            f"kernel {KERNELS[image]}: {r.get('error_kind')} ({r.get('msg')})"
        assert isinstance(r.get("insn"), int) or kind == "stack_limit", (image, r)
        assert "\n" not in r["msg"] and r["verifier_log"].strip()
        if os.environ.get("EBPF_DEPLOY_CAPTURE_VERIFIER") == "1":
            out = VERIFIER_DATA / KERNELS[image] / f"{fixture}.log"
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(r["verifier_log"].rstrip("\n") + "\n")


def test_rejected_loads_left_nothing_on_the_vms(vm_lab, rejections):
    for vm, image in vms(vm_lab).items():
        assert sorted(rejections[vm]) == sorted(REJECTIONS)
        left = vm_lab.ssh(vm, f"test -e /sys/fs/bpf/ebpf_deploy/ebpfd_rej_{vm_lab.prefix[5:]}")
        assert left.returncode == 1, f"{image}: a rejected load left pins"


def test_a_killed_lab_up_is_seen_by_the_next_up_and_cleaned_by_lab_down(vm_lab, tmp_path):
    """`up` killed (SIGKILL) while its VM boots leaves a qemu, a peer namespace and files but no state:
    the next `up --check` wants to restart the VM, and `down` ends that qemu by its PID and removes
    everything. (vm_lab only guarantees the images are built; this lab is a second, separate one.)"""
    lab = labctl.new_lab(count=0, vms=1)
    before = labctl.snapshot()
    log = tmp_path / "up.log"
    with open(log, "wb") as out:
        up = subprocess.Popen([labctl.PYTHON, str(labctl.SCRIPT), *lab.up_args()], stdout=out, stderr=out)
    pidfile = lab.lab_dir / "vms" / f"{lab.prefix}-v1" / "qemu.pid"
    qemu = None
    try:
        deadline = time.monotonic() + 120
        while qemu is None and time.monotonic() < deadline and up.poll() is None:
            if pidfile.exists() and pidfile.read_text().strip():
                qemu = int(pidfile.read_text().split()[0])
            time.sleep(0.2)
    finally:
        up.kill()
        up.wait()
    if qemu is None:
        lab.down()   # what an up that ended early left behind (once a qemu without its pid file yet)
    assert qemu is not None, f"lab-up started no qemu (rc {up.returncode}): {log.read_text()[-3000:]}"
    try:
        assert Path(f"/proc/{qemu}").exists(), "the VM should outlive the killed lab-up"
        assert not (lab.lab_dir / "lab.json").exists() or "vms" not in json.loads((lab.lab_dir / "lab.json").read_text())
        check = lab.up(check=True)
        assert any(a.startswith(f"{lab.prefix}-v1: would (re)start") for a in check["actions"]), check
        assert Path(f"/proc/{qemu}").exists(), "check mode ended the VM"
    finally:
        down = lab.down()
    assert any(a == f"{lab.prefix}-v1: stopped and removed" for a in down["actions"]), down
    deadline = time.monotonic() + 5
    while Path(f"/proc/{qemu}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not Path(f"/proc/{qemu}").exists(), f"qemu {qemu} survived lab-down"
    leaks = labctl.leaks(before, labctl.snapshot(), lab)
    assert leaks == {"netns": [], "links": [], "bpffs": [], "pids": {}}, leaks
    assert not lab.lab_dir.exists(), list(lab.lab_dir.rglob("*"))
