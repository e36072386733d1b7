"""VM hosts for the ebpf.deploy lab: qemu guests with their own Debian kernel, beside the netns hosts.

One VM host ``<prefix>-v<N>`` is a qemu process on this machine (root network namespace) that runs
  * a Debian image (``debian12``: kernel 6.1, ``debian13``: kernel 6.12) built from Debian packages
    only by ``ebpfd_image.sh`` (mmdebstrap), cached under the image dir keyed by a digest of the
    package list and the build script, booted directly (-kernel/-initrd from the image's own /boot)
    from a fresh qcow2 copy-on-write overlay, so a VM that (re)starts starts clean;
  * ``eth0`` (data): a virtio-net NIC whose backend is a tap device ``eth0`` that lives in the
    traffic-peer namespace ``<prefix>-pv<N>`` (opened there, handed to qemu as a file descriptor,
    so it disappears with qemu); both ends have fixed MACs and permanent neighbours, as on netns hosts;
  * ``mgmt0`` (management): qemu user-mode networking with ``restrict=on`` (the guest reaches
    nothing outside) and one port forward 127.0.0.1:<port> -> guest:22 for SSH; user-mode
    networking needs no bridge, no address plan and no route on the controller, and a loopback port
    cannot collide with the netns hosts' management network;
  * a small read-only seed disk (a tar archive: host key, authorized_keys, hostname, addresses)
    applied at boot by ``ebpfd-lab-seed.service`` inside the image.

Processes are found by the PID the lab recorded (state and qemu's pidfile) and checked (executable
and command line) before they are ended; nothing is ever ended by name. Only the standard library
is used.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import ipaddress
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import tarfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

FILES = Path(__file__).resolve().parent
IMAGE_SCRIPT = FILES / "ebpfd_image.sh"
PACKAGES_DIR = FILES / "images"
QEMU = "qemu-system-x86_64"
VMS_DIR = "vms"
VM_FILES = ("overlay.qcow2", "seed.tar", "qemu.pid", "console.log", "qemu.log", "kvm-probe.log",
            "ssh_host_ed25519_key", "ssh_host_ed25519_key.pub")
VM_STRIDE_BASE = 128  # VM N uses the (128+N)-th /24 of the data network; netns hosts use 1..127
GUEST_MGMT_ADDRESS = "10.0.2.15/24"  # qemu user-mode networking's defaults, inside the guest only
GUEST_MGMT_GATEWAY = "10.0.2.2"
KERNEL_CMDLINE = "root=/dev/vda rw console=ttyS0 net.ifnames=0 ipv6.disable=1 systemd.show_status=0"
TUNSETIFF = 0x400454CA
IFF_TAP, IFF_NO_PI, IFF_VNET_HDR = 0x0002, 0x1000, 0x4000
KVM_PROBE_SECONDS = 8.0
# Under TCG a plain x86-64 model runs a guest about a third faster than "max" (measured here): with
# "max" the guest's glibc picks AVX2 code paths that TCG emulates at length.
TCG_CPU = "qemu64"


class VmError(Exception):
    """A VM failure with a message for the user and optional details for the JSON result."""

    def __init__(self, msg: str, **details) -> None:
        super().__init__(msg)
        self.msg = msg
        self.details = details


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


# --- images ------------------------------------------------------------------------------------------

def apt_mirror(etc: Path = Path("/etc/apt")) -> str:
    """The Debian mirror this machine's apt uses (deb822 .sources or one-line .list), for the image build.

    The first enabled `deb` source with a plain suite (no `-security`, `-updates`) wins.
    """
    entries: list[tuple[list[str], list[str], list[str]]] = []  # (types, uris, suites)
    files = [etc / "sources.list"] + sorted((etc / "sources.list.d").glob("*"))
    for path in files:
        try:
            text = path.read_text()
        except OSError:
            continue
        if path.suffix == ".sources":
            for para in text.split("\n\n"):
                fields: dict[str, str] = {}
                for line in para.splitlines():
                    if line.startswith("#") or ":" not in line or line[:1].isspace():
                        continue
                    key, _sep, value = line.partition(":")
                    fields[key.strip().lower()] = value.strip()
                if fields.get("enabled", "yes").lower() == "no":
                    continue
                entries.append((fields.get("types", "").split(), fields.get("uris", "").split(),
                                fields.get("suites", "").split()))
        elif path.name == "sources.list" or path.suffix == ".list":
            for line in text.splitlines():
                words = line.split("#", 1)[0].split()
                if len(words) >= 3 and words[0] == "deb":
                    rest = words[1:]
                    if rest[0].startswith("["):
                        while rest and not rest[0].endswith("]"):
                            rest = rest[1:]
                        rest = rest[1:]
                    if len(rest) >= 2:
                        entries.append((["deb"], [rest[0]], [rest[1]]))
    for types, uris, suites in entries:
        if "deb" in types and uris and any("-" not in s and "/" not in s for s in suites):
            return uris[0]
    raise VmError(f"no Debian mirror found in {etc}/sources.list*: the VM images are built from it")


def image_suite(image: str) -> str:
    for line in (PACKAGES_DIR / f"{image}.packages").read_text().splitlines():
        if line.startswith("# suite:"):
            return line.split(":", 1)[1].strip()
    raise VmError(f"{image}.packages names no '# suite:'")


def image_digest(image: str) -> str:
    """Digest of what the image is made of: its package list and the build script."""
    h = hashlib.sha256()
    for path in (PACKAGES_DIR / f"{image}.packages", IMAGE_SCRIPT):
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:12]


def image_path(image_dir: Path, image: str) -> Path:
    return image_dir / f"{image}-{image_digest(image)}"


def image_ready(path: Path) -> bool:
    return all((path / f).is_file() for f in ("rootfs.img", "vmlinuz", "initrd.img", "packages.txt"))


def ensure_image(image_dir: Path, image: str) -> tuple[Path, float | None]:
    """The cached image (built first when its digest changed); returns (dir, build seconds or None)."""
    path = image_path(image_dir, image)
    if image_ready(path):
        return path, None
    image_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(image_dir / f"{image}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        if image_ready(path):
            return path, None
        for tool in ("mmdebstrap", "mkfs.ext4"):
            if shutil.which(tool) is None and not Path("/usr/sbin", tool).exists():
                raise VmError(f"{tool} not found: run tools/install-system-deps.sh (or apt-get install mmdebstrap)")
        t0 = time.monotonic()
        proc = subprocess.run(
            ["sh", str(IMAGE_SCRIPT), "build", image_suite(image), str(PACKAGES_DIR / f"{image}.packages"),
             apt_mirror(), str(path)],
            capture_output=True, text=True, check=False,
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "TMPDIR": str(image_dir)})
        if proc.returncode != 0 or not image_ready(path):
            raise VmError(f"building VM image {image} failed (rc={proc.returncode})", stderr=proc.stderr[-3000:])
        for old in image_dir.glob(f"{image}-*"):  # earlier digests of the same image
            if old != path and old.is_dir() and not old.name.endswith(".tmp"):
                shutil.rmtree(old, ignore_errors=True)
        return path, round(time.monotonic() - t0, 1)
    finally:
        os.close(fd)


def build_images(image_dir: Path, images: list[str]) -> dict[str, dict]:
    """ensure_image for each image, all at once (a build mostly waits on the mirror and on dpkg):
    image -> {path, build_seconds} or {error}."""
    def one(image: str) -> dict:
        try:
            path, seconds = ensure_image(image_dir, image)
        except VmError as exc:
            return {"error": {"error": exc.msg, **exc.details}}
        return {"path": path, "build_seconds": seconds}

    with ThreadPoolExecutor(max_workers=max(1, len(images))) as pool:
        return dict(zip(images, pool.map(one, images)))


# --- processes -----------------------------------------------------------------------------------------

def _cmdline(pid: int) -> list[str]:
    try:
        return [a.decode(errors="replace") for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if a]
    except OSError:
        return []


def is_our_qemu(pid: int | None, name: str, vm_dir: Path) -> bool:
    """PID is a live qemu started by the lab for this VM (its -name and its files in the command line)."""
    if not pid or pid <= 1:
        return False
    try:
        exe = os.path.basename(os.readlink(f"/proc/{pid}/exe"))
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    argv = _cmdline(pid)
    return (exe.startswith("qemu-system") and state != "Z" and f"guest={name}" in argv
            and any(str(vm_dir) in a for a in argv))


def vm_pids(name: str, vm_dir: Path, recorded: int | None) -> list[int]:
    """This VM's qemu processes: the recorded PID, the pidfile's, and (for a lab-up killed before it
    wrote its state) any qemu whose command line names this VM and its directory."""
    found = set()
    candidates = [recorded]
    with contextlib.suppress(OSError, ValueError):
        candidates.append(int((vm_dir / "qemu.pid").read_text().split()[0]))
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            argv = _cmdline(int(entry.name))
            if argv and f"guest={name}" in argv:
                candidates.append(int(entry.name))
    for pid in candidates:
        if is_our_qemu(pid, name, vm_dir):
            found.add(pid)
    return sorted(found)


def ssh_banner(port: int, *, timeout: float) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.settimeout(timeout)
            return s.recv(64).startswith(b"SSH-")
    except OSError:
        return False


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


# --- acceleration -------------------------------------------------------------------------------------

def probe_kvm(kernel: Path, work_dir: Path, *, timeout: float = KVM_PROBE_SECONDS) -> tuple[bool, str]:
    """Whether KVM really runs a guest here: boot the image's kernel under KVM (no disk) and wait for
    its first console line. A guest that hangs in the firmware prints nothing; it is ended by PID."""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False, "no usable /dev/kvm"
    log = work_dir / "kvm-probe.log"
    with contextlib.suppress(FileNotFoundError):
        log.unlink()
    argv = [QEMU, "-name", "guest=ebpfd-kvm-probe", "-accel", "kvm", "-cpu", "host", "-m", "256M",
            "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot", "-serial", f"file:{log}",
            "-kernel", str(kernel), "-append", "console=ttyS0 panic=-1"]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    ok = False
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            with contextlib.suppress(OSError):
                if b"Linux version" in log.read_bytes():
                    ok = True
                    break
            time.sleep(0.1)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        with contextlib.suppress(FileNotFoundError):
            log.unlink()
    if ok:
        return True, "KVM runs guests"
    return False, f"a KVM guest printed nothing in {timeout:.0f} s"


def choose_accel(wanted: str, kernel: Path, work_dir: Path) -> tuple[str, str | None]:
    """(accel, notice): 'kvm' only when asked for or when the probe boots a guest; else TCG."""
    if wanted == "tcg":
        return "tcg", None
    ok, why = probe_kvm(kernel, work_dir)
    if ok:
        return "kvm", None
    if wanted == "kvm":
        raise VmError(f"KVM was asked for but {why}")
    return "tcg", f"KVM unusable ({why}): VMs run with TCG (software emulation, slower)"


# --- one VM ---------------------------------------------------------------------------------------------

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


def wait_booted(opts: VmOptions, vm: VmSpec, pid: int, port: int) -> float:
    """Seconds until the guest's sshd answers on the forwarded port; raises with the console's tail."""
    d = vm_dir(opts, vm)
    t0 = time.monotonic()
    while time.monotonic() - t0 < opts.boot_timeout:
        if not is_our_qemu(pid, vm.name, d):
            raise VmError(f"qemu for {vm.name} exited during boot", qemu_log=_tail(d / "qemu.log"),
                          console=_tail(d / "console.log"))
        if ssh_banner(port, timeout=2.0):
            return round(time.monotonic() - t0, 1)
        time.sleep(0.5)
    raise VmError(f"{vm.name} did not answer SSH on 127.0.0.1:{port} in {opts.boot_timeout:.0f} s",
                  console=_tail(d / "console.log"))


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


# --- the VMs of a lab -------------------------------------------------------------------------------

@dataclass
class LabHooks:
    """The lab script's helpers the VM code uses (kept there, shared with the netns hosts)."""
    in_netns: object
    write_sysctl: object
    kill_pids: object
    ensure_key: object
    ns_view: object
    netns_names: object


def _indices(prefix: str, lab_dir: Path, namespaces: set[str], state_vms: dict) -> set[int]:
    """Every VM index a lab of this prefix may have left: peer namespaces, VM dirs, recorded state."""
    pat = re.compile(rf"^{re.escape(prefix)}-p?v(\d+)$")
    names = list(namespaces) + list(state_vms)
    with contextlib.suppress(OSError):
        names += [p.name for p in (lab_dir / VMS_DIR).iterdir()]
    return {int(m[1]) for n in names if (m := pat.match(n))}


def remove_vms(opts: VmOptions, vms: list[VmSpec], state_vms: dict, control_dirs: list[str], hooks: LabHooks,
               *, keep_key: bool) -> tuple[list[str], list[int]]:
    actions: list[str] = []
    survivors: list[int] = []
    ports = [int(state_vms[v.name]["port"]) for v in vms if state_vms.get(v.name, {}).get("port")]
    actions += close_ssh_masters(ports, control_dirs, hooks.kill_pids)
    namespaces = hooks.netns_names()
    for vm in vms:
        left = destroy_vm(opts, vm, state_vms.get(vm.name, {}).get("pid"), kill_pids=hooks.kill_pids,
                          namespaces=namespaces, keep_key=keep_key)
        survivors += left
        actions.append(f"{vm.name}: stopped and removed")
    if not keep_key:
        with contextlib.suppress(OSError):
            (opts.lab_dir / VMS_DIR).rmdir()
    return actions, survivors


def converge_vms(opts: VmOptions, prefix: str, data_network: str, vms: list[VmSpec], state_vms: dict, *,
                 authorized_keys: str, control_dirs: list[str], hooks: LabHooks, check: bool) -> dict:
    """Bring the VMs to the plan: keep a healthy one, (re)start the rest from a fresh overlay, remove
    VMs beyond the plan. Returns actions, the new state per VM, errors, notices and timings."""
    out: dict = {"actions": [], "state": {}, "errors": {}, "notices": [], "images": {}, "boot_seconds": {}}
    namespaces = hooks.netns_names()
    wanted = {v.index for v in vms}
    stale = sorted(_indices(prefix, opts.lab_dir, namespaces, state_vms) - wanted)
    if stale:
        gone = plan_vms(prefix, data_network, max(stale), [vms[0].image if vms else "debian12"])
        gone = [v for v in gone if v.index in stale]
        if check:
            out["actions"] += [f"would remove {v.name}" for v in gone]
        else:
            acts, _left = remove_vms(opts, gone, state_vms, control_dirs, hooks, keep_key=False)
            out["actions"] += acts
    if not vms:
        return out
    wanted_images = sorted({v.image for v in vms})
    if check:
        images = {image: image_path(opts.image_dir, image) for image in wanted_images}
        out["actions"] += [f"would build VM image {path.name}" for path in images.values() if not image_ready(path)]
    else:
        built = build_images(opts.image_dir, wanted_images)
        images = {image: b["path"] for image, b in built.items() if "path" in b}
        out["errors"].update({image: b["error"] for image, b in built.items() if "error" in b})
        for image, path in images.items():
            seconds = built[image]["build_seconds"]
            out["images"][image] = {"path": str(path), "build_seconds": seconds}
            if seconds is not None:
                out["actions"].append(f"built VM image {path.name} in {seconds} s")
    todo = []
    for vm in vms:
        sv = state_vms.get(vm.name, {})
        if vm.image not in images:
            out["errors"][vm.name] = {"error": f"image {vm.image} unavailable"}
            continue
        if check and not image_ready(images[vm.image]):
            problems = ["image not built"]
        else:
            problems = vm_problems(opts, vm, sv, images[vm.image], namespaces, hooks.ns_view)
        if not problems:
            out["state"][vm.name] = sv
            continue
        if check:
            out["actions"].append(f"{vm.name}: would (re)start ({'; '.join(problems)})")
            out["state"][vm.name] = sv
            continue
        todo.append((vm, sv, problems))
    if not todo:
        return out
    stop, _left = remove_vms(opts, [vm for vm, _sv, _p in todo], state_vms, control_dirs, hooks, keep_key=True)
    out["actions"] += [a for a in stop if not a.endswith("stopped and removed")]
    first = images[todo[0][0].image]
    accel, notice = choose_accel(opts.accel, first / "vmlinuz", opts.lab_dir)
    if notice:
        out["notices"].append(notice)
    started = []
    for vm, sv, problems in todo:
        d = vm_dir(opts, vm)
        d.mkdir(parents=True, exist_ok=True, mode=0o700)
        hooks.ensure_key(d / "ssh_host_ed25519_key", vm.name)
        old = sv.get("port")
        port = int(old) if old and port_free(int(old)) else free_port()
        try:
            pid = start_vm(opts, vm, images[vm.image], accel, port, authorized_keys=authorized_keys,
                           in_netns=hooks.in_netns, write_sysctl=hooks.write_sysctl)
        except (VmError, OSError) as exc:
            out["errors"][vm.name] = {"error": getattr(exc, "msg", str(exc))}
            continue
        started.append((vm, pid, port, problems))

    def wait(item):
        vm, pid, port, _problems = item
        try:
            return vm, wait_booted(opts, vm, pid, port), None
        except VmError as exc:
            return vm, None, exc

    with ThreadPoolExecutor(max_workers=max(1, len(started))) as pool:
        waited = list(pool.map(wait, started))
    for (vm, pid, port, problems), (_vm, seconds, exc) in zip(started, waited):
        out["state"][vm.name] = {"pid": pid, "port": port, "accel": accel, "image": images[vm.image].name,
                                 "config_sha": config_sha(opts, vm, images[vm.image])}
        if exc is not None:
            out["errors"][vm.name] = {"error": exc.msg, **exc.details}
            continue
        out["boot_seconds"][vm.name] = seconds
        why = "started" if problems == ["qemu not running"] else f"restarted ({'; '.join(problems)})"
        out["actions"].append(f"{vm.name}: {why} {vm.image} with {accel}, SSH on 127.0.0.1:{port} in {seconds} s")
    return out


def teardown_vms(opts: VmOptions, prefix: str, data_network: str, state_vms: dict, control_dirs: list[str],
                 hooks: LabHooks, *, check: bool) -> tuple[list[str], list[int]]:
    indices = _indices(prefix, opts.lab_dir, hooks.netns_names(), state_vms)
    if not indices:
        return [], []
    vms = [v for v in plan_vms(prefix, data_network, max(indices), ["debian12"]) if v.index in indices]
    if check:
        return [f"would remove {v.name}" for v in vms], []
    return remove_vms(opts, vms, state_vms, control_dirs, hooks, keep_key=False)


def inventory_lines(vms: list[VmSpec], state_vms: dict, lab_dir: Path, known_hosts: Path, client_key: Path) -> list[str]:
    q = json.dumps
    lines = []
    for vm in vms:
        sv = state_vms.get(vm.name, {})
        lines += [
            f"        {vm.name}:",
            '          ansible_host: "127.0.0.1"',
            f"          ansible_port: {int(sv.get('port') or 0)}",
            "          ansible_user: root",
            f"          ansible_ssh_private_key_file: {q(str(client_key))}",
            "          ansible_ssh_common_args: " + q(f"-o UserKnownHostsFile={known_hosts} -o IdentitiesOnly=yes"),
            '          ansible_python_interpreter: "/usr/bin/python3"',
            "          lab_kind: vm",
            f"          lab_vm_image: {q(vm.image)}",
            f"          lab_peer_netns: {q(vm.peer_ns)}",
            "          lab_data_interface: eth0",
            f"          lab_address: {q(vm.data_address)}",
            f"          lab_peer_address: {q(vm.peer_address)}",
            "          lab_mgmt_interface: mgmt0",
            f"          lab_mgmt_address: {q(GUEST_MGMT_ADDRESS.split('/', maxsplit=1)[0])}",
        ]
    return lines


def known_hosts_lines(opts: VmOptions, vms: list[VmSpec], state_vms: dict) -> str:
    out = ""
    for vm in vms:
        pub = vm_dir(opts, vm) / "ssh_host_ed25519_key.pub"
        port = state_vms.get(vm.name, {}).get("port")
        if port and pub.exists():
            out += f"[127.0.0.1]:{port} {' '.join(pub.read_text().split()[:2])}\n"
    return out


def vm_facts(vm: VmSpec, state_vm: dict) -> dict:
    return {"name": vm.name, "kind": "vm", "image": vm.image, "peer_netns": vm.peer_ns, "address": vm.data_address,
            "peer_address": vm.peer_address, "ssh_port": state_vm.get("port"), "pid": state_vm.get("pid"),
            "accel": state_vm.get("accel")}
