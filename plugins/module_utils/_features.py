# -*- coding: utf-8 -*-
# Copyright: contributors to ebpf.deploy
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private to ebpf.deploy: what this kernel offers BPF, probed with libbpf and cached per boot.

Program types (libbpf_probe_bpf_prog_type), map types (libbpf_probe_bpf_map_type) and, for each
available program type, the helpers it may call. Helpers are probed like libbpf's
libbpf_probe_bpf_helper does (load ``call <id>; exit`` and read the verifier's answer), but here:
libbpf 1.1 only recognises the old "unknown func" wording, and kernels since 6.x say "program of
this type cannot use helper", so libbpf would report every helper as available. A type whose
trivial program (``r0 = 0; exit``) does not load cannot be probed and gets None. Probing loads tiny
programs and takes well under a second; the answer cannot change before a reboot, so it is kept in
``/run/ebpf_deploy/features-<boot_id>.json`` (boot id from /proc/sys/kernel/random/boot_id; /run is
emptied on reboot anyway) and files of other boots are removed when a new one is written.

A probe that cannot tell (libbpf answers EOPNOTSUPP for tracing/ext/lsm/struct_ops helpers) is
recorded as None, never as "absent".

No Ansible here; every kernel call goes through _libbpf.
"""
from __future__ import annotations

import json
import os
from typing import Optional

from ansible_collections.ebpf.deploy.plugins.module_utils._uapi import (
    ATTACH_TYPES, BPF_F_SLEEPABLE, HELPER_NAMES,
)

BOOT_ID_PATH = "/proc/sys/kernel/random/boot_id"
STATE_DIR = "/run/ebpf_deploy"
CACHE_FORMAT = 1


def helper_name(helper_id: int) -> str:
    """``6`` → ``bpf_trace_printk``; ``bpf_helper_<n>`` for ids newer than this table."""
    if 0 < helper_id < len(HELPER_NAMES):
        return "bpf_" + HELPER_NAMES[helper_id]
    return f"bpf_helper_{helper_id}"


def helper_label(helper_id: int) -> str:
    """``bpf_trace_printk#6``, as the verifier names a helper."""
    return f"{helper_name(helper_id)}#{helper_id}"


def boot_id(path: str = BOOT_ID_PATH) -> str:
    try:
        with open(path, encoding="ascii") as handle:
            return handle.read().strip()
    except OSError:
        return "unknown"


def cache_path(state_dir: str = STATE_DIR, boot: Optional[str] = None) -> str:
    return os.path.join(state_dir, f"features-{boot or boot_id()}.json")


# What a probe program needs to load for some types (as libbpf's probe_prog_load sets them):
# expected_attach_type (enum bpf_attach_type) and prog_flags.
_PROBE_ATTACH = {
    "cgroup_sock_addr": (ATTACH_TYPES["cgroup_inet4_connect"], 0),
    "cgroup_sockopt": (ATTACH_TYPES["cgroup_getsockopt"], 0),
    "sk_lookup": (ATTACH_TYPES["sk_lookup"], 0),
    "lirc_mode2": (ATTACH_TYPES["lirc_mode2"], 0),
    "syscall": (0, BPF_F_SLEEPABLE),
}
# Needs a BTF attach target: helper availability cannot be probed with a bare program.
_UNPROBEABLE = frozenset({"tracing", "ext", "lsm", "struct_ops"})
_HELPER_ABSENT = ("invalid func ", "unknown func ", "cannot use helper")
_EXIT_0 = bytes.fromhex("b700000000000000 9500000000000000")  # r0 = 0; exit


def _call_exit(helper_id: int) -> bytes:
    """call <helper_id>; exit (r0 is the helper's return value)."""
    return bytes.fromhex("85000000") + helper_id.to_bytes(4, "little") + bytes.fromhex("9500000000000000")


def helper_absent(log: str) -> bool:
    """Does a verifier log say the helper does not exist for this program type?"""
    return any(marker in log for marker in _HELPER_ABSENT)


def probe_helpers(libbpf, prog_type: int, type_name: str) -> Optional[list]:
    """Helper ids a program of this type may call, or None when this type cannot be probed."""
    if type_name in _UNPROBEABLE:
        return None
    attach, flags = _PROBE_ATTACH.get(type_name, (0, 0))
    fd, _err, _log = libbpf.prog_load_raw(prog_type, _EXIT_0, expected_attach_type=attach,
                                          prog_flags=flags, log_level=0, log_size=16)
    if fd < 0:
        return None
    os.close(fd)
    found = []
    for helper_id in range(1, len(HELPER_NAMES)):
        fd, _err, log = libbpf.prog_load_raw(prog_type, _call_exit(helper_id), expected_attach_type=attach,
                                             prog_flags=flags, log_size=4096)
        if fd >= 0:
            os.close(fd)
            found.append(helper_id)
        elif not helper_absent(log):
            found.append(helper_id)  # refused for another reason (arguments): the helper exists
    return found


def probe_all(libbpf) -> dict:
    """Run every probe now. ``libbpf`` is the _libbpf module (or a stand-in in tests)."""
    prog_types = libbpf.prog_type_names()
    map_types = libbpf.map_type_names()
    progs = {name: libbpf.probe_prog_type(num) for num, name in prog_types.items()}
    maps = {name: libbpf.probe_map_type(num) for num, name in map_types.items()}
    helpers = {name: probe_helpers(libbpf, num, name)
               for num, name in prog_types.items() if progs.get(name)}
    return {
        "format": CACHE_FORMAT,
        "kernel_release": os.uname().release,
        "program_type_ids": {name: num for num, name in prog_types.items()},
        "map_type_ids": {name: num for num, name in map_types.items()},
        "program_types": progs,
        "map_types": maps,
        "helper_ids": helpers,
    }


def _read_cache(path: str) -> Optional[dict]:
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("format") != CACHE_FORMAT:
        return None
    if data.get("kernel_release") != os.uname().release:
        return None
    return data


def _write_cache(path: str, data: dict) -> bool:
    """Write atomically; drop other boots' files. False when /run is not writable (no cache)."""
    directory = os.path.dirname(path)
    try:
        os.makedirs(directory, mode=0o755, exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(data, handle, sort_keys=True)
        os.replace(tmp, path)
        for entry in os.listdir(directory):
            if entry.startswith("features-") and entry.endswith(".json") and entry != os.path.basename(path):
                os.unlink(os.path.join(directory, entry))
    except OSError:
        return False
    return True


def features(*, refresh: bool = False, state_dir: str = STATE_DIR, libbpf=None) -> dict:
    """The probed features, from this boot's cache unless ``refresh``; adds ``cached``/``boot_id``."""
    if libbpf is None:
        from ansible_collections.ebpf.deploy.plugins.module_utils import _libbpf as libbpf
    boot = boot_id()
    path = cache_path(state_dir, boot)
    data = None if refresh else _read_cache(path)
    cached = data is not None
    if data is None:
        data = probe_all(libbpf)
        data["boot_id"] = boot
        _write_cache(path, data)
    return dict(data, cached=cached, boot_id=boot, cache_file=path)


def as_facts(data: dict) -> dict:
    """The ``features`` facts: type availability and helper names per program type."""
    helpers = {}
    for prog_type, ids in data["helper_ids"].items():
        helpers[prog_type] = None if ids is None else [helper_name(i) for i in ids]
    return {
        "program_types": data["program_types"],
        "map_types": data["map_types"],
        "helpers": helpers,
        "boot_id": data.get("boot_id"),
        "cached": data.get("cached", False),
        "cache_file": data.get("cache_file"),
    }


class HostFeatures:
    """The questions preflight asks, answered from a features() dict (or a fake one in tests)."""

    def __init__(self, data: dict):
        self.data = data
        self._type_by_id = {num: name for name, num in data.get("program_type_ids", {}).items()}

    def prog_type_name(self, prog_type: int) -> str:
        return self._type_by_id.get(prog_type, f"type_{prog_type}")

    def has_prog_type(self, prog_type: int) -> Optional[bool]:
        """True/False, or None when the probe could not tell or libbpf does not know the type."""
        name = self._type_by_id.get(prog_type)
        return None if name is None else self.data["program_types"].get(name)

    def has_helper(self, prog_type: int, helper_id: int) -> Optional[bool]:
        name = self._type_by_id.get(prog_type)
        ids = self.data.get("helper_ids", {}).get(name) if name else None
        if ids is None:
            return None
        return helper_id in ids
