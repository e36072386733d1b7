"""Lab hosts (roles/lab): real namespaces, real sshd, real SSH from Ansible, real packets.

The tests run in file order against one 3-host lab with a random prefix and management /24, so
they can run beside `make lab-up` and beside other engineers' work on the same machine. The last
test tears the lab down through the role and checks that nothing of it is left; the fixture's
teardown is only a safety net.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.lab import labctl

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="lab hosts need root")

COUNT = 3


@pytest.fixture(scope="module")
def lab():
    before = labctl.snapshot()
    with labctl.running(count=COUNT) as hosts:
        hosts.before = before  # type: ignore[attr-defined]
        hosts.seen_pids = {}  # type: ignore[attr-defined]
        yield hosts


def _pids_of(lab) -> dict[int, str]:
    pids = labctl.lab_pids(lab)
    lab.seen_pids.update(pids)
    return pids


def test_up_makes_hosts_and_inventory(lab):
    assert [h["name"] for h in lab.hosts] == [f"{lab.prefix}-h{i}" for i in range(1, COUNT + 1)]
    proc = subprocess.run(["ansible-inventory", "-i", str(lab.inventory), "--list"], capture_output=True,
                          text=True, env=labctl.ansible_env(), check=True)
    inv = json.loads(proc.stdout)
    assert sorted(inv["lab"]["hosts"]) == sorted(h["name"] for h in lab.hosts)
    assert inv["canary"]["hosts"] == [f"{lab.prefix}-h1"]
    hv = inv["_meta"]["hostvars"][f"{lab.prefix}-h2"]
    assert hv["ansible_host"] == lab.host(2)["mgmt_address"]
    assert hv["ansible_user"] == "root"
    assert Path(hv["ansible_ssh_private_key_file"]).is_file()
    assert Path(hv["ansible_python_interpreter"]).is_absolute()
    assert hv["lab_netns"] == f"{lab.prefix}-h2" and hv["lab_peer_netns"] == f"{lab.prefix}-p2"
    assert hv["lab_data_interface"] == "eth0"
    assert hv["lab_address"] == "10.251.2.1" and hv["lab_peer_address"] == "10.251.2.2"
    status = lab.status()
    assert status["up"], status


def test_ansible_reaches_every_host_over_ssh(lab):
    proc = lab.ansible("lab", "ansible.builtin.ping")
    results = labctl.parse_oneline(proc.stdout)
    assert sorted(results) == sorted(h["name"] for h in lab.hosts), proc.stdout + proc.stderr
    assert all(r["_status"] == "SUCCESS" and r.get("ping") == "pong" for r in results.values()), results
    # ...and each really ran on its host: over SSH, in its own network namespace
    proc = lab.ansible("lab", "ansible.builtin.shell",
                       'echo "$SSH_CONNECTION|$EBPFD_LAB_HOST|$(ip -o -4 addr show dev mgmt0)"')
    results = labctl.parse_oneline(proc.stdout)
    for h in lab.hosts:
        ssh_conn, name, addr = results[h["name"]]["stdout"].split("|")
        assert ssh_conn.split()[2] == h["mgmt_address"], results[h["name"]]
        assert name == h["name"]
        assert f" {h['mgmt_address']}/" in addr
    _pids_of(lab)


def test_bpffs_is_per_host(lab):
    pin = f"/sys/fs/bpf/{lab.prefix}_iso"
    made = lab.ansible(f"{lab.prefix}-h1", "ansible.builtin.command",
                       f"bpftool map create {pin} type array key 4 value 4 entries 1 name {lab.prefix}_iso")
    assert labctl.parse_oneline(made.stdout)[f"{lab.prefix}-h1"]["_status"] == "CHANGED", made.stdout + made.stderr
    assert lab.ssh(1, f"test -e {pin}").returncode == 0
    assert lab.ssh(2, f"test -e {pin}").returncode == 1, "a pin made on host 1 is visible on host 2"
    assert not Path(pin).exists(), "a pin made on host 1 is visible in the root namespace"
    assert lab.ssh(2, "stat -f -c %T /sys/fs/bpf").stdout.strip() == "bpf_fs"


def test_traffic_reaches_the_host_data_interface(lab):
    rx1, rx2 = lab.rx_packets(1), lab.rx_packets(2)
    result = lab.traffic(1, count=1000)
    assert result["sent"] == 1000 and result["errors"] == 0, result
    # static neighbours and no IPv6 on the data link: the datagrams are the only frames on it
    assert lab.rx_packets(1) - rx1 == 1000
    assert lab.rx_packets(2) == rx2, "traffic for host 1 reached host 2"
    paced = lab.traffic(2, count=200, rate=2000)
    assert paced["sent"] == 200 and paced["seconds"] >= 0.08, paced
    assert lab.rx_packets(2) - rx2 == 200


def test_up_is_idempotent(lab):
    assert lab.up(check=True)["changed"] is False
    again = lab.up()
    assert again["changed"] is False and again["actions"] == [], again
    # the role reports the same through Ansible
    proc = lab.playbook("present")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "changed=0" in proc.stdout and "failed=0" in proc.stdout, proc.stdout


def test_up_repairs_a_half_made_host(lab):
    subprocess.run(["ip", "link", "del", lab.host(2)["root_interface"]], check=True)
    os.kill(lab.result["hosts"][2]["sshd_pid"], 15)
    time.sleep(0.2)
    status = lab.status()
    assert [h["healthy"] for h in status["hosts"]] == [True, False, False], status
    assert lab.up(check=True)["changed"] is True
    fixed = lab.up()
    touched = {a.split(":")[0] for a in fixed["actions"]}
    assert touched == {f"{lab.prefix}-h2", f"{lab.prefix}-h3"}, fixed["actions"]
    assert lab.status()["up"]
    proc = lab.ansible("lab", "ansible.builtin.ping")
    results = labctl.parse_oneline(proc.stdout)
    assert all(r["_status"] == "SUCCESS" for r in results.values()) and len(results) == COUNT, proc.stdout
    _pids_of(lab)


def test_down_leaves_nothing_behind(lab):
    _pids_of(lab)
    assert lab.seen_pids, "no processes were seen in the lab namespaces"
    sockets = [p for a in lab.addresses() for p in _control_paths(a)]
    assert any(s.exists() for s in sockets), "expected ControlPersist masters from the ansible runs"

    proc = lab.playbook("absent")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "changed=1" in proc.stdout, proc.stdout
    after = labctl.snapshot()

    leaks = labctl.leaks(lab.before, after, lab)
    assert leaks == {"netns": [], "links": [], "bpffs": [], "pids": {}}, (leaks, labctl.diff(lab.before, after))
    alive = {p: c for p, c in lab.seen_pids.items() if Path(f"/proc/{p}").exists()}
    assert not alive, f"lab processes still running: {alive}"
    assert not [s for s in sockets if s.exists()], "ssh ControlPersist sockets left"
    assert not lab.lab_dir.exists(), list(lab.lab_dir.rglob("*"))
    assert lab.down()["changed"] is False


def _control_paths(address: str) -> list[Path]:
    """Where Ansible's ssh connection keeps its ControlPersist socket for root@address:22."""
    digest = hashlib.sha1(f"{address}-22-root".encode()).hexdigest()[:10]
    return [Path("~/.ansible/cp").expanduser() / digest]


def test_point_to_point_management_without_bridge():
    before = labctl.snapshot()
    lab = labctl.new_lab(count=2, bridge=False)
    try:
        up = lab.up()
        assert [h["mgmt_address"] for h in up["hosts"]] == [
            lab.mgmt_network.replace(".0/24", ".2"), lab.mgmt_network.replace(".0/24", ".6")]
        assert not Path(f"/sys/class/net/{lab.prefix}-br0").exists()
        for i in (1, 2):
            proc = lab.ssh(i, "echo $EBPFD_LAB_HOST")
            assert proc.stdout.strip() == f"{lab.prefix}-h{i}", proc.stderr
        assert lab.up()["changed"] is False
    finally:
        down = lab.down()
    assert down["changed"] is True
    assert labctl.leaks(before, labctl.snapshot(), lab) == {"netns": [], "links": [], "bpffs": [], "pids": {}}
