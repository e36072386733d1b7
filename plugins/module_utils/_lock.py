# -*- coding: utf-8 -*-
# Copyright: contributors to ebpf.deploy
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private to ebpf.deploy: one lock per deployment, so concurrent runs on a host take turns.

``with deployment_lock("pktcount", timeout=60):`` holds an exclusive ``flock`` on
``/run/ebpf_deploy/locks/<name>.lock``. The kernel drops the lock when the process dies, so a
killed run never leaves a stale lock. The holder writes its pid into the file for the timeout
message. A process that holds a deployment's lock may take it again (bpf_deployment holds it for
the whole run while its program, attachment and map managers take it for each part): the inner
``with`` does not lock again, the outer one releases. No Ansible here.
"""
from __future__ import annotations

import contextlib
import errno as _errno
import fcntl
import os
import re
import time
from typing import Dict, Iterator, Tuple

from ansible_collections.ebpf.deploy.plugins.module_utils._errors import InvalidInput, LockTimeout
from ansible_collections.ebpf.deploy.plugins.module_utils._pins import STATE_DIR, private_dir

LOCK_DIR = os.path.join(STATE_DIR, "locks")
# Lock files live on a normal filesystem: interface-derived names ("xdp-lab1@eth0.100") are fine.
_LOCK_NAME = re.compile(r"^[A-Za-z0-9_.@:%+-]{1,200}$")
_HELD: Dict[Tuple[int, str], int] = {}   # (pid, lock path) -> depth of the locks this process holds


def lock_path(name: str, *, lock_dir: str = LOCK_DIR) -> str:
    """``/run/ebpf_deploy/locks/<name>.lock``; the name cannot leave the lock directory."""
    if not isinstance(name, str) or name in (".", "..") or not _LOCK_NAME.match(name):
        raise InvalidInput(f"lock name {name!r} may only contain letters, digits and _.@:%+-")
    return os.path.join(lock_dir, f"{name}.lock")


def _holder(fd: int) -> str:
    try:
        text = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
    except OSError:
        return ""
    return text


@contextlib.contextmanager
def deployment_lock(name: str, timeout: float = 60.0, *, lock_dir: str = LOCK_DIR,
                    poll: float = 0.05) -> Iterator[str]:
    """Hold the deployment's lock for the block; LockTimeout after ``timeout`` seconds."""
    path = lock_path(name, lock_dir=lock_dir)
    held = (os.getpid(), path)   # the pid: a forked child does not inherit the flock's owner
    if _HELD.get(held):
        _HELD[held] += 1
        try:
            yield path
        finally:
            _HELD[held] -= 1
        return
    private_dir(lock_dir)   # 0700 whatever the umask
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        if exc.errno == _errno.ELOOP:
            raise InvalidInput(f"the lock {path} is a symlink: not followed (remove it)", lock=path) from None
        raise
    try:
        deadline = time.monotonic() + max(float(timeout), 0.0)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (_errno.EAGAIN, _errno.EWOULDBLOCK, _errno.EACCES):
                    raise
            if time.monotonic() >= deadline:
                holder = _holder(fd)
                who = f" (held by pid {holder})" if holder else ""
                raise LockTimeout(f"deployment '{name}' is locked by another run{who} for more than "
                                  f"{timeout:g}s: {path}", lock=path, holder_pid=holder or None)
            time.sleep(poll)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        _HELD[held] = 1
        try:
            yield path
        finally:
            _HELD.pop(held, None)
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
