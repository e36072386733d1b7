"""The VMs of a lab: names, images, data addresses and MACs.

Part of the lab tool (package docstring: the whole picture). Standard library only.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from labtool.errors import VmError
from labtool.vm_images import PACKAGES_DIR

VMS_DIR = "vms"
VM_STRIDE_BASE = 128  # VM N uses the (128+N)-th /24 of the data network; netns hosts use 1..127
GUEST_MGMT_ADDRESS = "10.0.2.15/24"  # qemu user-mode networking's defaults, inside the guest only
GUEST_MGMT_GATEWAY = "10.0.2.2"


@dataclass(frozen=True)
class VmSpec:
    index: int
    name: str
    image: str
    peer_ns: str
    data_address: str
    peer_address: str
    data_mac: str
    peer_mac: str
    mgmt_mac: str


def vm_mac(index: int, side: int, *, link: int) -> str:
    """Fixed, locally administered MACs for VM N (link 2 = data pair, 3 = management)."""
    return f"02:eb:{link:02x}:{(index >> 8) & 0xff:02x}:{index & 0xff:02x}:{side:02x}"


def plan_vms(prefix: str, data_network: str, count: int, images: list[str]) -> list[VmSpec]:
    """VM N: image images[(N-1) % len(images)], data x.y.(128+N).1/30, peer .2 in <prefix>-pv<N>."""
    if count < 0:
        raise VmError("vm count must be >= 0")
    if count and not images:
        raise VmError("at least one VM image is needed")
    for image in images:
        if not (PACKAGES_DIR / f"{image}.packages").is_file():
            known = sorted(p.stem for p in PACKAGES_DIR.glob("*.packages"))
            raise VmError(f"unknown VM image {image!r}; known: {known}")
    data = ipaddress.ip_network(data_network)
    strides = list(data.subnets(new_prefix=24)) if data.prefixlen <= 16 else []
    if count and len(strides) <= VM_STRIDE_BASE + count:
        raise VmError(f"data network {data} is too small for {count} VM(s) (VM N uses x.y.{VM_STRIDE_BASE}+N.0/30)")
    vms = []
    for i in range(1, count + 1):
        net = strides[VM_STRIDE_BASE + i].network_address
        vms.append(VmSpec(index=i, name=f"{prefix}-v{i}", image=images[(i - 1) % len(images)],
                          peer_ns=f"{prefix}-pv{i}", data_address=str(net + 1), peer_address=str(net + 2),
                          data_mac=vm_mac(i, 1, link=2), peer_mac=vm_mac(i, 2, link=2),
                          mgmt_mac=vm_mac(i, 1, link=3)))
    return vms
