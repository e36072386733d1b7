"""Kill bpf_deployment at every side effect of a confirmed switch, of its commit, of its rollback and
of the restore at boot: the host always ends on its committed version or on the confirmed new one,
never on an unconfirmed one past its deadline, and never without a program.

The deployment (`ebpfd_kr*`) runs counter.bpf.o (v1, committed in the host's record) on a veth; the
new version is counter_v2 with a map entry of its own. Each module run goes through killpoint.py,
which SIGKILLs the process just before its N-th side effect (files under the bpffs root, the record's
state directory and /run/ebpf_deploy; libbpf load, pin, link and map writes). A dry run counts the
points; then one run per point and one past the last. After each kill:

* switch (confirm_timeout 1 s): the interface has v1's or v2's program; when the record says pending,
  its watcher must return the host to v1 by the deadline plus a few seconds (no Ansible involved);
  otherwise v1 is still committed and attached. Then the switch runs again, is committed, and the
  deployment is settled (no staging, nothing outside the pin layout, pkt_count kept).
* commit: v2 stays attached; a second commit leaves v2 committed with nothing pending.
* rollback: v1's or v2's program is attached; a second rollback leaves v1 attached and committed.
* restore (after a "reboot": the root's pins, the link, XDP and /run state gone): a second restore
  attaches v1 again, committed.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.fault import faultlib as fl

KILLPOINT = str(Path(__file__).resolve().parent / "killpoint.py")
VALUE = 4_141_414_141
CONFIRM = 1


@pytest.fixture(scope="module")
def dep(tmp_path_factory):
    with fl.CounterOnVeth("kr") as deployment:
        fl.map_set_u64(deployment.map_pin, VALUE)
        deployment.state_dir = tmp_path_factory.mktemp("record") / "state"
        deployment.v1 = deployment.versions["counter"]
        yield deployment


def v1_id(dep):
    """v1's program as pinned now (v1 is loaded again once keep_versions: 0 unpinned it)."""
    return fl.pinned_prog_id(dep.root / dep.name / dep.v1 / "progs" / fl.PROGRAM)


def args(dep, stem: str, **extra) -> dict:
    base = {"name": dep.name, "src": str(fl.BPF_DIR / f"{stem}.bpf.o"), "remote_src": True,
            "bpffs_root": str(dep.root), "state_dir": str(dep.state_dir), "keep_versions": 0,
            "attach": [{"program": fl.PROGRAM, "interface": dep.ifname, "netns": dep.netns}]}
    if stem == "counter_v2":
        base["maps"] = [{"map": "byte_count", "key_type": "u32", "value_type": "u64",
                         "entries": [{"key": 0, "value": 5}]}]
    base.update(extra)
    return base


def settle_args(dep, state: str) -> dict:
    return {"name": dep.name, "state": state, "bpffs_root": str(dep.root), "state_dir": str(dep.state_dir),
            "keep_versions": 0}


def run(dep, module_args: dict, *, kill_at: int = 0, trace: Path = None) -> tuple[int, dict]:
    env = {"EBPFD_KILL_ROOTS": f"{dep.root}:{dep.state_dir}", "EBPFD_KILL_AT": str(kill_at)}
    if trace is not None:
        env["EBPFD_KILL_TRACE"] = str(trace)
    return fl.direct("bpf_deployment", module_args, wrapper=[KILLPOINT], env_extra=env)


def ok(dep, module_args: dict) -> dict:
    rc, result = run(dep, module_args)
    assert rc == 0 and not result.get("failed"), result
    return result


def record(dep) -> dict:
    found = list(Path(dep.state_dir).glob(f"root-*/{dep.name}/state.json"))
    return json.loads(found[0].read_text()) if found else {}


def on_v1_committed(dep) -> None:
    """v1 current, attached and committed; nothing pending; v2 unpinned."""
    state = record(dep)
    if state.get("pending"):
        ok(dep, settle_args(dep, "rolled_back"))
    ok(dep, args(dep, "counter"))
    state = record(dep)
    assert state["committed"] == dep.v1 and not state["pending"] and dep.attached() == v1_id(dep), state


def kill_points(dep, what: str, prepare, module_args: dict, after) -> int:
    """prepare(); kill module_args at point 1, 2, ... and check after(died) each time."""
    trace = Path(dep.state_dir).parent / f"trace-{what}"
    point = 0
    while True:
        point += 1
        assert point < 300, f"{what}: no end of kill points"
        prepare()
        trace.unlink(missing_ok=True)
        rc, result = run(dep, module_args, kill_at=point, trace=trace)
        died = rc == -9
        assert died or (rc == 0 and not result.get("failed")), f"{what} without a kill: {result}"
        op = trace.read_text(encoding="utf-8").splitlines()[-1] if died and trace.exists() else "past the end"
        t = fl.tally("kill at any point")
        t.cases += 1
        problems = after(died)
        t.record(problems)
        if not problems:
            t.count(f"{what}: killed" if died else f"{what}: finished first")
        assert not problems, f"{what} killed before point {op}: " + "; ".join(problems)
        if not died:
            return point - 1


def test_kill_the_confirmed_switch_at_every_point(dep):
    on_v1_committed(dep)
    v2_args = args(dep, "counter_v2", confirm_timeout=CONFIRM)

    def after(died: bool) -> list:
        problems = []
        attached = dep.attached()
        state = record(dep)
        if attached is None:
            fl.tally("kill at any point").lost += 1
            return ["the interface had no XDP program after the kill"]
        pending = state.get("pending")
        if pending:
            if not pending.get("watcher"):
                problems.append("a pending switch with a deadline but no watcher")
            deadline = (pending.get("deadline") or time.time()) + 8
            while time.time() < deadline and record(dep).get("pending"):
                time.sleep(0.2)
            state = record(dep)
            if state.get("pending"):
                problems.append(f"still unconfirmed past its deadline: {state['pending']}")
            elif dep.attached() != v1_id(dep) or dep.current() != dep.v1:
                problems.append(f"the watcher did not return to v1: attached {dep.attached()}, current {dep.current()}")
            fl.tally("kill at any point").count("switch: reverted by the watcher")
        elif died and (state.get("committed") != dep.v1 or attached != v1_id(dep)):
            problems.append(f"not pending, yet not on committed v1: {state.get('committed')}, attached {attached}")
        # a re-run converges: switch again, commit, settled
        again = ok(dep, dict(v2_args, confirm_timeout=60))
        ok(dep, dict(settle_args(dep, "committed"), version=again["version"]))
        if dep.attached() != dep.current_prog_id() or record(dep).get("committed") != again["version"]:
            problems.append("the re-run did not converge on a committed v2")
        problems += dep.settled_problems(fl.tally("kill at any point"), VALUE)
        return problems

    points = kill_points(dep, "switch", lambda: on_v1_committed(dep), v2_args, after)
    assert points >= 10, points


def test_kill_the_commit_at_every_point(dep):
    def prepare():
        on_v1_committed(dep)
        ok(dep, args(dep, "counter_v2", confirm_timeout=0))

    def after(_died: bool) -> list:
        v2_id = dep.current_prog_id()
        problems = [] if dep.attached() == v2_id else [f"v2 is not attached: {dep.attached()} (v2 {v2_id})"]
        ok(dep, settle_args(dep, "committed"))
        state = record(dep)
        if state.get("pending") or state.get("committed") != dep.current():
            problems.append(f"a second commit did not settle: {state}")
        return problems + dep.settled_problems(fl.tally("kill at any point"), VALUE)

    assert kill_points(dep, "commit", prepare, settle_args(dep, "committed"), after) >= 2


def test_kill_the_rollback_at_every_point(dep):
    def prepare():
        on_v1_committed(dep)
        ok(dep, args(dep, "counter_v2", confirm_timeout=0))
        dep.v2_id = dep.current_prog_id()

    def after(_died: bool) -> list:
        attached = dep.attached()
        problems = []
        if attached not in (v1_id(dep), dep.v2_id):
            problems.append(f"attached {attached}: neither v1 ({v1_id(dep)}) nor v2 ({dep.v2_id})")
            if attached is None:
                fl.tally("kill at any point").lost += 1
        ok(dep, settle_args(dep, "rolled_back"))
        state = record(dep)
        if dep.attached() != v1_id(dep) or state.get("pending") or state.get("committed") != dep.v1:
            problems.append(f"a second rollback did not return to v1: attached {dep.attached()}, {state}")
        return problems + dep.settled_problems(fl.tally("kill at any point"), VALUE)

    assert kill_points(dep, "rollback", prepare, settle_args(dep, "rolled_back"), after) >= 3


def reboot(dep) -> None:
    """What a reboot leaves: no pins under the root, no XDP program, no /run state of the deployment."""
    shutil.rmtree(dep.root, ignore_errors=True)
    cmd = ["ip", "link", "set", "dev", dep.ifname, "xdp", "off"]
    subprocess.run(["ip", "-n", dep.netns, *cmd[1:]] if dep.netns else cmd, check=False, capture_output=True)
    shutil.rmtree(fl.RUN_DIR / dep.name, ignore_errors=True)


def test_kill_the_restore_at_every_point(dep):
    launcher = str(Path(dep.state_dir) / "ebpf-deploy-host")
    trace = Path(dep.state_dir).parent / "trace-restore"
    on_v1_committed(dep)
    point = 0
    while True:
        point += 1
        assert point < 300
        reboot(dep)
        trace.unlink(missing_ok=True)
        env = {"EBPFD_KILL_ROOTS": f"{dep.root}:{dep.state_dir}", "EBPFD_KILL_AT": str(point),
               "EBPFD_KILL_TRACE": str(trace)}
        rc, _out, err, _timed_out = fl.run_group(
            [fl.PYTHON, KILLPOINT, launcher, "restore", "--state-dir", str(dep.state_dir)],
            env=dict(fl.os.environ, PYTHONPATH=str(fl.REPO / ".build" / "collections"), **env), timeout=120)
        died = rc == -9
        assert died or rc == 0, err[-2000:]
        t = fl.tally("kill at any point")
        t.cases += 1
        rc2, _out2, err2, _late = fl.run_group([fl.PYTHON, launcher, "restore", "--state-dir", str(dep.state_dir)],
                                               timeout=120)
        problems = [] if rc2 == 0 else [f"the second restore failed: {err2[-500:]}"]
        version = dep.current()
        if version is None or dep.attached() != dep.current_prog_id():
            problems.append(f"not attached again after a second restore: current {version}, attached {dep.attached()}")
        if record(dep).get("committed") != version:
            problems.append(f"restored {version}, committed {record(dep).get('committed')}")
        t.record(problems)
        if not problems:
            t.count("restore: killed" if died else "restore: finished first")
        assert not problems, f"restore killed at point {point}: " + "; ".join(problems)
        if not died:
            break
    assert point > 5, point
    # put pkt_count back for the other cases' checks, and leave the deployment as the fixture made it
    fl.map_set_u64(dep.map_pin, VALUE)
