"""Helpers for the bpf_attach tests: a loader that pins programs in a deployment layout, a cgroup
of our own, a process that makes system calls on request, and readers that do not go through the
code under test (bpftool, and BPF_PROG_QUERY issued here with its own ctypes call).

Everything made here is named `ebpfd*` with a random suffix and removed by its context manager;
processes are ours and ended by their PID.
"""
from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import time
from pathlib import Path

from ansible_collections.ebpf.deploy.plugins.module_utils import _libbpf as libbpf
from ansible_collections.ebpf.deploy.plugins.module_utils._pins import Deployment

from tests.helpers import forget_deployment, unique

# program type, expected attach type: what libbpf 1.1 cannot tell from tcx/ and netfilter sections
SCHED_CLS = (3, 0)
NETFILTER = (32, 45)


class Loaded:
    """One deployment under a bpffs root whose versions are pinned as bpf_program pins them."""

    def __init__(self, root: Path, name: str | None = None):
        self.root = root
        self.name = name or unique("ebpfd-ba-")
        self.dep = Deployment(str(root), self.name)
        self.ids: dict = {}

    def load(self, version: str, obj: Path, programs: dict) -> dict:
        """Load `programs` ({name: (prog_type, attach_type) or None}) of `obj` as `version`, maps
        pinned once under maps/ and reused by later versions; makes the version current."""
        with libbpf.BpfObject.open(path=str(obj), name=obj.stem.replace(".bpf", "")) as bobj:
            for prog in bobj.programs():
                if prog.name not in programs:
                    prog.set_autoload(False)
                    continue
                types = programs[prog.name]
                if types:
                    prog.set_type(types[0])
                    if types[1]:
                        prog.set_expected_attach_type(types[1])
            fds = []
            for bmap in bobj.maps():
                pin = self.dep.maps_dir / bmap.name
                if pin.exists():
                    fd = libbpf.obj_get(str(pin))
                    fds.append(fd)
                    bmap.reuse_fd(fd)
            bobj.load()
            for fd in fds:
                os.close(fd)
            self.dep.maps_dir.mkdir(parents=True, exist_ok=True)
            for bmap in bobj.maps():
                pin = self.dep.maps_dir / bmap.name
                if not pin.exists():
                    libbpf.obj_pin(bmap.fd, str(pin))
            self.dep.progs_dir(version).mkdir(parents=True, exist_ok=True)
            ids = {}
            for name in programs:
                prog = bobj.program(name)
                libbpf.obj_pin(prog.fd, str(self.dep.progs_dir(version) / name))
                ids[name] = libbpf.prog_info(prog.fd).id
        self.dep.set_current(version)
        self.ids[version] = ids
        return ids

    def use(self, version: str) -> None:
        self.dep.set_current(version)

    def map_value(self, map_name: str, key: bytes, size: int = 8) -> int:
        fd = libbpf.obj_get(str(self.dep.maps_dir / map_name))
        try:
            raw = libbpf.map_lookup(fd, key, size)
        finally:
            os.close(fd)
        return int.from_bytes(raw, "little") if raw else 0

    def counter(self, map_name: str = "pkt_count", index: int = 0) -> int:
        return self.map_value(map_name, index.to_bytes(4, "little"))

    def cleanup(self) -> None:
        """What runs leave outside the bpffs root: metadata, locks and the root's notes (/run)."""
        forget_deployment(self.name, self.root)


# --- an independent reader of a hook's program list ----------------------------------------------
_NR_BPF = {"x86_64": 321, "aarch64": 280}[os.uname().machine]
_LIBC = ctypes.CDLL(None, use_errno=True)


def tcx_prog_ids(ifindex: int, attach_type: int, netns: str | None) -> list:
    """BPF_PROG_QUERY on an ifindex from inside `netns` (a child `nsenter`s there and prints ids)."""
    code = (
        "import ctypes,os,sys\n"
        "libc=ctypes.CDLL(None,use_errno=True)\n"
        "ids=(ctypes.c_uint32*64)()\n"
        "attr=(ctypes.c_uint8*64)()\n"
        "ctypes.c_uint32.from_buffer(attr,0).value=int(sys.argv[1])\n"
        "ctypes.c_uint32.from_buffer(attr,4).value=int(sys.argv[2])\n"
        "ctypes.c_uint64.from_buffer(attr,16).value=ctypes.addressof(ids)\n"
        "ctypes.c_uint32.from_buffer(attr,24).value=64\n"
        f"r=libc.syscall({_NR_BPF},16,attr,64)\n"
        "assert r==0, os.strerror(ctypes.get_errno())\n"
        "n=ctypes.c_uint32.from_buffer(attr,24).value\n"
        "print(' '.join(str(ids[i]) for i in range(n)))\n")
    cmd = [sys.executable, "-c", code, str(ifindex), str(attach_type)]
    if netns:
        cmd = ["nsenter", f"--net=/run/netns/{netns}"] + cmd
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=30).stdout
    return [int(x) for x in out.split()]


def ifindex(ifname: str, netns: str | None) -> int:
    cmd = ["cat", f"/sys/class/net/{ifname}/ifindex"]
    if netns:
        cmd = ["ip", "netns", "exec", netns] + cmd
    return int(subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=30).stdout)


# --- a cgroup v2 directory of our own ------------------------------------------------------------
def cgroup2_root() -> Path:
    with open("/proc/self/mounts", encoding="utf-8") as handle:
        for line in handle:
            fields = line.split()
            if fields[2] == "cgroup2":
                return Path(fields[1])
    raise AssertionError("no cgroup2 mount")


class Cgroup:
    def __init__(self):
        self.path = cgroup2_root() / unique("ebpfd-ba-")

    def __enter__(self) -> "Cgroup":
        self.path.mkdir()
        return self

    def __exit__(self, *exc) -> None:
        # move anything left back to the root, then remove the directory
        procs = self.path / "cgroup.procs"
        if procs.exists():
            for pid in procs.read_text().split():
                try:
                    (cgroup2_root() / "cgroup.procs").write_text(pid)
                except OSError:
                    pass
        for _attempt in range(50):
            try:
                self.path.rmdir()
                return
            except OSError:
                time.sleep(0.1)


UDP_SENDER = r"""
import socket, sys
port, count = int(sys.argv[1]), int(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(count):
    s.sendto(b"ebpfd", ("127.0.0.1", port))
print(count)
"""


def send_udp(count: int, *, port: int = 47474, cgroup: Path | None = None) -> int:
    """Send `count` datagrams to 127.0.0.1:port from a new process, in `cgroup` when given (the
    child joins it before it execs Python, so its socket belongs to the cgroup)."""
    cmd = [sys.executable, "-c", UDP_SENDER, str(port), str(count)]
    if cgroup is not None:
        cmd = ["sh", "-c", f'echo $$ > "{cgroup}/cgroup.procs" && exec "$@"', "ebpfd-cg"] + cmd
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=60).stdout
    return int(out.split()[0])


SYSCALLER = r"""
import os, sys
print(os.getpid(), flush=True)
for line in sys.stdin:
    n = int(line)
    for _ in range(n):
        os.getpid()
    print("done", flush=True)
"""


class Syscaller:
    """A child that calls getpid() N times each time it is asked (so counts are exact deltas)."""

    def __enter__(self) -> "Syscaller":
        self.proc = subprocess.Popen([sys.executable, "-c", SYSCALLER], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        self.pid = int(self.proc.stdout.readline())
        return self

    def getpid(self, count: int) -> None:
        self.proc.stdin.write(f"{count}\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline().strip() == "done"

    def __exit__(self, *exc) -> None:
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
