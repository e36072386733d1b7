"""Kill an upgrade at any point: the interface always has the old or the new program, and a re-run
converges.

The upgrade is the two tasks of a rollout's stage and switch: `bpf_program` to counter_v2, then
`xdp_attach` (an atomic bpf_link update). A deployment of the counter (`ebpfd_ku*`) is attached to a
veth and its `pkt_count` holds a known value. Two ways of killing:

* every point, deterministically: the module processes run through killpoint.py, which SIGKILLs the
  process just before its N-th side effect (mkdir/rename/symlink/unlink/... in the bpffs or
  /run/ebpf_deploy, libbpf load/pin/link update). A dry run counts the points; then one run per point
  (and one past the last). No hook in the collection: the wrapper patches its own process only.
* at random times: the same two tasks as a playbook against localhost, its process group SIGKILLed
  (by the id of the group we started) after a random delay within the playbook's duration.

After each kill: the interface's XDP program (`ip -j -d link`) is the old version's program or the
new version's (never none); then the upgrade is run again and must succeed with `current` on v2, the
attached program == v2's pinned program, no `_staging-*` left, nothing outside the pin layout, and
`pkt_count` still holding its value. Then the deployment is put back on v1 only, for the next run.
"""
from __future__ import annotations

import os
import random
import tempfile
import time
from pathlib import Path

import pytest

from tests.fault import faultlib as fl

KILLPOINT = str(Path(__file__).resolve().parent / "killpoint.py")
VALUE = 4_242_424_242
RANDOM_RUNS = int(os.environ.get("EBPFD_FAULT_RANDOM_KILLS", "5"))

UPGRADE_TASKS = """  tasks:
    - name: Stage | load counter_v2 beside the running version
      ebpf.deploy.bpf_program: {program}
    - name: Switch | attach the current version atomically
      ebpf.deploy.xdp_attach: {attach}
"""


@pytest.fixture(scope="module")
def dep():
    with fl.CounterOnVeth("ku") as deployment:
        fl.map_set_u64(deployment.map_pin, VALUE)
        deployment.v1 = deployment.versions["counter"]
        deployment.v1_id = deployment.prog_ids[deployment.v1]
        yield deployment


def upgrade_steps(dep):
    return [("bpf_program", dep.program_args("counter_v2")), ("xdp_attach", dep.xdp_args())]


def reset_to_v1(dep) -> None:
    """current v1, v1 attached, v2 unpinned (the next upgrade loads it again)."""
    dep.deploy("counter", keep_versions=0)
    dep.attach()
    assert dep.attached() == dep.v1_id
    assert [p.name for p in (dep.root / dep.name).iterdir() if fl.re.fullmatch(r"[0-9a-f]{12}", p.name)] == [dep.v1]


def check_after_kill(dep, attached, what: str, *, killed: bool = True) -> dict:
    """Re-run the upgrade and check that it converged. Returns what it found."""
    t = fl.tally("kill at any point")
    t.cases += 1
    problems = []
    for module, args in upgrade_steps(dep):
        rc, result = fl.direct(module, args)
        if rc != 0 or result.get("failed"):
            problems.append(f"re-run of {module} failed: {result.get('msg') or result}")
    v2 = dep.current()
    v2_id = dep.current_prog_id()
    now = dep.attached()
    if v2 == dep.v1 or v2 is None:
        problems.append(f"current is {v2}, not the new version")
    if attached is None:
        problems.append("the interface had no XDP program after the kill")
        t.lost += 1
    elif attached not in (dep.v1_id, v2_id):
        problems.append(f"after the kill program id {attached} was attached: neither v1 ({dep.v1_id}) nor v2 ({v2_id})")
    if now != v2_id:
        problems.append(f"after the re-run program id {now} is attached, current v2's is {v2_id}")
    problems += dep.settled_problems(t, VALUE)
    t.record(problems)
    if not problems:
        if not killed:
            t.count("not killed (finished first)")
        else:
            t.count("killed before the switch" if attached == dep.v1_id else "killed after the switch")
    assert not problems, f"{what}: " + "; ".join(problems)
    return {"attached": attached, "v2_id": v2_id}


def test_kill_at_every_point(dep, tmp_path):
    """Kill point N of bpf_program for N = 1, 2, ... until a run gets past its last point, then the
    same for xdp_attach (after a complete bpf_program). The number of points is not fixed in advance:
    it is whatever the module does from this state."""
    trace = tmp_path / "trace"
    env = {"EBPFD_KILL_ROOTS": str(dep.root), "EBPFD_KILL_TRACE": str(trace)}
    reset_to_v1(dep)
    killed = {}
    for target in ("bpf_program", "xdp_attach"):
        point = 0
        while True:
            point += 1
            assert point < 200, f"{target}: no end of kill points"
            trace.unlink(missing_ok=True)
            died = False
            for module, args in upgrade_steps(dep):
                at = point if module == target else 0
                rc, result = fl.direct(module, args, wrapper=[KILLPOINT], env_extra=dict(env, EBPFD_KILL_AT=str(at)))
                if rc == -9:
                    died = True
                    break
                assert rc == 0 and not result.get("failed"), f"{module} without a kill: {result}"
            op = trace.read_text(encoding="utf-8").splitlines()[-1] if died and trace.exists() else "past the end"
            check_after_kill(dep, dep.attached(), f"{target} killed before point {op}", killed=died)
            reset_to_v1(dep)
            if not died:
                break
            killed[target] = point
    assert killed.get("bpf_program", 0) >= 10 and killed.get("xdp_attach", 0) >= 1, killed


def test_kill_the_playbook_at_random_times(dep):
    import json  # pylint: disable=import-outside-toplevel
    text = fl.localhost_play("upgrade to counter_v2 and switch the attachment", UPGRADE_TASKS.format(
        program=json.dumps(dep.program_args("counter_v2")), attach=json.dumps(dep.xdp_args())))
    started = time.monotonic()
    rc, out, err, _timed_out = fl.playbook(text, timeout=120)
    duration = time.monotonic() - started
    assert rc == 0, out + err
    reset_to_v1(dep)
    rng = random.Random(int(os.environ.get("EBPFD_FAULT_SEED", "8")))
    for run in range(RANDOM_RUNS):
        delay = rng.uniform(0.2 * duration, duration)
        with tempfile.TemporaryDirectory(prefix="ebpfd_fault_kill_") as tmp:
            book = Path(tmp) / "upgrade.yml"
            book.write_text(text, encoding="utf-8")
            proc = fl.subprocess.Popen([fl.ANSIBLE_PLAYBOOK, "-i", "localhost,", str(book)],
                                       stdout=fl.subprocess.DEVNULL, stderr=fl.subprocess.DEVNULL,
                                       env=fl.ansible_env(), cwd=fl.REPO, start_new_session=True)
            try:
                proc.wait(timeout=delay)
            except fl.subprocess.TimeoutExpired:
                fl.kill_group(proc.pid)  # the ansible-playbook process group we started, by its id
                proc.wait()
        check_after_kill(dep, dep.attached(), f"random kill {run + 1} after {delay:.2f}s (rc {proc.returncode})",
                         killed=proc.returncode == -9)
        reset_to_v1(dep)
