# -*- coding: utf-8 -*-
# Copyright: contributors to ebpf.deploy
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private to ebpf.deploy: gather the ``ebpf`` facts, one function per subset (read-only).

===========  ==================================================================================
subset       what
===========  ==================================================================================
kernel       release, BTF, JIT enable/harden/kallsyms, bpffs mounts, unprivileged BPF, lockdown,
             bpf_stats_enabled, boot id
features     program/map types and helpers per program type (_features, cached per boot)
programs     every loaded program (ids are global on the host: lab hosts share the kernel), its
             pins and the ebpf.deploy deployment/version they put it in
maps         every map, likewise
links        every bpf_link, likewise
xdp          per interface (root netns + xdp_netns): the XDP program id and mode (_netlink)
interfaces   per interface: rx/tx packets and bytes, drops, XDP counters from ethtool stats
limits       memlock, memory cgroup, MemAvailable, the kernel's fixed limits (_limits)
dmesg        BPF/XDP kernel lines since a cursor, and the new cursor (_dmesg)
record       the host's record (_record) of the deployments under bpffs_root: committed, pending
             with its deadline, history; and the last restore at boot (restore.json)
===========  ==================================================================================

Pins are found by walking every bpf filesystem mounted (``/proc/self/mounts``), opening each pin
(``bpf_obj_get``) and matching the object's id. The ebpf.deploy layout under ``bpffs_root``
(see _pins) says which deployment and version a pin belongs to.

No Ansible here: libbpf through _libbpf, netlink through _netlink; the ethtool statistics ioctl is
read here with the standard library.
"""
from __future__ import annotations

import array
import ctypes
import fcntl
import os
import socket
import struct
import time
from typing import Iterable, Optional

from ansible_collections.ebpf.deploy.plugins.module_utils._errors import InvalidInput, SyscallError
from ansible_collections.ebpf.deploy.plugins.module_utils._procfs import read_fdinfo, read_int, read_text

SUBSETS = ("kernel", "features", "programs", "maps", "links", "xdp", "interfaces", "limits", "dmesg", "record")
DEFAULT_SUBSETS = tuple(s for s in SUBSETS if s != "features")
MAX_PINS = 20000


def resolve_subsets(requested: Optional[Iterable[str]]) -> list:
    """``[all, '!dmesg']`` → the subsets in canonical order; default: all but features."""
    requested = list(requested or [])
    if not requested:
        return list(DEFAULT_SUBSETS)
    chosen: set = set()
    excluded: set = set()
    positive = False
    for item in requested:
        name = str(item).strip()
        negate = name.startswith("!")
        name = name[1:] if negate else name
        if name not in SUBSETS and name not in ("all", "min"):
            raise InvalidInput(f"gather_subset: unknown subset {name!r}; choose from all, min, "
                               + ", ".join(SUBSETS))
        names = set(SUBSETS) if name == "all" else ({"kernel"} if name == "min" else {name})
        if negate:
            excluded |= names
        else:
            positive = True
            chosen |= names
    if not positive:
        chosen = set(DEFAULT_SUBSETS)
    return [s for s in SUBSETS if s in chosen and s not in excluded]


def parse_lockdown(text: Optional[str]) -> Optional[str]:
    """``none [integrity] confidentiality`` → ``integrity``."""
    if not text:
        return None
    for word in text.split():
        if word.startswith("[") and word.endswith("]"):
            return word[1:-1]
    return text


def bpffs_mounts(mounts_text: Optional[str] = None) -> list:
    """Mount points of every bpf filesystem, in /proc/self/mounts order."""
    if mounts_text is None:
        mounts_text = read_text("/proc/self/mounts") or ""
    out = []
    for line in mounts_text.splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[2] == "bpf":
            path = fields[1].replace("\\040", " ")
            if path not in out:
                out.append(path)
    return out


def _boot_epoch() -> float:
    """Wall-clock time of boot, to turn load_time (ns since boot) into an epoch like bpftool."""
    return time.time() - time.clock_gettime(time.CLOCK_BOOTTIME)


# --- kernel --------------------------------------------------------------------------------------
def gather_kernel() -> dict:
    uname = os.uname()
    lockdown_raw = read_text("/sys/kernel/security/lockdown")
    return {
        "release": uname.release,
        "version": uname.version,
        "machine": uname.machine,
        "boot_id": read_text("/proc/sys/kernel/random/boot_id"),
        "btf": os.path.exists("/sys/kernel/btf/vmlinux"),
        "jit_enable": read_int("/proc/sys/net/core/bpf_jit_enable"),
        "jit_harden": read_int("/proc/sys/net/core/bpf_jit_harden"),
        "jit_kallsyms": read_int("/proc/sys/net/core/bpf_jit_kallsyms"),
        "jit_limit": read_int("/proc/sys/net/core/bpf_jit_limit"),
        "unprivileged_bpf_disabled": read_int("/proc/sys/kernel/unprivileged_bpf_disabled"),
        "bpf_stats_enabled": bool(read_int("/proc/sys/kernel/bpf_stats_enabled")),
        "lockdown": parse_lockdown(lockdown_raw) if lockdown_raw is not None else None,
        "bpffs": bpffs_mounts(),
        "tracefs": _mounts_of_type("tracefs"),
    }


def _mounts_of_type(fstype: str) -> list:
    out = []
    for line in (read_text("/proc/self/mounts") or "").splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[2] == fstype:
            out.append(fields[1])
    return out


# --- pins and the deployment layout -----------------------------------------------------------------
def walk_pins(roots: Iterable[str], *, limit: int = MAX_PINS) -> list:
    """Every pin (regular file, not symlink) under the given bpffs mount points."""
    pins = []
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for name in sorted(filenames):
                path = os.path.join(dirpath, name)
                if not os.path.islink(path):
                    pins.append(path)
                    if len(pins) >= limit:
                        return pins
    return pins


def pin_index(pins: Iterable[str], libbpf) -> dict:
    """{("prog"|"map"|"link", id): [pin paths]} by opening each pin."""
    index: dict = {}
    for path in pins:
        try:
            fd = libbpf.obj_get(path)
        except Exception:  # noqa: BLE001 - a pin we may not open (permissions, races) is skipped
            continue
        try:
            kind = libbpf.fd_kind(fd)
            if kind == "prog":
                obj_id = libbpf.prog_info(fd).id
            elif kind == "map":
                obj_id = libbpf.map_info(fd).id
            elif kind == "link":
                obj_id = libbpf.link_info(fd).id
            else:
                continue
            index.setdefault((kind, obj_id), []).append(path)
        except Exception:  # noqa: BLE001 - an object that vanished meanwhile
            continue
        finally:
            os.close(fd)
    return index


def classify_pin(path: str, bpffs_root: str) -> Optional[dict]:
    """Where a pin sits in the ebpf.deploy layout: {deployment, kind, version?, name, ...} or None."""
    from ansible_collections.ebpf.deploy.plugins.module_utils import _pins

    root = os.path.normpath(bpffs_root)
    if not path.startswith(root.rstrip("/") + "/"):
        return None
    parts = os.path.relpath(path, root).split(os.sep)
    if not parts or parts[0].startswith(_pins.STAGING_PREFIX):
        return None
    if len(parts) == 3 and parts[1] == "maps":
        return {"deployment": parts[0], "kind": "map", "name": parts[2]}
    if len(parts) == 4 and _pins.VERSION_RE.match(parts[1]) and parts[2] == "progs":
        return {"deployment": parts[0], "kind": "prog", "version": parts[1], "name": parts[3]}
    if len(parts) == 3 and parts[1] == "links":
        try:
            netns, ifname, kind = _pins.parse_link_pin_name(parts[2])
        except InvalidInput:
            return {"deployment": parts[0], "kind": "link", "name": parts[2]}
        if kind not in _INTERFACE_HOOKS and not kind.startswith(("tcx_", "tc_")):
            return {"deployment": parts[0], "kind": "link", "name": parts[2], "hook": kind}
        return {"deployment": parts[0], "kind": "link", "name": parts[2], "interface": ifname,
                "netns": netns, "hook": kind}
    return None


_INTERFACE_HOOKS = ("xdp",)   # with tcx_* and tc_*: the hooks whose link pin names an interface


def _deployment_pointers(bpffs_root: str, name: str) -> dict:
    from ansible_collections.ebpf.deploy.plugins.module_utils import _pins

    try:
        dep = _pins.Deployment(bpffs_root, name)
    except InvalidInput:
        return {"current": None, "previous": None}
    return {"current": dep.current_version(), "previous": dep.previous_version()}


# --- programs, maps, links ---------------------------------------------------------------------------
def gather_objects(subsets: list, *, bpffs_root: str, libbpf=None) -> dict:
    """programs/maps/links (those asked for) and the deployments they belong to."""
    if libbpf is None:
        from ansible_collections.ebpf.deploy.plugins.module_utils import _libbpf as libbpf
    index = pin_index(walk_pins(bpffs_mounts()), libbpf)
    placement = {}
    for (kind, obj_id), paths in index.items():
        for path in paths:
            place = classify_pin(path, bpffs_root)
            if place:
                placement.setdefault((kind, obj_id), []).append(dict(place, pin=path))
    boot = _boot_epoch()
    out: dict = {}
    if "programs" in subsets:
        out["programs"] = [_program_fact(i, index, placement, boot, libbpf) for i in list(libbpf.prog_ids())]
        out["programs"] = [p for p in out["programs"] if p]
    if "maps" in subsets:
        out["maps"] = [m for m in (_map_fact(i, index, placement, libbpf) for i in list(libbpf.map_ids())) if m]
    if "links" in subsets:
        out["links"] = [k for k in (_link_fact(i, index, placement, libbpf) for i in list(libbpf.link_ids())) if k]
    out["deployments"] = _deployments(placement, bpffs_root)
    if "links" in subsets:
        _add_attachments(out["deployments"], out["links"])
        _add_tc_attachments(out["deployments"], bpffs_root)
    return out


def _add_tc_attachments(deployments: dict, bpffs_root: str) -> None:
    """tc filters have no link to pin: listed from what our runs noted, read back from the kernel."""
    from ansible_collections.ebpf.deploy.plugins.module_utils import _hook_tc  # pylint: disable=import-outside-toplevel
    for name, filters in _hook_tc.attachments(bpffs_root).items():
        if name in deployments:
            deployments[name].setdefault("attachments", {}).update(filters)


def _add_attachments(deployments: dict, links: list) -> None:
    """Per deployment, every pinned link under its links/ (every hook, XDP's too): {pin name: {hook,
    link_id, prog_id}}; prog_id None when the link is pinned but no longer in the kernel's list."""
    prog_of = {link["id"]: link.get("prog_id") for link in links}
    for dep in deployments.values():
        dep["attachments"] = {name: {"hook": name.rpartition(":")[2], "link_id": link_id,
                                     "prog_id": prog_of.get(link_id)}
                              for name, link_id in sorted(dep.get("links", {}).items())}


def _owner(places: list, kind: str) -> dict:
    """The deployment (and version) fields of a fact from its placements."""
    mine = [p for p in places if p["kind"] == kind]
    if not mine:
        return {"deployment": None}
    first = mine[0]
    out = {"deployment": first["deployment"]}
    if kind == "prog":
        out["version"] = first.get("version")
        out["program"] = first.get("name")
        out["versions"] = sorted({p["version"] for p in mine})
    return out


def _read_by_id(obj_id: int, open_by_id, read_info) -> Optional[tuple]:
    """(info, fdinfo) of a kernel object by id; None when it went away between listing and opening."""
    try:
        fd = open_by_id(obj_id)
    except SyscallError:
        return None
    try:
        return read_info(fd), read_fdinfo(fd)
    finally:
        os.close(fd)


def _program_fact(prog_id: int, index: dict, placement: dict, boot: float, libbpf) -> Optional[dict]:
    read = _read_by_id(prog_id, libbpf.prog_fd_by_id, libbpf.prog_info)
    if read is None:
        return None
    info, fdinfo = read
    fact = {
        "id": info.id, "name": info.name, "type": info.type_name, "tag": info.tag,
        "load_time_ns": info.load_time, "loaded_at": int(boot + info.load_time / 1e9),
        "uid": info.created_by_uid, "gpl_compatible": info.gpl_compatible,
        "verified_insns": info.verified_insns, "bytes_xlated": info.xlated_prog_len,
        "jited": info.jited_prog_len > 0, "bytes_jited": info.jited_prog_len,
        "bytes_memlock": _int_or_none(fdinfo.get("memlock")), "map_ids": list(info.map_ids),
        "btf_id": info.btf_id, "run_cnt": info.run_cnt, "run_time_ns": info.run_time_ns,
        "pins": index.get(("prog", prog_id), []),
    }
    fact.update(_owner(placement.get(("prog", prog_id), []), "prog"))
    return fact


def _map_fact(map_id: int, index: dict, placement: dict, libbpf) -> Optional[dict]:
    read = _read_by_id(map_id, libbpf.map_fd_by_id, libbpf.map_info)
    if read is None:
        return None
    info, fdinfo = read
    fact = {
        "id": info.id, "name": info.name, "type": info.type_name, "key_size": info.key_size,
        "value_size": info.value_size, "max_entries": info.max_entries, "flags": info.map_flags,
        "btf_id": info.btf_id, "bytes_memlock": _int_or_none(fdinfo.get("memlock")),
        "frozen": fdinfo.get("frozen") == "1", "pins": index.get(("map", map_id), []),
    }
    places = placement.get(("map", map_id), [])
    fact.update(_owner(places, "map"))
    return fact


def _link_fact(link_id: int, index: dict, placement: dict, libbpf) -> Optional[dict]:
    read = _read_by_id(link_id, libbpf.link_fd_by_id, libbpf.link_info)
    if read is None:
        return None
    info = read[0]
    fact = {"id": info.id, "type": info.type_name, "prog_id": info.prog_id, "ifindex": info.ifindex,
            "pins": index.get(("link", link_id), [])}
    places = [p for p in placement.get(("link", link_id), []) if p["kind"] == "link"]
    fact["deployment"] = places[0]["deployment"] if places else None
    if places and places[0].get("hook"):
        fact["hook"] = places[0]["hook"]
    if places and places[0].get("interface"):
        fact["interface"] = places[0]["interface"]
        fact["netns"] = places[0].get("netns")
    return fact


def _int_or_none(value: Optional[str]) -> Optional[int]:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _deployments(placement: dict, bpffs_root: str) -> dict:
    """{deployment: {current, previous, versions: {version: {program: id}}, maps, links}}."""
    out: dict = {}
    for (kind, obj_id), places in placement.items():
        for place in places:
            dep = out.setdefault(place["deployment"], {"versions": {}, "maps": {}, "links": {}})
            if kind == "prog" and place["kind"] == "prog":
                dep["versions"].setdefault(place["version"], {})[place["name"]] = obj_id
            elif kind == "map" and place["kind"] == "map":
                dep["maps"][place["name"]] = obj_id
            elif kind == "link" and place["kind"] == "link":
                dep["links"][place["name"]] = obj_id
    for name, dep in out.items():
        dep.update(_deployment_pointers(bpffs_root, name))
    return out


# --- xdp and interfaces ----------------------------------------------------------------------------
def _netns_list(xdp_netns: Iterable[str]) -> list:
    from ansible_collections.ebpf.deploy.plugins.module_utils import _netlink

    namespaces: list = [None]
    for name in xdp_netns or []:
        if not _netlink.netns_exists(name):
            raise InvalidInput(f"xdp_netns: network namespace {name!r} does not exist "
                               f"({_netlink.NETNS_RUN_DIR}/{name})")
        if name not in namespaces:
            namespaces.append(name)
    return namespaces


def gather_interfaces(subsets: list, *, xdp_netns: Iterable[str] = ()) -> dict:
    """``xdp`` and/or ``interfaces`` facts for the root netns and every named one."""
    from ansible_collections.ebpf.deploy.plugins.module_utils import _netlink

    xdp, interfaces = [], []
    for netns in _netns_list(xdp_netns):
        with _netlink.in_netns(netns):
            names = sorted(socket.if_nameindex())
        with _netlink.Netlink(netns) as nl:
            for ifindex, ifname in names:
                try:
                    state = nl.xdp_state(ifindex)
                    counters = nl.counters(ifindex) if "interfaces" in subsets else None
                except _netlink.NoSuchInterface:
                    continue  # went away meanwhile
                if "xdp" in subsets:
                    xdp.append({"interface": ifname, "netns": netns, "ifindex": ifindex,
                                "mode": state.mode, "prog_id": state.prog_id, "progs": dict(state.progs)})
                if counters is not None:
                    with _netlink.in_netns(netns):
                        ethtool = ethtool_stats(ifname)
                    xdp_stats = {k: v for k, v in ethtool.items() if "xdp" in k}
                    drops = [v for k, v in xdp_stats.items() if k.endswith("xdp_drops")]
                    interfaces.append(dict(counters, interface=ifname, netns=netns, ifindex=ifindex,
                                           xdp_drops=sum(drops) if drops else None, xdp_stats=xdp_stats))
    out = {}
    if "xdp" in subsets:
        out["xdp"] = xdp
    if "interfaces" in subsets:
        out["interfaces"] = interfaces
    return out


# ethtool statistics (include/uapi/linux/ethtool.h, sockios.h)
SIOCETHTOOL = 0x8946
ETHTOOL_GSTRINGS = 0x1B
ETHTOOL_GSTATS = 0x1D
ETHTOOL_GSSET_INFO = 0x37
ETH_SS_STATS = 1
ETH_GSTRING_LEN = 32


def _ethtool(sock: socket.socket, ifname: str, buf) -> None:
    addr = ctypes.addressof(buf)
    ifreq = struct.pack("16sP", ifname.encode()[:15], addr) + b"\0" * 16
    fcntl.ioctl(sock.fileno(), SIOCETHTOOL, ifreq)


def _headroom(count: int) -> int:
    """Room for more entries than asked: the kernel fills GSTRINGS/GSTATS with as many as the driver
    has *now* (it ignores the count in the request), and a driver's count can grow in between."""
    return count * 2 + 64


def ethtool_stats(ifname: str) -> dict:
    """The driver's ``ethtool -S`` counters ({} when it has none or refuses); current netns.

    Each reply is read with the count the kernel put in *that* reply's header (GSTRINGS ``len``,
    GSTATS ``n_stats``), in a buffer with headroom; if the two replies disagree (the driver's set
    changed between the calls), the read is done again, then given up.
    """
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for _attempt in range(3):
                info = ctypes.create_string_buffer(struct.pack("IIQI", ETHTOOL_GSSET_INFO, 0, 1 << ETH_SS_STATS, 0))
                _ethtool(sock, ifname, info)
                _cmd, _res, mask, count = struct.unpack("IIQI", info.raw[:20])
                if not mask & (1 << ETH_SS_STATS) or count <= 0 or count > 65536:
                    return {}
                room = _headroom(count)
                strings = ctypes.create_string_buffer(struct.pack("III", ETHTOOL_GSTRINGS, ETH_SS_STATS, count)
                                                      + b"\0" * (room * ETH_GSTRING_LEN))
                _ethtool(sock, ifname, strings)
                stats = ctypes.create_string_buffer(struct.pack("II", ETHTOOL_GSTATS, count) + b"\0" * (8 * room))
                _ethtool(sock, ifname, stats)
                (n_strings,) = struct.unpack_from("I", strings.raw, 8)
                (n_stats,) = struct.unpack_from("I", stats.raw, 4)
                if n_strings == n_stats and 0 < n_stats <= room:
                    break
            else:
                return {}
    except OSError:
        return {}
    names = [strings.raw[12 + i * ETH_GSTRING_LEN:12 + (i + 1) * ETH_GSTRING_LEN].split(b"\0", 1)[0]
             .decode("ascii", "replace") for i in range(n_stats)]
    values = array.array("Q", stats.raw[8:8 + 8 * n_stats])
    return dict(zip(names, (int(v) for v in values)))


# --- everything ------------------------------------------------------------------------------------
def count_runs_for(seconds: float) -> None:
    """Keep the kernel's program statistics on for `seconds` (BPF_ENABLE_STATS).

    The kernel counts run_cnt/run_time_ns only while someone holds a stats fd, and stops as soon as
    the last one is closed, so nothing stays enabled after the module (unlike the sysctl).
    """
    from ansible_collections.ebpf.deploy.plugins.module_utils import _libbpf

    with _libbpf.closing_fd(_libbpf.enable_stats()):
        time.sleep(seconds)


def gather_record(*, bpffs_root: str, state_dir: str) -> dict:
    """Each recorded deployment of this bpffs root (a damaged record is reported, not raised) and
    the last restore at boot."""
    from ansible_collections.ebpf.deploy.plugins.module_utils import _record  # pylint: disable=import-outside-toplevel
    deployments = {}
    for rec in _record.all_records(state_dir):
        if rec.bpffs_root != os.path.normpath(bpffs_root):
            continue
        try:
            deployments[rec.name] = _record.summary(rec.state())
        except InvalidInput as err:
            deployments[rec.name] = {"error": err.msg}
    return {"state_dir": state_dir, "deployments": deployments, "last_restore": _record.read_restore_report(state_dir)}


def gather(subsets: list, *, bpffs_root: str, xdp_netns: Iterable[str] = (), dmesg_since: Optional[int] = None,
           refresh_features: bool = False, stats_seconds: float = 0,
           state_dir: str = "/var/lib/ebpf_deploy") -> dict:
    """The ``ebpf`` facts for the resolved subsets, after counting program runs for stats_seconds."""
    if stats_seconds < 0:
        raise InvalidInput(f"stats_seconds must be 0 or more, got {stats_seconds}")
    if stats_seconds:
        count_runs_for(stats_seconds)
    facts: dict = {"gather_subset": list(subsets)}
    if "kernel" in subsets:
        facts["kernel"] = gather_kernel()
    if "features" in subsets:
        from ansible_collections.ebpf.deploy.plugins.module_utils import _features
        facts["features"] = _features.as_facts(_features.features(refresh=refresh_features))
    if {"programs", "maps", "links"} & set(subsets):
        facts.update(gather_objects(subsets, bpffs_root=bpffs_root))
    if {"xdp", "interfaces"} & set(subsets):
        facts.update(gather_interfaces(subsets, xdp_netns=xdp_netns))
    # the limits and dmesg subsets import their files only when asked for (a health check's run
    # of programs/maps/xdp does not compile them)
    if "limits" in subsets:
        from ansible_collections.ebpf.deploy.plugins.module_utils import _limits  # pylint: disable=import-outside-toplevel
        facts["limits"] = _limits.host_limits()
    if "record" in subsets:
        facts["record"] = gather_record(bpffs_root=bpffs_root, state_dir=state_dir)
    if "dmesg" in subsets:
        from ansible_collections.ebpf.deploy.plugins.module_utils import _dmesg  # pylint: disable=import-outside-toplevel
        try:
            window = _dmesg.read_kmsg(dmesg_since)
        except OSError as exc:
            raise SyscallError("read", exc.errno or 5, _dmesg.KMSG,
                               detail="reading the kernel log needs CAP_SYSLOG (or root)") from None
        facts["dmesg"] = window.to_dict()
        facts["dmesg_cursor"] = window.cursor
    return facts
