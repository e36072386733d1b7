"""What one pytest session leaves under /run/ebpf_deploy, and how it removes only its own.

Several sessions share this machine (helpers, CI tiers), and each of them leaves metadata, XDP and
attach notes and lock files under /run/ebpf_deploy. Every name a test makes carries `SESSION`
(see tests/helpers.py `unique`), so the clean-up at the end of a session knows its own entries by
name. Lock files are also named after a hash of a map's path, which cannot carry the mark: a new one
goes only when nobody holds it (a non-blocking flock), and the clean-up unlinks it while it holds
that lock itself. Another session's entries are never touched.
"""
from __future__ import annotations

import fcntl
import os
import secrets
import shutil
from pathlib import Path

STATE_DIR = Path("/run/ebpf_deploy")   # the modules' metadata, locks and notes on this host
NOTE_DIRS = ("xdp", "attach")          # notes of the XDP and attach managers, one folder per bpffs root

# Four letters that hexadecimal never holds, so another session's random hex suffix cannot look like
# this mark. Kept in the environment: a second import of this file, and the processes a test starts,
# see the same session.
_LETTERS = "ghjkmnpqrstvwxyz"
SESSION = os.environ.setdefault("EBPFD_TEST_SESSION", "".join(secrets.SystemRandom().choices(_LETTERS, k=4)))


def locks(state_dir: Path = STATE_DIR) -> set:
    """The lock files there now (taken at the start of a session to tell which ones are new)."""
    folder = state_dir / "locks"
    return set(folder.iterdir()) if folder.is_dir() else set()


def own_entries(session: str = SESSION, state_dir: Path = STATE_DIR) -> set:
    """Metadata and notes named after this session's deployments and bpffs roots."""
    found = set()
    for folder in (state_dir, *(state_dir / name for name in NOTE_DIRS)):
        if folder.is_dir():
            found |= {entry for entry in folder.iterdir() if session in entry.name}
    return found


def unlink_if_free(lock: Path) -> bool:
    """Remove a lock file that no process holds; False (and the file kept) while one does."""
    try:
        fd = os.open(lock, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return True
    except OSError:
        return False   # a symlink or something else: not a lock of ours
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        lock.unlink(missing_ok=True)   # while holding it: no run is inside it as it goes
        return True
    finally:
        os.close(fd)


def clean(locks_before: set, session: str = SESSION, state_dir: Path = STATE_DIR) -> None:
    """Remove this session's metadata and notes, and the locks it may have made that nobody holds."""
    for entry in own_entries(session, state_dir):
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
    for lock in locks(state_dir):
        if session in lock.name or lock not in locks_before:
            unlink_if_free(lock)
