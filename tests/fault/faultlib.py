"""Shared code of the fault suite (tests/fault): run modules and playbooks the way a user does,
snapshot what a host holds of a deployment, and keep the suite's totals.

Everything here reads the host through tools that are not the code under test (bpftool, `ip -j`,
the bpffs itself), so a snapshot cannot agree with a module by sharing its bugs. What the integration
tier does too (running modules, bpftool, process groups) is in tests/helpers.py.

Every process started here is started in its own session and, when it overruns its time, ended by
its process group id (`os.killpg(pid)`), never by name. Names made here start with `ebpfd`.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

# the fault tests reach these as fl.<name> too (map_set_u64, one_line, parse_results ...)
from tests.helpers import (  # noqa: F401  pylint: disable=unused-import
    ANSIBLE_PLAYBOOK, BPF_DIR, BPFFS, PYTHON, REPO, RUN_DIR, ModuleRun, SetUpOrUndo, bpftool, forget_deployment,
    kill_group, map_set_u64, map_u64, one_line, parse_results, pids_with_argv, run_group, run_module_file, unique)
from tests.integration import xdp_helpers  # a veth pair in namespaces
from tests.lab import labctl

PROGRAM = "xdp_packet_counter"
LAYOUT_HINT = "_ebpf_deploy_marker, maps/<map>, <version>/progs/<program>, links/<link>, current, previous"


# --- the totals printed at the end of the session -----------------------------------------------
@dataclass
class Tally:
    cases: int = 0
    ok: int = 0            # host unchanged (bad input) or converged (kill, concurrency, host lost)
    changed: int = 0       # host changed by a failed task, or did not converge
    lost: int = 0          # the interface had no program, or a map lost its contents
    notes: dict = field(default_factory=dict)

    def count(self, key: str, n: int = 1) -> None:
        self.notes[key] = self.notes.get(key, 0) + n

    def record(self, problems: list) -> None:
        """One case ended: converged/unchanged when it found no problem."""
        if problems:
            self.changed += 1
        else:
            self.ok += 1


TOTALS: dict[str, Tally] = {}


def merge_totals(parts: dict) -> None:
    """Add a worker's totals (make fault WORKERS=N: {part: Tally fields}) to this process's."""
    for part, fields in parts.items():
        mine = tally(part)
        mine.cases += fields["cases"]
        mine.ok += fields["ok"]
        mine.changed += fields["changed"]
        mine.lost += fields["lost"]
        for key, n in fields["notes"].items():
            mine.count(key, n)


def tally(part: str) -> Tally:
    return TOTALS.setdefault(part, Tally())


# --- environment and processes -------------------------------------------------------------------
def ansible_env(**extra: str) -> dict:
    """The lab's Ansible environment (labctl.ansible_env), without retry files or bytecode."""
    return labctl.ansible_env(ANSIBLE_RETRY_FILES_ENABLED="0", PYTHONDONTWRITEBYTECODE="1", **extra)


def adhoc(module: str, args: dict, *, check: bool = False, timeout: float = 60) -> dict:
    """One module on localhost through `ansible` (action plugins included), as ModuleRun runs it,
    but a hung run or one without a result is reported as a failed result, not raised."""
    results, (rc, out, err, timed_out) = ModuleRun().run(module, args, check=check, timeout=timeout)
    if timed_out:
        return {"failed": True, "msg": f"TIMEOUT: {module} did not finish in {timeout}s (process group killed)",
                "_timeout": True, "_stdout": out, "_stderr": err}
    if not results:
        return {"failed": True, "msg": f"NO RESULT (rc={rc})", "_stdout": out, "_stderr": err, "_noresult": True}
    result = results[-1]
    result["_stdout"], result["_stderr"] = out, err
    return result


def localhost_play(name: str, body: str) -> str:
    """The YAML of one play `ebpfd fault | <name>` on localhost with the venv's Python; `body` is its
    `tasks:` or `roles:` section, indented as a play key."""
    return f"""---
- name: ebpfd fault | {name}
  hosts: localhost
  connection: local
  gather_facts: false
  vars:
    ansible_python_interpreter: {PYTHON}
{body}"""


def playbook(text: str, *, extra_vars: Optional[dict] = None, inventory: str = "localhost,",
             timeout: float = 300, env_extra: Optional[dict] = None, callback: str = "oneline",
             args: tuple = ()) -> tuple[int, str, str, bool]:
    """Run a playbook (given as YAML text) with ansible-playbook in its own process group."""
    with tempfile.TemporaryDirectory(prefix="ebpfd_fault_pb_") as tmp:
        book = Path(tmp) / "play.yml"
        book.write_text(text, encoding="utf-8")
        cmd = [ANSIBLE_PLAYBOOK, "-i", inventory, str(book), *args]
        if extra_vars:
            ev = Path(tmp) / "vars.json"
            ev.write_text(json.dumps(extra_vars), encoding="utf-8")
            cmd += ["-e", f"@{ev}"]
        env = ansible_env(ANSIBLE_STDOUT_CALLBACK=callback, ANSIBLE_LOAD_CALLBACK_PLUGINS="1", **(env_extra or {}))
        return run_group(cmd, env=env, timeout=timeout)


def direct(module: str, args: dict, *, timeout: float = 60, wrapper: Optional[list[str]] = None,
           env_extra: Optional[dict] = None, raise_on_timeout: bool = True) -> tuple[int, dict]:
    """Run a module file directly on this host (no controller), optionally through a wrapper
    script (the kill-point runner). Returns (returncode, parsed JSON or {})."""
    rc, out, err, timed_out = run_module_file(module, args, timeout=timeout, wrapper=tuple(wrapper or ()),
                                              env_extra=env_extra)
    if timed_out:
        if not raise_on_timeout:
            return rc, {"failed": True, "_timeout": True, "msg": f"TIMEOUT: {module} hung for {timeout}s"}
        raise AssertionError(f"{module} hung for {timeout}s: {err[-2000:]}")
    try:
        return rc, json.loads(out)
    except ValueError:
        return rc, {"_stdout": out, "_stderr": err}


# --- reading the host without the code under test --------------------------------------------------
def bpftool_json(*args: str):
    """bpftool's answer, or None when it fails (a snapshot records what is not there as None)."""
    return bpftool(*args, check=False)


def tree(path: Path) -> list:
    """`ls -R` of a directory as (relative path, kind, symlink target) rows."""
    rows = []
    if not os.path.lexists(path):
        return rows
    for dirpath, dirnames, filenames in os.walk(path):
        for name in sorted(dirnames + filenames):
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, path)
            if os.path.islink(full):
                rows.append((rel, "symlink", os.readlink(full)))
            elif os.path.isdir(full):
                rows.append((rel, "dir", None))
            else:
                rows.append((rel, "file", None))
    return sorted(rows)


def file_contents(path: Path) -> dict:
    out = {}
    if path.is_dir():
        for p in sorted(path.rglob("*")):
            if p.is_file():
                out[str(p.relative_to(path))] = p.read_text(encoding="utf-8", errors="replace")
    elif path.is_file():
        out[path.name] = path.read_text(encoding="utf-8", errors="replace")
    return out


def _under(paths, root: str) -> list:
    return sorted(p for p in (paths or []) if p == root or p.startswith(root.rstrip("/") + "/"))


def xdp_of(netns: Optional[str], ifname: str) -> dict:
    cmd = ["ip", "-j", "-d", "link", "show", "dev", ifname]
    if netns:
        cmd = ["nsenter", f"--net=/run/netns/{netns}"] + cmd
    info = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=30).stdout)[0]
    xdp = info.get("xdp") or {}
    prog = xdp.get("prog") or {}
    return {"mode": xdp.get("mode"), "prog_id": prog.get("id"), "prog_name": prog.get("name"),
            "prog_tag": prog.get("tag"),
            "attached": sorted((a.get("mode"), (a.get("prog") or {}).get("id")) for a in xdp.get("attached", []))}


def attached_prog_id(netns: Optional[str], ifname: str) -> Optional[int]:
    return xdp_of(netns, ifname)["prog_id"]


def snapshot(*, root: Path, deployment: str, netns: Optional[str], ifname: str, extra: tuple = ()) -> dict:
    """What a host holds of a deployment: its programs, maps and links (bpftool, filtered to the ids
    of the deployment's pins and the interface's program), `ls -R` of the bpffs root, the interface's
    XDP attachment, every pinned map's contents, and the deployment's /run metadata."""
    root_s = str(root)
    xdp = xdp_of(netns, ifname)
    progs_all = bpftool_json("-f", "prog", "show") or []
    maps_all = bpftool_json("-f", "map", "show") or []
    links_all = bpftool_json("-f", "link", "show") or []
    progs = [p for p in progs_all if _under(p.get("pinned"), root_s) or p.get("id") == xdp["prog_id"]]
    prog_ids = {p["id"] for p in progs}
    map_ids = {m for p in progs for m in p.get("map_ids", [])}
    maps = [m for m in maps_all if _under(m.get("pinned"), root_s) or m.get("id") in map_ids]
    links = [lk for lk in links_all if _under(lk.get("pinned"), root_s) or lk.get("prog_id") in prog_ids]
    keep_p = ("id", "type", "name", "tag", "map_ids")
    keep_m = ("id", "type", "name", "bytes_key", "bytes_value", "max_entries", "flags")
    keep_l = ("id", "type", "prog_id", "ifindex")
    dep_maps = root / deployment / "maps"
    contents = {}
    if dep_maps.is_dir():
        for pin in sorted(dep_maps.iterdir()):
            contents[pin.name] = bpftool_json("map", "dump", "pinned", str(pin))
    snap = {
        "programs": sorted(({k: p.get(k) for k in keep_p} | {"pinned": _under(p.get("pinned"), root_s)}
                            for p in progs), key=lambda d: d["id"]),
        "maps": sorted(({k: m.get(k) for k in keep_m} | {"pinned": _under(m.get("pinned"), root_s)}
                        for m in maps), key=lambda d: d["id"]),
        "links": sorted(({k: lk.get(k) for k in keep_l} | {"pinned": _under(lk.get("pinned"), root_s)}
                         for lk in links), key=lambda d: d["id"]),
        "bpffs": tree(root),
        "xdp": xdp,
        "map_contents": contents,
        "run_state": file_contents(RUN_DIR / deployment),
    }
    for path in extra:
        snap[f"extra:{path}"] = tree(Path(path))
    return snap


def snapshot_diff(before: dict, after: dict) -> dict:
    return {key: {"before": before.get(key), "after": after.get(key)}
            for key in sorted(set(before) | set(after)) if before.get(key) != after.get(key)}


def pinned_prog_id(pin: Path) -> Optional[int]:
    info = bpftool_json("prog", "show", "pinned", str(pin))
    return info.get("id") if info else None


# --- the deployment layout -------------------------------------------------------------------------
_LAYOUT = [re.compile(p) for p in (
    r"_ebpf_deploy_marker", r"maps", r"maps/[A-Za-z0-9_-]+", r"links", r"links/[^/]+:xdp", r"current", r"previous",
    r"[0-9a-f]{12}", r"[0-9a-f]{12}/progs", r"[0-9a-f]{12}/progs/[A-Za-z0-9_-]+")]


def layout_problems(root: Path, deployment: str) -> list[str]:
    """Paths under the deployment that are not part of the layout (staging leftovers included),
    and anything beside the deployment in the root."""
    problems = []
    for rel, _kind, _target in tree(root):
        parts = rel.split("/")
        if parts[0] != deployment:
            problems.append(f"{rel}: outside the deployment")
            continue
        sub = "/".join(parts[1:])
        if sub and not any(p.fullmatch(sub) for p in _LAYOUT):
            problems.append(f"{rel}: not in the layout ({LAYOUT_HINT})")
    return problems


def current_version(root: Path, deployment: str) -> Optional[str]:
    link = root / deployment / "current"
    return os.readlink(link) if link.is_symlink() else None


# --- a deployment of the counter attached to a veth, counting --------------------------------------
class CounterOnVeth(SetUpOrUndo):
    """A bpffs root `ebpfd_fault_*`, a deployment `ebpfd_f*` of counter.bpf.o attached to the host
    side of a VethLab, counting packets sent from the peer. Built with the collection's own modules
    (run directly), read back with bpftool and `ip`."""

    def __init__(self, tag: str):
        self.tag = tag
        self.root = BPFFS / unique(f"ebpfd_fault_{tag}_")
        self.name = unique(f"ebpfd_{tag}")
        self.veth = xdp_helpers.VethLab(tag=tag)
        self.versions: dict[str, str] = {}
        self.prog_ids: dict[str, int] = {}

    # set-up / tear-down
    def setup(self) -> None:
        self.veth.setup()
        self.deploy("counter")
        self.attach()

    def close(self) -> None:
        try:
            if self.root.exists():
                direct("xdp_attach", dict(self.xdp_args(), state="absent"))
                direct("bpf_program", {"name": self.name, "bpffs_root": str(self.root), "state": "absent"})
        finally:
            self.veth.close()
            xdp_helpers.remove_tree(self.root)
            forget_deployment(self.name, self.root)

    # acting through the modules
    @property
    def netns(self) -> Optional[str]:
        return self.veth.host_ns

    @property
    def ifname(self) -> str:
        return self.veth.host_if

    def program_args(self, stem: str, **extra) -> dict:
        return dict({"name": self.name, "src": str(BPF_DIR / f"{stem}.bpf.o"), "remote_src": True,
                     "bpffs_root": str(self.root)}, **extra)

    def xdp_args(self, **extra) -> dict:
        return dict({"deployment": self.name, "program": PROGRAM, "interface": self.ifname,
                     "netns": self.netns, "bpffs_root": str(self.root)}, **extra)

    def deploy(self, stem: str, **extra) -> dict:
        rc, result = direct("bpf_program", self.program_args(stem, **extra))
        assert rc == 0 and not result.get("failed"), result
        self.versions[stem] = result["version"]
        self.prog_ids[result["version"]] = result["programs"][0]["id"]
        return result

    def attach(self, **extra) -> dict:
        rc, result = direct("xdp_attach", self.xdp_args(**extra))
        assert rc == 0 and not result.get("failed"), result
        return result

    # reading
    @property
    def map_pin(self) -> Path:
        return self.root / self.name / "maps" / "pkt_count"

    def count(self) -> int:
        return map_u64(self.map_pin)

    def settled_count(self) -> int:
        """The counter once packets in flight are counted (two equal reads 50 ms apart)."""
        last = self.count()
        for _attempt in range(40):
            time.sleep(0.05)
            now = self.count()
            if now == last:
                return now
            last = now
        return last

    def send(self, count: int) -> int:
        return self.veth.send(count)

    def still_counts(self, packets: int = 10) -> tuple[bool, int, int]:
        before = self.settled_count()
        self.send(packets)
        after = self.settled_count()
        return after - before >= packets, before, after

    def attached(self) -> Optional[int]:
        return attached_prog_id(self.netns, self.ifname)

    def current(self) -> Optional[str]:
        return current_version(self.root, self.name)

    def current_prog_id(self) -> Optional[int]:
        version = self.current()
        return pinned_prog_id(self.root / self.name / version / "progs" / PROGRAM) if version else None

    def staging_leftovers(self) -> list[str]:
        dep = self.root / self.name
        return sorted(p.name for p in dep.iterdir() if p.name.startswith("_staging-")) if dep.is_dir() else []

    def settled_problems(self, t: Tally, value: int) -> list[str]:
        """What a converged deployment must not show: staging leftovers, pins outside the layout,
        and a pkt_count that lost the value written before (counted as a loss in t)."""
        problems = [f"leftover {s}" for s in self.staging_leftovers()] + layout_problems(self.root, self.name)
        count = self.settled_count()
        if count != value:
            problems.append(f"pkt_count is {count}, {value} was written before")
            t.lost += 1
        return problems

    def snapshot(self, extra: tuple = ()) -> dict:
        return snapshot(root=self.root, deployment=self.name, netns=self.netns, ifname=self.ifname, extra=extra)


# --- lab hosts (tests/lab): reading a host inside its own namespaces, losing it ----------------------
def in_host(lab, which: int, *cmd: str) -> subprocess.CompletedProcess:
    """`cmd` inside host `which`'s mount and network namespaces (those of its sshd, as the last
    `lab.up()` reported it): pins are per host."""
    pid = int(lab.host(which)["sshd_pid"])
    return subprocess.run(["nsenter", "-t", str(pid), "-m", "-n", *cmd], capture_output=True, text=True,
                          timeout=30, check=False)


def host_state(lab, which: int, *, root: str, deployment: str) -> dict:
    """A deployment on a lab host: its current version and that version's pinned program id, the
    program attached to eth0, whether the deployment's directory exists, and its record."""
    dep = f"{root}/{deployment}"
    current = in_host(lab, which, "readlink", f"{dep}/current").stdout.strip() or None
    prog = None
    if current:
        out = in_host(lab, which, "bpftool", "-j", "prog", "show", "pinned", f"{dep}/{current}/progs/{PROGRAM}")
        prog = json.loads(out.stdout).get("id") if out.returncode == 0 and out.stdout.strip() else None
    info = json.loads(in_host(lab, which, "ip", "-j", "-d", "link", "show", "dev", "eth0").stdout)[0]
    attached = ((info.get("xdp") or {}).get("prog") or {}).get("id")
    exists = in_host(lab, which, "test", "-e", dep).returncode == 0
    found = in_host(lab, which, "sh", "-c", f"cat /var/lib/ebpf_deploy/root-*/{deployment}/state.json")
    record = json.loads(found.stdout) if found.returncode == 0 and found.stdout.strip() else None
    return {"current": current, "current_prog_id": prog, "attached": attached, "deployment_exists": exists,
            "record": record}


def canary(lab, variables: dict, tmp: Path, on_line: Callable[[str, subprocess.Popen], bool]) -> tuple[int, str]:
    """playbooks/canary.yml on the lab with `variables`, its output read as it comes: on_line(line,
    proc) for each line, and the reading stops when it returns True. A run that outlives 300 s is
    ended by its process group. Returns (rc, output)."""
    vars_file = tmp / "vars.json"
    vars_file.write_text(json.dumps(variables), encoding="utf-8")
    proc = subprocess.Popen([ANSIBLE_PLAYBOOK, "-i", str(lab.inventory), str(REPO / "playbooks" / "canary.yml"),
                             "-e", f"@{vars_file}"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=ansible_env(ANSIBLE_STDOUT_CALLBACK="default"), cwd=REPO, start_new_session=True)
    watchdog = threading.Timer(300, kill_group, args=(proc.pid,))
    watchdog.start()
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if on_line(line, proc):
                break
        proc.wait()
    finally:
        watchdog.cancel()
        proc.stdout.close()
    return proc.returncode, "".join(lines)


def ssh_masters(address: str) -> list[int]:
    """Our Ansible's ControlPersist ssh masters to this address."""
    return pids_with_argv(lambda argv: os.path.basename(argv[0]) == "ssh" and address in argv
                          and any("ControlPersist" in a for a in argv))
