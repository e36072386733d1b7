"""The session clean-up (tests/session_state.py) removes only what its own session left.

Two sessions share one /run/ebpf_deploy here (a temporary directory in its place): session `kqzt`
ends while session `mwvx` is still working, holding a deployment's lock and using its metadata.
"""
from __future__ import annotations

import fcntl
import os
from pathlib import Path

import pytest

from tests import session_state

OURS, THEIRS = "kqzt", "mwvx"


@pytest.fixture
def state(tmp_path) -> Path:
    for sub in ("locks", "xdp", "attach"):
        (tmp_path / sub).mkdir()
    return tmp_path


def make(path: Path) -> Path:
    if path.suffix in (".lock", ".json"):
        path.write_text("1\n")
    else:
        path.mkdir()
        (path / "v1.json").write_text("{}\n")
    return path


def hold(lock: Path) -> int:
    """Another session's run holding the lock (flock on its own open file, as _lock.py takes it)."""
    fd = os.open(lock, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return fd


def test_the_mark_is_made_of_letters_hex_never_holds():
    assert len(session_state.SESSION) == 4
    assert not set(session_state.SESSION) & set("0123456789abcdef")


def test_only_this_sessions_entries_and_free_locks_go(state):
    theirs_old = make(state / "locks" / f"ebpfd_{THEIRS}0a0b.lock")   # there before we started
    map_lock_held = make(state / "locks" / "map-0123456789abcdef.lock")
    before = session_state.locks(state)

    ours = {
        "meta": make(state / f"ebpfd_{OURS}1a2b"),
        "json": make(state / f"ebpfd-bf-{OURS}3c4d.json"),
        "xdp notes": make(state / "xdp" / f"sys_fs_bpf_ebpfd_test_{OURS}5e6f"),
        "attach notes": make(state / "attach" / f"sys_fs_bpf_ebpfd_test_{OURS}5e6f"),
        "lock": make(state / "locks" / f"ebpfd_{OURS}1a2b.lock"),
        "new map lock": make(state / "locks" / "map-fedcba9876543210.lock"),
    }
    theirs = {
        "meta": make(state / f"ebpfd_{THEIRS}1a2b"),
        "xdp notes": make(state / "xdp" / f"sys_fs_bpf_ebpfd_test_{THEIRS}7a8b"),
        "held lock": make(state / "locks" / f"ebpfd_{THEIRS}1a2b.lock"),
        "held new map lock": make(state / "locks" / "map-00000000ffffffff.lock"),
        "old lock": theirs_old,
        "old map lock, held": map_lock_held,
        "features cache": make(state / "features-30b27bd1.json"),
    }
    ours_held = make(state / "locks" / f"ebpfd_{OURS}9a9b.lock")   # a run of ours still inside it
    fds = [hold(theirs["held lock"]), hold(theirs["held new map lock"]), hold(map_lock_held), hold(ours_held)]
    try:
        session_state.clean(before, OURS, state)
    finally:
        for fd in fds:
            os.close(fd)

    assert {what: path for what, path in ours.items() if os.path.lexists(path)} == {}
    assert {what: path for what, path in theirs.items() if not path.exists()} == {}
    assert (theirs["meta"] / "v1.json").exists()
    assert ours_held.exists(), "a lock somebody holds was removed"


def test_a_lock_is_removed_while_the_clean_up_holds_it(state, monkeypatch):
    """Between the check and the unlink nobody can take it: it goes only under our own flock."""
    lock = make(state / "locks" / f"ebpfd_{OURS}1a2b.lock")
    seen = []

    def unlink(self, missing_ok=False):
        probe = os.open(lock, os.O_RDWR)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
            seen.append("held")
        finally:
            os.close(probe)
        os.unlink(self)

    monkeypatch.setattr(Path, "unlink", unlink)
    assert session_state.unlink_if_free(lock)
    assert seen == ["held"] and not lock.exists()
