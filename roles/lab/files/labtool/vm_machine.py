"""One VM: qemu's command line, its seed disk, its tap peer, starting it, waiting for its boot,
what is wrong with it, removing it, its ssh control masters.

Part of the lab tool (package docstring: the whole picture). Standard library only.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import os
import struct
import subprocess
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

from labtool.errors import VmError
from labtool.vm_accel import TCG_CPU
from labtool.vm_plan import GUEST_MGMT_ADDRESS, GUEST_MGMT_GATEWAY, VMS_DIR, VmSpec
from labtool.vm_processes import _cmdline, is_our_qemu, QEMU, ssh_banner, vm_pids

VM_FILES = ("overlay.qcow2", "seed.tar", "qemu.pid", "console.log", "qemu.log", "kvm-probe.log",
            "ssh_host_ed25519_key", "ssh_host_ed25519_key.pub")
KERNEL_CMDLINE = "root=/dev/vda rw console=ttyS0 net.ifnames=0 ipv6.disable=1 systemd.show_status=0"
TUNSETIFF = 0x400454CA
IFF_TAP, IFF_NO_PI, IFF_VNET_HDR = 0x0002, 0x1000, 0x4000


@dataclass
class VmOptions:
    lab_dir: Path
    image_dir: Path
    memory: str = "512M"
    cpus: int = 1
    accel: str = "auto"
    boot_timeout: float = 240.0


def vm_dir(opts: VmOptions, vm: VmSpec) -> Path:
    return opts.lab_dir / VMS_DIR / vm.name


def qemu_argv(opts: VmOptions, vm: VmSpec, image: Path, accel: str, port: int, tap_fd: int) -> list[str]:
    d = vm_dir(opts, vm)
    return [
        QEMU, "-name", f"guest={vm.name}", "-accel", accel, "-cpu", "host" if accel == "kvm" else TCG_CPU,
        "-smp", str(opts.cpus), "-m", opts.memory,
        "-nodefaults", "-no-user-config", "-display", "none", "-monitor", "none",
        "-serial", f"file:{d / 'console.log'}", "-pidfile", str(d / "qemu.pid"),
        "-kernel", str(image / "vmlinuz"), "-initrd", str(image / "initrd.img"), "-append", KERNEL_CMDLINE,
        "-drive", f"file={d / 'overlay.qcow2'},format=qcow2,if=none,id=root,discard=unmap",
        "-device", "virtio-blk-pci,drive=root,addr=0x6",
        "-drive", f"file={d / 'seed.tar'},format=raw,if=none,id=seed,readonly=on",
        "-device", "virtio-blk-pci,drive=seed,serial=ebpfd-seed,addr=0x7",
        "-netdev", f"tap,id=data,fd={tap_fd}",
        # guest offloads off: native XDP on virtio_net refuses LRO-like receive offloads
        "-device", f"virtio-net-pci,netdev=data,mac={vm.data_mac},addr=0x4,"
                   "guest_tso4=off,guest_tso6=off,guest_ecn=off,guest_ufo=off",
        "-netdev", f"user,id=mgmt,restrict=on,net=10.0.2.0/24,hostfwd=tcp:127.0.0.1:{port}-10.0.2.15:22",
        "-device", f"virtio-net-pci,netdev=mgmt,mac={vm.mgmt_mac},addr=0x5",
    ]


def config_sha(opts: VmOptions, vm: VmSpec, image: Path) -> str:
    """What a running VM must match to be kept: image, memory, CPUs and addresses."""
    text = "|".join([str(image), opts.memory, str(opts.cpus), vm.data_address, vm.peer_address, vm.data_mac,
                     vm.peer_mac, vm.mgmt_mac, KERNEL_CMDLINE])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def write_seed(opts: VmOptions, vm: VmSpec, authorized_keys: str) -> None:
    d = vm_dir(opts, vm)
    env = "".join(f"{k}={v}\n" for k, v in {
        "LAB_HOSTNAME": vm.name, "LAB_DATA_MAC": vm.data_mac, "LAB_MGMT_MAC": vm.mgmt_mac,
        "LAB_DATA_ADDRESS": vm.data_address, "LAB_DATA_PREFIXLEN": 30, "LAB_PEER_ADDRESS": vm.peer_address,
        "LAB_PEER_MAC": vm.peer_mac, "LAB_MGMT_ADDRESS": GUEST_MGMT_ADDRESS,
        "LAB_MGMT_GATEWAY": GUEST_MGMT_GATEWAY}.items())
    members = {"lab.env": env.encode(), "authorized_keys": authorized_keys.encode(),
               "ssh_host_ed25519_key": (d / "ssh_host_ed25519_key").read_bytes(),
               "ssh_host_ed25519_key.pub": (d / "ssh_host_ed25519_key.pub").read_bytes()}
    tmp = d / "seed.tar.tmp"
    with tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o600, int(time.time())
            tar.addfile(info, io.BytesIO(data))
    os.chmod(tmp, 0o600)
    os.replace(tmp, d / "seed.tar")


def _run(argv: list[str], *, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise VmError(f"{' '.join(argv[:6])} failed (rc={proc.returncode}): {proc.stderr.strip()}")
    return proc


def open_tap(peer_ns: str, in_netns) -> int:
    """A tap `eth0` created in the peer namespace; the returned fd keeps it alive (qemu inherits it)."""
    with in_netns(peer_ns):
        fd = os.open("/dev/net/tun", os.O_RDWR)
        try:
            fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", b"eth0", IFF_TAP | IFF_NO_PI | IFF_VNET_HDR))
        except OSError:
            os.close(fd)
            raise
    return fd


def create_peer(vm: VmSpec, in_netns, write_sysctl) -> int:
    """The traffic peer namespace with its tap; returns the tap fd for qemu."""
    _run(["ip", "netns", "add", vm.peer_ns])
    with in_netns(vm.peer_ns):  # the data link carries only what the tests send
        write_sysctl("net/ipv6/conf/all/disable_ipv6", "1")
        write_sysctl("net/ipv6/conf/default/disable_ipv6", "1")
    fd = open_tap(vm.peer_ns, in_netns)
    proc = subprocess.run(["ip", "-n", vm.peer_ns, "-batch", "-"], input="\n".join([
        "link set lo up",
        f"link set eth0 address {vm.peer_mac}",
        f"addr add {vm.peer_address}/30 dev eth0",
        "link set eth0 up",
        f"neigh replace {vm.data_address} lladdr {vm.data_mac} dev eth0 nud permanent",
    ]) + "\n", capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        os.close(fd)
        raise VmError(f"configuring {vm.peer_ns} failed: {proc.stderr.strip()}")
    return fd


def start_vm(opts: VmOptions, vm: VmSpec, image: Path, accel: str, port: int, *, authorized_keys: str,
             in_netns, write_sysctl) -> int:
    """Fresh overlay and seed, peer namespace and tap, then qemu (detached); returns qemu's PID."""
    d = vm_dir(opts, vm)
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    for f in ("overlay.qcow2", "qemu.pid", "console.log"):
        with contextlib.suppress(FileNotFoundError):
            (d / f).unlink()
    _run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", str(image / "rootfs.img"),
          str(d / "overlay.qcow2")])
    write_seed(opts, vm, authorized_keys)
    fd = create_peer(vm, in_netns, write_sysctl)
    try:
        with open(d / "qemu.log", "ab") as log:
            proc = subprocess.Popen(qemu_argv(opts, vm, image, accel, port, fd), stdin=subprocess.DEVNULL,
                                    stdout=log, stderr=log, pass_fds=(fd,), start_new_session=True,
                                    env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"})
    finally:
        os.close(fd)
    proc.returncode = 0  # detached on purpose: do not warn about it at exit
    return proc.pid


class QemuEnded(VmError):
    """The VM's qemu ended before its guest answered SSH (the message says how)."""


def wait_booted(opts: VmOptions, vm: VmSpec, pid: int, port: int) -> float:
    """Seconds until the guest's sshd answers on the forwarded port; raises with the console's tail
    (QemuEnded when qemu ended first)."""
    d = vm_dir(opts, vm)
    t0 = time.monotonic()
    while time.monotonic() - t0 < opts.boot_timeout:
        ended = exit_status(pid, vm.name, d)
        if ended:
            raise QemuEnded(f"qemu for {vm.name} exited during boot ({ended})",
                            qemu_log=_tail(d / "qemu.log"), console=_tail(d / "console.log"))
        if ssh_banner(port, timeout=2.0):
            return round(time.monotonic() - t0, 1)
        time.sleep(0.5)
    raise VmError(f"{vm.name} did not answer SSH on 127.0.0.1:{port} in {opts.boot_timeout:.0f} s",
                  console=_tail(d / "console.log"))


def exit_status(pid: int, name: str, d: Path) -> str | None:
    """How the VM's qemu ended, None while it runs. A qemu this process started is its child, and
    waitpid (which reaps it) is the kernel's own answer; /proc (is_our_qemu) judges only one started
    by another process: it once read a child as not that qemu while waitpid had nothing to reap."""
    try:
        reaped, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return None if is_our_qemu(pid, name, d) else "not a child of this process: status unknown"
    if not reaped:
        return None
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"


def _tail(path: Path, size: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-size:]
    except OSError:
        return ""


def peer_problems(vm: VmSpec, ns_view) -> list[str]:
    links, neighs = ns_view(vm.peer_ns)
    eth0 = links.get("eth0")
    if not eth0 or "UP" not in eth0.get("flags", []) or eth0.get("address") != vm.peer_mac \
            or not any(a.get("local") == vm.peer_address for a in eth0.get("addr_info", [])):
        return [f"{vm.peer_ns}: tap eth0 missing, down or misaddressed"]
    if not any(n.get("dst") == vm.data_address and n.get("lladdr") == vm.data_mac for n in neighs):
        return [f"{vm.peer_ns}: permanent neighbour {vm.data_address} missing"]
    return []


def vm_problems(opts: VmOptions, vm: VmSpec, state_vm: dict, image: Path, namespaces: set[str],
                ns_view) -> list[str]:
    pid, port = state_vm.get("pid"), state_vm.get("port")
    if not is_our_qemu(pid, vm.name, vm_dir(opts, vm)):
        return ["qemu not running"]
    if state_vm.get("config_sha") != config_sha(opts, vm, image):
        return ["image or VM settings changed"]
    if vm.peer_ns not in namespaces:
        return [f"netns {vm.peer_ns} missing"]
    problems = peer_problems(vm, ns_view)
    if not problems and not (port and ssh_banner(port, timeout=3.0)):
        problems.append(f"no SSH banner on 127.0.0.1:{port}")
    return problems


def destroy_vm(opts: VmOptions, vm: VmSpec, recorded_pid: int | None, *, kill_pids, namespaces: set[str],
               keep_key: bool = True) -> list[int]:
    """End the VM's qemu by PID, delete its peer namespace and its overlay; returns survivors."""
    d = vm_dir(opts, vm)
    survivors = kill_pids(vm_pids(vm.name, d, recorded_pid), timeout=5.0)
    if vm.peer_ns in namespaces:
        _run(["ip", "netns", "del", vm.peer_ns], check=False)
    for f in VM_FILES:
        if keep_key and f.startswith("ssh_host_"):
            continue
        for p in (d / f, d / (f + ".tmp")):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
    if not keep_key:
        with contextlib.suppress(OSError):
            d.rmdir()
    return survivors


def control_paths(port: int, control_dirs: list[str]) -> list[Path]:
    """Ansible's default ControlPath for root@127.0.0.1:<port>: <dir>/sha1('127.0.0.1-port-root')[:10]."""
    digest = hashlib.sha1(f"127.0.0.1-{port}-root".encode()).hexdigest()[:10]
    return [Path(os.path.expanduser(d)) / digest for d in control_dirs]


def close_ssh_masters(ports: list[int], control_dirs: list[str], kill_pids) -> list[str]:
    """`ssh -O exit` to each ControlPersist master for a VM's port, then end leftovers (ssh to
    127.0.0.1 with Port=<that port>) by PID. Other users' masters to 127.0.0.1 are left alone."""
    actions = []
    for port in ports:
        for path in control_paths(port, control_dirs):
            if path.is_socket():
                _run(["ssh", "-o", f"ControlPath={path}", "-O", "exit", "-p", str(port), "root@127.0.0.1"],
                     check=False)
                actions.append(f"closed ssh master {path}")
    wanted = {f"Port={p}" for p in ports}
    leftovers = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        args = _cmdline(int(entry.name))
        if args and os.path.basename(args[0]) == "ssh" and "127.0.0.1" in " ".join(args) \
                and wanted & set(args) and any("ControlPersist" in a for a in args):
            leftovers.append(int(entry.name))
    if leftovers:
        kill_pids(leftovers)
        actions.append(f"ended ssh masters {leftovers}")
    return actions
