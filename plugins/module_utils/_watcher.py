# -*- coding: utf-8 -*-
# Copyright: contributors to ebpf.deploy
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private to ebpf.deploy: the confirm watcher, which outlives the module that started it.

A pending switch with a confirm deadline gets a watcher: at the deadline it rolls the
deployment back to its committed record unless the switch was committed (or rolled back) by
then. It must run with the controller gone and the SSH session cut, so it does not live in the
module's process:

* where systemd runs the host (``/run/systemd/system``), a transient timer (``systemd-run
  --on-active``) starts it at the deadline;
* otherwise (containers, the lab's network-namespace hosts, whose /run is their own) a detached
  process in its own session sleeps until the deadline, inside the host's namespaces and mounts.

Either runs the host's copy of this collection's module_utils (the *runtime*, below): the
module's own files are gone when the module exits. The same runtime runs the restore at boot.

    <state_dir>/lib/<digest>/ansible_collections/ebpf/deploy/plugins/module_utils/*.py
    <state_dir>/lib/<digest>/keys/<key>        the file fingerprints (runtime_key) it was built from
    <state_dir>/lib/current -> <digest>        what the boot unit runs
    <state_dir>/ebpf-deploy-host               the launcher: ``python3 ebpf-deploy-host restore``

A commit cancels the watcher (a process is signalled only when its command line carries the
switch's token: pids are reused); a watcher that wakes and finds another token, or none, exits.
No Ansible here.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import sys
import time
import zipfile
from pathlib import Path
from typing import List, Optional

from ansible_collections.ebpf.deploy.plugins.module_utils import _process
from ansible_collections.ebpf.deploy.plugins.module_utils._errors import EbpfDeployError

PACKAGE = "ansible_collections.ebpf.deploy.plugins.module_utils"
LAUNCHER = "ebpf-deploy-host"
UNIT_PREFIX = "ebpf-deploy-confirm-"

_LAUNCHER_SOURCE = '''#!/usr/bin/python3
# ebpf.deploy host runtime launcher (written by the collection's modules): restore | watch
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.realpath(__file__)), "lib", "current"))
from ansible_collections.ebpf.deploy.plugins.module_utils._host_cli import main  # noqa: E402

sys.exit(main(sys.argv[1:]))
'''


def _import_runtime() -> None:
    """The entry point and what it imports only on demand; everything else follows from sys.modules.
    Plain import statements, so that AnsiballZ ships these files with the module."""
    # pylint: disable=import-outside-toplevel,unused-import
    from ansible_collections.ebpf.deploy.plugins.module_utils import _host_cli  # noqa: F401
    from ansible_collections.ebpf.deploy.plugins.module_utils import _map  # noqa: F401
    from ansible_collections.ebpf.deploy.plugins.module_utils import _verifier  # noqa: F401


def _sources() -> dict:
    """{module file name: source} of this collection's module_utils that the runtime needs."""
    _import_runtime()
    out = {}
    for name, module in sorted(sys.modules.items()):
        if not name.startswith(PACKAGE + ".") or module is None:
            continue
        source = None
        loader = getattr(module, "__loader__", None)
        with contextlib.suppress(ImportError, OSError, AttributeError):
            source = loader.get_source(name)
        if source is None and getattr(module, "__file__", None):
            source = Path(module.__file__).read_text(encoding="utf-8")
        if source is None:
            raise EbpfDeployError(f"cannot copy {name} into the host runtime: no source")
        out[name.rsplit(".", 1)[1] + ".py"] = source
    return out


def runtime_key() -> Optional[str]:
    """A cheap fingerprint of the module_utils files this process runs from, without importing or
    reading them: name, size and CRC-32 of each in the module's zip (AnsiballZ ships one), or
    name, size and mtime of each file on disk (as Python's own bytecode cache judges a source).
    None when neither can be read. Every file the runtime copies is among them, so a file that
    changes changes the key."""
    package_dir = os.path.dirname(os.path.abspath(__file__))
    archive = getattr(globals().get("__loader__"), "archive", None)
    parts = []
    try:
        if archive:
            inner = os.path.relpath(package_dir, archive).replace(os.sep, "/")
            with zipfile.ZipFile(archive) as bundle:
                parts = [f"{os.path.basename(info.filename)}:{info.file_size}:{info.CRC}"
                         for info in bundle.infolist()
                         if os.path.dirname(info.filename) == inner and info.filename.endswith(".py")]
        else:
            with os.scandir(package_dir) as entries:
                parts = [f"{entry.name}:{entry.stat().st_size}:{entry.stat().st_mtime_ns}"
                         for entry in entries if entry.name.endswith(".py")]
    except (OSError, zipfile.BadZipFile):
        return None
    return hashlib.sha256("\n".join(sorted(parts)).encode()).hexdigest()[:16] if parts else None


def ensure_runtime(state_dir: str) -> Path:
    """The launcher, with the runtime installed only when it is missing or outdated.

    Safe to skip: a key is written only into the runtime directory built from the files it
    fingerprints, so ``current`` holding this process's key means ``current`` runs the code this
    process runs; any other case (no key, another key, a changed launcher) installs as before.
    """
    base = Path(state_dir)
    key = runtime_key()
    launcher = base / LAUNCHER
    if key and (base / "lib" / "current" / "keys" / key).exists():
        with contextlib.suppress(OSError):
            if launcher.read_text(encoding="utf-8") == _LAUNCHER_SOURCE:
                return launcher
    return install_runtime(state_dir, key=key)


def install_runtime(state_dir: str, *, key: Optional[str] = None) -> Path:
    """Write the runtime (once per content digest) and the launcher; returns the launcher.
    ``key`` (runtime_key) is kept in the runtime's directory for ensure_runtime."""
    base = Path(state_dir)
    sources = _sources()
    digest = hashlib.sha256("".join(f"{k}\0{v}\0" for k, v in sorted(sources.items())).encode()).hexdigest()[:16]
    lib = base / "lib"
    target = lib / digest
    if not (target / "complete").exists():
        staging = lib / f".{digest}.{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        package = staging.joinpath(*PACKAGE.split("."))
        os.makedirs(package, mode=0o700)
        for depth in range(1, len(PACKAGE.split(".")) + 1):
            staging.joinpath(*PACKAGE.split(".")[:depth], "__init__.py").write_text("", encoding="utf-8")
        for filename, source in sources.items():
            (package / filename).write_text(source, encoding="utf-8")
        (staging / "complete").write_text(digest + "\n", encoding="utf-8")
        try:
            os.rename(staging, target)
        except OSError:  # another run installed the same digest meanwhile
            shutil.rmtree(staging, ignore_errors=True)
    if key:
        (target / "keys").mkdir(mode=0o700, exist_ok=True)
        (target / "keys" / key).touch()
    current = lib / "current"
    if not current.is_symlink() or os.readlink(current) != digest:
        tmp = lib / f".current.{os.getpid()}"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        os.symlink(digest, tmp)
        os.replace(tmp, current)
    launcher = base / LAUNCHER
    if not launcher.exists() or launcher.read_text(encoding="utf-8") != _LAUNCHER_SOURCE:
        tmp = base / f".{LAUNCHER}.{os.getpid()}"
        tmp.write_text(_LAUNCHER_SOURCE, encoding="utf-8")
        os.chmod(tmp, 0o700)
        os.replace(tmp, launcher)
    _prune_runtimes(lib, keep=digest)
    return launcher


def _prune_runtimes(lib: Path, *, keep: str) -> None:
    """Old runtimes that no watcher runs any more (a day old) go."""
    horizon = time.time() - 86400
    for entry in lib.iterdir():
        if entry.name in (keep, "current") or entry.name.startswith("."):
            continue
        with contextlib.suppress(OSError):
            if entry.stat().st_mtime < horizon:
                shutil.rmtree(entry, ignore_errors=True)


def systemd_runs_host() -> bool:
    """sd_booted(): systemd is this host's init (its /run says so; a netns lab host's /run is its own)."""
    return os.path.isdir("/run/systemd/system") and shutil.which("systemd-run") is not None


def watch_argv(launcher: Path, *, state_dir: str, bpffs_root: str, name: str, token: str,
               deadline: float) -> List[str]:
    return [sys.executable, str(launcher), "watch", "--state-dir", state_dir, "--bpffs-root", bpffs_root,
            "--deployment", name, "--token", token, "--deadline", f"{deadline:.3f}"]


def start(*, state_dir: str, bpffs_root: str, name: str, token: str, deadline: float) -> dict:
    """Start the watcher for a pending switch; returns how to find it again (for the record)."""
    launcher = ensure_runtime(state_dir)
    argv = watch_argv(launcher, state_dir=state_dir, bpffs_root=bpffs_root, name=name, token=token,
                      deadline=deadline)
    if systemd_runs_host():
        unit = f"{UNIT_PREFIX}{name}-{token[:8]}"
        delay = max(1, int(deadline - time.time() + 0.999))
        proc = _process.run(["systemd-run", "--quiet", "--collect", f"--unit={unit}", f"--on-active={delay}s",
                             "--timer-property=AccuracySec=1s", "--"] + argv)
        if proc.returncode == 0:
            return {"kind": "systemd", "unit": unit}
        # systemd refused (no D-Bus in a container, say): a detached process does the same job
    return {"kind": "process", "pid": _process.start_detached(argv, log_path=str(Path(state_dir) / "watcher.log"))}


def _cmdline(pid: int) -> List[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return raw.decode("utf-8", "replace").split("\0")


def cancel(watcher: Optional[dict], token: str) -> None:
    """Stop a pending switch's watcher (it would find nothing to do anyway: this makes it quick)."""
    if not watcher:
        return
    if watcher.get("kind") == "systemd" and watcher.get("unit"):
        _process.run(["systemctl", "stop", f"{watcher['unit']}.timer", f"{watcher['unit']}.service"], text=False)
        return
    pid = watcher.get("pid")
    if not isinstance(pid, int) or pid == os.getpid() or pid <= 1:
        return
    if token not in _cmdline(pid):
        return  # gone, or the pid belongs to another process now
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGTERM)


def running(watcher: Optional[dict], token: str) -> bool:
    """Whether a detached watcher process is alive (systemd timers are trusted)."""
    if not watcher:
        return False
    if watcher.get("kind") == "systemd":
        return True
    pid = watcher.get("pid")
    return isinstance(pid, int) and token in _cmdline(pid)
