"""Module start-up on the AnsiballZ path, for bench_overhead (issue 19: a module process <= 60 ms).

One playbook on the controller (`-c local`, pipelining off, ANSIBLE_KEEP_REMOTE_FILES) runs each
module once with the fleet's interpreter, Debian's /usr/bin/python3, and leaves the AnsiballZ
payloads Ansible built for it in a remote tmp dir of the run's own. Each payload is then run again
directly, N times, as Ansible would run it (`/usr/bin/python3 AnsiballZ_<module>.py`): the second
and later runs are idempotent re-runs of the same task, the common case of a converged fleet.
AnsiballZ ships source only, so every module_util, basic.py included, would be compiled again in
every process; our module_utils come from the host's bytecode cache (module_utils/_bytecode.py),
here a directory of the run's own, warmed by one run first. Each run is made twice, with the
cache and with it off (EBPF_DEPLOY_BYTECODE_CACHE empty), to show what it saves.

Figures: median wall ms and peak RSS per module, beside `ansible.builtin.ping` (the floor: the
interpreter, the AnsiballZ wrapper and ansible.module_utils.basic, nothing of ours), and the
`-X importtime` top 10 (cumulative microseconds, median over the runs) of bpf_deployment.
"""
from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
from pathlib import Path

from tests import helpers
from tests.integration import xdp_helpers as h
from tests.lab import labctl

SYSTEM_PYTHON = "/usr/bin/python3"
TARGET_MS = 60
MODULES = ("bpf_deployment", "bpf_program", "xdp_attach", "bpf_facts", "bpf_map")
FLOOR = "ping"
MODULE_UTILS = "ansible_collections.ebpf.deploy.plugins.module_utils."
IMPORTTIME_OF = "bpf_deployment"
PROGRAM = "xdp_packet_counter"


def tasks(*, root: Path, name: str, obj: Path, prog_veth: h.VethLab, dep_veth: h.VethLab) -> list[dict]:
    """One task per module: bpf_program + xdp_attach on one veth, a bpf_deployment (attach and map
    entry) on another, bpf_map on the deployment's map, bpf_facts of the root, and ping."""
    program, deployment = f"{name}p", f"{name}d"
    return [
        {"name": "Startup | bpf_program", "ebpf.deploy.bpf_program": {
            "name": program, "src": str(obj), "bpffs_root": str(root)}},
        {"name": "Startup | xdp_attach", "ebpf.deploy.xdp_attach": {
            "deployment": program, "program": PROGRAM, "interface": prog_veth.host_if,
            "netns": prog_veth.host_ns, "mode": "generic", "bpffs_root": str(root)}},
        {"name": "Startup | bpf_deployment", "ebpf.deploy.bpf_deployment": {
            "name": deployment, "src": str(obj), "bpffs_root": str(root),
            "attach": [{"program": PROGRAM, "interface": dep_veth.host_if, "netns": dep_veth.host_ns,
                        "mode": "generic"}],
            "maps": [{"map": "pkt_count", "key_type": "u32", "value_type": "u64",
                      "entries": [{"key": 0, "value": 0}], "overwrite": False}]}},
        {"name": "Startup | bpf_map", "ebpf.deploy.bpf_map": {
            "deployment": deployment, "map": "pkt_count", "key_type": "u32", "value_type": "u64",
            "entries": [{"key": 0, "value": 0}], "overwrite": False, "bpffs_root": str(root)}},
        {"name": "Startup | bpf_facts", "ebpf.deploy.bpf_facts": {"bpffs_root": str(root)}},
        {"name": "Startup | ping", "ansible.builtin.ping": {}},
    ]


def keep_payloads(work: Path, task_list: list[dict]) -> dict[str, Path]:
    """Run the tasks once and return the AnsiballZ payload Ansible built for each module."""
    remote_tmp = work / "remote_tmp"
    inventory = work / "startup-inventory.ini"
    inventory.write_text(f"localhost ansible_connection=local ansible_python_interpreter={SYSTEM_PYTHON}\n")
    book = work / "startup.yml"
    book.write_text(json.dumps([{"name": "Startup", "hosts": "localhost", "gather_facts": False,
                                 "tasks": task_list}], indent=1))  # JSON is YAML
    env = labctl.ansible_env(ANSIBLE_KEEP_REMOTE_FILES="1", ANSIBLE_PIPELINING="0",
                             ANSIBLE_REMOTE_TMP=str(remote_tmp))
    exe = shutil.which("ansible-playbook", path=env["PATH"])
    proc = subprocess.run([exe, "-i", str(inventory), str(book)], capture_output=True, text=True, env=env,
                          cwd=helpers.REPO, timeout=600, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"startup playbook: rc={proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}")
    payloads = {}
    for module in (*MODULES, FLOOR):
        found = sorted(remote_tmp.glob(f"ansible-tmp-*/AnsiballZ_{module}.py"))
        if len(found) != 1:
            raise RuntimeError(f"startup: {len(found)} AnsiballZ payloads of {module} under {remote_tmp}")
        payloads[module] = found[0]
    return payloads


def host_env(cache: str = "") -> dict:
    """This environment without the controller's PYTHON* settings (a host's interpreter has none),
    with our bytecode cache in `cache` ("": off)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    return dict(env, EBPF_DEPLOY_BYTECODE_CACHE=cache)


def run_payload(wrapper: str, payload: Path, cache: str = "") -> dict:
    """One run of a payload as Ansible runs it, from `wrapper` (wall, CPU, peak RSS, output)."""
    proc = subprocess.run([SYSTEM_PYTHON, "-c", wrapper, SYSTEM_PYTHON, str(payload)],
                          capture_output=True, text=True, env=host_env(cache), cwd=payload.parent, timeout=120,
                          check=True)
    result = json.loads(proc.stdout)
    out = json.loads(result["stdout"] or "{}")
    if result["rc"] != 0 or out.get("failed"):
        raise RuntimeError(f"{payload.name}: rc={result['rc']} {result['stdout']} {result['stderr']}")
    result["changed"] = out.get("changed")
    return result


def trace_imports(payload: Path, cache: str) -> dict[str, int]:
    """One run of a payload under `-X importtime`: {module: cumulative microseconds}."""
    proc = subprocess.run([SYSTEM_PYTHON, "-X", "importtime", str(payload)], capture_output=True, text=True,
                          env=host_env(cache), cwd=payload.parent, timeout=120, check=True)
    return parse_importtime(proc.stderr)


def parse_importtime(stderr: str) -> dict[str, int]:
    """`-X importtime` lines -> {module: cumulative microseconds}."""
    cumulative = {}
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        _self, cum, name = line[len("import time:"):].split("|")
        cumulative[name.strip()] = int(cum)
    return cumulative


def compiled(imports: dict[str, int]) -> dict:
    """What a run compiles of ours (AnsiballZ ships source, so every file it imports is compiled
    again): the module_utils files and their source size. Unlike the times, not moved by the load."""
    files = sorted(name[len(MODULE_UTILS):] for name in imports if name.startswith(MODULE_UTILS))
    size = sum((helpers.REPO / "plugins" / "module_utils" / f"{name}.py").stat().st_size for name in files)
    return {"module_utils": files, "module_utils_kib": round(size / 1024, 1)}


def importtime_top(samples: list[dict[str, int]], count: int = 10) -> list[dict]:
    """The `count` imports with the largest median cumulative time over the samples."""
    names = set().union(*samples)
    medians = {n: statistics.median(s.get(n, 0) for s in samples) for n in names}
    top = sorted(medians.items(), key=lambda item: -item[1])[:count]
    return [{"module": n, "cumulative_us": int(us)} for n, us in top]


def measure(work: Path, wrapper: str, obj: Path, reps: int) -> dict:
    """The `startup` figures of overhead.json; everything it made (pins, record, notes, veths) goes."""
    name = helpers.unique("ebpfd_su_", 3)
    root = helpers.BPFFS / name
    try:
        with h.VethLab(tag="sp") as prog_veth, h.VethLab(tag="sd") as dep_veth:
            payloads = keep_payloads(work, tasks(root=root, name=name, obj=obj, prog_veth=prog_veth,
                                                 dep_veth=dep_veth))
            cache = str(work / "bytecode")
            for payload in payloads.values():   # warm the cache: a host's first run of this version
                run_payload(wrapper, payload, cache)
            runs: dict[str, list[dict]] = {m: [] for m in payloads}
            uncached: dict[str, list[dict]] = {m: [] for m in payloads}
            imports: dict[str, list[dict[str, int]]] = {m: [] for m in payloads}
            for _rep in range(reps):
                for module, payload in payloads.items():
                    runs[module].append(run_payload(wrapper, payload, cache))
                    uncached[module].append(run_payload(wrapper, payload))
                    imports[module].append(trace_imports(payload, cache))
    finally:
        h.remove_tree(root)
        shutil.rmtree(helpers.record_dir(root), ignore_errors=True)
        for deployment in (f"{name}p", f"{name}d"):
            helpers.forget_deployment(deployment, root)
    modules = {m: {"wall_ms": round(statistics.median(r["wall"] for r in rs) * 1000, 1),
                   "cpu_ms": round(statistics.median(r["cpu"] for r in rs) * 1000, 1),
                   "maxrss_mib": round(max(r["maxrss_kib"] for r in rs) / 1024, 1),
                   "wall_ms_uncached": round(statistics.median(r["wall"] for r in uncached[m]) * 1000, 1),
                   "cpu_ms_uncached": round(statistics.median(r["cpu"] for r in uncached[m]) * 1000, 1),
                   "changed": any(r["changed"] for r in rs), **compiled(imports[m][0])}
               for m, rs in runs.items()}
    floor = modules.pop(FLOOR)
    return {"target_ms": TARGET_MS, "python": SYSTEM_PYTHON, "reps": reps, "modules": modules,
            "floor_ping": floor, "target_met": {m: row["wall_ms"] <= TARGET_MS for m, row in modules.items()},
            "importtime_of": IMPORTTIME_OF, "importtime_top": importtime_top(imports[IMPORTTIME_OF]),
            "loadavg_after": [round(x, 2) for x in os.getloadavg()]}   # the times move with the machine's load


def print_table(startup: dict) -> None:
    print(f"\nModule start-up on the AnsiballZ path ({startup['python']}, idempotent re-runs, medians of "
          f"{startup['reps']}; peak RSS = max); target <= {startup['target_ms']} ms; load average "
          f"{startup['loadavg_after'][0]}")
    head = (f"{'module':<16} {'wall ms':>8} {'CPU ms':>8} {'uncached wall/CPU ms':>21} {'peak RSS MiB':>13} "
            f"{'target':>7} {'our module_utils':>22}")
    print(head)
    print("-" * len(head))
    rows = dict(startup["modules"], **{"ping (floor)": startup["floor_ping"]})
    for name, row in rows.items():
        met = "" if name == "ping (floor)" else ("met" if row["wall_ms"] <= startup["target_ms"] else "missed")
        ours = f"{len(row['module_utils'])} files, {row['module_utils_kib']:.0f} KiB" if row["module_utils"] else ""
        uncached = f"{row['wall_ms_uncached']:.1f} / {row['cpu_ms_uncached']:.1f}"
        print(f"{name:<16} {row['wall_ms']:>8.1f} {row['cpu_ms']:>8.1f} {uncached:>21} {row['maxrss_mib']:>13.1f} "
              f"{met:>7} {ours:>22}")
    print(f"-X importtime of {startup['importtime_of']}, top 10 (cumulative us, median):")
    for item in startup["importtime_top"]:
        print(f"  {item['cumulative_us']:>8}  {item['module']}")
