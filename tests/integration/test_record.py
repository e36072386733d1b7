"""The host keeps the record: ebpf.deploy.bpf_deployment's pending → committed | rolled back
transaction, on the real kernel, with a veth whose peer sends real packets.

Every case reads the kernel side (ip, bpftool, map pins) independently of the module, and each
uses a state directory of its own so that the record it checks is only its own.
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

from tests.helpers import RUN_DIR, forget_deployment, kill_pids, ok, pids_with_argv, unique
from tests.integration import xdp_helpers as h

VETH_TAG = "rc"
COUNTER = "xdp_packet_counter"
BLOCKLIST = "xdp_blocklist"


def watchers(state_dir: Path) -> list[int]:
    """The confirm watchers of a state dir (a watcher carries it in its argv)."""
    return pids_with_argv(lambda argv: str(state_dir) in argv and "watch" in argv)


@pytest.fixture
def state_dir(tmp_path):
    path = tmp_path / "state"
    yield path
    kill_pids(watchers(path), signal.SIGTERM)   # a watcher a failed case left behind, by its PID


@pytest.fixture
def names(bpffs_root):
    made = []

    def new() -> str:
        made.append(unique("ebpfd_", 4))
        return made[-1]
    yield new
    for name in made:
        forget_deployment(name, bpffs_root)


def counter(veth, name, root, state_dir, obj, **extra) -> dict:
    base = {"name": name, "src": str(obj), "bpffs_root": str(root), "state_dir": str(state_dir),
            "attach": [{"program": COUNTER, "interface": veth.host_if, "netns": veth.host_ns, "mode": "generic"}]}
    base.update(extra)
    return base


def blocklist(veth, name, root, state_dir, obj, blocked=(), **extra) -> dict:
    base = {"name": name, "src": str(obj), "bpffs_root": str(root), "state_dir": str(state_dir),
            "attach": [{"program": BLOCKLIST, "interface": veth.host_if, "netns": veth.host_ns, "mode": "generic"}],
            "maps": [{"map": "blocklist", "key_type": "ipv4", "value_type": "u64",
                      "entries": [{"key": ip, "value": 0} for ip in blocked]}]}
    base.update(extra)
    return base


def attached_id(veth):
    info = veth.xdp()
    return info["prog"]["id"] if info else None


def state_json(state_dir: Path, root: Path, name: str) -> dict:
    return json.loads(next(state_dir.glob(f"root-*/{name}/state.json")).read_text())


def test_pending_until_committed_then_converged(ansible_module, veth, bpffs_root, state_dir, names, bpf_object):
    name = names()
    a = counter(veth, name, bpffs_root, state_dir, bpf_object("counter"), confirm_timeout=0)
    run = ok(ansible_module("bpf_deployment", a))
    assert run["changed"] and run["pending"] and run["committed"] is None
    assert run["record"]["pending"]["version"] == run["version"]
    assert state_json(state_dir, bpffs_root, name)["pending"]["version"] == run["version"]

    # the kernel is converged, the record is not: check mode and a re-run both say so
    again = ok(ansible_module("bpf_deployment", a, check=True))
    assert again["changed"] and again["pending"], "a pending host must never look converged"

    commit = {"name": name, "state": "committed", "bpffs_root": str(bpffs_root), "state_dir": str(state_dir)}
    assert ok(ansible_module("bpf_deployment", commit, check=True))["changed"]
    assert state_json(state_dir, bpffs_root, name)["pending"], "check mode committed"
    done = ok(ansible_module("bpf_deployment", commit))
    assert done["changed"] and done["committed"] == run["version"] and not done["pending"]
    assert not ok(ansible_module("bpf_deployment", commit))["changed"], "a second commit changed something"
    for last in ansible_module.check_then_run("bpf_deployment", a):
        assert not ok(last)["changed"] and last["committed"] == run["version"], last
    assert (state_dir / next(state_dir.glob("root-*")).name / name / "objects" / f"{run['version']}.bpf.o").exists()


def test_rollback_of_a_renamed_program_gives_back_the_old_one(ansible_module, veth, bpffs_root, state_dir,
                                                              names, bpf_object):
    """v2's program has another name (and v2 blocks the peer): the rollback puts v1's program back."""
    name = names()
    v1 = ok(ansible_module("bpf_deployment", counter(veth, name, bpffs_root, state_dir, bpf_object("counter"))))
    v1_id = attached_id(veth)
    assert v1["committed"] == v1["version"] and v1_id
    v2_args = blocklist(veth, name, bpffs_root, state_dir, bpf_object("blocklist"), blocked=[veth.peer_ip],
                        confirm_timeout=0)
    v2 = ok(ansible_module("bpf_deployment", v2_args))
    assert v2["pending"] and attached_id(veth) != v1_id
    assert veth.send(50) == 50 and veth.host_counters()["rx_packets"] >= 0
    before = h.map_counter(bpffs_root / name / "maps" / "pkt_count")

    back = {"name": name, "state": "rolled_back", "bpffs_root": str(bpffs_root), "state_dir": str(state_dir)}
    predicted = ok(ansible_module("bpf_deployment", back, check=True))
    assert predicted["changed"] and predicted["would_restore"]["version"] == v1["version"]
    assert attached_id(veth) != v1_id, "check mode rolled back"
    undone = ok(ansible_module("bpf_deployment", back))
    assert undone["changed"] and undone["version"] == v1["version"] and not undone["pending"]
    assert attached_id(veth) == v1_id, "v1's program is not on the interface again"
    assert veth.send(200) == 200
    assert h.map_counter(bpffs_root / name / "maps" / "pkt_count") == before + 200, "v1 does not count again"
    assert v2["version"] in undone["record"]["rolled_back"]
    assert not ok(ansible_module("bpf_deployment", back))["changed"], "a second rollback changed something"
    assert not (bpffs_root / name / "replaced").exists()


def test_rollback_restores_map_entries_the_switch_wrote(ansible_module, veth, bpffs_root, state_dir, names,
                                                        bpf_object):
    name = names()
    obj = bpf_object("blocklist")
    ok(ansible_module("bpf_deployment", blocklist(veth, name, bpffs_root, state_dir, obj, blocked=["192.0.2.7"])))
    pin = bpffs_root / name / "maps" / "blocklist"
    sent = veth.send(100)
    passed = h.map_counter(bpffs_root / name / "maps" / "pass_count")
    assert sent == 100 and passed == 100, "v1 must pass the peer"

    # v2 blocks the peer itself: the probe breaks
    ok(ansible_module("bpf_deployment", blocklist(veth, name, bpffs_root, state_dir, obj,
                                                  blocked=["192.0.2.7", veth.peer_ip], confirm_timeout=0)))
    veth.send(100)
    assert h.map_counter(bpffs_root / name / "maps" / "pass_count") == passed, "the blocklist entry did not apply"

    ok(ansible_module("bpf_deployment", {"name": name, "state": "rolled_back", "bpffs_root": str(bpffs_root),
                                         "state_dir": str(state_dir)}))
    keys = [e["key"] for e in h.bpftool("map", "dump", "pinned", str(pin))]
    assert len(keys) == 1, f"the entry v2 added is still there: {keys}"
    veth.send(100)
    assert h.map_counter(bpffs_root / name / "maps" / "pass_count") == passed + 100, "the probe still fails"


def test_the_host_reverts_by_itself_when_nobody_confirms(ansible_module, veth, bpffs_root, state_dir, names,
                                                         bpf_object):
    """confirm_timeout passes with no Ansible run at all: the watcher returns the host to v1."""
    name = names()
    ok(ansible_module("bpf_deployment", counter(veth, name, bpffs_root, state_dir, bpf_object("counter"))))
    v1_id = attached_id(veth)
    started = time.monotonic()
    v2 = ok(ansible_module("bpf_deployment", blocklist(veth, name, bpffs_root, state_dir, bpf_object("blocklist"),
                                                       confirm_timeout=4)))
    assert v2["pending"] and v2["record"]["pending"]["watcher"] == "process"
    assert attached_id(veth) != v1_id
    deadline = started + 4 + 15
    while time.monotonic() < deadline and attached_id(veth) != v1_id:
        time.sleep(0.3)
    assert attached_id(veth) == v1_id, "the host did not return to v1 by itself"
    waited = time.monotonic() - started
    while time.monotonic() < deadline and state_json(state_dir, bpffs_root, name)["pending"]:
        time.sleep(0.2)   # the record is written right after the interface is given back
    state = state_json(state_dir, bpffs_root, name)
    assert state["pending"] is None and state["last"]["by"] == "watcher", state
    assert v2["version"] in state["rolled_back"]
    assert waited >= 3.5, f"reverted before the deadline ({waited:.1f}s)"
    late = ansible_module("bpf_deployment", {"name": name, "state": "committed", "bpffs_root": str(bpffs_root),
                                             "state_dir": str(state_dir)})
    assert late["failed"] and "rolled back by the host at its confirm deadline" in late["msg"], late


def test_commit_stops_the_watcher(ansible_module, veth, bpffs_root, state_dir, names, bpf_object):
    name = names()
    ok(ansible_module("bpf_deployment", counter(veth, name, bpffs_root, state_dir, bpf_object("counter"))))
    v2 = ok(ansible_module("bpf_deployment", blocklist(veth, name, bpffs_root, state_dir, bpf_object("blocklist"),
                                                       confirm_timeout=30)))
    v2_id = attached_id(veth)
    assert watchers(state_dir), "no watcher is armed for the pending switch"
    ok(ansible_module("bpf_deployment", {"name": name, "state": "committed", "version": v2["version"],
                                         "bpffs_root": str(bpffs_root), "state_dir": str(state_dir)}))
    # Once the watcher is gone nothing can revert the switch: stopped by the commit, it is gone at
    # once; left running, it is gone only after its deadline, having done what it would do. (30 s:
    # the commit's module run must start before the deadline, on a machine busy with other tests.)
    deadline = time.monotonic() + 35
    while watchers(state_dir) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert attached_id(veth) == v2_id, "the host reverted a committed switch"
    assert state_json(state_dir, bpffs_root, name)["committed"] == v2["version"]


def test_takeover_with_force_is_given_back(ansible_module, veth, bpffs_root, state_dir, names, bpf_object):
    """A takes B's interface (force); A is rolled back; B's program holds the interface again."""
    b, a = names(), names()
    ok(ansible_module("bpf_deployment", counter(veth, b, bpffs_root, state_dir, bpf_object("counter"))))
    b_id = attached_id(veth)
    take = blocklist(veth, a, bpffs_root, state_dir, bpf_object("blocklist"), confirm_timeout=0)
    take["attach"][0]["force"] = True
    ok(ansible_module("bpf_deployment", take))
    assert attached_id(veth) != b_id
    ok(ansible_module("bpf_deployment", {"name": a, "state": "rolled_back", "bpffs_root": str(bpffs_root),
                                         "state_dir": str(state_dir)}))
    assert attached_id(veth) == b_id, "B's program is not on the interface again"
    assert (bpffs_root / b / "links" / f"{veth.host_ns}@{veth.host_if}:xdp").exists(), "B's link pin is gone"
    assert not (bpffs_root / a).exists(), "A was new on the host: nothing of it should stay"
    # B still owns its interface: its own re-run changes nothing
    again = ok(ansible_module("bpf_deployment", counter(veth, b, bpffs_root, state_dir, bpf_object("counter"))))
    assert not again["changed"], again


def test_rollback_playbook_semantics_never_go_forward(ansible_module, veth, bpffs_root, state_dir, names, bpf_object):
    """rollback_to: previous returns to the version committed before; twice changes nothing."""
    name = names()
    v1 = ok(ansible_module("bpf_deployment", counter(veth, name, bpffs_root, state_dir, bpf_object("counter"))))
    v1_id = attached_id(veth)
    v2 = ok(ansible_module("bpf_deployment", counter(veth, name, bpffs_root, state_dir, bpf_object("counter_v2"),
                                                     keep_versions=0)))
    assert v2["committed"] == v2["version"] != v1["version"]
    assert not (bpffs_root / name / v1["version"]).exists(), "keep_versions: 0 should have unpinned v1"
    back = {"name": name, "state": "rolled_back", "rollback_to": "previous", "bpffs_root": str(bpffs_root),
            "state_dir": str(state_dir)}
    first = ok(ansible_module("bpf_deployment", back))
    assert first["changed"] and first["version"] == v1["version"] and first["committed"] == v1["version"]
    assert attached_id(veth) == h.prog_info(bpffs_root / name / v1["version"] / "progs" / COUNTER)["id"]
    assert attached_id(veth) != v1_id, "v1 was unpinned: it must have been loaded again from the record"
    second = ok(ansible_module("bpf_deployment", back))
    assert not second["changed"] and second["committed"] == v1["version"], "a second rollback moved the host"
    assert v2["version"] in second["record"]["rolled_back"]


def test_failed_run_with_keep_versions_0_undoes_itself(ansible_module, veth, bpffs_root, state_dir, names,
                                                       bpf_object):
    """Old versions are pruned only at commit: a run that fails after its switch can undo itself."""
    name = names()
    v1 = ok(ansible_module("bpf_deployment", counter(veth, name, bpffs_root, state_dir, bpf_object("counter"))))
    v1_id = attached_id(veth)
    bad = counter(veth, name, bpffs_root, state_dir, bpf_object("counter_v2"), keep_versions=0,
                  maps=[{"map": "pkt_count", "key_type": "u32", "value_type": "u64",
                         "entries": [{"key": 7, "value": 1}]}])   # index 7 is past max_entries
    failed = ansible_module("bpf_deployment", bad)
    assert failed["failed"] and "undoing this run failed" not in failed["msg"], failed["msg"]
    assert f"version {v1['version']} is current again" in failed["msg"], failed["msg"]
    assert attached_id(veth) == v1_id
    state = state_json(state_dir, bpffs_root, name)
    assert state["committed"] == v1["version"] and state["pending"] is None


def test_torn_record_is_refused_and_nothing_changes(ansible_module, veth, bpffs_root, state_dir, names, bpf_object):
    name = names()
    a = counter(veth, name, bpffs_root, state_dir, bpf_object("counter"))
    ok(ansible_module("bpf_deployment", a))
    prog_id = attached_id(veth)
    path = next(state_dir.glob(f"root-*/{name}/state.json"))
    path.write_text(path.read_text()[:40])
    run = ansible_module("bpf_deployment", counter(veth, name, bpffs_root, state_dir, bpf_object("counter_v2")))
    assert run["failed"] and "is damaged" in run["msg"] and "\n" not in run["msg"], run["msg"]
    assert attached_id(veth) == prog_id
    path.write_text(json.dumps({"format": "something/else", "deployment": name}))
    run = ansible_module("bpf_deployment", a)
    assert run["failed"] and "not an ebpf.deploy state record" in run["msg"], run["msg"]


def test_restore_after_a_reboot(ansible_module, veth, bpffs_root, state_dir, names, bpf_object):
    """What a reboot leaves of BPF state (no pins, no links, no /run) and then the restore unit's
    command: the committed deployment is attached again and counts; a pending one is not restored."""
    kept, pending = names(), names()
    ok(ansible_module("bpf_deployment", counter(veth, kept, bpffs_root, state_dir, bpf_object("counter"),
                                                maps=[{"map": "pkt_count", "key_type": "u32", "value_type": "u64",
                                                       "entries": [{"key": 0, "value": 5}]}])))
    ok(ansible_module("bpf_deployment", {"name": pending, "src": str(bpf_object("counter_v2")),
                                         "bpffs_root": str(bpffs_root), "state_dir": str(state_dir),
                                         "confirm_timeout": 0}))
    # the "reboot": every pin and link under the root gone, XDP off, /run state gone
    shutil.rmtree(bpffs_root)
    veth.ip_link("set", "dev", veth.host_if, "xdp", "off", check=False)
    for name in (kept, pending):
        shutil.rmtree(RUN_DIR / name, ignore_errors=True)
    assert attached_id(veth) is None

    launcher = state_dir / "ebpf-deploy-host"
    proc = subprocess.run([sys.executable, str(launcher), "restore", "--state-dir", str(state_dir)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.startswith("ebpf-deploy:")]
    assert len(lines) == 2 and any(f"{kept}: restored" in line for line in lines), proc.stdout
    assert attached_id(veth) is not None, "the committed deployment is not attached again"
    assert h.map_counter(bpffs_root / kept / "maps" / "pkt_count") == 5, "declared entries not written again"
    veth.send(100)
    assert h.map_counter(bpffs_root / kept / "maps" / "pkt_count") == 105
    assert not (bpffs_root / pending).exists(), "a pending switch was restored"
    report = json.loads((state_dir / "restore.json").read_text())
    assert report["failed"] == 0 and len(report["deployments"]) == 2
    # the module, run again, finds the host converged
    again = ok(ansible_module("bpf_deployment", counter(veth, kept, bpffs_root, state_dir, bpf_object("counter"),
                                                        maps=[{"map": "pkt_count", "key_type": "u32",
                                                               "value_type": "u64",
                                                               "entries": [{"key": 0, "value": 5}],
                                                               "overwrite": False}])))
    assert not again["changed"], again


def test_a_restore_verifies_a_signed_object_again(ansible_module, veth, bpffs_root, state_dir, names, signing):
    """A deployment of a signed object keeps its signature in the record; after a "reboot" the
    restore verifies the stored object again: a record whose signature was swapped for another
    key's is refused (named, nothing attached), the genuine one restores."""
    name = names()
    ok(ansible_module("bpf_deployment", counter(veth, name, bpffs_root, state_dir, signing / "counter.bpf.o",
                                                allowed_signers=str(signing / "allowed_signers"))))
    (spec_path,) = state_dir.glob(f"root-*/{name}/versions/*.json")
    spec = json.loads(spec_path.read_text())
    assert "ops@ebpfd" in spec["signed"]["allowed_signers"] and "SSH SIGNATURE" in spec["signed"]["signature"], spec

    def reboot_and_restore() -> subprocess.CompletedProcess:
        shutil.rmtree(bpffs_root, ignore_errors=True)
        veth.ip_link("set", "dev", veth.host_if, "xdp", "off", check=False)
        shutil.rmtree(RUN_DIR / name, ignore_errors=True)
        return subprocess.run([sys.executable, str(state_dir / "ebpf-deploy-host"), "restore", "--state-dir",
                               str(state_dir)], capture_output=True, text=True, timeout=120, check=False)

    ssh = ["ssh-keygen", "-Y", "sign", "-f", str(signing / "rogue"), "-n", "ebpf.deploy", "-"]
    rogue = subprocess.run(ssh, input=(signing / "counter.bpf.o").read_bytes(), capture_output=True, check=True).stdout
    spec_path.write_text(json.dumps(dict(spec, signed=dict(spec["signed"], signature=rogue.decode()))))
    refused = reboot_and_restore()
    assert refused.returncode != 0, refused.stdout
    assert "which is not in allowed_signers" in refused.stdout + refused.stderr, refused.stdout + refused.stderr
    assert signing.fingerprint("rogue") in refused.stdout + refused.stderr
    assert attached_id(veth) is None, "a wrongly signed stored object was attached"

    spec_path.write_text(json.dumps(spec))
    restored = reboot_and_restore()
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert f"{name}: restored" in restored.stdout and attached_id(veth) is not None, restored.stdout
