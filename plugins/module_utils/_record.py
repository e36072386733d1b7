# -*- coding: utf-8 -*-
# Copyright: contributors to ebpf.deploy
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private to ebpf.deploy: the host's own record of its deployments, which survives a reboot.

The kernel is the source of truth for what *runs*; the record is what the host should *return
to*. One directory per bpffs root (the root's path is hashed: two roots never share a record)::

    <state_dir>/root-<12 hex>/root                 the bpffs root this directory belongs to
    <state_dir>/root-<12 hex>/<deployment>/
        objects/<version>.bpf.o                    the object of each kept version
        versions/<version>.json                    its full desired spec (programs, attach, maps)
        state.json                                 committed version and its history; the pending
                                                   switch, its confirm deadline and what it replaced

A switch is a transaction: ``pending`` until it is committed or rolled back (by the controller,
or by the host itself when the deadline passes). ``pending.replaced`` keeps what the switch
replaced, relative to the committed state: the program that held each interface before and the
prior bytes of every map entry it wrote.

Every file is written atomically (a unique temporary file in the same directory, fsync, rename,
fsync of the directory) in 0700 directories; every file read must carry this format's marker and
name its own deployment, so a torn or foreign file is refused with one line, never half-read.
No Ansible here.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
import tempfile
import time
from pathlib import Path
from typing import Dict, Iterator, List, Optional

from ansible_collections.ebpf.deploy.plugins.module_utils._errors import InvalidInput
from ansible_collections.ebpf.deploy.plugins.module_utils._pins import (
    validate_deployment_name,
    validate_root,
    validate_version,
)

DEFAULT_STATE_DIR = "/var/lib/ebpf_deploy"
FORMAT = "ebpf_deploy.record/1"
RESTORE_REPORT = "restore.json"   # what the restore at boot did, for bpf_facts
HISTORY_LIMIT = 10       # committed versions remembered (and their objects kept) per deployment
ROOT_PREFIX = "root-"


class RecordError(InvalidInput):
    """A record file that cannot be trusted (torn, foreign, or of another deployment)."""


# --------------------------------------------------------------------------- files
def _mkdir(path: Path) -> None:
    """A 0700 directory whatever the umask; refuses a symlink in its place."""
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
    except FileExistsError:
        raise RecordError(f"{path} is in the way of the record: not a directory") from None
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode):
        raise RecordError(f"{path} is in the way of the record: not a directory")
    if stat.S_IMODE(info.st_mode) != 0o700:
        os.chmod(path, 0o700)


def write_atomic(path: Path, data: bytes) -> None:
    """Write, fsync, rename over ``path``, fsync the directory: a reader sees old or new, whole."""
    _mkdir(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def read_bytes(path: Path) -> Optional[bytes]:
    """The file's bytes, None when it does not exist; a symlink or a non-file is refused."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise RecordError(f"record file {path} cannot be read: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise RecordError(f"record file {path} is not a regular file")
        return handle.read()


def _dump(data: dict) -> bytes:
    return (json.dumps(data, indent=1, sort_keys=True) + "\n").encode()


def read_json(path: Path, *, deployment: str, kind: str) -> Optional[dict]:
    raw = read_bytes(path)
    if raw is None:
        return None
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise RecordError(f"record file {path} is damaged ({type(exc).__name__}: {exc}); "
                          "nothing was changed: move it away to start this deployment's record over",
                          record=str(path)) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT or data.get("kind") != kind:
        raise RecordError(f"record file {path} is not an ebpf.deploy {kind} record (format {FORMAT}); "
                          "nothing was changed", record=str(path))
    if data.get("deployment") != deployment:
        raise RecordError(f"record file {path} belongs to deployment {data.get('deployment')!r}, "
                          f"not {deployment!r}; nothing was changed", record=str(path))
    return data


def root_id(bpffs_root: str) -> str:
    return ROOT_PREFIX + hashlib.sha256(str(validate_root(bpffs_root)).encode()).hexdigest()[:12]


# --------------------------------------------------------------------------- the record
class Record:
    """One deployment's record under one bpffs root."""

    def __init__(self, state_dir: str, bpffs_root: str, name: str) -> None:
        self.state_dir = Path(state_dir or DEFAULT_STATE_DIR)
        if not self.state_dir.is_absolute():
            raise InvalidInput(f"state_dir must be an absolute path, got {state_dir!r}")
        self.bpffs_root = str(validate_root(bpffs_root))
        self.name = validate_deployment_name(name)
        self.root_dir = self.state_dir / root_id(self.bpffs_root)
        self.path = self.root_dir / self.name

    # ---- layout
    def object_path(self, version: str) -> Path:
        return self.path / "objects" / f"{validate_version(version)}.bpf.o"

    def spec_path(self, version: str) -> Path:
        return self.path / "versions" / f"{validate_version(version)}.json"

    @property
    def state_path(self) -> Path:
        return self.path / "state.json"

    def exists(self) -> bool:
        return self.state_path.exists()

    # ---- state
    def state(self) -> dict:
        """The deployment's state; an empty one (nothing committed, nothing pending) when new."""
        data = read_json(self.state_path, deployment=self.name, kind="state")
        if data is None:
            return empty_state(self.name, self.bpffs_root)
        return data

    def write_state(self, state: dict) -> None:
        self._mark_root()
        state = dict(state, format=FORMAT, kind="state", deployment=self.name, bpffs_root=self.bpffs_root,
                     updated_at=time.time())
        write_atomic(self.state_path, _dump(state))

    def _mark_root(self) -> None:
        marker = self.root_dir / "root"
        if read_bytes(marker) != self.bpffs_root.encode():
            write_atomic(marker, self.bpffs_root.encode())

    # ---- versions
    def store_version(self, version: str, spec: dict, data: Optional[bytes]) -> None:
        """Keep a version's object (when given) and its spec. The object is stored first: a spec
        on disk always has its object."""
        digest = spec.get("digest")
        if data is not None:
            if digest and hashlib.sha256(data).hexdigest() != digest:
                raise RecordError(f"object of version {version} does not match its digest; not recorded")
            path = self.object_path(version)
            if read_bytes(path) != data:
                write_atomic(path, data)
        payload = dict(spec, format=FORMAT, kind="version", deployment=self.name, version=version)
        write_atomic(self.spec_path(version), _dump(payload))

    def version_spec(self, version: str) -> Optional[dict]:
        return read_json(self.spec_path(version), deployment=self.name, kind="version")

    def version_object(self, version: str) -> bytes:
        """A stored object, its checksum checked against the spec before anyone loads it."""
        spec = self.version_spec(version)
        if spec is None:
            raise RecordError(f"the record of deployment {self.name!r} has no version {version}")
        data = read_bytes(self.object_path(version))
        if data is None:
            raise RecordError(f"the record of deployment {self.name!r} lacks the object of version {version}")
        actual = hashlib.sha256(data).hexdigest()
        if actual != spec.get("digest"):
            raise RecordError(f"stored object of version {version} of deployment {self.name!r} is corrupt "
                              f"(sha256 {actual}, recorded {spec.get('digest')}); not loaded")
        return data

    def stored_versions(self) -> List[str]:
        folder = self.path / "versions"
        if not folder.is_dir():
            return []
        return sorted(p.stem for p in folder.iterdir() if p.suffix == ".json" and not p.name.startswith("."))

    def forget_versions(self, keep: List[str]) -> List[str]:
        """Remove the stored versions (spec and object) that are not in ``keep``."""
        gone = []
        for version in self.stored_versions():
            if version in keep:
                continue
            for path in (self.spec_path(version), self.object_path(version)):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
            gone.append(version)
        return gone

    def remove(self) -> bool:
        """Drop the deployment's record entirely (state: absent)."""
        if not self.path.exists():
            return False
        for sub in ("objects", "versions"):
            folder = self.path / sub
            if folder.is_dir():
                for entry in folder.iterdir():
                    os.unlink(entry)
                os.rmdir(folder)
        for entry in self.path.iterdir():
            os.unlink(entry)
        os.rmdir(self.path)
        return True


def empty_state(name: str, bpffs_root: str) -> dict:
    return {"format": FORMAT, "kind": "state", "deployment": name, "bpffs_root": bpffs_root,
            "committed": None, "history": [], "rolled_back": [], "pending": None, "last": None}


def write_restore_report(state_dir: str, report: dict) -> None:
    write_atomic(Path(state_dir) / RESTORE_REPORT, _dump(report))


def read_restore_report(state_dir: str) -> Optional[dict]:
    """The last restore at boot, None when there was none, an error entry when it is damaged."""
    try:
        raw = read_bytes(Path(state_dir) / RESTORE_REPORT)
        return json.loads(raw.decode("utf-8")) if raw else None
    except (RecordError, ValueError):
        return {"error": f"{Path(state_dir) / RESTORE_REPORT} is damaged"}


def all_records(state_dir: str) -> Iterator[Record]:
    """Every deployment recorded under ``state_dir`` (for the restore at boot)."""
    base = Path(state_dir or DEFAULT_STATE_DIR)
    if not base.is_dir():
        return
    for root_dir in sorted(base.iterdir()):
        if not root_dir.name.startswith(ROOT_PREFIX) or not root_dir.is_dir():
            continue
        raw = read_bytes(root_dir / "root")
        if raw is None:
            continue
        bpffs_root = raw.decode("utf-8", "replace")
        for dep_dir in sorted(root_dir.iterdir()):
            if dep_dir.is_dir() and (dep_dir / "state.json").exists():
                yield Record(str(base), bpffs_root, dep_dir.name)


# --------------------------------------------------------------------------- transitions (pure)
def pending_begin(state: dict, *, version: str, previous: Optional[str], deadline: Optional[float],
                  token: str) -> dict:
    """A new pending switch; a switch over one that is still pending keeps what the first
    replaced (the committed state is what a rollback returns to)."""
    old = state.get("pending") or {}
    replaced = old.get("replaced") or {"attach": {}, "maps": {}}
    return dict(state, pending={"version": version, "previous": old.get("previous", previous),
                                "deadline": deadline, "token": token, "started_at": time.time(),
                                "watcher": None, "replaced": replaced})


def remember_holder(pending: dict, label: str, holder: dict) -> None:
    """What held an interface before the first pending switch touched it (first one wins)."""
    pending["replaced"]["attach"].setdefault(label, holder)


def remember_map_writes(pending: dict, map_name: str, pin: str, prior: List[dict]) -> None:
    """Prior bytes of the entries a switch wrote; a key's first prior value wins."""
    entry = pending["replaced"]["maps"].setdefault(map_name, {"pin": pin, "entries": []})
    known = {item["key"] for item in entry["entries"]}
    entry["entries"].extend(item for item in prior if item["key"] not in known)


def committed(state: dict, version: str, *, by: str) -> dict:
    """``version`` is committed: history grows (never twice in a row), nothing is pending."""
    history = [v for v in state.get("history") or [] if v != version] + [version]
    rolled_back = [v for v in state.get("rolled_back") or [] if v != version]
    return dict(state, committed=version, history=history[-HISTORY_LIMIT:], rolled_back=rolled_back,
                pending=None, last={"action": "commit", "version": version, "by": by, "at": time.time()})


def rolled_back(state: dict, *, to: Optional[str], failed: Optional[str], by: str) -> dict:
    """Back on ``to`` (None: the deployment is gone); ``failed`` is never returned to by `previous`."""
    marked = list(state.get("rolled_back") or [])
    if failed and failed != to and failed not in marked:
        marked.append(failed)
    history = [v for v in state.get("history") or [] if v != failed or failed == to]
    if to and (not history or history[-1] != to):
        history = [v for v in history if v != to] + [to]
    return dict(state, committed=to, history=history[-HISTORY_LIMIT:], rolled_back=marked[-HISTORY_LIMIT:],
                pending=None, last={"action": "rollback", "from": failed, "version": to, "by": by,
                                    "at": time.time()})


def previous_committed(state: dict) -> Optional[str]:
    """The version committed before the committed one, skipping versions that were rolled back;
    None when the committed version was itself reached by a rollback (a second rollback run
    changes nothing) or when there is none."""
    last = state.get("last") or {}
    if last.get("action") == "rollback" and last.get("version") == state.get("committed"):
        return None
    marked = set(state.get("rolled_back") or [])
    history = [v for v in state.get("history") or [] if v not in marked]
    if state.get("committed") in history:
        history = history[:history.index(state["committed"])]
    return history[-1] if history else None


def summary(state: dict, *, now: Optional[float] = None) -> dict:
    """The record's state as results and facts show it."""
    pending = state.get("pending")
    now = time.time() if now is None else now
    out: Dict[str, object] = {"committed": state.get("committed"), "pending": None,
                              "history": list(state.get("history") or []),
                              "rolled_back": list(state.get("rolled_back") or []), "last": state.get("last")}
    if pending:
        deadline = pending.get("deadline")
        out["pending"] = {"version": pending["version"], "deadline": deadline,
                          "seconds_left": None if deadline is None else round(deadline - now, 1),
                          "watcher": (pending.get("watcher") or {}).get("kind")}
    return out
