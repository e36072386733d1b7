"""ebpf.deploy.bpf_deployment with attach items on hooks other than XDP, on the real kernel: a tcx
deployment whose hook comes from the program's ELF section, counted by real packets, upgraded
with an atomic link update, rolled back (the hook v2 added detached again), restored at boot,
removed; bad items refused before anything changes.

libbpf 1.1 (Debian 12) cannot tell the type of a ``tcx/`` section, so the deployments set
``program_type: sched_cls`` (one type for the object: both programs of v2 are tcx programs).
Namespaces and veths are ``ebpfd-*`` and removed by their fixtures; the bpffs root, the record and
the watchers are the test's own.
"""
from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests import helpers
from tests.helpers import RUN_DIR, forget_deployment, kill_pids, ok, pids_with_argv, unique
from tests.integration import hooks_helpers as hh
from tests.integration import xdp_helpers as h

VETH_TAG = "dh"
TCX_INGRESS, TCX_EGRESS = 46, 47


@pytest.fixture
def state_dir(tmp_path):
    path = tmp_path / "state"
    yield path
    kill_pids(pids_with_argv(lambda argv: str(path) in argv and "watch" in argv), signal.SIGTERM)


@pytest.fixture
def name(bpffs_root):
    made = unique("ebpfd_", 4)
    yield made
    forget_deployment(made, bpffs_root)


def tcx_ids(veth, attach_type: int = TCX_INGRESS) -> list:
    return hh.tcx_prog_ids(hh.ifindex(veth.host_if, veth.host_ns), attach_type, veth.host_ns)


def send_from_host(veth, count: int) -> int:
    """UDP datagrams from the host side to the peer (egress of the host interface)."""
    cmd = ["nsenter", f"--net=/run/netns/{veth.host_ns}", sys.executable, "-c", h.SENDER, veth.peer_ip, "9",
           str(count), "0"]
    return int(subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=120).stdout.split()[0])


def item(veth, program: str = "tcx_count", **extra) -> dict:
    # no hook: the program's section (tcx/ingress, tcx/egress) names it
    return dict({"program": program, "interface": veth.host_if, "netns": veth.host_ns}, **extra)


def deployment(name, root, state_dir, obj, attach, **extra) -> dict:
    return dict({"name": name, "src": str(obj), "bpffs_root": str(root), "state_dir": str(state_dir),
                 "program_type": "sched_cls", "attach": attach}, **extra)


def link(root: Path, name: str, veth, hook: str = "tcx_ingress") -> dict | None:
    return h.link_info(root / name / "links" / f"{veth.host_ns}@{veth.host_if}:{hook}")


def counted(root: Path, name: str, map_name: str = "pkt_count") -> int:
    return h.map_counter(root / name / "maps" / map_name)


def test_tcx_deployment_switch_rollback_and_absent(ansible_module, veth, bpffs_root, state_dir, name, bpf_object):
    v1_args = deployment(name, bpffs_root, state_dir, bpf_object("tcx_counter"), [item(veth)])
    check, run, idem_check, idem = helpers.four_steps(ansible_module, "bpf_deployment", v1_args)
    assert check["changed"] and check["attach"][0]["predicted"] and check["attach"][0]["hook"] == "tcx_ingress"
    assert run["changed"] and run["committed"] == run["version"]
    attached = run["attach"][0]
    assert attached["hook"] == "tcx_ingress" and attached["action"] == "attach" and attached["program"] == "tcx_count"
    assert check["attach"][0]["target"] == attached["target"] and attached["target"]["interface"] == veth.host_if
    assert not idem_check["changed"] and not idem["changed"] and idem["attach"][0]["action"] == "none"
    v1_link = link(bpffs_root, name, veth)
    v1_prog = v1_link["prog_id"]
    assert tcx_ids(veth) == [v1_prog] == [attached["prog_id"]] and v1_link["id"] == attached["link_id"]
    before = counted(bpffs_root, name)
    assert veth.send(300) == 300
    time.sleep(0.05)
    assert counted(bpffs_root, name) - before == 300, "v1 does not count the packets"

    # v2: another object, pending; its ingress program swaps onto the same link, and it adds egress
    v2_args = deployment(name, bpffs_root, state_dir, bpf_object("tcx_counter_v2"),
                         [item(veth), item(veth, "tcx_count_egress")], confirm_timeout=300)
    predicted = ok(ansible_module("bpf_deployment", v2_args, check=True))
    assert [a["action"] for a in predicted["attach"]] == ["update", "attach"] and tcx_ids(veth) == [v1_prog]
    assert [a["target"] for a in predicted["attach"]] == [attached["target"], dict(attached["target"], direction="egress")]
    v2 = ok(ansible_module("bpf_deployment", v2_args))
    assert v2["pending"] and [a["action"] for a in v2["attach"]] == ["update", "attach"], v2["attach"]
    v2_link = link(bpffs_root, name, veth)
    assert v2_link["id"] == v1_link["id"] and v2_link["prog_id"] != v1_prog, "not an atomic update of the link"
    assert v2["record"]["pending"]["version"] == v2["version"]
    egress = link(bpffs_root, name, veth, "tcx_egress")
    assert egress and tcx_ids(veth, TCX_EGRESS) == [egress["prog_id"]]
    before = counted(bpffs_root, name)
    assert veth.send(200) == 200
    time.sleep(0.05)
    assert counted(bpffs_root, name) - before == 200, "v2 does not count on the same map"
    egress_before = counted(bpffs_root, name, "egress_count")
    assert send_from_host(veth, 100) == 100   # (the peer's answers come in on ingress)
    time.sleep(0.05)
    assert counted(bpffs_root, name, "egress_count") - egress_before >= 100

    back = {"name": name, "state": "rolled_back", "bpffs_root": str(bpffs_root), "state_dir": str(state_dir)}
    assert ok(ansible_module("bpf_deployment", back, check=True))["changed"]
    assert link(bpffs_root, name, veth)["prog_id"] == v2_link["prog_id"], "check mode rolled back"
    undone = ok(ansible_module("bpf_deployment", back))
    assert undone["changed"] and undone["version"] == run["version"] and not undone["pending"], undone
    back_link = link(bpffs_root, name, veth)
    assert back_link["id"] == v1_link["id"] and back_link["prog_id"] == v1_prog, "v1's program is not back"
    assert link(bpffs_root, name, veth, "tcx_egress") is None and tcx_ids(veth, TCX_EGRESS) == [], \
        "the hook v2 added is still attached"
    before = counted(bpffs_root, name)
    assert veth.send(100) == 100
    time.sleep(0.05)
    assert counted(bpffs_root, name) - before == 100
    assert not ok(ansible_module("bpf_deployment", back))["changed"]
    assert not ok(ansible_module("bpf_deployment", v1_args))["changed"], "v1 again is not converged"

    absent = {"name": name, "state": "absent", "bpffs_root": str(bpffs_root), "state_dir": str(state_dir),
              "attach": [item(veth)]}
    assert ok(ansible_module("bpf_deployment", absent, check=True))["changed"] and tcx_ids(veth) == [v1_prog]
    gone = ok(ansible_module("bpf_deployment", absent))
    assert gone["changed"] and gone["attach"][0]["action"] == "detach"
    assert tcx_ids(veth) == [] and not (bpffs_root / name).exists()
    assert not ok(ansible_module("bpf_deployment", absent))["changed"]


def test_watcher_rollback_and_health_for_a_tcx_item(ansible_module, veth, bpffs_root, state_dir, name, bpf_object):
    """The health check `attached` judges the tcx link; the host rolls back by itself at the deadline."""
    health = {"soak_seconds": 0, "checks": [{"type": "attached"}]}
    v1_args = deployment(name, bpffs_root, state_dir, bpf_object("tcx_counter"), [item(veth)], health=health)
    v1 = ok(ansible_module("bpf_deployment", v1_args))
    assert v1["health"]["checks"][0]["passed"], v1["health"]
    assert "1 attachment(s) as wanted" in v1["health"]["checks"][0]["detail"]
    v1_link = link(bpffs_root, name, veth)
    v2_items = [item(veth, hook="tcx_ingress"), item(veth, "tcx_count_egress")]
    v2_args = deployment(name, bpffs_root, state_dir, bpf_object("tcx_counter_v2"), v2_items, confirm_timeout=2)
    v2 = ok(ansible_module("bpf_deployment", v2_args))
    assert v2["pending"] and link(bpffs_root, name, veth)["prog_id"] != v1_link["prog_id"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and link(bpffs_root, name, veth)["prog_id"] != v1_link["prog_id"]:
        time.sleep(0.5)
    assert link(bpffs_root, name, veth) == v1_link, "the watcher did not put v1's program back"
    assert link(bpffs_root, name, veth, "tcx_egress") is None


def test_a_switch_that_fails_after_a_link_update_gives_the_link_back(ansible_module, veth, bpffs_root,
                                                                     state_dir, name, bpf_object):
    """v2's ingress link is updated, then its egress item fails (an anchor that is not there): the
    run undoes itself - v1's program back on the same link, v1 current, nothing pending."""
    v1_args = deployment(name, bpffs_root, state_dir, bpf_object("tcx_counter"), [item(veth)])
    v1 = ok(ansible_module("bpf_deployment", v1_args))
    v1_link = link(bpffs_root, name, veth)
    bad = deployment(name, bpffs_root, state_dir, bpf_object("tcx_counter_v2"),
                     [item(veth), item(veth, "tcx_count_egress", before="999999")])
    failed = ansible_module("bpf_deployment", bad)
    assert failed["failed"] and "999999" in failed["msg"] and "\n" not in failed["msg"], failed["msg"]
    assert f"given back to program id {v1_link['prog_id']}" in failed["msg"], failed["msg"]
    assert link(bpffs_root, name, veth) == v1_link and tcx_ids(veth, TCX_EGRESS) == []
    again = ok(ansible_module("bpf_deployment", v1_args))
    assert not again["changed"] and again["committed"] == v1["version"], again


def test_restore_after_a_reboot_attaches_the_tcx_item_again(ansible_module, veth, bpffs_root, state_dir, name,
                                                            bpf_object):
    args = deployment(name, bpffs_root, state_dir, bpf_object("tcx_counter"), [item(veth)])
    ok(ansible_module("bpf_deployment", args))
    # the "reboot": every pin and link under the root gone, /run state gone
    shutil.rmtree(bpffs_root)
    shutil.rmtree(RUN_DIR / name, ignore_errors=True)
    assert tcx_ids(veth) == []
    proc = subprocess.run([sys.executable, str(state_dir / "ebpf-deploy-host"), "restore", "--state-dir",
                           str(state_dir)], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0 and f"{name}: restored" in proc.stdout, proc.stdout + proc.stderr
    restored = link(bpffs_root, name, veth)
    assert restored and tcx_ids(veth) == [restored["prog_id"]], "the tcx item is not attached again"
    before = counted(bpffs_root, name)
    assert veth.send(100) == 100
    time.sleep(0.05)
    assert counted(bpffs_root, name) - before == 100
    assert json.loads((state_dir / "restore.json").read_text())["failed"] == 0
    assert not ok(ansible_module("bpf_deployment", args))["changed"], "the restored host is not converged"


@pytest.mark.parametrize("bad, message", [
    ({"hook": "cgroup_skb_egress", "cgroup": "/"},
     "program 'tcx_count' (program_type sched_cls) is a sched_cls program; hook cgroup_skb_egress takes "
     "cgroup_skb programs"),
    ({"interface": None, "netns": None, "hook": "tcx_ingress"}, "hook tcx_ingress needs interface"),
    ({"interface": "ebpfd-nosuch0"}, "ebpfd-nosuch0"),
    ({"mode": "generic"}, "program 'tcx_count': mode is an XDP option; hook tcx_ingress does not take it"),
])
def test_bad_items_are_refused_in_one_line_and_change_nothing(ansible_module, veth, bpffs_root, state_dir, name,
                                                              bpf_object, bad, message):
    spec = {k: v for k, v in item(veth, **bad).items() if v is not None}
    result = ansible_module("bpf_deployment", deployment(name, bpffs_root, state_dir, bpf_object("tcx_counter"),
                                                         [spec]))
    assert result["failed"] and message in result["msg"] and "\n" not in result["msg"], result["msg"]
    assert not (bpffs_root / name).exists() and not list(state_dir.glob(f"root-*/{name}"))
    assert tcx_ids(veth) == []


def test_rollout_role_with_a_tcx_deployment_passes_attached(tmp_path):
    """canary.yml on one lab host, one stage: a tcx deployment (hook from its section) is switched,
    judged `attached` from its pinned link, committed; bpf_facts over SSH sees the link run it."""
    from tests.lab import labctl   # pylint: disable=import-outside-toplevel
    repo = Path(__file__).resolve().parents[2]
    with labctl.running(count=1) as lab:
        variables = {"rollout_deployments": [{"name": "ebpfd_tcx", "src": str(helpers.BPF_DIR / "tcx_counter.bpf.o"),
                                              "program_type": "sched_cls",
                                              "attach": [{"interface": "eth0", "program": "tcx_count"}]}],
                     "rollout_health": {"soak_seconds": 0, "checks": [{"type": "attached"}]},
                     # the switch's preflight types the programs as the load will (program_type: on
                     # libbpf 1.1 a tcx/ section names no type)
                     "rollout_serial": [1]}
        vars_file = tmp_path / "vars.json"
        vars_file.write_text(json.dumps(variables))
        proc = subprocess.run(["ansible-playbook", "-i", str(lab.inventory), str(repo / "playbooks" / "canary.yml"),
                               "-e", f"@{vars_file}"], capture_output=True, text=True, cwd=repo, timeout=600,
                              check=False, env=labctl.ansible_env())
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
        assert "1 health check(s) passed" in proc.stdout, proc.stdout[-3000:]
        facts = lab.ansible("all", "ebpf.deploy.bpf_facts", json.dumps({"gather_subset": ["programs", "links"]}))
        (result,) = labctl.parse_oneline(facts.stdout).values()
        dep = result["ansible_facts"]["ebpf"]["deployments"]["ebpfd_tcx"]
        assert dep["attachments"]["eth0:tcx_ingress"]["prog_id"] == dep["versions"][dep["current"]]["tcx_count"], dep
