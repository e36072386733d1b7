"""Two ansible-playbook runs upgrade the same deployment on the same host at once.

One run deploys counter_v2, the other counter, each followed by xdp_attach (stage + switch, twice
over so that the runs overlap), started together, several rounds; then the same with two
bpf_deployment runs (load, attach and map entries in one task, as the rollout role switches, with
the host's record: it must end committed on the version that runs). Runs on
one deployment are serialized by the module's lock, so whatever order they take, the host must end
on one consistent version: `current` names a pinned version, the attached program is that
version's pinned program, nothing is left outside the pin layout, and the value written into `pkt_count` beforehand is still there.
"""
from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.fault import faultlib as fl

ROUNDS = int(os.environ.get("EBPFD_FAULT_CONCURRENCY_ROUNDS", "3"))
VALUE = 31337

TASKS = """    - name: Stage {n} | load and pin
      ebpf.deploy.bpf_program: {program}
    - name: Switch {n} | attach the current version
      ebpf.deploy.xdp_attach: {attach}
"""
DEPLOYMENT_TASK = """    - name: Switch {n} | load, attach and write the entries in one run
      ebpf.deploy.bpf_deployment: {deployment}
"""
REPEAT = 2  # each run does stage + switch this many times, so the two runs overlap for seconds


@pytest.fixture(scope="module")
def dep():
    with fl.CounterOnVeth("cc") as deployment:
        fl.map_set_u64(deployment.map_pin, VALUE)
        yield deployment


@pytest.fixture(scope="module")
def state_dir():
    with tempfile.TemporaryDirectory(prefix="ebpfd_fault_cc_state_") as path:
        yield Path(path)


def module_tasks(dep, stem: str) -> str:
    return "".join(TASKS.format(n=n, program=json.dumps(dep.program_args(stem, keep_versions=2)),
                                attach=json.dumps(dep.xdp_args())) for n in range(1, REPEAT + 1))


def deployment_tasks(dep, stem: str, state_dir: Path) -> str:
    args = dict(dep.program_args(stem, keep_versions=2), state_dir=str(state_dir),
                attach=[{"interface": dep.ifname, "netns": dep.netns, "program": fl.PROGRAM}],
                maps=[{"map": "pkt_count", "key_type": "u32", "value_type": "u64",
                       "entries": [{"key": 0, "value": VALUE}], "overwrite": False}])
    return "".join(DEPLOYMENT_TASK.format(n=n, deployment=json.dumps(args)) for n in range(1, REPEAT + 1))


@pytest.mark.parametrize("round_", range(1, ROUNDS + 1))
@pytest.mark.parametrize("how", ["program+xdp_attach", "bpf_deployment"])
def test_two_upgrades_at_once_end_consistent(dep, state_dir, how, round_, totals):
    t = totals("concurrency")
    t.cases += 1
    with tempfile.TemporaryDirectory(prefix="ebpfd_fault_cc_") as tmp:
        procs = []
        # alternate who is started first
        stems = ["counter_v2", "counter"] if round_ % 2 else ["counter", "counter_v2"]
        for stem in stems:
            book = Path(tmp) / f"{stem}.yml"
            tasks = module_tasks(dep, stem) if how == "program+xdp_attach" else deployment_tasks(dep, stem, state_dir)
            book.write_text(fl.localhost_play(f"deploy {stem} and attach it", "  tasks:\n" + tasks), encoding="utf-8")
            procs.append(subprocess.Popen([fl.ANSIBLE_PLAYBOOK, "-i", "localhost,", str(book)],
                                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                          env=fl.ansible_env(), cwd=fl.REPO, start_new_session=True))
        outputs = []
        for proc in procs:
            try:
                outputs.append(proc.communicate(timeout=180)[0])
            except subprocess.TimeoutExpired:
                fl.kill_group(proc.pid)
                outputs.append(proc.communicate()[0])
    current = dep.current()
    current_id = dep.current_prog_id()
    attached = dep.attached()
    problems = []
    for proc, stem, out in zip(procs, stems, outputs):
        if proc.returncode != 0:
            problems.append(f"the {stem} run failed (rc {proc.returncode}): {out[-1500:]}")
    if current is None or current_id is None:
        problems.append(f"current is {current!r} with program {current_id}")
    if attached != current_id:
        problems.append(f"attached program {attached} is not current {current}'s program {current_id}")
    problems += dep.settled_problems(t, VALUE)
    if how == "bpf_deployment":
        (record,) = state_dir.glob(f"root-*/{dep.name}/state.json")
        state = json.loads(record.read_text())
        if state.get("pending") or state.get("committed") != current:
            problems.append(f"the record says committed {state.get('committed')}, pending {state.get('pending')}, "
                            f"but {current} runs")
    t.record(problems)
    assert not problems, "; ".join(problems)
    counting, before, after = dep.still_counts()
    assert counting, f"the attached program does not count ({before} -> {after})"
    fl.map_set_u64(dep.map_pin, VALUE)
