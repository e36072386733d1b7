"""A host lost in the middle of a rollout: its sshd and sessions die during the soak.

A lab of 3 hosts (tests/lab/labctl.py: network namespaces with their own bpffs and sshd, reached over
real SSH). playbooks/canary.yml rolls the counter out in one stage (`rollout_serial: ["100%"]`) with
a 6 s soak (in the switch's own run on the host); 3 s after the switch starts, while the host
soaks, every process in host 2's namespace (its sshd, its sessions, the
module running there) is SIGKILLed by PID (`ip netns pids`), and so is the ControlPersist ssh master
Ansible keeps to it (found in /proc by its arguments), so no connection outlives the host.

Expected: the playbook fails, the recap shows host 2 unreachable, and the other hosts of the stage
end on one consistent version, never half switched (`current` and the attached program agree):
* `rollout_on_failure: rollback_stage`, first rollout: the deployment is absent again on hosts 1, 3;
* `rollout_on_failure: rollback_host`, first rollout: hosts 1, 3 keep the new version (v1);
* `rollout_on_failure: rollback_stage`, v1 -> v2 (hosts 1, 3 on v1 from the run before): back on v1.

Host state is read inside each host's own mount and network namespaces (`nsenter -t <sshd pid> -m -n`),
because pins are per host; host 2 is brought back with `lab.up()` between scenarios.
"""
from __future__ import annotations

import re
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Optional

from tests.fault import faultlib as fl
from tests.helpers import kill_pids

DEPLOYMENT = "ebpfd_lost"
ROOT = "/sys/fs/bpf/ebpf_deploy"
SOAK = 6
RECAP = re.compile(r"^(?P<host>\S+)\s*:\s*ok=(?P<ok>\d+)\s+changed=\d+\s+unreachable=(?P<unreachable>\d+)\s+"
                   r"failed=(?P<failed>\d+)")


def host_state(lab, which: int) -> dict:
    """current version, its pinned program id, and the program attached to eth0, read in the host."""
    return fl.host_state(lab, which, root=ROOT, deployment=DEPLOYMENT)


def kill_host(lab, which: int) -> list[int]:
    """SIGKILL every process in the host's network namespace (sshd, sessions, modules) and the
    ControlPersist master Ansible keeps to it, each by PID."""
    netns = lab.host(which)["netns"]
    out = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True, check=True).stdout
    pids = [int(p) for p in out.split()] + fl.ssh_masters(lab.host(which)["mgmt_address"])
    kill_pids(pids)
    return pids


def rollout(lab, stem: str, on_failure: str, *, kill: Optional[int] = None, soak: int = SOAK) -> dict:
    """canary.yml in one stage; with kill=N, host N is killed during its soak."""
    extra = {
        "rollout_deployments": [{"name": DEPLOYMENT, "src": str(fl.BPF_DIR / f"{stem}.bpf.o"),
                                 "attach": [{"interface": "eth0", "program": fl.PROGRAM}]}],
        "rollout_health": {"soak_seconds": soak, "checks": [{"type": "attached"}]},
        "rollout_serial": ["100%"],
        "rollout_on_failure": on_failure,
    }
    killed = []

    def on_line(line: str, _proc) -> bool:
        # the switch's run soaks on the host after its switch (< 1 s here): 3 s in, it is soaking
        if kill and not killed and "Switch | load" in line and line.startswith("TASK"):
            time.sleep(3)
            killed.extend(kill_host(lab, kill) or [-1])
        return False

    with tempfile.TemporaryDirectory(prefix="ebpfd_fault_lost_") as tmp:
        rc, out = fl.canary(lab, extra, Path(tmp), on_line)
    recap = {m["host"]: {k: int(m[k]) for k in ("ok", "unreachable", "failed")}
             for m in map(RECAP.match, out.splitlines()) if m}
    return {"rc": rc, "out": out, "recap": recap, "killed": killed}


def check_scenario(lab, run: dict, *, expect: Optional[str], what: str) -> None:
    """expect: the version hosts 1 and 3 must be on (None: the deployment is absent)."""
    t = fl.tally("host lost")
    t.cases += 1
    problems = []
    lost_host = f"{lab.prefix}-h2"
    if not run["killed"]:
        problems.append("the switch never started: host 2 was not killed")
    if run["rc"] == 0:
        problems.append("the playbook succeeded")
    # The role tolerates unreachable hosts (ignore_unreachable) so the stage can coordinate, then
    # fails the lost host itself: PLAY RECAP counts it failed (its unreachable results as ignored),
    # and the rollout summary in the recap calls it unreachable. Either form is accepted.
    # Killed inside its switch's run (which soaks there), the host's module output is cut: Ansible
    # reports the connection lost (unreachable) or the result unreadable ("Module result
    # deserialization failed", a failed switch: `refused` in the summary). Either way it failed.
    recap = run["recap"].get(lost_host, {})
    summary = re.search(rf"^\S+\s+{re.escape(lost_host)}\s+(unreachable|refused)\s", run["out"], re.M)
    if not (recap.get("unreachable", 0) >= 1 or (summary and recap.get("failed", 0) >= 1)):
        problems.append(f"the recap does not show {lost_host} lost: {run['recap']}")
    states = {}
    for which in (1, 3):
        state = host_state(lab, which)
        states[which] = state
        if expect is None:
            if state["deployment_exists"] or state["attached"]:
                problems.append(f"h{which}: expected no deployment and nothing attached, found {state}")
        else:
            if state["current"] != expect:
                problems.append(f"h{which}: current is {state['current']}, expected {expect}")
            if state["attached"] is None:
                problems.append(f"h{which}: no XDP program attached")
                t.lost += 1
            elif state["attached"] != state["current_prog_id"]:
                problems.append(f"h{which}: half switched: attached {state['attached']}, current's program "
                                f"{state['current_prog_id']}")
    if problems:
        t.changed += 1
    else:
        t.ok += 1
    assert not problems, f"{what}: " + "; ".join(problems) + f"\nstates {states}\n" + run["out"][-4000:]


def test_host_lost_mid_rollout(lab):
    # 1. the first rollout of the deployment, rollback_stage: hosts 1 and 3 end without it
    run = rollout(lab, "counter", "rollback_stage", kill=2)
    check_scenario(lab, run, expect=None, what="first rollout, rollback_stage")

    # 2. host 2 back; the first rollout again, rollback_host: hosts 1 and 3 keep the new version
    lab.up()
    run = rollout(lab, "counter", "rollback_host", kill=2)
    v1 = host_state(lab, 1)["current"]
    assert v1, "host 1 has no current version after rollback_host"
    check_scenario(lab, run, expect=v1, what="first rollout, rollback_host")

    # 3. host 2 back (empty); v1 -> v2 with rollback_stage: hosts 1 and 3 go back to v1
    lab.up()
    run = rollout(lab, "counter_v2", "rollback_stage", kill=2)
    check_scenario(lab, run, expect=v1, what="v1 -> v2, rollback_stage")
