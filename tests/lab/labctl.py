"""Lab hosts for tests, molecule and benchmarks: the same code `make lab-up` runs.

    from tests.lab import labctl
    lab = labctl.new_lab(count=3)          # random name prefix, management /24 and lab dir
    lab.up()                               # hosts <prefix>-h1..3, inventory at lab.inventory
    lab.ansible("lab", "ansible.builtin.ping")
    sent = lab.traffic(1, count=1000)["sent"]
    labctl.rx_packets(lab.host(1)["netns"])
    lab.down()

Everything goes through roles/lab/files/ebpfd_lab.py, whose JSON result is returned as a dict.
`snapshot()` and `leaks()` tell whether a teardown left anything of a lab behind.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "roles" / "lab" / "files" / "ebpfd_lab.py"
PLAYBOOK = REPO / "playbooks" / "lab.yml"
# The venv the tests run in gives their ansible, ansible-playbook and the lab hosts' Python: make's
# .venv, or a compat venv of tools/compat.sh (another ansible-core), as the unit tests find theirs.
VENV_BIN = Path(sys.executable).parent
PYTHON = sys.executable
IMAGE_DIR = Path(os.environ.get("EBPF_DEPLOY_LAB_IMAGES") or REPO / "build" / "images")  # VM images, shared
BPFFS = Path("/sys/fs/bpf")


class LabScriptError(AssertionError):
    """ebpfd_lab.py reported a failure; `result` is its JSON."""

    def __init__(self, result: dict):
        super().__init__(json.dumps(result, indent=2)[:4000])
        self.result = result


def run_script(*args: str, timeout: float = 300) -> dict:
    """Run ebpfd_lab.py with the arguments and return its JSON result; raise if it failed."""
    proc = subprocess.run([PYTHON, str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout,
                          check=False)
    try:
        result = json.loads(proc.stdout)
    except json.JSONDecodeError as exc:
        raise AssertionError(f"ebpfd_lab.py {args[0]}: no JSON (rc={proc.returncode})\n"
                             f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}") from exc
    if proc.returncode != 0 or result.get("failed"):
        raise LabScriptError(result)
    return result


def ansible_env(**extra: str) -> dict:
    """The environment the Makefile gives Ansible (collection path, ansible.cfg, venv first on PATH)."""
    env = dict(os.environ)
    env.update(
        ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
        ANSIBLE_COLLECTIONS_PATH=str(REPO / ".build" / "collections"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_DEPRECATION_WARNINGS="0",
        PATH=f"{VENV_BIN}:{env.get('PATH', '/usr/bin:/bin')}",
    )
    env.update(extra)
    return env


_ONELINE = re.compile(r"^(?P<host>\S+) \| (?P<status>[A-Z!]+)(?: \| rc=(?P<rc>\d+))?"
                      r"(?: => (?P<json>\{.*\})| \| \(stdout\) (?P<stdout>.*?)(?: \(stderr\) (?P<stderr>.*))?)?\s*$")


def parse_oneline(stdout: str) -> dict[str, dict]:
    """Per-host results of an ad hoc `ansible` run with the oneline callback: the module's JSON
    (ping), or {'stdout', 'stderr', 'rc'} for command/shell; '_status' is SUCCESS, CHANGED, FAILED..."""
    results = {}
    for line in stdout.splitlines():
        m = _ONELINE.match(line)
        if not m:
            continue
        if m["json"]:
            try:
                data = json.loads(m["json"])
            except json.JSONDecodeError:
                data = {"raw": m["json"]}
        else:
            data = {"stdout": (m["stdout"] or "").replace("\\n", "\n"),
                    "stderr": (m["stderr"] or "").replace("\\n", "\n")}
        data["_status"] = m["status"]
        if m["rc"] is not None:
            data.setdefault("rc", int(m["rc"]))
        results[m["host"]] = data
    return results


# --- one lab ----------------------------------------------------------------------------------------

@dataclass
class Lab:
    lab_dir: Path
    prefix: str = "ebpfd"
    count: int = 3
    mgmt_network: str = "10.250.0.0/16"
    data_network: str = "10.251.0.0/16"
    bridge: bool = True
    vms: int = 0
    vm_images: list[str] = field(default_factory=lambda: ["debian12"])
    image_dir: Path = IMAGE_DIR
    result: dict = field(default_factory=dict)

    # lifecycle
    def up_args(self) -> list[str]:
        args = ["up", "--lab-dir", str(self.lab_dir), "--count", str(self.count), "--prefix", self.prefix,
                "--mgmt-network", self.mgmt_network, "--data-network", self.data_network, "--python", PYTHON]
        args += ["--vms", str(self.vms), "--image-dir", str(self.image_dir)]
        args += [f"--vm-image={image}" for image in self.vm_images]
        return args + ([] if self.bridge else ["--no-bridge"])

    def up(self, *, check: bool = False, timeout: float = 300) -> dict:
        result = run_script(*self.up_args(), *(["--check"] if check else []), timeout=timeout)
        if not check:
            self.result = result
        return result

    def down(self, *, check: bool = False) -> dict:
        return run_script("down", "--lab-dir", str(self.lab_dir), "--prefix", self.prefix,
                          *(["--check"] if check else []))

    def status(self) -> dict:
        return run_script("status", "--lab-dir", str(self.lab_dir))

    def playbook(self, state: str = "present", *extra: str) -> subprocess.CompletedProcess:
        """Run playbooks/lab.yml (the role) for this lab, as `make lab-up`/`lab-down` do."""
        cmd = ["ansible-playbook", "-i", "localhost,", str(PLAYBOOK), "-e", f"lab_state={state}",
               "-e", f"lab_dir={self.lab_dir}", "-e", f"lab_name_prefix={self.prefix}"]
        if state == "present":
            cmd += ["-e", f"lab_host_count={self.count}", "-e", f"lab_mgmt_network={self.mgmt_network}",
                    "-e", f"lab_data_network={self.data_network}",
                    "-e", f"lab_mgmt_bridge={str(self.bridge).lower()}", "-e", f"lab_python_interpreter={PYTHON}",
                    "-e", f"lab_vm_count={self.vms}", "-e", f"lab_vm_image_dir={self.image_dir}",
                    "-e", json.dumps({"lab_vm_images": self.vm_images})]
        return subprocess.run([*cmd, *extra], capture_output=True, text=True, env=ansible_env(), cwd=REPO,
                              timeout=300, check=False)

    # what the lab looks like
    @property
    def inventory(self) -> Path:
        return self.lab_dir / "inventory.yml"

    @property
    def private_key(self) -> Path:
        return self.lab_dir / "id_ed25519"

    @property
    def hosts(self) -> list[dict]:
        return self.result.get("hosts", [])

    def host(self, which: int | str) -> dict:
        for h in self.hosts:
            if h["name"] in (str(which), f"{self.prefix}-h{which}"):
                return h
        raise KeyError(which)

    @property
    def vm_hosts(self) -> list[dict]:
        return self.result.get("vms", [])

    def vm(self, which: int | str) -> dict:
        """A VM host by index (1) or name (<prefix>-v1)."""
        for v in self.vm_hosts:
            if v["name"] in (str(which), f"{self.prefix}-v{which}"):
                return v
        raise KeyError(which)

    # using it
    def ansible(self, pattern: str, module: str, args: str | None = None, *extra: str,
                timeout: float = 300) -> subprocess.CompletedProcess:
        """`ansible PATTERN -i <inventory> -m MODULE -a ARGS` with the oneline callback."""
        cmd = ["ansible", pattern, "-i", str(self.inventory), "-m", module, *(["-a", args] if args else []), *extra]
        env = ansible_env(ANSIBLE_STDOUT_CALLBACK="oneline", ANSIBLE_LOAD_CALLBACK_PLUGINS="1")
        return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=timeout, check=False)

    def ssh(self, which: int | str, command: str, *, timeout: float = 60) -> subprocess.CompletedProcess:
        """Run a command on a lab host over plain ssh (no ControlMaster), as root."""
        if str(which).startswith(f"{self.prefix}-v"):
            where = ["-p", str(self.vm(which)["ssh_port"]), "root@127.0.0.1"]
        else:
            where = [f"root@{self.host(which)['mgmt_address']}"]
        cmd = ["ssh", "-i", str(self.private_key), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
               "-o", f"UserKnownHostsFile={self.lab_dir / 'known_hosts'}", "-o", "StrictHostKeyChecking=yes",
               "-o", "ControlMaster=no", "-o", "ControlPath=none", *where, command]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)

    def traffic(self, which: int | str, *, count: int, rate: float | None = None, size: int | None = None) -> dict:
        """Send `count` UDP datagrams from the host's peer namespace to the host's eth0."""
        args = ["traffic", "--lab-dir", str(self.lab_dir), "--host", str(which), "--count", str(count)]
        args += ["--rate", str(rate)] if rate else []
        args += ["--size", str(size)] if size is not None else []
        return run_script(*args)

    def rx_packets(self, which: int | str, ifname: str = "eth0") -> int:
        return rx_packets(self.host(which)["netns"], ifname)

    def addresses(self) -> list[str]:
        return [h["mgmt_address"] for h in self.hosts]


def new_lab(count: int = 3, *, lab_dir: Path | None = None, bridge: bool = True, vms: int = 0,
            vm_images: list[str] | None = None) -> Lab:
    """A lab that cannot collide with `make lab-up` or another test run: random prefix, random
    management /24 inside 10.250.0.0/16 (more specific than the default lab's route) and its own dir.
    VM hosts (vms > 0) share the image cache IMAGE_DIR and get free 127.0.0.1 ports."""
    prefix = "ebpfd" + secrets.token_hex(3)[:5]
    third = 100 + secrets.randbelow(150)
    lab_dir = lab_dir or REPO / "build" / f"{prefix}-lab"
    return Lab(lab_dir=lab_dir, prefix=prefix, count=count, mgmt_network=f"10.250.{third}.0/24", bridge=bridge,
               vms=vms, vm_images=vm_images or ["debian12"])


@contextlib.contextmanager
def running(count: int = 3, **options) -> Iterator[Lab]:
    """A new lab (new_lab's options), up for the block and down afterwards, also when `up` fails
    half-way (the teardown removes what it made)."""
    lab = new_lab(count, **options)
    try:
        lab.up()
        yield lab
    finally:
        lab.down()


# --- counters ---------------------------------------------------------------------------------------

def link_stats(netns: str, ifname: str = "eth0") -> dict:
    """`ip -n NETNS -s -j link show IFNAME` stats64 ({'rx': {...}, 'tx': {...}})."""
    out = subprocess.run(["ip", "-n", netns, "-s", "-j", "link", "show", ifname], capture_output=True, text=True,
                         check=True).stdout
    return json.loads(out)[0]["stats64"]


def rx_packets(netns: str, ifname: str = "eth0") -> int:
    return int(link_stats(netns, ifname)["rx"]["packets"])


# --- CPU accounting (what suite time is made of on a CPU-bound machine) ---------------------------

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids) -> float:
    """CPU time of these processes with their reaped children (utime stime cutime cstime: an sshd
    keeps its sessions' module processes in cutime/cstime); a process gone counts nothing."""
    ticks = 0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except (OSError, TypeError):
            continue
        ticks += sum(int(f) for f in stat[stat.rindex(")") + 2:].split()[11:15])
    return ticks / CLK_TCK


def machine_cpu_seconds() -> float:
    """CPU time every core of this machine has spent busy since boot (/proc/stat: all but idle and iowait)."""
    fields = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(fields) - fields[3] - fields[4]) / CLK_TCK


# --- before/after snapshots -------------------------------------------------------------------------

def _cmdline(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def snapshot() -> dict:
    """What a lab could leave behind: `ip netns list`, `ip link` names, `ls -R /sys/fs/bpf`, processes."""
    netns = subprocess.run(["ip", "-j", "netns", "list"], capture_output=True, text=True, check=True).stdout
    links = subprocess.run(["ip", "-j", "link", "show"], capture_output=True, text=True, check=True).stdout
    pins = []
    for root, dirs, files in os.walk(BPFFS):
        rel = os.path.relpath(root, BPFFS)
        pins += [os.path.normpath(os.path.join(rel, n)) for n in dirs + files]
    procs = {int(p): _cmdline(p) for p in os.listdir("/proc") if p.isdigit()}
    return {
        "netns": sorted(n["name"] for n in json.loads(netns or "[]")),
        "links": sorted(n["ifname"] for n in json.loads(links or "[]")),
        "bpffs": sorted(pins),
        "pids": {pid: cmd for pid, cmd in procs.items() if pid != os.getpid()},
    }


def diff(before: dict, after: dict) -> dict:
    """Everything that differs (other engineers' work on a shared machine shows up here too)."""
    return {
        "netns": sorted(set(after["netns"]) ^ set(before["netns"])),
        "links": sorted(set(after["links"]) ^ set(before["links"])),
        "bpffs": sorted(set(after["bpffs"]) ^ set(before["bpffs"])),
        "new_pids": {p: c for p, c in after["pids"].items() if p not in before["pids"]},
    }


def leaks(before: dict, after: dict, lab: Lab) -> dict:
    """What `after` holds of `lab` that `before` did not: names with its prefix, pins with it,
    processes that mention its dir, prefix or addresses. Empty lists everywhere = clean teardown."""
    d = diff(before, after)
    mine = re.compile(rf"(^|[^a-z0-9]){re.escape(lab.prefix)}([^a-z0-9]|$)")
    marks = [str(lab.lab_dir), *lab.addresses()]
    return {
        "netns": [n for n in d["netns"] if mine.search(n)],
        "links": [n for n in d["links"] if mine.search(n)],
        "bpffs": [p for p in d["bpffs"] if lab.prefix in p],
        "pids": {p: c for p, c in d["new_pids"].items()
                 if mine.search(c) or any(re.search(rf"(^|[^0-9.]){re.escape(m)}([^0-9]|$)", c) for m in marks)},
    }


def lab_pids(lab: Lab) -> dict[int, str]:
    """Processes in the lab's namespaces now (like `ip netns pids` for each)."""
    pids: dict[int, str] = {}
    for h in lab.hosts:
        for ns in (h["netns"], h["peer_netns"]):
            out = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True, check=False).stdout
            pids.update({int(p): _cmdline(p) for p in out.split()})
    return pids


def vm_unavailable() -> str | None:
    """Why VM hosts cannot run on this machine at all (None when they can)."""
    if os.geteuid() != 0:
        return "VM hosts need root (network namespaces, tap devices)"
    qemu = shutil.which("qemu-system-x86_64")
    if qemu is None:
        return "qemu-system-x86_64 is not installed (tools/install-system-deps.sh installs qemu-system-x86)"
    if not os.path.exists("/dev/net/tun"):
        return "no /dev/net/tun: the VMs' data NICs are tap devices"
    proc = subprocess.run([qemu, "-accel", "help"], capture_output=True, text=True, check=False)
    if proc.returncode != 0 or "tcg" not in proc.stdout:
        return f"qemu-system-x86_64 cannot run here: {proc.stderr.strip() or proc.stdout.strip()}"
    return None
