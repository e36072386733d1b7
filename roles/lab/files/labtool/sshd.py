"""A lab host's sshd (its config, start, problems), the SSH keys, and ssh control masters.

Part of the lab tool (package docstring: the whole picture). Standard library only.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import subprocess
import time
from pathlib import Path

from labtool.commands import run, sha, write_if_changed
from labtool.errors import LabError
from labtool.namespaces import netns_inode
from labtool.naming import AUTHORIZED_KEYS, HOST_CACHE_DIR, HOST_STATE_DIR, HostSpec, LabConfig
from labtool.processes import kill_pids, pid_alive


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
# and a state directory and a cache directory of its own.
_SSHD_START = (
    "set -e; "
    "mount -t tmpfs -o mode=0755,size=16m ebpfd-run /run; "
    "mkdir -m 0755 /run/sshd; "
    "mount -t bpf -o mode=0700 ebpfd-bpffs /sys/fs/bpf; "
    "mount -t tracefs ebpfd-tracefs /sys/kernel/tracing 2>/dev/null || :; "
    "mount -t cgroup2 ebpfd-cgroup2 /sys/fs/cgroup 2>/dev/null || :; "
    # the host's record of its deployments (/var/lib/ebpf_deploy) is its own and survives a restart
    'mkdir -p /var/lib/ebpf_deploy "$3"; mount --bind "$3" /var/lib/ebpf_deploy; '
    # and its modules' bytecode cache is its own too (not this machine's, and gone with the lab)
    'mkdir -p /var/cache/ebpf_deploy "$4"; mount --bind "$4" /var/cache/ebpf_deploy; '
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
            str(hdir / HOST_STATE_DIR), str(hdir / HOST_CACHE_DIR)]
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
