"""The controller lost right after the canary's switch: the canary returns to its committed version by
itself, and the next rollout health-checks the canary before any other host.

A lab of 3 hosts (network namespaces with their own bpffs, /run and record, sshd, real SSH). The
fleet first runs v1 (committed). Then canary.yml rolls v2 out in stages [1, 100%] with
`rollout_confirm_timeout: 8` and a 2 s soak (in the switch's run on the host); when the canary's
switch has returned (the health phase's first task starts), the playbook's whole
process group is SIGKILLed (by its group id, which is the leader's PID) and so are the ssh
ControlPersist masters (by PID): nothing of the controller is left. No Ansible runs after that.

Expected: within the timeout plus a few seconds the canary is back on v1 - `current`, the attached
program (v1's pinned program) and its record (nothing pending, the rollback done by the watcher);
the other hosts never saw v2. The next canary.yml puts the canary in stage 1 again (not
"unchanged": its record never committed v2) and commits it there.

(The same with only the host's sshd stopped cannot be shown on a network-namespace host: the
host's mount namespace, which holds its bpffs, ends with its last process. The VM lab hosts are for
that.)
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

from tests.fault import faultlib as fl
from tests.helpers import kill_pids

DEPLOYMENT = "ebpfd_ctl"
ROOT = "/sys/fs/bpf/ebpf_deploy"
TIMEOUT = 8


def host_state(lab, which: int) -> dict:
    return fl.host_state(lab, which, root=ROOT, deployment=DEPLOYMENT)


def canary(lab, stem: str, tmp: Path, *, soak: int, kill_after_switch: bool = False) -> dict:
    extra = {
        "rollout_deployments": [{"name": DEPLOYMENT, "src": str(fl.BPF_DIR / f"{stem}.bpf.o"),
                                 "attach": [{"interface": "eth0", "program": fl.PROGRAM}]}],
        "rollout_health": {"soak_seconds": soak, "checks": [{"type": "attached"}]},
        "rollout_serial": [1, "100%"],
        "rollout_confirm_timeout": TIMEOUT,
    }
    killed_at = []

    def on_line(line: str, proc) -> bool:
        if kill_after_switch and line.startswith("TASK") and "Health |" in line:
            fl.kill_group(proc.pid)
            for host in range(1, 4):
                kill_pids(fl.ssh_masters(lab.host(host)["mgmt_address"]))
            killed_at.append(time.monotonic())
            return True
        return False

    rc, out = fl.canary(lab, extra, tmp, on_line)
    return {"rc": rc, "out": out, "killed_at": killed_at[0] if killed_at else None}


def summary_rows(out: str) -> dict:
    rows = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[1].startswith("ebpfd") and parts[0].isdigit():
            rows[parts[1]] = {"stage": int(parts[0]), "status": parts[2]}
    return rows


def test_canary_reverts_by_itself_and_is_checked_first_again(lab):
    t = fl.tally("controller lost")
    t.cases += 1
    with tempfile.TemporaryDirectory(prefix="ebpfd_fault_ctl_") as tmp:
        first = canary(lab, "counter", Path(tmp), soak=1)
        assert first["rc"] == 0, first["out"][-3000:]
        v1 = {which: host_state(lab, which) for which in (1, 2, 3)}
        assert all(s["record"]["committed"] == s["current"] for s in v1.values()), v1

        run = canary(lab, "counter_v2", Path(tmp), soak=2, kill_after_switch=True)
        assert run["killed_at"] is not None, "the canary's switch never ended:\n" + run["out"][-3000:]
        switched = host_state(lab, 1)
        assert switched["current"] != v1[1]["current"] and switched["record"]["pending"], switched

        deadline = run["killed_at"] + TIMEOUT + 20
        state = switched
        while time.monotonic() < deadline:
            state = host_state(lab, 1)
            if state["record"] and not state["record"]["pending"] and state["attached"] == v1[1]["attached"]:
                break
            time.sleep(0.5)
        waited = time.monotonic() - run["killed_at"]
        problems = []
        if state["current"] != v1[1]["current"] or state["attached"] != v1[1]["attached"]:
            problems.append(f"the canary is not back on v1: {state} (v1: {v1[1]})")
        if state["attached"] is None:
            t.lost += 1
        last = (state["record"] or {}).get("last") or {}
        if last.get("by") != "watcher" or last.get("action") != "rollback":
            problems.append(f"the record does not show the watcher's rollback: {last}")
        for which in (2, 3):
            other = host_state(lab, which)
            if other["current"] != v1[which]["current"] or other["attached"] != v1[which]["attached"]:
                problems.append(f"h{which} saw v2: {other}")
        if problems:
            t.changed += 1
        else:
            t.ok += 1
        assert not problems, "; ".join(problems) + f" (after {waited:.1f}s)"
        assert waited < TIMEOUT + 20

        again = canary(lab, "counter_v2", Path(tmp), soak=1)
        assert again["rc"] == 0, again["out"][-3000:]
        rows = summary_rows(again["out"])
        canary_host = f"{lab.prefix}-h1"
        assert rows.get(canary_host) == {"stage": 1, "status": "committed"}, rows
        final = host_state(lab, 1)
        assert final["record"]["committed"] == final["current"] != v1[1]["current"], final
