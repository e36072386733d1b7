"""Helpers for the XDP tests and the swap benchmark: a veth between two namespaces, a bounded UDP
sender, and bpftool-based readers that do not go through the code under test.

Every namespace, interface and pin made here is named `ebpfd*` and removed by `close()`; the sender
is a child process ended by its PID. The namespaces carry this session's mark (tests/helpers.py
`unique`), so interface locks of pin-only runs are this session's to clean up.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from tests.helpers import SESSION, SetUpOrUndo, bpftool, map_u64

SENDER = r"""
import signal, socket, sys, time
dst, port, count, pps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
stop = []
signal.signal(signal.SIGUSR1, lambda *_: stop.append(1))  # finish the batch, report, exit
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
payload = b"ebpfd" * 4
batch = 500
start = time.monotonic()
sent = 0
while sent < count and not stop:
    n = min(batch, count - sent)
    for _ in range(n):
        s.sendto(payload, (dst, port))
    sent += n
    if pps > 0:
        ahead = sent / pps - (time.monotonic() - start)
        if ahead > 0:
            time.sleep(ahead)
print(sent, time.monotonic() - start, flush=True)
"""


def run(*args: str, check: bool = True, netns: str | None = None) -> subprocess.CompletedProcess:
    cmd = list(args)
    if netns:
        # nsenter switches only the network namespace; `ip netns exec` would also remount /sys and
        # hide the bpffs at /sys/fs/bpf.
        cmd = ["nsenter", f"--net=/run/netns/{netns}"] + cmd
    return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=60)


class VethLab(SetUpOrUndo):
    """Two namespaces joined by a veth: the 'host' side (where XDP is attached) and the 'peer'.

    host_in_root=True puts the host side in the root namespace instead (netns None).
    """

    def __init__(self, *, host_in_root: bool = False, tag: str = "xa"):
        token = secrets.token_hex(3)
        self.token = token
        self.host_ns = None if host_in_root else f"ebpfd-{tag}-{SESSION}{token}-h"
        self.peer_ns = f"ebpfd-{tag}-{SESSION}{token}-p"
        self.host_if = f"ebpfd{token}h"
        self.peer_if = f"ebpfd{token}p"
        octet = int(token[:2], 16) % 250 + 1
        self.host_ip = f"10.213.{octet}.1"
        self.peer_ip = f"10.213.{octet}.2"
        self._made = []

    # --- set-up / tear-down ---------------------------------------------------------------------
    def setup(self) -> None:
        for ns in (self.host_ns, self.peer_ns):
            if ns:
                run("ip", "netns", "add", ns)
                self._made.append(("netns", ns))
        run("ip", "link", "add", self.host_if, "type", "veth", "peer", "name", self.peer_if)
        self._made.append(("link", self.host_if))
        if self.host_ns:
            run("ip", "link", "set", self.host_if, "netns", self.host_ns)
        run("ip", "link", "set", self.peer_if, "netns", self.peer_ns)
        for ns, ifname, ip in ((self.host_ns, self.host_if, self.host_ip),
                               (self.peer_ns, self.peer_if, self.peer_ip)):
            if ns:
                # Quiet namespaces: no IPv6 (no ND/MLD chatter), so the counters see our packets.
                run("sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", netns=ns)
                run("sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1", netns=ns)
                run("ip", "link", "set", "lo", "up", netns=ns)
            else:
                run("sysctl", "-qw", f"net.ipv6.conf.{ifname}.disable_ipv6=1")
            run("ip", "addr", "add", f"{ip}/24", "dev", ifname, netns=ns)
            run("ip", "link", "set", ifname, "up", netns=ns)
        # Static neighbours: no ARP in the measured stream.
        self._neigh(self.host_ns, self.host_if, self.peer_ip, self.peer_if, self.peer_ns)
        self._neigh(self.peer_ns, self.peer_if, self.host_ip, self.host_if, self.host_ns)

    def _neigh(self, ns, ifname, other_ip, other_if, other_ns) -> None:
        mac = json.loads(run("ip", "-j", "link", "show", "dev", other_if, netns=other_ns).stdout)[0]["address"]
        run("ip", "neigh", "replace", other_ip, "lladdr", mac, "dev", ifname, "nud", "permanent", netns=ns)

    def close(self) -> None:
        for kind, name in reversed(self._made):
            if kind == "netns":
                run("ip", "netns", "del", name, check=False)
            elif kind == "link":
                run("ip", "link", "del", name, check=False)
        self._made.clear()

    # --- traffic and counters ---------------------------------------------------------------------
    def start_sender(self, count: int, *, pps: float = 0, port: int = 9) -> subprocess.Popen:
        """Send `count` UDP datagrams from the peer namespace to the host side (bounded)."""
        cmd = ["nsenter", f"--net=/run/netns/{self.peer_ns}", sys.executable, "-c", SENDER,
               self.host_ip, str(port), str(count), str(pps)]
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    @staticmethod
    def stop_sender(proc: subprocess.Popen, *, timeout: float = 60) -> int:
        """Ask a sender to stop early (SIGUSR1 to its PID); returns how many it sent."""
        if proc.poll() is None:
            proc.send_signal(signal.SIGUSR1)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise
        if proc.returncode != 0:
            raise AssertionError(f"sender failed: {err}")
        return int(out.split()[0])

    def send(self, count: int, *, pps: float = 0) -> int:
        proc = self.start_sender(count, pps=pps)
        try:
            out, err = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()  # our own child, by its handle (PID)
            proc.wait()
            raise
        if proc.returncode != 0:
            raise AssertionError(f"sender failed: {err}")
        return int(out.split()[0])

    def host_counters(self) -> dict:
        stats = json.loads(run("ip", "-j", "-s", "link", "show", "dev", self.host_if, netns=self.host_ns).stdout)[0]
        return {"rx_packets": stats["stats64"]["rx"]["packets"], "rx_dropped": stats["stats64"]["rx"]["dropped"]}

    def xdp(self) -> dict:
        """The host interface's XDP attachment as `ip -j link` shows it ({} when none)."""
        info = json.loads(run("ip", "-j", "-d", "link", "show", "dev", self.host_if, netns=self.host_ns).stdout)[0]
        return info.get("xdp") or {}

    def ip_link(self, *args: str, check: bool = True, force: bool = False) -> subprocess.CompletedProcess:
        """`ip link set dev <host if> ...`; force: replace an attached XDP program (`ip -force`)."""
        return run("ip", *(["-force"] if force else []), "link", "set", "dev", self.host_if, *args,
                   netns=self.host_ns, check=check)


# --- bpftool: independent readers and a loader for fixtures -----------------------------------------
def load_xdp(obj: Path, pin: Path, *, maps_dir: Path, reuse: dict | None = None, prog_type: str = "xdp") -> int:
    """Load an object's program with bpftool, pin it at `pin` and its maps under `maps_dir`.

    reuse: {map name: pinned path} to share an existing map (e.g. pkt_count between versions).
    Returns the program id.
    """
    pin.parent.mkdir(parents=True, exist_ok=True)
    maps_dir.mkdir(parents=True, exist_ok=True)
    cmd = ["prog", "load", str(obj), str(pin), "type", prog_type]
    for name, path in (reuse or {}).items():
        cmd += ["map", "name", name, "pinned", str(path)]
    cmd += ["pinmaps", str(maps_dir)]
    bpftool(*cmd)
    return prog_info(pin)["id"]


def prog_info(pin: Path) -> dict:
    return bpftool("prog", "show", "pinned", str(pin))


def prog_info_by_id(prog_id: int) -> dict:
    return bpftool("prog", "show", "id", str(prog_id))


def map_counter(pin: Path) -> int:
    """Value of key 0 in a u32 → u64 ARRAY map pinned at `pin`."""
    return map_u64(pin)


def link_info(pin: Path) -> dict | None:
    if not pin.exists():
        return None
    return bpftool("link", "show", "pinned", str(pin))


def remove_tree(path: Path) -> None:
    if path.exists():
        shutil.rmtree(path, ignore_errors=True)


def tc_object(bpf_dir: Path) -> Path:
    """The non-XDP fixture object; compiled under /tmp when `make bpf` has not built it."""
    built = bpf_dir / "tc_classifier.bpf.o"
    if built.exists():
        return built
    repo = Path(__file__).resolve().parents[2]
    out = Path("/tmp") / f"ebpfd_tc_classifier_{os.getuid()}.bpf.o"
    if not out.exists():
        src = repo / "tests" / "bpf" / "tc_classifier.bpf.c"
        arch = subprocess.run(["gcc", "-dumpmachine"], capture_output=True, text=True, check=False).stdout.strip()
        subprocess.run(["clang", "-O2", "-g", "-target", "bpf", f"-I/usr/include/{arch or 'x86_64-linux-gnu'}",
                        "-c", str(src), "-o", str(out)], check=True)
    return out
