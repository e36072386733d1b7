"""VM hosts of the lab (roles/lab/files/labtool/, vm_*.py): real Debian 12 and 13 kernels under qemu.

One lab (session fixture `vm_lab` in conftest.py) with a netns host and two VMs, `<prefix>-v1` on
debian12 (kernel 6.1) and `<prefix>-v2` on debian13 (kernel 6.12), booted in parallel. Every module
runs over real SSH (127.0.0.1 port forwards) with the guests' own /usr/bin/python3 and Debian's
libbpf and pyroute2; each step runs on both VMs at once (`ansible vm ...`; the reboot on Debian 12
alone, see there), and every assertion names the kernel it is about. Packets come from each VM's traffic peer namespace through a tap to
the guest's virtio_net eth0, where the program is attached in native (driver) mode.
"""
from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

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


def vms(lab, only: str | None = None) -> dict[str, str]:
    """VM name -> image (`only`: the VMs of that image)."""
    return {v["name"]: v["image"] for v in lab.vm_hosts if only in (None, v["image"])}


def on_vms(lab, module: str, args: dict | str | None = None, *extra: str, only: str | None = None) -> dict[str, dict]:
    """Run a module on every VM at once (`only`: on the VMs of that image); the per-host results (all
    of them must answer)."""
    fqcn = module if "." in module else f"ebpf.deploy.{module}"
    pattern = ":".join(vms(lab, only)) if only else "vm"
    proc = lab.ansible(pattern, fqcn, json.dumps(args) if isinstance(args, dict) else args, *extra, timeout=600)
    results = labctl.parse_oneline(proc.stdout)
    assert sorted(results) == sorted(vms(lab, only)), proc.stdout + proc.stderr
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
    in between: the committed deployment is on eth0 again; the one pending at shutdown is not. On
    the Debian 12 VM (the hosts the README promises) alone: the unit and `ebpf-deploy-host restore` are
    the same on both images, the restore also runs on this machine's 6.18 (test_record.py), loading
    and attaching on 6.12 is proven by the deploy test above, and a TCG reboot costs about 100 s of
    emulated CPU per VM in a CPU-bound suite."""
    lab = vm_lab
    image = "debian12"
    kept, pending = f"ebpfd_vk_{lab.prefix[5:]}", f"ebpfd_vp_{lab.prefix[5:]}"
    attach = [{"program": PROGRAM, "interface": "eth0", "mode": "native"}]
    committed = on_vms(lab, "bpf_deployment", {"name": kept, "src": str(bpf_object("counter")), "attach": attach},
                       only=image)
    assert all(r["committed"] == r["version"] for r in committed.values()), committed
    staged = on_vms(lab, "bpf_deployment", {"name": pending, "src": str(bpf_object("counter_v2")),
                                            "confirm_timeout": 0}, only=image)
    assert all(r["pending"] for r in staged.values()), staged
    for vm in vms(lab, image):
        assert lab.ssh(vm, "systemctl is-enabled ebpf-deploy-restore.service").returncode == 0, vm

    rebooted = on_vms(lab, "ansible.builtin.reboot", {"reboot_timeout": 900, "test_command": "true"}, only=image)
    assert all(r["_status"] in ("CHANGED", "SUCCESS") for r in rebooted.values()), rebooted
    try:
        records = on_vms(lab, "bpf_facts", {"gather_subset": ["record"]}, only=image)
        for vm in vms(lab, image):
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
            on_vms(lab, "bpf_deployment", {"name": name, "state": "absent", "attach": attach if name == kept else []},
                   only=image)


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
