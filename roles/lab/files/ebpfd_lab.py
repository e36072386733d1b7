"""Lab hosts for ebpf.deploy: network namespaces that Ansible reaches over real SSH.

One lab host ``<prefix>-h<N>`` is a network namespace with
  * ``eth0`` (data): a veth whose peer ``eth0`` lives in the traffic-peer namespace ``<prefix>-p<N>``,
  * ``mgmt0`` (management): a veth whose peer ``<prefix>-m<N>`` lives in the root namespace, enslaved
    to the bridge ``<prefix>-br0`` (or, without a bridge, addressed point to point),
  * an sshd on the management address, running in its own mount namespace with a private tmpfs on
    /run and its own bpffs on /sys/fs/bpf, so pins are per host.

VM hosts ``<prefix>-v<N>`` (qemu guests on Debian 12/13 images, their own kernel) live in
ebpfd_vm.py and join the same inventory: group ``netns`` for namespace hosts, ``vm`` for VMs, both
in ``lab``.

Subcommands (each prints one JSON object on stdout; exit status 0 unless ``failed``):
  up       create, repair or resize the lab; idempotent (``changed`` is false when nothing was done)
  down     kill every process in the lab namespaces, delete namespaces, links and the files it made
  status   report every host's health without changing anything
  traffic  send a bounded number of UDP datagrams from a host's peer namespace to the host

Only the standard library is used, so any python3 can run it. It must run as root.
"""
from __future__ import annotations

import argparse
import contextlib
import ctypes
import fcntl
import hashlib
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import ebpfd_vm  # VM hosts (qemu); beside this file

STATE_FILE = "lab.json"
INVENTORY_FILE = "inventory.yml"
KNOWN_HOSTS_FILE = "known_hosts"
CLIENT_KEY = "id_ed25519"
AUTHORIZED_KEYS = "authorized_keys"
LOCK_FILE = "lab.lock"
HOSTS_DIR = "hosts"
HOST_STATE_DIR = "state"   # a host's record of its deployments, bind-mounted at /var/lib/ebpf_deploy
HOST_FILES = ("sshd_config", "ssh_host_ed25519_key", "ssh_host_ed25519_key.pub", "sshd.log", "start.log")
TOP_FILES = (STATE_FILE, INVENTORY_FILE, KNOWN_HOSTS_FILE, CLIENT_KEY, CLIENT_KEY + ".pub",
             AUTHORIZED_KEYS, LOCK_FILE)
NETNS_DIR = Path("/run/netns")
PREFIX_RE = re.compile(r"^ebpfd[a-z0-9]{0,5}$")
CLONE_NEWNET = 0x40000000
DATA_SUBNET_PREFIXLEN = 30
DATA_STRIDE_PREFIXLEN = 24  # host N uses the first /30 of the N-th /24 of the data network

_libc = ctypes.CDLL(None, use_errno=True)


class LabError(Exception):
    """A failure with a message for the user and optional details for the JSON result."""

    def __init__(self, msg: str, **details: Any) -> None:
        super().__init__(msg)
        self.msg = msg
        self.details = details


# --- small system helpers ------------------------------------------------------------------------

def run(argv: list[str], *, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise LabError(f"{' '.join(argv[:6])} failed (rc={proc.returncode}): {proc.stderr.strip()}",
                       argv=argv, stdin=stdin, stderr=proc.stderr)
    return proc


def ip_batch(commands: list[str], *, netns: str | None = None, check: bool = True) -> str:
    """Run `ip [-n NS] -batch -` with the commands, one per line; returns stdout."""
    if not commands:
        return ""
    argv = ["ip"] + (["-n", netns] if netns else []) + ["-batch", "-"]
    return run(argv, stdin="\n".join(commands) + "\n", check=check).stdout


def ip_json(args: list[str], *, netns: str | None = None) -> list[dict]:
    argv = ["ip"] + (["-n", netns] if netns else []) + ["-j"] + args
    proc = run(argv, check=False)
    if proc.returncode != 0 or not proc.stdout.strip():
        return []
    return json.loads(proc.stdout)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise LabError(f"setns failed: {os.strerror(err)}")


@contextlib.contextmanager
def in_netns(name: str) -> Iterator[None]:
    """Move the calling thread (only) into the named network namespace for the block."""
    with open("/proc/thread-self/ns/net", "rb") as orig, open(NETNS_DIR / name, "rb") as target:
        _setns(target.fileno())
        try:
            yield
        finally:
            _setns(orig.fileno())


def write_sysctl(path: str, value: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        Path("/proc/sys", path).write_text(value)


def netns_names() -> set[str]:
    try:
        return {p.name for p in NETNS_DIR.iterdir()}
    except FileNotFoundError:
        return set()


def netns_inode(name: str) -> tuple[int, int] | None:
    try:
        st = os.stat(NETNS_DIR / name)
    except FileNotFoundError:
        return None
    return (st.st_dev, st.st_ino)


def pids_in_netns(names: list[str]) -> dict[str, list[int]]:
    """Like `ip netns pids NAME` for several namespaces with one scan of /proc."""
    wanted = {}
    for name in names:
        ino = netns_inode(name)
        if ino is not None:
            # /proc/PID/ns/net reports the nsfs inode; compare inode numbers only (dev differs for nsfs)
            wanted[ino[1]] = name
    found: dict[str, list[int]] = {name: [] for name in names}
    if not wanted:
        return found
    me = os.getpid()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            ino = os.stat(f"/proc/{entry.name}/ns/net").st_ino
        except OSError:
            continue
        if ino in wanted:
            found[wanted[ino]].append(int(entry.name))
    return found


def pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError, ProcessLookupError):
        return False


def kill_pids(pids: list[int], *, timeout: float = 3.0) -> list[int]:
    """SIGTERM, wait, then SIGKILL; returns the PIDs still alive at the end (should be none).

    Also waits (briefly, without failing) for their zombies to be reaped by their new parent, so
    that a process list taken right afterwards no longer shows them.
    """
    pids = [p for p in pids if p != os.getpid()]
    try:
        return _kill_pids(pids, timeout)
    finally:
        deadline = time.monotonic() + 2.0
        while pids and time.monotonic() < deadline:
            pids = [p for p in pids if os.path.exists(f"/proc/{p}")]
            if pids:
                time.sleep(0.02)


def _signal_and_wait(pids: list[int], sig: int, timeout: float) -> list[int]:
    """Send sig to every pid; the ones still alive after timeout."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
    deadline = time.monotonic() + timeout
    while pids and time.monotonic() < deadline:
        time.sleep(0.02)
        pids = [p for p in pids if pid_alive(p)]
    return pids


def _kill_pids(pids: list[int], timeout: float) -> list[int]:
    survivors = _signal_and_wait(pids, signal.SIGTERM, timeout)
    return _signal_and_wait(survivors, signal.SIGKILL, timeout) if survivors else []


def write_if_changed(path: Path, content: str, *, mode: int = 0o644) -> bool:
    try:
        if path.read_text() == content and (path.stat().st_mode & 0o777) == mode:
            return False
    except FileNotFoundError:
        pass
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(content)
    os.chmod(tmp, mode)
    os.replace(tmp, path)
    return True


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def mac(index: int, side: int, *, link: int = 0) -> str:
    """Deterministic, locally administered MACs (link 0 = data pair, 1 = management pair).

    Fixed MACs keep neighbour caches right when a host is recreated: a random new MAC would leave
    the root namespace's ARP entry pointing at the old one for tens of seconds.
    """
    return f"02:eb:{link:02x}:{(index >> 8) & 0xff:02x}:{index & 0xff:02x}:{side:02x}"


# --- the desired lab -------------------------------------------------------------------------------

@dataclass(frozen=True)
class HostSpec:
    index: int
    name: str
    peer_ns: str
    root_if: str
    mgmt_address: str
    mgmt_prefixlen: int
    root_address: str | None  # point-to-point mode only
    data_address: str
    peer_address: str
    host_mac: str
    peer_mac: str
    mgmt_mac: str
    root_mac: str


@dataclass
class LabConfig:
    lab_dir: Path
    count: int
    prefix: str = "ebpfd"
    mgmt_network: str = "10.250.0.0/16"
    data_network: str = "10.251.0.0/16"
    bridge: bool = True
    python: str = sys.executable
    sshd: str = "/usr/sbin/sshd"
    ssh_port: int = 22
    jobs: int = 8
    control_dirs: list[str] = field(default_factory=lambda: ["~/.ansible/cp"])
    vm_count: int = 0
    vm_images: list[str] = field(default_factory=lambda: ["debian12"])
    vm_memory: str = "512M"
    vm_cpus: int = 1
    vm_accel: str = "auto"
    image_dir: Path = Path("/var/tmp/ebpfd-images")
    hosts: list[HostSpec] = field(default_factory=list)
    vms: list[ebpfd_vm.VmSpec] = field(default_factory=list)

    def vm_options(self) -> ebpfd_vm.VmOptions:
        return ebpfd_vm.VmOptions(lab_dir=self.lab_dir, image_dir=self.image_dir, memory=self.vm_memory,
                                  cpus=self.vm_cpus, accel=self.vm_accel)

    @property
    def bridge_name(self) -> str:
        return f"{self.prefix}-br0"

    def bridge_address(self) -> str:
        net = ipaddress.ip_network(self.mgmt_network)
        return f"{net.network_address + 1}/{net.prefixlen}"

    def as_json(self) -> dict:
        return {"lab_dir": str(self.lab_dir), "count": self.count, "prefix": self.prefix,
                "mgmt_network": self.mgmt_network, "data_network": self.data_network,
                "bridge": self.bridge, "python": self.python, "sshd": self.sshd, "ssh_port": self.ssh_port,
                "vm_count": self.vm_count, "vm_images": self.vm_images, "vm_memory": self.vm_memory,
                "vm_cpus": self.vm_cpus, "vm_accel": self.vm_accel, "image_dir": str(self.image_dir)}

    def host_dir(self, host: HostSpec) -> Path:
        return self.lab_dir / HOSTS_DIR / host.name

    def plan(self) -> None:
        if not PREFIX_RE.match(self.prefix):
            raise LabError(f"prefix {self.prefix!r} must match {PREFIX_RE.pattern} (names stay within 15 chars)")
        try:
            mgmt = ipaddress.ip_network(self.mgmt_network)
            data = ipaddress.ip_network(self.data_network)
        except ValueError as exc:
            raise LabError(f"bad network: {exc}") from exc
        if mgmt.version != 4 or data.version != 4:
            raise LabError("management and data networks must be IPv4")
        if mgmt.overlaps(data):
            raise LabError(f"management network {mgmt} overlaps data network {data}")
        if self.count < 0:
            raise LabError("count must be >= 0")
        if self.bridge and self.count + 2 > mgmt.num_addresses:
            raise LabError(f"management network {mgmt} is too small for {self.count} hosts")
        if not self.bridge and self.count * 4 > mgmt.num_addresses:
            raise LabError(f"management network {mgmt} is too small for {self.count} point-to-point /30s")
        if data.prefixlen > DATA_STRIDE_PREFIXLEN or self.count >= 2 ** (DATA_STRIDE_PREFIXLEN - data.prefixlen):
            raise LabError(f"data network {data} holds fewer than {self.count} /24s (host N uses x.x.N.0/30)")
        if self.vm_count and self.count >= ebpfd_vm.VM_STRIDE_BASE:
            raise LabError(f"with VMs at most {ebpfd_vm.VM_STRIDE_BASE - 1} netns hosts (VMs use the upper /24s)")
        try:
            self.vms = ebpfd_vm.plan_vms(self.prefix, self.data_network, self.vm_count, self.vm_images)
        except ebpfd_vm.VmError as exc:
            raise LabError(exc.msg) from exc
        hosts = []
        strides = list(data.subnets(new_prefix=DATA_STRIDE_PREFIXLEN)) if self.count else []
        for i in range(1, self.count + 1):
            if self.bridge:
                mgmt_addr, plen, root_addr = str(mgmt.network_address + 1 + i), mgmt.prefixlen, None
            else:
                base = mgmt.network_address + 4 * (i - 1)
                mgmt_addr, plen, root_addr = str(base + 2), 30, str(base + 1)
            dnet = strides[i].network_address
            hosts.append(HostSpec(
                index=i, name=f"{self.prefix}-h{i}", peer_ns=f"{self.prefix}-p{i}", root_if=f"{self.prefix}-m{i}",
                mgmt_address=mgmt_addr, mgmt_prefixlen=plen, root_address=root_addr,
                data_address=str(dnet + 1), peer_address=str(dnet + 2),
                host_mac=mac(i, 1), peer_mac=mac(i, 2), mgmt_mac=mac(i, 1, link=1), root_mac=mac(i, 2, link=1)))
        self.hosts = hosts


def load_state(lab_dir: Path) -> dict:
    try:
        return json.loads((lab_dir / STATE_FILE).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


@contextlib.contextmanager
def lab_lock(lab_dir: Path) -> Iterator[None]:
    lab_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(lab_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


# --- inspection ------------------------------------------------------------------------------------

def _ns_view(netns: str) -> tuple[dict[str, dict], list[dict]]:
    """Interfaces (by name) and neighbours of a namespace, with one `ip` call."""
    proc = run(["ip", "-n", netns, "-j", "-batch", "-"], stdin="addr show\nneigh show\n", check=False)
    out = proc.stdout if proc.returncode == 0 else ""
    decoder, pos, docs = json.JSONDecoder(), 0, []
    while pos < len(out):
        while pos < len(out) and out[pos].isspace():
            pos += 1
        if pos >= len(out):
            break
        doc, pos = decoder.raw_decode(out, pos)
        docs.append(doc)
    links = {d["ifname"]: d for d in (docs[0] if docs else [])}
    return links, (docs[1] if len(docs) > 1 else [])


def _has_addr(link: dict | None, address: str, prefixlen: int) -> bool:
    return bool(link) and any(a.get("local") == address and a.get("prefixlen") == prefixlen
                              for a in link.get("addr_info", []))


def _is_up(link: dict | None) -> bool:
    return bool(link) and "UP" in link.get("flags", [])


def _has_neigh(neighs: list[dict], address: str, lladdr: str) -> bool:
    return any(n.get("dst") == address and n.get("dev") == "eth0" and n.get("lladdr") == lladdr
               and "PERMANENT" in n.get("state", []) for n in neighs)


def network_problems(cfg: LabConfig, host: HostSpec, root_links: dict[str, dict], namespaces: set[str]) -> list[str]:
    problems = []
    for ns in (host.name, host.peer_ns):
        if ns not in namespaces:
            problems.append(f"netns {ns} missing")
    if problems:
        return problems
    links, neighs = _ns_view(host.name)
    if not _is_up(links.get("lo")):
        problems.append(f"{host.name}: lo not up")
    eth0, mgmt0 = links.get("eth0"), links.get("mgmt0")
    if not (_is_up(eth0) and eth0.get("address") == host.host_mac
            and _has_addr(eth0, host.data_address, DATA_SUBNET_PREFIXLEN)):
        problems.append(f"{host.name}: eth0 missing, down or misaddressed")
    if not (_is_up(mgmt0) and mgmt0.get("address") == host.mgmt_mac
            and _has_addr(mgmt0, host.mgmt_address, host.mgmt_prefixlen)):
        problems.append(f"{host.name}: mgmt0 missing, down or misaddressed")
    if not _has_neigh(neighs, host.peer_address, host.peer_mac):
        problems.append(f"{host.name}: permanent neighbour {host.peer_address} missing")
    plinks, pneighs = _ns_view(host.peer_ns)
    peth0 = plinks.get("eth0")
    if not (_is_up(plinks.get("lo")) and _is_up(peth0) and peth0.get("address") == host.peer_mac
            and _has_addr(peth0, host.peer_address, DATA_SUBNET_PREFIXLEN)):
        problems.append(f"{host.peer_ns}: eth0 or lo missing, down or misaddressed")
    if not _has_neigh(pneighs, host.data_address, host.host_mac):
        problems.append(f"{host.peer_ns}: permanent neighbour {host.data_address} missing")
    rlink = root_links.get(host.root_if)
    if not _is_up(rlink):
        problems.append(f"{host.root_if} missing or down")
    elif cfg.bridge and rlink.get("master") != cfg.bridge_name:
        problems.append(f"{host.root_if} not enslaved to {cfg.bridge_name}")
    elif not cfg.bridge and not _has_addr(rlink, host.root_address or "", 30):
        problems.append(f"{host.root_if} misaddressed")
    return problems


def _mounts(pid: int) -> dict[str, str]:
    mounts = {}
    try:
        with open(f"/proc/{pid}/mountinfo", encoding="utf-8") as f:
            for line in f:
                left, _sep, right = line.partition(" - ")
                mounts[left.split()[4]] = right.split()[0]
    except OSError:
        pass
    return mounts


def sshd_problems(cfg: LabConfig, host: HostSpec, pid: int | None, config_sha: str | None) -> list[str]:
    if not pid or not pid_alive(pid):
        return ["sshd not running"]
    try:
        exe = os.readlink(f"/proc/{pid}/exe")
        net_ino = os.stat(f"/proc/{pid}/ns/net").st_ino
    except OSError:
        return ["sshd not running"]
    problems = []
    if exe != os.path.realpath(cfg.sshd):
        problems.append(f"pid {pid} is {exe}, not sshd")
        return problems
    ns = netns_inode(host.name)
    if ns is None or ns[1] != net_ino:
        problems.append(f"sshd pid {pid} is not in netns {host.name}")
        return problems
    mounts = _mounts(pid)
    if mounts.get("/sys/fs/bpf") != "bpf" or mounts.get("/run") != "tmpfs":
        problems.append("sshd lacks its private /run or bpffs")
    want = sha(sshd_config(cfg, host))
    if config_sha != want:
        problems.append("sshd_config changed")
    if not problems and not ssh_banner(host.mgmt_address, cfg.ssh_port, timeout=2.0):
        problems.append(f"no SSH banner on {host.mgmt_address}:{cfg.ssh_port}")
    return problems


def ssh_banner(address: str, port: int, *, timeout: float) -> bool:
    try:
        with socket.create_connection((address, port), timeout=timeout) as s:
            return s.recv(64).startswith(b"SSH-")
    except OSError:
        return False


# --- creation --------------------------------------------------------------------------------------

def sshd_config(cfg: LabConfig, host: HostSpec) -> str:
    hdir = cfg.host_dir(host)
    return "\n".join([
        f"# lab host {host.name}: written by ebpf.deploy.lab (ebpfd_lab.py); rewritten on every `up`",
        f"ListenAddress {host.mgmt_address}:{cfg.ssh_port}",
        "AddressFamily inet",
        f"HostKey {hdir}/ssh_host_ed25519_key",
        "PidFile none",
        "PermitRootLogin prohibit-password",
        "PubkeyAuthentication yes",
        f"AuthorizedKeysFile {cfg.lab_dir}/{AUTHORIZED_KEYS}",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "GSSAPIAuthentication no",
        "UsePAM no",
        "UseDNS no",
        # the lab dir may sit below a world-writable directory (/tmp in tests); files are 0600 anyway
        "StrictModes no",
        "PrintMotd no",
        "PrintLastLog no",
        "X11Forwarding no",
        "AllowAgentForwarding no",
        "AllowTcpForwarding no",
        "PermitTunnel no",
        "MaxStartups 200",
        "MaxSessions 200",
        "LoginGraceTime 30",
        "LogLevel INFO",
        f"SetEnv EBPFD_LAB_HOST={host.name}",
        "Subsystem sftp internal-sftp",
        "",
    ])


# Runs inside `ip netns exec HOST unshare --mount --propagation private`: a private /run with the
# privilege separation dir, a bpffs of its own (pins are per host), tracefs and cgroup2 best effort,
# and a state directory of its own.
_SSHD_START = (
    "set -e; "
    "mount -t tmpfs -o mode=0755,size=16m ebpfd-run /run; "
    "mkdir -m 0755 /run/sshd; "
    "mount -t bpf -o mode=0700 ebpfd-bpffs /sys/fs/bpf; "
    "mount -t tracefs ebpfd-tracefs /sys/kernel/tracing 2>/dev/null || :; "
    "mount -t cgroup2 ebpfd-cgroup2 /sys/fs/cgroup 2>/dev/null || :; "
    # the host's record of its deployments (/var/lib/ebpf_deploy) is its own and survives a restart
    'mkdir -p /var/lib/ebpf_deploy "$3"; mount --bind "$3" /var/lib/ebpf_deploy; '
    'exec "$0" -D -f "$1" -E "$2"'
)


def ssh_keygen(path: Path, comment: str) -> None:
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)])


def ensure_key(path: Path, comment: str) -> bool:
    if path.exists() and path.with_name(path.name + ".pub").exists():
        return False
    for p in (path, path.with_name(path.name + ".pub")):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
    ssh_keygen(path, comment)
    return True


def destroy_host(host: HostSpec) -> list[int]:
    """Kill everything in the host's namespaces and delete them with their links; returns survivors."""
    pids = pids_in_netns([host.name, host.peer_ns])
    survivors = kill_pids(pids[host.name] + pids[host.peer_ns])
    if Path("/sys/class/net", host.root_if).exists():
        run(["ip", "link", "del", host.root_if], check=False)
    present = netns_names()
    if host.name in present:
        run(["ip", "-n", host.name, "link", "del", "eth0"], check=False)
    for ns in (host.name, host.peer_ns):
        if ns in present:
            run(["ip", "netns", "del", ns], check=False)
    return survivors


def create_network(cfg: LabConfig, host: HostSpec) -> None:
    ip_batch([f"netns add {host.name}", f"netns add {host.peer_ns}"])
    for ns in (host.name, host.peer_ns):
        with in_netns(ns):  # no IPv6: the data link carries only what the tests send
            write_sysctl("net/ipv6/conf/all/disable_ipv6", "1")
            write_sysctl("net/ipv6/conf/default/disable_ipv6", "1")
    root = [
        f"link add {host.root_if} address {host.root_mac} type veth "
        f"peer name mgmt0 netns {host.name} address {host.mgmt_mac}",
        f"link add eth0 netns {host.name} address {host.host_mac} type veth "
        f"peer name eth0 netns {host.peer_ns} address {host.peer_mac}",
    ]
    if cfg.bridge:
        root.append(f"link set {host.root_if} master {cfg.bridge_name} up")
    else:
        root += [f"addr add {host.root_address}/30 dev {host.root_if}", f"link set {host.root_if} up"]
    ip_batch(root)
    run(["ip", "neigh", "flush", "to", host.mgmt_address], check=False)
    write_sysctl(f"net/ipv6/conf/{host.root_if}/disable_ipv6", "1")
    ip_batch([
        "link set lo up",
        f"addr add {host.data_address}/{DATA_SUBNET_PREFIXLEN} dev eth0",
        "link set eth0 up",
        f"addr add {host.mgmt_address}/{host.mgmt_prefixlen} dev mgmt0",
        "link set mgmt0 up",
        f"neigh replace {host.peer_address} lladdr {host.peer_mac} dev eth0 nud permanent",
    ], netns=host.name)
    ip_batch([
        "link set lo up",
        f"addr add {host.peer_address}/{DATA_SUBNET_PREFIXLEN} dev eth0",
        "link set eth0 up",
        f"neigh replace {host.data_address} lladdr {host.host_mac} dev eth0 nud permanent",
    ], netns=host.peer_ns)


def write_host_files(cfg: LabConfig, host: HostSpec) -> bool:
    hdir = cfg.host_dir(host)
    hdir.mkdir(parents=True, exist_ok=True, mode=0o700)
    changed = ensure_key(hdir / "ssh_host_ed25519_key", host.name)
    changed |= write_if_changed(hdir / "sshd_config", sshd_config(cfg, host), mode=0o600)
    return changed


def start_sshd(cfg: LabConfig, host: HostSpec, *, timeout: float = 10.0) -> int:
    hdir = cfg.host_dir(host)
    argv = ["ip", "netns", "exec", host.name, "unshare", "--mount", "--propagation", "private", "--",
            "sh", "-c", _SSHD_START, os.path.realpath(cfg.sshd), str(hdir / "sshd_config"), str(hdir / "sshd.log"),
            str(hdir / HOST_STATE_DIR)]
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
    with open(hdir / "start.log", "ab") as log:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
                                start_new_session=True, close_fds=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = (hdir / "start.log").read_text(errors="replace")[-2000:]
            raise LabError(f"sshd for {host.name} exited with {proc.returncode}", start_log=tail)
        if ssh_banner(host.mgmt_address, cfg.ssh_port, timeout=0.5):
            proc.returncode = 0  # detached on purpose: do not warn about it at exit
            return proc.pid
        time.sleep(0.01)
    kill_pids([proc.pid])
    raise LabError(f"sshd for {host.name} did not answer on {host.mgmt_address}:{cfg.ssh_port} in {timeout}s")


def ensure_bridge(cfg: LabConfig, root_links: dict[str, dict]) -> list[str]:
    actions = []
    br = root_links.get(cfg.bridge_name)
    if br is None or br.get("linkinfo", {}).get("info_kind", "bridge") != "bridge":
        if br is not None:
            run(["ip", "link", "del", cfg.bridge_name])
        ip_batch([f"link add {cfg.bridge_name} address 02:eb:00:00:00:fe type bridge stp_state 0 forward_delay 0"])
        write_sysctl(f"net/ipv6/conf/{cfg.bridge_name}/disable_ipv6", "1")
        actions.append(f"created bridge {cfg.bridge_name}")
        br = None
    want = cfg.bridge_address()
    addr, plen = want.split("/")
    if not _has_addr(br, addr, int(plen)):
        ip_batch([f"addr flush dev {cfg.bridge_name}", f"addr add {want} dev {cfg.bridge_name}"])
        actions.append(f"addressed bridge {cfg.bridge_name} {want}")
    if not _is_up(br):
        ip_batch([f"link set {cfg.bridge_name} up"])
        if br is not None:
            actions.append(f"set bridge {cfg.bridge_name} up")
    return actions


def stale_indices(prefix: str, count: int, root_links: dict[str, dict]) -> list[int]:
    pat = re.compile(rf"^{re.escape(prefix)}-[hpm](\d+)$")
    found = set()
    for name in list(netns_names()) + list(root_links):
        m = pat.match(name)
        if m and int(m[1]) > count:
            found.add(int(m[1]))
    return sorted(found)


def render_inventory(cfg: LabConfig, vm_state: dict | None = None) -> str:
    q = json.dumps  # a JSON string is a valid YAML double-quoted scalar
    lines = [f"# lab inventory written by ebpf.deploy.lab (ebpfd_lab.py up) for {cfg.lab_dir}", "---",
             "all:", "  children:", "    lab:", "      hosts:"]
    for h in cfg.hosts:
        lines += [
            f"        {h.name}:",
            f"          ansible_host: {q(h.mgmt_address)}",
            f"          ansible_port: {cfg.ssh_port}",
            "          ansible_user: root",
            f"          ansible_ssh_private_key_file: {q(str(cfg.lab_dir / CLIENT_KEY))}",
            "          ansible_ssh_common_args: "
            + q(f"-o UserKnownHostsFile={cfg.lab_dir / KNOWN_HOSTS_FILE} -o IdentitiesOnly=yes"),
            f"          ansible_python_interpreter: {q(cfg.python)}",
            f"          lab_netns: {q(h.name)}",
            f"          lab_peer_netns: {q(h.peer_ns)}",
            "          lab_data_interface: eth0",
            f"          lab_address: {q(h.data_address)}",
            f"          lab_peer_address: {q(h.peer_address)}",
            "          lab_mgmt_interface: mgmt0",
            f"          lab_mgmt_address: {q(h.mgmt_address)}",
            "          lab_kind: netns",
        ]
    lines += ebpfd_vm.inventory_lines(cfg.vms, vm_state or {}, cfg.lab_dir, cfg.lab_dir / KNOWN_HOSTS_FILE,
                                      cfg.lab_dir / CLIENT_KEY)
    if not cfg.hosts and not cfg.vms:
        lines[-1] += " {}"
    first = [h.name for h in cfg.hosts] + [v.name for v in cfg.vms]
    for group, members in (("netns", [h.name for h in cfg.hosts]), ("vm", [v.name for v in cfg.vms]),
                           ("canary", first[:1])):
        lines += [f"    {group}:"]
        lines += ["      hosts:"] + [f"        {m}: {{}}" for m in members] if members else ["      hosts: {}"]
    lines += ["  vars:", f"    lab_dir: {q(str(cfg.lab_dir))}", ""]
    return "\n".join(lines)


def host_facts(cfg: LabConfig, host: HostSpec, state_host: dict) -> dict:
    return {"name": host.name, "netns": host.name, "peer_netns": host.peer_ns, "root_interface": host.root_if,
            "mgmt_address": host.mgmt_address, "address": host.data_address, "peer_address": host.peer_address,
            "sshd_pid": state_host.get("sshd_pid")}


@dataclass
class HostResult:
    name: str
    actions: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    sshd_pid: int | None = None
    config_sha: str | None = None
    error: str | None = None
    details: dict = field(default_factory=dict)


def converge_host(cfg: LabConfig, host: HostSpec, state_host: dict, root_links: dict[str, dict],
                  namespaces: set[str], check: bool) -> HostResult:
    res = HostResult(name=host.name, sshd_pid=state_host.get("sshd_pid"), config_sha=state_host.get("sshd_config_sha"))
    try:
        net = network_problems(cfg, host, root_links, namespaces)
        files_changed = False if check else write_host_files(cfg, host)
        sshd = [] if net else sshd_problems(cfg, host, res.sshd_pid, res.config_sha)
        res.problems = net + sshd
        if files_changed:
            res.actions.append("wrote host key or sshd_config")
        if not net and not sshd:
            return res
        if check:
            res.actions.append("would recreate" if net else "would restart sshd")
            return res
        # a master connection to the old sshd would hang or fail the next Ansible run
        res.actions += close_ssh_masters([host.mgmt_address], cfg.ssh_port, cfg.control_dirs)
        if net:
            survivors = destroy_host(host)
            if survivors:
                raise LabError(f"processes {survivors} in {host.name} survived SIGKILL")
            create_network(cfg, host)
            res.actions.append("created network" if host.name not in namespaces
                               else f"recreated network ({'; '.join(net)})")
        else:
            pids = pids_in_netns([host.name])[host.name]
            kill_pids(pids)
            res.actions.append("restarted sshd (all host processes)" if pids else "started sshd")
        res.sshd_pid = start_sshd(cfg, host)
        res.config_sha = sha(sshd_config(cfg, host))
        if net:
            res.actions.append("started sshd")
    except LabError as exc:
        res.error, res.details = exc.msg, exc.details
    return res


def lab_hooks() -> ebpfd_vm.LabHooks:
    return ebpfd_vm.LabHooks(in_netns=in_netns, write_sysctl=write_sysctl, kill_pids=kill_pids,
                             ensure_key=ensure_key, ns_view=_ns_view, netns_names=netns_names)


def cmd_up(cfg: LabConfig, check: bool) -> dict:
    if os.geteuid() != 0:
        raise LabError("the lab needs root (network namespaces, mounts)")
    for bad in ("/run", "/sys", "/proc", "/dev"):
        if cfg.lab_dir == Path(bad) or Path(bad) in cfg.lab_dir.parents:
            raise LabError(f"lab_dir {cfg.lab_dir} must not be under {bad}: lab hosts mount their own there")
    for tool in ("ip", "unshare", "ssh-keygen"):
        if shutil.which(tool) is None:
            raise LabError(f"{tool} not found on PATH")
    if not os.access(cfg.sshd, os.X_OK):
        raise LabError(f"sshd not found at {cfg.sshd}")
    cfg.plan()
    t0 = time.monotonic()
    actions: list[str] = []
    if check and not cfg.lab_dir.exists():
        return {"changed": True, "actions": ["would create the lab"], "hosts": [], "check": True}
    with lab_lock(cfg.lab_dir):
        state = load_state(cfg.lab_dir)
        old = state.get("config", {})
        if old.get("prefix") and old["prefix"] != cfg.prefix:
            if check:
                actions.append(f"would remove the old lab with prefix {old['prefix']}")
            else:
                down = teardown(cfg.lab_dir, old["prefix"], state, control_dirs=[], keep_files=True)
                actions += down["actions"]
            state = {}
        if not check:
            os.chmod(cfg.lab_dir, 0o755)
            (cfg.lab_dir / HOSTS_DIR).mkdir(exist_ok=True, mode=0o700)
            if ensure_key(cfg.lab_dir / CLIENT_KEY, "ebpfd-lab"):
                actions.append("generated the client key pair")
            pub = (cfg.lab_dir / (CLIENT_KEY + ".pub")).read_text()
            if write_if_changed(cfg.lab_dir / AUTHORIZED_KEYS, pub, mode=0o600):
                actions.append("wrote authorized_keys")
        root_links = {d["ifname"]: d for d in ip_json(["-d", "addr", "show"])}
        if cfg.bridge and cfg.count:
            if check:
                if cfg.bridge_name not in root_links:
                    actions.append(f"would create bridge {cfg.bridge_name}")
            else:
                actions += ensure_bridge(cfg, root_links)
        elif cfg.bridge_name in root_links:
            actions.append(f"{'would delete' if check else 'deleted'} bridge {cfg.bridge_name}")
            if not check:
                run(["ip", "link", "del", cfg.bridge_name], check=False)
        stale = stale_indices(cfg.prefix, cfg.count, root_links)
        if stale:
            actions.append(f"{'would remove' if check else 'removed'} hosts beyond {cfg.count}: {stale}")
            if not check:
                stale_cfg = LabConfig(lab_dir=cfg.lab_dir, count=max(stale), prefix=cfg.prefix,
                                      mgmt_network=cfg.mgmt_network, data_network=cfg.data_network,
                                      bridge=cfg.bridge)
                stale_cfg.plan()
                gone = [h for h in stale_cfg.hosts if h.index in stale]
                close_ssh_masters([h.mgmt_address for h in gone], cfg.ssh_port, cfg.control_dirs)
                remove_hosts(gone)
                for h in gone:
                    remove_host_files(cfg.lab_dir, h.name)
        namespaces = netns_names()
        shosts = state.get("hosts", {})
        with ThreadPoolExecutor(max_workers=max(1, cfg.jobs)) as pool:
            results = list(pool.map(
                lambda h: converge_host(cfg, h, shosts.get(h.name, {}), root_links, namespaces, check),
                cfg.hosts))
        errors = {r.name: {"error": r.error, **r.details} for r in results if r.error}
        for r in results:
            actions += [f"{r.name}: {a}" for a in r.actions]
        new_hosts = {r.name: {"sshd_pid": r.sshd_pid, "sshd_config_sha": r.config_sha} for r in results}
        vms = ebpfd_vm.converge_vms(
            cfg.vm_options(), cfg.prefix, cfg.data_network, cfg.vms, state.get("vms", {}),
            authorized_keys="" if check else (cfg.lab_dir / AUTHORIZED_KEYS).read_text(),
            control_dirs=cfg.control_dirs, hooks=lab_hooks(), check=check)
        actions += vms["actions"]
        errors.update(vms["errors"])
        for notice in vms["notices"]:
            print(f"ebpfd_lab: {notice}", file=sys.stderr)
        if not check:
            known = "".join(
                f"{h.mgmt_address} {' '.join((cfg.host_dir(h) / 'ssh_host_ed25519_key.pub').read_text().split()[:2])}\n"
                for h in cfg.hosts if (cfg.host_dir(h) / "ssh_host_ed25519_key.pub").exists())
            known += ebpfd_vm.known_hosts_lines(cfg.vm_options(), cfg.vms, vms["state"])
            if write_if_changed(cfg.lab_dir / KNOWN_HOSTS_FILE, known):
                actions.append("wrote known_hosts")
            if write_if_changed(cfg.lab_dir / INVENTORY_FILE, render_inventory(cfg, vms["state"])):
                actions.append("wrote inventory.yml")
            new_state = {"config": cfg.as_json(), "hosts": new_hosts, "vms": vms["state"]}
            write_if_changed(cfg.lab_dir / STATE_FILE, json.dumps(new_state, indent=2, sort_keys=True) + "\n")
    result = {
        "changed": bool(actions),
        "actions": actions,
        "lab_dir": str(cfg.lab_dir),
        "inventory": str(cfg.lab_dir / INVENTORY_FILE),
        "private_key": str(cfg.lab_dir / CLIENT_KEY),
        "hosts": [host_facts(cfg, h, new_hosts.get(h.name, {})) for h in cfg.hosts],
        "vms": [ebpfd_vm.vm_facts(v, vms["state"].get(v.name, {})) for v in cfg.vms],
        "images": vms["images"],
        "boot_seconds": vms["boot_seconds"],
        "notices": vms["notices"],
        "seconds": round(time.monotonic() - t0, 3),
        "check": check,
    }
    if errors:
        result.update(failed=True, msg=f"{len(errors)} lab host(s) failed: {sorted(errors)}", errors=errors)
    return result


# --- teardown ---------------------------------------------------------------------------------------

def control_paths(address: str, port: int, user: str, control_dirs: list[str]) -> list[Path]:
    """The ControlPath Ansible's ssh connection uses by default: <dir>/sha1('host-port-user')[:10]."""
    paths = []
    for d in control_dirs:
        base = Path(os.path.expanduser(d))
        for p in (port, None):
            digest = hashlib.sha1(f"{address}-{p}-{user}".encode()).hexdigest()[:10]
            paths.append(base / digest)
    return paths


def _ssh_master_pids(addresses: set[str]) -> list[int]:
    """ssh client processes of ours in ControlMaster/Persist mode whose destination is a lab address."""
    pids = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            argv = Path(f"/proc/{entry.name}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        args = [a.decode(errors="replace") for a in argv if a]
        if not args or os.path.basename(args[0]) != "ssh":
            continue
        if any(a in addresses for a in args) and any("ControlPersist" in a or "ControlMaster" in a for a in args):
            pids.append(int(entry.name))
    return pids


def close_ssh_masters(addresses: list[str], port: int, control_dirs: list[str]) -> list[str]:
    """Ask each ControlPersist master for a lab address to exit (`ssh -O exit`), then end leftovers by PID."""
    actions = []
    for address in addresses:
        for path in control_paths(address, port, "root", control_dirs):
            if path.is_socket():
                run(["ssh", "-o", f"ControlPath={path}", "-O", "exit", "-p", str(port), f"root@{address}"],
                    check=False)
                actions.append(f"closed ssh master {path}")
    leftovers = _ssh_master_pids(set(addresses))
    if leftovers:
        kill_pids(leftovers)
        actions.append(f"ended ssh masters {leftovers}")
    return actions


def remove_hosts(hosts: list[HostSpec]) -> tuple[int, list[int]]:
    """End every process in the hosts' namespaces (one /proc scan, one wait), then delete their
    links and namespaces in parallel. Returns (processes ended, survivors)."""
    names = [n for h in hosts for n in (h.name, h.peer_ns)]
    pids = [p for ps in pids_in_netns(names).values() for p in ps]
    survivors = kill_pids(pids)
    with ThreadPoolExecutor(max_workers=8) as pool:
        survivors += [p for left in pool.map(destroy_host, hosts) for p in left]
    return len(pids), survivors


def remove_host_files(lab_dir: Path, name: str) -> bool:
    hdir = lab_dir / HOSTS_DIR / name
    removed = False
    for f in HOST_FILES + tuple(f + ".tmp" for f in HOST_FILES):
        with contextlib.suppress(FileNotFoundError):
            (hdir / f).unlink()
            removed = True
    if (hdir / HOST_STATE_DIR).is_dir() and not (hdir / HOST_STATE_DIR).is_symlink():
        shutil.rmtree(hdir / HOST_STATE_DIR)   # the host's record of its deployments goes with it
        removed = True
    with contextlib.suppress(FileNotFoundError, OSError):
        hdir.rmdir()
        removed = True
    return removed


def teardown(lab_dir: Path, prefix: str, state: dict, *, control_dirs: list[str], keep_files: bool = False,
             check: bool = False) -> dict:
    actions: list[str] = []
    cfgj = state.get("config", {})
    root_links = {d["ifname"]: d for d in ip_json(["link", "show"])}
    pat = re.compile(rf"^{re.escape(prefix)}-[hpm](\d+)$")
    indices = {int(m[1]) for n in list(netns_names()) + list(root_links) if (m := pat.match(n))}
    count = max(indices | {int(cfgj.get("count", 0))} | {0})
    cfg = LabConfig(lab_dir=lab_dir, count=count, prefix=prefix,
                    mgmt_network=cfgj.get("mgmt_network", "10.250.0.0/16"),
                    data_network=cfgj.get("data_network", "10.251.0.0/16"),
                    bridge=cfgj.get("bridge", True), ssh_port=int(cfgj.get("ssh_port", 22)))
    try:
        cfg.plan()
    except LabError:
        cfg.hosts = []
    hosts = [h for h in cfg.hosts if h.index in indices]
    vm_actions, survivors = ebpfd_vm.teardown_vms(
        cfg.vm_options(), prefix, cfg.data_network, state.get("vms", {}), control_dirs, lab_hooks(), check=check)
    actions += vm_actions
    if check:
        actions += [f"would remove {h.name}" for h in hosts]
        if cfg.bridge_name in root_links:
            actions.append(f"would delete bridge {cfg.bridge_name}")
        return {"actions": actions, "survivors": []}
    actions += close_ssh_masters([h.mgmt_address for h in cfg.hosts], cfg.ssh_port, control_dirs)
    ended, more = remove_hosts(hosts)
    survivors += more
    if ended:
        actions.append(f"ended {ended} process(es) in lab namespaces")
    actions += [f"removed {h.name}" for h in hosts]
    if cfg.bridge_name in root_links:
        run(["ip", "link", "del", cfg.bridge_name], check=False)
        actions.append(f"deleted bridge {cfg.bridge_name}")
    if not keep_files:
        removed = False
        hosts_dir = lab_dir / HOSTS_DIR
        if hosts_dir.is_dir():
            for hdir in hosts_dir.iterdir():
                if hdir.is_dir() and re.match(rf"^{re.escape(prefix)}-h\d+$", hdir.name):
                    removed |= remove_host_files(lab_dir, hdir.name)
            with contextlib.suppress(OSError):
                hosts_dir.rmdir()
        for f in TOP_FILES + tuple(f + ".tmp" for f in TOP_FILES):
            if f == LOCK_FILE:
                continue
            with contextlib.suppress(FileNotFoundError):
                (lab_dir / f).unlink()
                removed = True
        if removed:
            actions.append(f"removed lab files in {lab_dir}")
    return {"actions": actions, "survivors": survivors}


def cmd_down(lab_dir: Path, prefix: str, control_dirs: list[str], check: bool) -> dict:
    if os.geteuid() != 0:
        raise LabError("the lab needs root (network namespaces, mounts)")
    t0 = time.monotonic()
    if not lab_dir.exists():
        state: dict = {}
        res = teardown(lab_dir, prefix, state, control_dirs=control_dirs, keep_files=True, check=check)
    else:
        with lab_lock(lab_dir):
            state = load_state(lab_dir)
            prefix = state.get("config", {}).get("prefix", prefix)
            res = teardown(lab_dir, prefix, state, control_dirs=control_dirs, check=check)
            if not check:
                with contextlib.suppress(FileNotFoundError):
                    (lab_dir / LOCK_FILE).unlink()
        if not check:
            with contextlib.suppress(OSError):
                lab_dir.rmdir()  # only if we emptied it
    result = {"changed": bool(res["actions"]), "actions": res["actions"], "lab_dir": str(lab_dir),
              "prefix": prefix, "seconds": round(time.monotonic() - t0, 3), "check": check}
    if res["survivors"]:
        result.update(failed=True, msg=f"processes survived SIGKILL: {res['survivors']}")
    return result


def config_from_state(lab_dir: Path, c: dict) -> LabConfig:
    """The planned lab as `up` last wrote it to lab.json."""
    cfg = LabConfig(lab_dir=lab_dir, count=c["count"], prefix=c["prefix"], mgmt_network=c["mgmt_network"],
                    data_network=c["data_network"], bridge=c["bridge"], python=c.get("python", sys.executable),
                    sshd=c.get("sshd", "/usr/sbin/sshd"), ssh_port=c.get("ssh_port", 22),
                    vm_count=c.get("vm_count", 0), vm_images=c.get("vm_images", ["debian12"]),
                    vm_memory=c.get("vm_memory", "512M"), vm_cpus=c.get("vm_cpus", 1),
                    vm_accel=c.get("vm_accel", "auto"), image_dir=Path(c.get("image_dir", "/var/tmp/ebpfd-images")))
    cfg.plan()
    return cfg


def cmd_status(lab_dir: Path) -> dict:
    state = load_state(lab_dir)
    if not state:
        return {"changed": False, "up": False, "hosts": [], "lab_dir": str(lab_dir)}
    c = state["config"]
    cfg = config_from_state(lab_dir, c)
    root_links = {d["ifname"]: d for d in ip_json(["-d", "addr", "show"])}
    namespaces = netns_names()
    hosts = []
    for h in cfg.hosts:
        sh = state.get("hosts", {}).get(h.name, {})
        net = network_problems(cfg, h, root_links, namespaces)
        problems = net + ([] if net else sshd_problems(cfg, h, sh.get("sshd_pid"), sh.get("sshd_config_sha")))
        hosts.append({**host_facts(cfg, h, sh), "healthy": not problems, "problems": problems})
    opts, vms = cfg.vm_options(), []
    for v in cfg.vms:
        sv = state.get("vms", {}).get(v.name, {})
        image = ebpfd_vm.image_path(cfg.image_dir, v.image)
        problems = ebpfd_vm.vm_problems(opts, v, sv, image, namespaces, _ns_view)
        vms.append({**ebpfd_vm.vm_facts(v, sv), "healthy": not problems, "problems": problems})
    return {"changed": False, "up": all(h["healthy"] for h in hosts + vms), "hosts": hosts, "vms": vms,
            "lab_dir": str(lab_dir), "inventory": str(lab_dir / INVENTORY_FILE), "config": c}


# --- traffic ----------------------------------------------------------------------------------------

def cmd_traffic(lab_dir: Path, host_name: str, count: int, rate: float | None, size: int, port: int) -> dict:
    state = load_state(lab_dir)
    if not state:
        raise LabError(f"no lab in {lab_dir} (run `up` first)")
    cfg = config_from_state(lab_dir, state["config"])
    # a VM's peer namespace, peer and data addresses have the same names as a netns host's
    hosts = {h.name: h for h in [*cfg.hosts, *cfg.vms]} | {str(h.index): h for h in cfg.hosts}
    host = hosts.get(host_name)
    if host is None:
        raise LabError(f"unknown lab host {host_name!r}; known: {sorted(h.name for h in [*cfg.hosts, *cfg.vms])}")
    if count < 0 or size < 0 or size > 1472:
        raise LabError("count must be >= 0 and size within 0..1472")
    payload = b"ebpfd" + b"\0" * max(0, size - 5) if size >= 5 else b"x" * size
    dest = (host.data_address, port)
    sent = errors = 0
    with in_netns(host.peer_ns):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        sock.bind((host.peer_address, 0))
    t0 = time.monotonic()
    try:
        send = sock.sendto
        if rate is None or rate <= 0:
            for _sent in range(count):
                try:
                    send(payload, dest)
                    sent += 1
                except OSError:
                    errors += 1
        else:
            burst = max(1, int(rate / 1000))
            while sent + errors < count:
                n = min(burst, count - sent - errors)
                for _sent in range(n):
                    try:
                        send(payload, dest)
                        sent += 1
                    except OSError:
                        errors += 1
                ahead = t0 + (sent + errors) / rate - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
    finally:
        sock.close()
    seconds = time.monotonic() - t0
    return {"changed": sent > 0, "host": host.name, "from": f"{host.peer_ns} {host.peer_address}",
            "to": f"{host.data_address}:{port}", "requested": count, "sent": sent, "errors": errors,
            "payload_bytes": len(payload), "seconds": round(seconds, 4),
            "pps": round(sent / seconds) if seconds > 0 else None}


def cmd_images(image_dir: Path, images: list[str]) -> int:
    """Build (or find cached) each VM image; one JSON line per run, like the other commands."""
    built = ebpfd_vm.build_images(image_dir, sorted(set(images)))
    result = {"changed": any(b.get("build_seconds") is not None for b in built.values()),
              "failed": any("error" in b for b in built.values()),
              "images": {image: {k: str(v) if k == "path" else v for k, v in b.items()} for image, b in built.items()}}
    print(json.dumps(result, sort_keys=True))
    return 1 if result["failed"] else 0


# --- command line -----------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="ebpfd_lab.py", description=__doc__.split("\n\n", maxsplit=1)[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="create or repair the lab (idempotent)")
    down = sub.add_parser("down", help="remove the lab and everything it made")
    status = sub.add_parser("status", help="report health, change nothing")
    traffic = sub.add_parser("traffic", help="send UDP datagrams from a host's peer to the host")
    images = sub.add_parser("images", help="build the VM images into the cache ahead of `up` (no lab)")
    for p in (up, down, status, traffic):
        p.add_argument("--lab-dir", required=True, type=Path)
    up.add_argument("--count", type=int, default=3)
    up.add_argument("--prefix", default="ebpfd")
    up.add_argument("--mgmt-network", default="10.250.0.0/16")
    up.add_argument("--data-network", default="10.251.0.0/16")
    up.add_argument("--no-bridge", action="store_true", help="point-to-point /30 management links")
    up.add_argument("--python", default=sys.executable, help="ansible_python_interpreter for the hosts")
    up.add_argument("--sshd", default="/usr/sbin/sshd")
    up.add_argument("--ssh-port", type=int, default=22)
    up.add_argument("--jobs", type=int, default=8)
    up.add_argument("--vms", type=int, default=0, help="VM hosts <prefix>-v1..N (qemu)")
    for p in (up, images):
        p.add_argument("--vm-image", action="append", default=None,
                       help="image of VM N is the ((N-1) mod k)-th --vm-image (repeatable; default debian12)")
    up.add_argument("--vm-memory", default="512M")
    up.add_argument("--vm-cpus", type=int, default=1)
    up.add_argument("--vm-accel", choices=["auto", "kvm", "tcg"], default="auto",
                    help="auto: KVM if a probe guest boots under it, else TCG")
    for p in (up, images):
        p.add_argument("--image-dir", type=Path,
                       default=Path(os.environ.get("EBPF_DEPLOY_LAB_IMAGES") or "/var/tmp/ebpfd-images"),
                       help="VM image cache ($EBPF_DEPLOY_LAB_IMAGES or /var/tmp/ebpfd-images)")
    down.add_argument("--prefix", default="ebpfd", help="used when the lab dir holds no state")
    for p in (up, down):
        p.add_argument("--control-path-dir", action="append", default=None,
                       help="Ansible ssh control_path_dir, to close master connections (repeatable; "
                            "default ~/.ansible/cp)")
    for p in (up, down):
        p.add_argument("--check", action="store_true", help="report what would change, change nothing")
    traffic.add_argument("--host", required=True, help="host name (ebpfd-h1) or index (1)")
    traffic.add_argument("--count", type=int, required=True)
    traffic.add_argument("--rate", type=float, default=None, help="packets per second (default: as fast as possible)")
    traffic.add_argument("--size", type=int, default=22, help="UDP payload bytes (22 gives 64-byte frames)")
    traffic.add_argument("--port", type=int, default=9)
    args = ap.parse_args(argv)
    if args.cmd == "images":
        return cmd_images(args.image_dir.expanduser().absolute(), args.vm_image or ["debian12"])
    lab_dir = args.lab_dir.expanduser().absolute()
    try:
        if args.cmd == "up":
            cfg = LabConfig(lab_dir=lab_dir, count=args.count, prefix=args.prefix, mgmt_network=args.mgmt_network,
                            data_network=args.data_network, bridge=not args.no_bridge,
                            python=os.path.abspath(args.python) if os.sep in args.python else args.python,
                            sshd=args.sshd, ssh_port=args.ssh_port, jobs=args.jobs,
                            control_dirs=args.control_path_dir or ["~/.ansible/cp"],
                            vm_count=args.vms, vm_images=args.vm_image or ["debian12"],
                            vm_memory=args.vm_memory, vm_cpus=args.vm_cpus, vm_accel=args.vm_accel,
                            image_dir=args.image_dir.expanduser().absolute())
            result = cmd_up(cfg, args.check)
        elif args.cmd == "down":
            result = cmd_down(lab_dir, args.prefix, args.control_path_dir or ["~/.ansible/cp"], args.check)
        elif args.cmd == "status":
            result = cmd_status(lab_dir)
        else:
            result = cmd_traffic(lab_dir, args.host, args.count, args.rate, args.size, args.port)
    except LabError as exc:
        result = {"failed": True, "changed": False, "msg": exc.msg, **exc.details}
    print(json.dumps(result, indent=None, sort_keys=True))
    return 1 if result.get("failed") else 0


if __name__ == "__main__":
    sys.exit(main())
