"""The desired lab: host names, addresses and MACs (``LabConfig.plan``), the lab's files,
its state and its lock.

Part of the lab tool (package docstring: the whole picture). Standard library only.
"""
from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from labtool.errors import LabError, VmError
from labtool.namespaces import netns_names
from labtool.vm_machine import VmOptions
from labtool.vm_plan import plan_vms, VM_STRIDE_BASE, VmSpec

STATE_FILE = "lab.json"
INVENTORY_FILE = "inventory.yml"
KNOWN_HOSTS_FILE = "known_hosts"
CLIENT_KEY = "id_ed25519"
AUTHORIZED_KEYS = "authorized_keys"
LOCK_FILE = "lab.lock"
HOSTS_DIR = "hosts"
HOST_STATE_DIR = "state"   # a host's record of its deployments, bind-mounted at /var/lib/ebpf_deploy
HOST_CACHE_DIR = "cache"   # its bytecode cache of the modules (module_utils/_bytecode), at /var/cache/ebpf_deploy
HOST_FILES = ("sshd_config", "ssh_host_ed25519_key", "ssh_host_ed25519_key.pub", "sshd.log", "start.log")
TOP_FILES = (STATE_FILE, INVENTORY_FILE, KNOWN_HOSTS_FILE, CLIENT_KEY, CLIENT_KEY + ".pub",
             AUTHORIZED_KEYS, LOCK_FILE)
PREFIX_RE = re.compile(r"^ebpfd[a-z0-9]{0,5}$")
DATA_SUBNET_PREFIXLEN = 30
DATA_STRIDE_PREFIXLEN = 24  # host N uses the first /30 of the N-th /24 of the data network


def mac(index: int, side: int, *, link: int = 0) -> str:
    """Deterministic, locally administered MACs (link 0 = data pair, 1 = management pair).

    Fixed MACs keep neighbour caches right when a host is recreated: a random new MAC would leave
    the root namespace's ARP entry pointing at the old one for tens of seconds.
    """
    return f"02:eb:{link:02x}:{(index >> 8) & 0xff:02x}:{index & 0xff:02x}:{side:02x}"


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
    vms: list[VmSpec] = field(default_factory=list)

    def vm_options(self) -> VmOptions:
        return VmOptions(lab_dir=self.lab_dir, image_dir=self.image_dir, memory=self.vm_memory,
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
        if self.vm_count and self.count >= VM_STRIDE_BASE:
            raise LabError(f"with VMs at most {VM_STRIDE_BASE - 1} netns hosts (VMs use the upper /24s)")
        try:
            self.vms = plan_vms(self.prefix, self.data_network, self.vm_count, self.vm_images)
        except VmError as exc:
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


def stale_indices(prefix: str, count: int, root_links: dict[str, dict]) -> list[int]:
    pat = re.compile(rf"^{re.escape(prefix)}-[hpm](\d+)$")
    found = set()
    for name in list(netns_names()) + list(root_links):
        m = pat.match(name)
        if m and int(m[1]) > count:
            found.add(int(m[1]))
    return sorted(found)


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
