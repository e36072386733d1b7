# -*- coding: utf-8 -*-
# Copyright: contributors to ebpf.deploy
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private to ebpf.deploy: where a deployment's pins live in the bpffs, and its version pointers.

Layout, one directory per deployment (every name validated so nothing can leave the root)::

    <bpffs_root>/<deployment>/maps/<map>                 shared by all versions
    <bpffs_root>/<deployment>/<version>/progs/<program>  version = 12 hex chars
    <bpffs_root>/<deployment>/<version>/maps/<map>       a PROG_ARRAY the object initialises:
                                                         each version has its own
    <bpffs_root>/<deployment>/links/<ifname>:xdp         pinned XDP link ("<netns>@<ifname>:xdp")
    <bpffs_root>/<deployment>/current -> <version>       symlinks inside the bpffs,
    <bpffs_root>/<deployment>/previous -> <version>      switched atomically (symlink + rename)

The bpffs refuses any name containing a dot (kernel/bpf/inode.c: "dots in names are reserved"),
so link pins use ``:`` as separator and interface/netns names are percent-encoded. Metadata the kernel cannot hold
(source, deployed_at, digest, options) is kept in ``/run/ebpf_deploy/<deployment>/<root>/<version>.json``,
``<root>`` being the bpffs root as one file name (``sys%2Ffs%2Fbpf%2Febpf_deploy``), so one deployment
name under two roots keeps two records; /run is cleared on reboot exactly as the bpffs. When the
bpffs cannot hold symlinks, ``current``/``previous`` fall back to ``.../<root>/pointers.json``.
Records written before roots were part of the path (``<deployment>/<version>.json``,
``<deployment>.json``) are still read when they name this root, and removed with the deployment.

No Ansible here.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from ansible_collections.ebpf.deploy.plugins.module_utils._errors import InvalidInput

DEFAULT_BPFFS_ROOT = "/sys/fs/bpf/ebpf_deploy"
STATE_DIR = "/run/ebpf_deploy"

NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,200}$")
VERSION_RE = re.compile(r"^[0-9a-f]{12}$")
RESERVED_NAMES = frozenset({"maps", "links", "current", "previous", "progs"})
STAGING_PREFIX = "_staging-"
# An empty directory in every deployment directory this collection made: with a bpffs_root shared
# with other tools (/sys/fs/bpf), only a marked directory is removed or counted as a deployment.
# (The bpffs holds no regular files; a directory works on every kernel.) A directory made before
# the marker existed counts when it holds nothing but the layout above, and is marked on its next run.
MARKER = "_ebpf_deploy_marker"
REPLACED_DIR = "replaced"   # programs a pending switch took interfaces from (bpf_deployment's record)
_LINK_SAFE = re.compile(r"[A-Za-z0-9_-]")


def validate_name(value, what: str = "name") -> str:
    """A single bpffs path component: [A-Za-z0-9_-]+ (no dot: the bpffs refuses dots)."""
    if not isinstance(value, str) or not value:
        raise InvalidInput(f"{what} must be a non-empty string, got {value!r}")
    if value in (".", "..") or "/" in value:
        raise InvalidInput(f"{what} {value!r} would leave the pin directory")
    if not NAME_RE.match(value):
        raise InvalidInput(f"{what} {value!r} may only contain letters, digits, '_' and '-' "
                           "(the bpffs refuses '.' in names)")
    return value


def validate_deployment_name(value) -> str:
    name = validate_name(value, "deployment name")
    if name in RESERVED_NAMES or name.startswith(STAGING_PREFIX) or VERSION_RE.match(name):
        raise InvalidInput(f"deployment name {name!r} is reserved")
    return name


def validate_version(value) -> str:
    if not isinstance(value, str) or not VERSION_RE.match(value):
        raise InvalidInput(f"version must be 12 lowercase hex digits, got {value!r}")
    return value


def validate_path(value, what: str = "path") -> str:
    """A path option without a NUL byte: the kernel would read it only up to the NUL (a pin made
    elsewhere than asked), and Python refuses it with a traceback."""
    text = os.fspath(value) if value is not None else ""
    if "\0" in text:
        raise InvalidInput(f"{what} {text!r} contains a NUL byte")
    return text


def validate_root(root) -> Path:
    """An absolute bpffs directory without '..' components."""
    text = validate_path(root, "bpffs_root")
    if not text or not os.path.isabs(text):
        raise InvalidInput(f"bpffs_root must be an absolute path, got {text!r}")
    parts = Path(text).parts
    if ".." in parts:
        raise InvalidInput(f"bpffs_root {text!r} must not contain '..'")
    return Path(os.path.normpath(text))


def root_key(root) -> str:
    """A bpffs root as one file name, unambiguous: ``/sys/fs/bpf/x`` -> ``sys%2Ffs%2Fbpf%2Fx``."""
    return encode_component(os.path.normpath(os.fspath(root)).strip("/")) or "%2F"


def encode_component(value: str) -> str:
    """Percent-encode everything outside [A-Za-z0-9_-] (dots, '@', ':', '%' included)."""
    return "".join(ch if _LINK_SAFE.match(ch) else "".join(f"%{b:02X}" for b in ch.encode())
                   for ch in value)


def decode_component(value: str) -> str:
    out = bytearray()
    index = 0
    while index < len(value):
        if value[index] == "%" and re.fullmatch(r"[0-9A-Fa-f]{2}", value[index + 1:index + 3]):
            out.append(int(value[index + 1:index + 3], 16))
            index += 3
        else:
            out.extend(value[index].encode())
            index += 1
    return out.decode("utf-8", "replace")


def link_pin_name(ifname: str, netns: Optional[str] = None, kind: str = "xdp") -> str:
    """``eth0`` -> ``eth0:xdp``; ``eth0.100`` in netns ``lab1`` -> ``lab1@eth0%2E100:xdp``."""
    if not ifname or "/" in ifname or len(ifname) > 15:
        raise InvalidInput(f"interface name {ifname!r} is not a valid Linux interface name")
    if netns is not None and (not netns or "/" in netns or netns in (".", "..")):
        raise InvalidInput(f"netns name {netns!r} is not valid")
    validate_name(kind, "link kind")
    name = encode_component(ifname)
    if netns:
        name = f"{encode_component(netns)}@{name}"
    return f"{name}:{kind}"


def parse_link_pin_name(name: str) -> Tuple[Optional[str], str, str]:
    """Inverse of link_pin_name: (netns or None, ifname, kind)."""
    base, sep, kind = name.rpartition(":")
    if not sep:
        raise InvalidInput(f"{name!r} is not a link pin name")
    netns, at, ifname = base.rpartition("@")
    return (decode_component(netns) if at else None), decode_component(ifname), kind


def is_bpffs(path) -> bool:
    """True when ``path`` (or its nearest existing parent) is on a bpf filesystem."""
    probe = Path(path)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    best, fstype = "", ""
    try:
        with open("/proc/self/mounts", encoding="utf-8") as mounts:
            for line in mounts:
                fields = line.split()
                if len(fields) < 3:
                    continue
                mnt = fields[1].replace("\\040", " ")
                real = os.path.realpath(probe)
                if (real == mnt or real.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best):
                    best, fstype = mnt, fields[2]
    except OSError:
        return False
    return fstype == "bpf"


# --- files under /run/ebpf_deploy ------------------------------------------------------------------
def private_dir(path) -> Path:
    """``mkdir -p`` where every directory made is 0700 whatever the umask (/run is shared by every
    process of the host); a symlink or a file in the place of the directory is refused."""
    path = Path(path)
    missing = []
    probe = path
    while not os.path.lexists(probe) and probe != probe.parent:
        missing.append(probe)
        probe = probe.parent
    for directory in reversed(missing):
        try:
            os.mkdir(directory, 0o700)
        except FileExistsError:
            continue
        os.chmod(directory, 0o700)   # mkdir's mode is cut by the umask, chmod's is not
    if path.is_symlink() or not path.is_dir():
        raise InvalidInput(f"{path} is not a directory (a symlink or a file is in its place): nothing written")
    return path


def write_private_file(path: Path, text: str) -> None:
    """Write a record atomically: a unique temporary file made in the same directory (mkstemp:
    O_EXCL|O_NOFOLLOW, mode 0600, close-on-exec), renamed over ``path`` (which replaces a symlink
    there instead of writing through it)."""
    private_dir(path.parent)
    fd, tmp = tempfile.mkstemp(dir=str(path.parent), prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        with _suppress_missing():
            os.unlink(tmp)
        raise


def read_private_file(path: Path):
    """A JSON record, None when it is missing, unreadable, not JSON, or a symlink (not followed)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        with os.fdopen(fd, "rb") as handle:
            return json.loads(handle.read().decode("utf-8"))
    except (OSError, ValueError):
        return None


def _atomic_symlink(target: str, link: Path) -> None:
    """Point ``link`` at ``target`` atomically: a temporary symlink renamed over it."""
    tmp = link.with_name(f"{STAGING_PREFIX}ln-{os.getpid()}-{secrets.token_hex(3)}")
    os.symlink(target, tmp)
    try:
        os.rename(tmp, link)
    except OSError:
        with _suppress_missing():
            os.unlink(tmp)
        raise


class _suppress_missing:
    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        return exc_type is not None and issubclass(exc_type, FileNotFoundError)


def remove_tree(path: Path) -> bool:
    """Remove a pin directory (or a single pin); False when it was not there."""
    try:
        if path.is_symlink() or not path.is_dir():
            os.unlink(path)
        else:
            shutil.rmtree(path)
    except FileNotFoundError:
        return False
    return True


def list_tree(path: Path) -> List[str]:
    """Every path under ``path`` relative to it, sorted (a bpffs listing for comparisons)."""
    out = []
    if not path.exists():
        return out
    for dirpath, dirnames, filenames in os.walk(path):
        rel = os.path.relpath(dirpath, path)
        for entry in sorted(dirnames + filenames):
            out.append(os.path.normpath(os.path.join(rel, entry)))
    return sorted(out)


class Deployment:
    """One deployment's pins and version pointers under a bpffs root."""

    def __init__(self, root=DEFAULT_BPFFS_ROOT, name: str = "", *, state_dir=STATE_DIR) -> None:
        self.root = validate_root(root)
        self.name = validate_deployment_name(name)
        self.path = self.root / self.name
        self.state_dir = Path(state_dir)
        self._symlinks: Optional[bool] = None

    # ---- layout (pure)
    @property
    def maps_dir(self) -> Path:
        return self.path / "maps"

    @property
    def links_dir(self) -> Path:
        return self.path / "links"

    @property
    def meta_dir(self) -> Path:
        """This deployment's records under this root (another root's are beside it)."""
        return self.state_dir / self.name / root_key(self.root)

    @property
    def pointer_file(self) -> Path:
        """The fallback for current/previous when the bpffs holds no symlinks."""
        return self.meta_dir / "pointers.json"

    @property
    def _legacy_meta_dir(self) -> Path:
        return self.state_dir / self.name

    @property
    def _legacy_pointer_file(self) -> Path:
        return self.state_dir / f"{self.name}.json"

    def version_dir(self, version: str) -> Path:
        return self.path / validate_version(version)

    def progs_dir(self, version: str) -> Path:
        return self.version_dir(version) / "progs"

    def program_pin(self, program: str, version: Optional[str] = None) -> Path:
        version = version or self.current_version()
        if version is None:
            raise InvalidInput(f"deployment '{self.name}' has no current version")
        return self.progs_dir(version) / validate_name(program, "program name")

    def map_pin(self, map_name: str) -> Path:
        return self.maps_dir / validate_name(map_name, "map name")

    def version_map_pin(self, version: str, map_name: str) -> Path:
        """A map of one version only (a statically initialised PROG_ARRAY), gone with the version."""
        return self.version_dir(version) / "maps" / validate_name(map_name, "map name")

    def link_pin(self, ifname: str, netns: Optional[str] = None, kind: str = "xdp") -> Path:
        return self.links_dir / link_pin_name(ifname, netns, kind)

    def metadata_path(self, version: str) -> Path:
        return self.meta_dir / f"{validate_version(version)}.json"

    # ---- state read from the bpffs
    def exists(self) -> bool:
        return self.path.is_dir()

    def has_marker(self) -> bool:
        return (self.path / MARKER).is_dir() and not (self.path / MARKER).is_symlink()

    def foreign_entry(self) -> Optional[str]:
        """None when the directory is ours (marked, or absent, or nothing in it but our layout);
        else the first entry that no deployment of this collection holds."""
        if self.path.is_symlink() or (os.path.lexists(self.path) and not self.path.is_dir()):
            return self.name
        if not self.path.is_dir() or self.has_marker():
            return None
        for entry in sorted(self.path.iterdir()):
            name = entry.name
            if name in ("maps", "links", REPLACED_DIR) and entry.is_dir() and not entry.is_symlink():
                continue
            if name in ("current", "previous") and entry.is_symlink():
                continue
            if (VERSION_RE.match(name) or name.startswith(STAGING_PREFIX)) and entry.is_dir() \
                    and not entry.is_symlink():
                continue
            return name
        return None

    def is_ours(self) -> bool:
        return self.foreign_entry() is None

    def check_ours(self) -> None:
        """Refuse to touch a directory of the same name that another tool made under a shared root."""
        entry = self.foreign_entry()
        if entry is not None:
            what = ("is not a directory" if entry == self.name and not (self.path / entry).exists()
                    else f"has no {MARKER} marker and holds {entry!r}, which no deployment holds")
            raise InvalidInput(f"{self.path} was not made by ebpf.deploy (it {what}): left alone; "
                               "choose another name or bpffs_root", path=str(self.path))

    def mark(self) -> None:
        """Put the marker in (a deployment made before markers gets it on its next run)."""
        self.check_ours()
        if self.path.is_dir() and not self.has_marker():
            (self.path / MARKER).mkdir(exist_ok=True)

    def pinned_programs(self, version: str) -> Dict[str, Path]:
        progs = self.progs_dir(version)
        if not progs.is_dir():
            return {}
        return {entry.name: entry for entry in sorted(progs.iterdir()) if not entry.is_dir()}

    def pinned_maps(self) -> Dict[str, Path]:
        if not self.maps_dir.is_dir():
            return {}
        return {entry.name: entry for entry in sorted(self.maps_dir.iterdir())
                if not entry.name.startswith(STAGING_PREFIX)}

    def pinned_versions(self) -> List[str]:
        if not self.path.is_dir():
            return []
        return [entry.name for entry in self.path.iterdir()
                if VERSION_RE.match(entry.name) and entry.is_dir() and not entry.is_symlink()]

    def supports_symlinks(self) -> bool:
        """Probe once whether the bpffs takes symlink + rename (kernels since 4.x do)."""
        if self._symlinks is None:
            self.path.mkdir(parents=True, exist_ok=True)
            probe = self.path / f"{STAGING_PREFIX}probe-{os.getpid()}-{secrets.token_hex(3)}"
            try:
                os.symlink("probe", probe)
                os.rename(probe, probe.with_name(probe.name + "r"))
                os.unlink(probe.with_name(probe.name + "r"))
                self._symlinks = True
            except OSError:
                with _suppress_missing():
                    os.unlink(probe)
                self._symlinks = False
        return self._symlinks

    def _read_pointer(self, which: str) -> Optional[str]:
        link = self.path / which
        if link.is_symlink():
            target = os.readlink(link)
            return target if VERSION_RE.match(target) and (self.path / target).is_dir() else None
        data = self._read_json(self.pointer_file) or self._read_json(self._legacy_pointer_file)
        value = data.get(which) if data.get("bpffs_root") == str(self.root) else None
        # the file alone is not trusted: the version must still be pinned
        return value if isinstance(value, str) and VERSION_RE.match(value) and (self.path / value).is_dir() else None

    def current_version(self) -> Optional[str]:
        return self._read_pointer("current")

    def previous_version(self) -> Optional[str]:
        previous = self._read_pointer("previous")
        return previous if previous != self.current_version() else None

    def _read_json(self, path: Path) -> dict:
        """A record of this root ({} when missing, unreadable, not ours, or a symlink)."""
        data = read_private_file(path)
        return data if isinstance(data, dict) and data.get("bpffs_root") == str(self.root) else {}

    def read_metadata(self, version: str) -> dict:
        """This version's metadata, or {} when it is missing or belongs to another bpffs root."""
        return (self._read_json(self.metadata_path(version))
                or self._read_json(self._legacy_meta_dir / f"{validate_version(version)}.json"))

    def _drop_legacy(self, path: Path) -> None:
        """Remove a record of the layout before roots, if it is this root's."""
        if self._read_json(path):
            with _suppress_missing():
                os.unlink(path)

    def _sort_key(self, version: str, field: str) -> Tuple[float, str]:
        meta = self.read_metadata(version)
        stamp = meta.get(field) or meta.get("deployed_at_epoch")
        if not isinstance(stamp, (int, float)):
            try:
                stamp = (self.path / version).stat().st_mtime
            except OSError:
                stamp = 0.0
        return float(stamp), version

    def versions(self) -> List[str]:
        """Pinned versions, oldest deployed first (metadata deployed_at, else directory mtime)."""
        return sorted(self.pinned_versions(), key=lambda v: self._sort_key(v, "deployed_at_epoch"))

    def versions_by_activation(self) -> List[str]:
        """Pinned versions, least recently made current first."""
        return sorted(self.pinned_versions(), key=lambda v: self._sort_key(v, "activated_at_epoch"))

    # ---- changes
    def write_metadata(self, version: str, data: dict) -> None:
        payload = dict(data, bpffs_root=str(self.root), deployment=self.name, version=version)
        write_private_file(self.metadata_path(version), json.dumps(payload, indent=2, sort_keys=True) + "\n")

    def touch_activation(self, version: str) -> None:
        meta = self.read_metadata(version)
        now = time.time()
        meta.setdefault("deployed_at_epoch", now)
        meta["activated_at_epoch"] = now
        self.write_metadata(version, meta)

    def set_current(self, version: str) -> Optional[str]:
        """Make ``version`` current (previous := the old current). Returns the old current."""
        validate_version(version)
        if not (self.path / version).is_dir():
            raise InvalidInput(f"version {version} of deployment '{self.name}' is not pinned")
        self.mark()
        old = self.current_version()
        if old == version:
            return old
        if self.supports_symlinks():
            if old:
                _atomic_symlink(old, self.path / "previous")
            _atomic_symlink(version, self.path / "current")
        else:
            data = {"bpffs_root": str(self.root), "current": version, "previous": old}
            write_private_file(self.pointer_file, json.dumps(data) + "\n")
            self._drop_legacy(self._legacy_pointer_file)
        self.touch_activation(version)
        return old

    def _clear_pointer(self, which: str) -> None:
        link = self.path / which
        if link.is_symlink():
            os.unlink(link)
        elif self.pointer_file.exists() or self._read_json(self._legacy_pointer_file):
            data = self._read_json(self.pointer_file) or self._read_json(self._legacy_pointer_file)
            data[which] = None
            write_private_file(self.pointer_file, json.dumps(data) + "\n")
            self._drop_legacy(self._legacy_pointer_file)

    def remove_version(self, version: str) -> bool:
        """Unpin one version (never the current one) and drop its metadata."""
        validate_version(version)
        if version == self.current_version():
            raise InvalidInput(f"version {version} is current in deployment '{self.name}'; "
                               "switch to another version before removing it")
        removed = remove_tree(self.path / version)
        with _suppress_missing():
            os.unlink(self.metadata_path(version))
        self._drop_legacy(self._legacy_meta_dir / f"{version}.json")
        if self._read_pointer("previous") is None and (self.path / "previous").is_symlink():
            self._clear_pointer("previous")
        return removed

    def remove_all(self) -> bool:
        """Unpin everything of this deployment and drop its /run state. False if nothing was there."""
        self.check_ours()
        removed = remove_tree(self.path)
        if self.meta_dir.is_dir():
            shutil.rmtree(self.meta_dir, ignore_errors=True)
            removed = True
        legacy = self._legacy_meta_dir
        for old in sorted(legacy.glob("*.json")) if legacy.is_dir() and not legacy.is_symlink() else []:
            if self._read_json(old):
                os.unlink(old)
                removed = True
        if self._read_json(self._legacy_pointer_file):
            os.unlink(self._legacy_pointer_file)
            removed = True
        with contextlib.suppress(OSError):   # another root's records may still be in there
            legacy.rmdir()
        return removed

    def new_staging_dir(self) -> Path:
        """A fresh, uniquely named directory inside the deployment for pins before rename."""
        self.check_ours()
        self.path.mkdir(parents=True, exist_ok=True)
        staging = self.path / f"{STAGING_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
        staging.mkdir()
        return staging

    def staging_dirs(self) -> List[Path]:
        """Leftover staging directories (from a run that was killed)."""
        if not self.path.is_dir():
            return []
        return [entry for entry in self.path.iterdir() if entry.name.startswith(STAGING_PREFIX)]
