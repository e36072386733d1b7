# -*- coding: utf-8 -*-
# Copyright: contributors to ebpf.deploy
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private to ebpf.deploy: the one file that calls libbpf (ctypes, libbpf 1.1 signatures).

Two layers, both small and typed:

* ``BpfObject`` / ``BpfProgram`` / ``BpfMap``: open an ELF object without loading it, read its
  programs and maps, configure them (autoload, type, reuse of a pinned map), then load it with the
  verifier log of each program captured into its own buffer.
* fd-level calls: pin/get, object info (``ProgramInfo``/``MapInfo``/``LinkInfo``), id iteration,
  bpf_link create/update/detach, map element access (per-CPU aware), run-time stats.

Every failing call raises ``SyscallError`` naming the libbpf function and the errno. File
descriptors are plain ints; close them with ``close()`` (``os.close``) or ``closing_fd()``.
No Ansible here.
"""
from __future__ import annotations

import contextlib
import ctypes
import errno as _errno
import os
import re
import threading
from dataclasses import dataclass, field
from typing import Iterator, List, Optional, Tuple

from ansible_collections.ebpf.deploy.plugins.module_utils._errors import InvalidInput, SyscallError
from ansible_collections.ebpf.deploy.plugins.module_utils._procfs import read_fdinfo
from ansible_collections.ebpf.deploy.plugins.module_utils._uapi import (
    ATTACH_TYPES, BPF_ANY, BPF_F_REPLACE, BPF_LINK_CREATE, BPF_OBJ_NAME_LEN, BPF_PROG_QUERY, BPF_RAW_TRACEPOINT_OPEN,
    BPF_STATS_RUN_TIME, BPF_TAG_SIZE, LINK_TYPES, PERCPU_MAP_TYPES, PROG_TYPES,
)
# the hook families use these as self.lib.X (a fake lib in the unit tests)
from ansible_collections.ebpf.deploy.plugins.module_utils._uapi import (  # noqa: F401 pylint: disable=unused-import
    BPF_F_AFTER, BPF_F_BEFORE, BPF_F_ID,
)

LIBBPF_SONAME = "libbpf.so.1"

# The kernel's constants live in _uapi; these names are what callers (and their fakes) use here.
BPF_XDP = ATTACH_TYPES["xdp"]
BPF_PERF_EVENT = ATTACH_TYPES["perf_event"]
BPF_LINK_TYPE_XDP = LINK_TYPES["xdp"]
BPF_LINK_TYPE_TCX = LINK_TYPES["tcx"]
BPF_LINK_TYPE_NETKIT = LINK_TYPES["netkit"]
BPF_PROG_TYPE_UNSPEC = PROG_TYPES["unspec"]

# the ranges of the C integer arguments (ctypes keeps only the low bits of a bigger Python int)
U32_MAX = (1 << 32) - 1
U64_MAX = (1 << 64) - 1
S32_MIN, S32_MAX = -(1 << 31), (1 << 31) - 1

# libbpf print levels
LIBBPF_WARN, LIBBPF_INFO, LIBBPF_DEBUG = 0, 1, 2

DEFAULT_LOG_SIZE = 1 << 20          # enough for the level-1 log libbpf asks for after a failure
VERBOSE_LOG_SIZE = 16 << 20         # log_level >= 1 on success: the whole verifier trace


# --------------------------------------------------------------------------- ctypes structures
class _ObjectOpenOpts(ctypes.Structure):
    """struct bpf_object_open_opts (libbpf 1.1)."""
    _fields_ = [
        ("sz", ctypes.c_size_t),
        ("object_name", ctypes.c_char_p),
        ("relaxed_maps", ctypes.c_bool),
        ("pin_root_path", ctypes.c_char_p),
        ("_attach_prog_fd", ctypes.c_uint32),
        ("kconfig", ctypes.c_char_p),
        ("btf_custom_path", ctypes.c_char_p),
        ("kernel_log_buf", ctypes.c_void_p),
        ("kernel_log_size", ctypes.c_size_t),
        ("kernel_log_level", ctypes.c_uint32),
    ]


class _LinkCreateOpts(ctypes.Structure):
    """struct bpf_link_create_opts (libbpf 1.1); the union is spelled as kprobe_multi."""
    _fields_ = [
        ("sz", ctypes.c_size_t),
        ("flags", ctypes.c_uint32),
        ("iter_info", ctypes.c_void_p),
        ("iter_info_len", ctypes.c_uint32),
        ("target_btf_id", ctypes.c_uint32),
        ("u_flags", ctypes.c_uint32),
        ("u_cnt", ctypes.c_uint32),
        ("u_syms", ctypes.c_void_p),
        ("u_addrs", ctypes.c_void_p),
        ("u_cookies", ctypes.c_void_p),
    ]


class _LinkUpdateOpts(ctypes.Structure):
    """struct bpf_link_update_opts."""
    _fields_ = [("sz", ctypes.c_size_t), ("flags", ctypes.c_uint32), ("old_prog_fd", ctypes.c_uint32)]


class _BpfProgInfo(ctypes.Structure):
    """struct bpf_prog_info (uapi, up to attach_btf_id; the kernel fills what it knows)."""
    _fields_ = [
        ("type", ctypes.c_uint32),
        ("id", ctypes.c_uint32),
        ("tag", ctypes.c_uint8 * BPF_TAG_SIZE),
        ("jited_prog_len", ctypes.c_uint32),
        ("xlated_prog_len", ctypes.c_uint32),
        ("jited_prog_insns", ctypes.c_uint64),
        ("xlated_prog_insns", ctypes.c_uint64),
        ("load_time", ctypes.c_uint64),
        ("created_by_uid", ctypes.c_uint32),
        ("nr_map_ids", ctypes.c_uint32),
        ("map_ids", ctypes.c_uint64),
        ("name", ctypes.c_char * BPF_OBJ_NAME_LEN),
        ("ifindex", ctypes.c_uint32),
        ("gpl_compatible", ctypes.c_uint32),
        ("netns_dev", ctypes.c_uint64),
        ("netns_ino", ctypes.c_uint64),
        ("nr_jited_ksyms", ctypes.c_uint32),
        ("nr_jited_func_lens", ctypes.c_uint32),
        ("jited_ksyms", ctypes.c_uint64),
        ("jited_func_lens", ctypes.c_uint64),
        ("btf_id", ctypes.c_uint32),
        ("func_info_rec_size", ctypes.c_uint32),
        ("func_info", ctypes.c_uint64),
        ("nr_func_info", ctypes.c_uint32),
        ("nr_line_info", ctypes.c_uint32),
        ("line_info", ctypes.c_uint64),
        ("jited_line_info", ctypes.c_uint64),
        ("nr_jited_line_info", ctypes.c_uint32),
        ("line_info_rec_size", ctypes.c_uint32),
        ("jited_line_info_rec_size", ctypes.c_uint32),
        ("nr_prog_tags", ctypes.c_uint32),
        ("prog_tags", ctypes.c_uint64),
        ("run_time_ns", ctypes.c_uint64),
        ("run_cnt", ctypes.c_uint64),
        ("recursion_misses", ctypes.c_uint64),
        ("verified_insns", ctypes.c_uint32),
        ("attach_btf_obj_id", ctypes.c_uint32),
        ("attach_btf_id", ctypes.c_uint32),
        ("_pad", ctypes.c_uint32),
    ]


class _BpfMapInfo(ctypes.Structure):
    """struct bpf_map_info (uapi)."""
    _fields_ = [
        ("type", ctypes.c_uint32),
        ("id", ctypes.c_uint32),
        ("key_size", ctypes.c_uint32),
        ("value_size", ctypes.c_uint32),
        ("max_entries", ctypes.c_uint32),
        ("map_flags", ctypes.c_uint32),
        ("name", ctypes.c_char * BPF_OBJ_NAME_LEN),
        ("ifindex", ctypes.c_uint32),
        ("btf_vmlinux_value_type_id", ctypes.c_uint32),
        ("netns_dev", ctypes.c_uint64),
        ("netns_ino", ctypes.c_uint64),
        ("btf_id", ctypes.c_uint32),
        ("btf_key_type_id", ctypes.c_uint32),
        ("btf_value_type_id", ctypes.c_uint32),
        ("_pad", ctypes.c_uint32),
        ("map_extra", ctypes.c_uint64),
    ]


class _BpfLinkInfo(ctypes.Structure):
    """struct bpf_link_info (uapi): type, id, prog_id, then the per-type union (kept raw)."""
    _fields_ = [
        ("type", ctypes.c_uint32),
        ("id", ctypes.c_uint32),
        ("prog_id", ctypes.c_uint32),
        ("_pad", ctypes.c_uint32),
        ("u", ctypes.c_uint32 * 16),
    ]


# --------------------------------------------------------------------------- library loading
_LIB: Optional[ctypes.CDLL] = None
_LIB_LOCK = threading.Lock()
_PRINT_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)
_messages: List[Tuple[int, str]] = []
_print_cb = None  # keeps the ctypes callback alive


def _on_libbpf_print(level: int, fmt: bytes, args: int) -> int:
    """libbpf's print callback: format with vsnprintf and keep warnings/info for error messages."""
    if level > LIBBPF_INFO or fmt is None:
        return 0
    buf = ctypes.create_string_buffer(4096)
    _libc().vsnprintf(buf, len(buf), fmt, args)
    _messages.append((level, buf.value.decode("utf-8", "replace").rstrip("\n")))
    return 0


_LIBC: Optional[ctypes.CDLL] = None


def _libc() -> ctypes.CDLL:
    """The C library (vsnprintf, syscall), opened on first use: not every run calls it."""
    global _LIBC  # pylint: disable=global-statement
    if _LIBC is None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.vsnprintf.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_void_p]
        libc.vsnprintf.restype = ctypes.c_int
        libc.syscall.restype = ctypes.c_long
        _LIBC = libc
    return _LIBC


_SIGNATURES = {
    # name: (restype, argtypes)
    "bpf_object__open_mem": (ctypes.c_void_p, [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]),
    "bpf_object__open_file": (ctypes.c_void_p, [ctypes.c_char_p, ctypes.c_void_p]),
    "bpf_object__load": (ctypes.c_int, [ctypes.c_void_p]),
    "bpf_object__close": (None, [ctypes.c_void_p]),
    "bpf_object__name": (ctypes.c_char_p, [ctypes.c_void_p]),
    "bpf_object__next_program": (ctypes.c_void_p, [ctypes.c_void_p, ctypes.c_void_p]),
    "bpf_object__next_map": (ctypes.c_void_p, [ctypes.c_void_p, ctypes.c_void_p]),
    "bpf_object__find_map_by_name": (ctypes.c_void_p, [ctypes.c_void_p, ctypes.c_char_p]),
    "bpf_object__btf": (ctypes.c_void_p, [ctypes.c_void_p]),
    "btf__raw_data": (ctypes.c_void_p, [ctypes.c_void_p, ctypes.POINTER(ctypes.c_uint32)]),
    "bpf_program__name": (ctypes.c_char_p, [ctypes.c_void_p]),
    "bpf_program__section_name": (ctypes.c_char_p, [ctypes.c_void_p]),
    "bpf_program__autoload": (ctypes.c_bool, [ctypes.c_void_p]),
    "bpf_program__set_autoload": (ctypes.c_int, [ctypes.c_void_p, ctypes.c_bool]),
    "bpf_program__insn_cnt": (ctypes.c_size_t, [ctypes.c_void_p]),
    "bpf_program__fd": (ctypes.c_int, [ctypes.c_void_p]),
    "bpf_program__type": (ctypes.c_int, [ctypes.c_void_p]),
    "bpf_program__set_type": (ctypes.c_int, [ctypes.c_void_p, ctypes.c_int]),
    "bpf_program__expected_attach_type": (ctypes.c_int, [ctypes.c_void_p]),
    "bpf_program__set_expected_attach_type": (ctypes.c_int, [ctypes.c_void_p, ctypes.c_int]),
    "bpf_program__set_log_level": (ctypes.c_int, [ctypes.c_void_p, ctypes.c_uint32]),
    "bpf_program__set_log_buf": (ctypes.c_int, [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]),
    "bpf_program__set_attach_target": (ctypes.c_int, [ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p]),
    "bpf_map__name": (ctypes.c_char_p, [ctypes.c_void_p]),
    "bpf_map__type": (ctypes.c_int, [ctypes.c_void_p]),
    "bpf_map__key_size": (ctypes.c_uint32, [ctypes.c_void_p]),
    "bpf_map__value_size": (ctypes.c_uint32, [ctypes.c_void_p]),
    "bpf_map__max_entries": (ctypes.c_uint32, [ctypes.c_void_p]),
    "bpf_map__map_flags": (ctypes.c_uint32, [ctypes.c_void_p]),
    "bpf_map__is_internal": (ctypes.c_bool, [ctypes.c_void_p]),
    "bpf_map__fd": (ctypes.c_int, [ctypes.c_void_p]),
    "bpf_map__reuse_fd": (ctypes.c_int, [ctypes.c_void_p, ctypes.c_int]),
    "bpf_map__set_pin_path": (ctypes.c_int, [ctypes.c_void_p, ctypes.c_char_p]),
    "bpf_map__initial_value": (ctypes.c_void_p, [ctypes.c_void_p, ctypes.POINTER(ctypes.c_size_t)]),
    "bpf_map__set_initial_value": (ctypes.c_int, [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]),
    "libbpf_prog_type_by_name": (ctypes.c_int, [ctypes.c_char_p, ctypes.POINTER(ctypes.c_int),
                                                ctypes.POINTER(ctypes.c_int)]),
    "libbpf_bpf_prog_type_str": (ctypes.c_char_p, [ctypes.c_int]),
    "libbpf_bpf_map_type_str": (ctypes.c_char_p, [ctypes.c_int]),
    "libbpf_bpf_attach_type_str": (ctypes.c_char_p, [ctypes.c_int]),
    "libbpf_bpf_link_type_str": (ctypes.c_char_p, [ctypes.c_int]),
    "libbpf_num_possible_cpus": (ctypes.c_int, []),
    "libbpf_set_print": (ctypes.c_void_p, [_PRINT_FN]),
    "libbpf_strerror": (ctypes.c_int, [ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t]),
    "bpf_obj_pin": (ctypes.c_int, [ctypes.c_int, ctypes.c_char_p]),
    "bpf_obj_get": (ctypes.c_int, [ctypes.c_char_p]),
    "bpf_obj_get_info_by_fd": (ctypes.c_int, [ctypes.c_int, ctypes.c_void_p, ctypes.POINTER(ctypes.c_uint32)]),
    "bpf_prog_get_next_id": (ctypes.c_int, [ctypes.c_uint32, ctypes.POINTER(ctypes.c_uint32)]),
    "bpf_map_get_next_id": (ctypes.c_int, [ctypes.c_uint32, ctypes.POINTER(ctypes.c_uint32)]),
    "bpf_link_get_next_id": (ctypes.c_int, [ctypes.c_uint32, ctypes.POINTER(ctypes.c_uint32)]),
    "bpf_prog_get_fd_by_id": (ctypes.c_int, [ctypes.c_uint32]),
    "bpf_map_get_fd_by_id": (ctypes.c_int, [ctypes.c_uint32]),
    "bpf_link_get_fd_by_id": (ctypes.c_int, [ctypes.c_uint32]),
    "bpf_link_create": (ctypes.c_int, [ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_void_p]),
    "bpf_link_update": (ctypes.c_int, [ctypes.c_int, ctypes.c_int, ctypes.c_void_p]),
    "bpf_link_detach": (ctypes.c_int, [ctypes.c_int]),
    "bpf_map_lookup_elem": (ctypes.c_int, [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]),
    "bpf_map_lookup_elem_flags": (ctypes.c_int, [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint64]),
    "bpf_map_update_elem": (ctypes.c_int, [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint64]),
    "bpf_map_delete_elem": (ctypes.c_int, [ctypes.c_int, ctypes.c_void_p]),
    "bpf_map_get_next_key": (ctypes.c_int, [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]),
    "bpf_enable_stats": (ctypes.c_int, [ctypes.c_int]),
}


def lib() -> ctypes.CDLL:
    """The loaded libbpf with typed signatures; raises SyscallError(ENOENT) when it is missing."""
    global _LIB, _print_cb
    with _LIB_LOCK:
        if _LIB is None:
            try:
                handle = ctypes.CDLL(LIBBPF_SONAME, use_errno=True)
            except OSError as exc:
                raise SyscallError("dlopen", _errno.ENOENT, LIBBPF_SONAME,
                                   detail=f"{exc} (install libbpf1 >= 1.0)") from None
            for name, (restype, argtypes) in _SIGNATURES.items():
                func = getattr(handle, name)
                func.restype = restype
                func.argtypes = argtypes
            _print_cb = _PRINT_FN(_on_libbpf_print)
            handle.libbpf_set_print(_print_cb)
            _LIB = handle
    return _LIB


def available() -> bool:
    """True when libbpf.so.1 can be loaded."""
    try:
        lib()
    except SyscallError:
        return False
    return True


@contextlib.contextmanager
def captured_messages() -> Iterator[List[str]]:
    """Collect libbpf's warnings and info messages printed during the block."""
    start = len(_messages)
    out: List[str] = []
    try:
        yield out
    finally:
        out.extend(text for _level, text in _messages[start:])
        del _messages[start:]


def checked_int(value: int, what: str, *, low: int = 0, high: int = U32_MAX) -> int:
    """``value`` if it fits the C argument it is meant for, else InvalidInput naming ``what``.

    ctypes converts a Python int to c_uint32/c_int by keeping its low bits, silently:
    ``c_uint32(2**32 + 5)`` is 5, so an id or a size must be checked before it gets there.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"{what} must be an integer, got {value!r}")
    if not low <= value <= high:
        raise InvalidInput(f"{what} {value} is out of range ({low}..{high})")
    return value


def _check(ret: int, call: str, target: Optional[str] = None) -> int:
    """libbpf returns -errno (and sets errno): raise SyscallError naming the call."""
    if ret < 0:
        raise SyscallError(call, -ret, target)
    return ret


def _errno_now(default: int = _errno.EINVAL) -> int:
    return ctypes.get_errno() or default


def _text(value: Optional[bytes]) -> str:
    return value.decode("utf-8", "replace") if value else ""


def strerror(err: int) -> str:
    """libbpf_strerror: also knows libbpf's own codes (4000+, e.g. LIBBPF_ERRNO__FORMAT)."""
    buf = ctypes.create_string_buffer(256)
    lib().libbpf_strerror(abs(err), buf, len(buf))
    return _text(buf.value)


# --------------------------------------------------------------------------- type names
def prog_type_name(prog_type: int) -> str:
    """``6`` -> ``xdp`` (``type_<n>`` when libbpf does not know it)."""
    return _text(lib().libbpf_bpf_prog_type_str(prog_type)) or f"type_{prog_type}"


def map_type_name(map_type: int) -> str:
    """``2`` -> ``array``."""
    return _text(lib().libbpf_bpf_map_type_str(map_type)) or f"type_{map_type}"


def attach_type_name(attach_type: int) -> str:
    """``37`` -> ``xdp``."""
    return _text(lib().libbpf_bpf_attach_type_str(attach_type)) or f"type_{attach_type}"


def link_type_name(link_type: int) -> str:
    """``6`` -> ``xdp``."""
    return _text(lib().libbpf_bpf_link_type_str(link_type)) or f"type_{link_type}"


def prog_type_from_name(name: str) -> Tuple[int, int]:
    """A program type by its libbpf name (``xdp``, ``sched_cls``) or a section name (``tc``).

    Returns ``(prog_type, expected_attach_type)``; raises SyscallError(EINVAL) when unknown.
    """
    for value in range(1, 64):
        if _text(lib().libbpf_bpf_prog_type_str(value)) == name:
            return value, 0
    prog_type, attach_type = ctypes.c_int(0), ctypes.c_int(0)
    with captured_messages():
        ret = lib().libbpf_prog_type_by_name(name.encode(), ctypes.byref(prog_type), ctypes.byref(attach_type))
    if ret < 0:
        raise SyscallError("libbpf_prog_type_by_name", -ret, repr(name), detail="unknown program type")
    return prog_type.value, attach_type.value


def known_prog_type_names() -> List[str]:
    """Every program type name libbpf knows (for error messages and docs)."""
    names = []
    for value in range(1, 64):
        text = _text(lib().libbpf_bpf_prog_type_str(value))
        if text:
            names.append(text)
    return names


# --------------------------------------------------------------------------- object layer
class BpfProgram:
    """A program of an opened object: read its spec, configure it before load, fd after load."""

    def __init__(self, obj: "BpfObject", ptr: int) -> None:
        self._obj = obj
        self._ptr = ptr
        self._log_buf: Optional[ctypes.Array] = None

    @property
    def name(self) -> str:
        return _text(lib().bpf_program__name(self._ptr))

    @property
    def section(self) -> str:
        return _text(lib().bpf_program__section_name(self._ptr))

    @property
    def type(self) -> int:
        return lib().bpf_program__type(self._ptr)

    @property
    def type_name(self) -> str:
        return prog_type_name(self.type)

    @property
    def expected_attach_type(self) -> int:
        return lib().bpf_program__expected_attach_type(self._ptr)

    @property
    def insn_cnt(self) -> int:
        return lib().bpf_program__insn_cnt(self._ptr)

    @property
    def autoload(self) -> bool:
        return bool(lib().bpf_program__autoload(self._ptr))

    def set_autoload(self, autoload: bool) -> None:
        _check(lib().bpf_program__set_autoload(self._ptr, autoload), "bpf_program__set_autoload", self.name)

    def set_type(self, prog_type: int) -> None:
        _check(lib().bpf_program__set_type(self._ptr, prog_type), "bpf_program__set_type", self.name)

    def set_expected_attach_type(self, attach_type: int) -> None:
        _check(lib().bpf_program__set_expected_attach_type(self._ptr, attach_type),
               "bpf_program__set_expected_attach_type", self.name)

    def set_attach_target(self, attach_prog_fd: int) -> None:
        """An freplace (EXT) program replaces a function of the loaded program ``attach_prog_fd``;
        with no function name libbpf takes it from the section (``freplace/<function>``) at load.
        The fd must stay open until the object is loaded."""
        _check(lib().bpf_program__set_attach_target(self._ptr, attach_prog_fd, None),
               "bpf_program__set_attach_target", self.name)

    def _prepare_log(self, log_level: int, log_size: int) -> None:
        self._log_buf = ctypes.create_string_buffer(log_size)
        _check(lib().bpf_program__set_log_buf(self._ptr, self._log_buf, log_size),
               "bpf_program__set_log_buf", self.name)
        if log_level:
            _check(lib().bpf_program__set_log_level(self._ptr, log_level),
                   "bpf_program__set_log_level", self.name)

    @property
    def log(self) -> str:
        """The verifier log of the last load attempt ('' when none was requested or produced)."""
        if self._log_buf is None:
            return ""
        return self._log_buf.value.decode("utf-8", "replace")

    @property
    def fd(self) -> int:
        """The program fd after a successful load (owned by the object; do not close it)."""
        return _check(lib().bpf_program__fd(self._ptr), "bpf_program__fd", self.name)

    def __repr__(self) -> str:
        return f"BpfProgram({self.name!r}, section={self.section!r}, type={self.type_name!r})"


class BpfMap:
    """A map of an opened object: its spec, reuse of an existing map, fd after load."""

    def __init__(self, obj: "BpfObject", ptr: int) -> None:
        self._obj = obj
        self._ptr = ptr

    @property
    def name(self) -> str:
        return _text(lib().bpf_map__name(self._ptr))

    @property
    def type(self) -> int:
        return lib().bpf_map__type(self._ptr)

    @property
    def type_name(self) -> str:
        return map_type_name(self.type)

    @property
    def key_size(self) -> int:
        return lib().bpf_map__key_size(self._ptr)

    @property
    def value_size(self) -> int:
        return lib().bpf_map__value_size(self._ptr)

    @property
    def max_entries(self) -> int:
        return lib().bpf_map__max_entries(self._ptr)

    @property
    def map_flags(self) -> int:
        return lib().bpf_map__map_flags(self._ptr)

    @property
    def is_internal(self) -> bool:
        """True for .data/.bss/.rodata/.kconfig maps libbpf makes from global variables."""
        return bool(lib().bpf_map__is_internal(self._ptr))

    def reuse_fd(self, fd: int) -> None:
        """Use an existing map (e.g. from a pin) instead of creating one at load; libbpf dups fd."""
        _check(lib().bpf_map__reuse_fd(self._ptr, fd), "bpf_map__reuse_fd", self.name)

    def set_pin_path(self, path: Optional[str]) -> None:
        _check(lib().bpf_map__set_pin_path(self._ptr, path.encode() if path else None),
               "bpf_map__set_pin_path", self.name)

    def initial_value(self) -> Optional[bytes]:
        """What an internal map (.rodata, .data, .bss) will hold at load; None for other maps."""
        size = ctypes.c_size_t(0)
        ptr = lib().bpf_map__initial_value(self._ptr, ctypes.byref(size))
        return ctypes.string_at(ptr, size.value) if ptr else None

    def set_initial_value(self, data: bytes) -> None:
        """Replace an internal map's contents before load (the globals of its section)."""
        buf = ctypes.create_string_buffer(data, len(data))
        _check(lib().bpf_map__set_initial_value(self._ptr, buf, len(data)),
               "bpf_map__set_initial_value", self.name)

    @property
    def fd(self) -> int:
        """The map fd after load (owned by the object; do not close it)."""
        return _check(lib().bpf_map__fd(self._ptr), "bpf_map__fd", self.name)

    def __repr__(self) -> str:
        return f"BpfMap({self.name!r}, type={self.type_name!r})"


# what libbpf says about the program or map that failed (patterns: compiled on a failure only)
_FAILED_PROG = r"prog '([^']+)': (?:BPF program load failed|failed to load)"
_FAILED_MAP = r"map '([^']+)': (?:failed to create|failed to re-?use|can't reuse|failed)"


class ObjectOpenError(SyscallError):
    """bpf_object__open_* refused the ELF; ``reason`` is libbpf's own words (no kernel involved)."""

    def __init__(self, call: str, err: int, target: str, *, reason: str, messages: List[str]) -> None:
        self.reason = reason
        self.messages = messages
        super().__init__(call, err, target, detail=reason, libbpf_messages=messages)
        self.hint = ""
        self.msg = f"{call} failed for {target}: {reason}"


class ObjectLoadError(SyscallError):
    """bpf_object__load failed; says which program or map failed, with the verifier log."""

    def __init__(self, err: int, *, object_name: str, messages: List[str],
                 program: Optional[str] = None, map_name: Optional[str] = None,
                 verifier_log: str = "") -> None:
        self.program = program
        self.map_name = map_name
        self.verifier_log = verifier_log
        self.messages = messages
        if program:
            target = f"program '{program}'"
        elif map_name:
            target = f"map '{map_name}'"
        else:
            target = f"object '{object_name}'"
        syscall = "BPF_PROG_LOAD" if program else ("BPF_MAP_CREATE" if map_name else "bpf_object__load")
        detail = None
        if not program and not map_name and messages:
            detail = messages[-1].replace("libbpf: ", "")
        super().__init__(syscall, err, target, log=verifier_log, detail=detail,
                         libbpf_messages=messages)


class BpfObject:
    """An ELF object opened with libbpf. Use as a context manager; ``close()`` frees everything."""

    def __init__(self, ptr: int, name: str, keepalive: object = None) -> None:
        self._ptr: Optional[int] = ptr
        self.name = name
        self._keepalive = keepalive  # open_mem: libbpf reads the buffer until load
        self.loaded = False
        self.messages: List[str] = []
        self._programs = self._collect("bpf_object__next_program", BpfProgram)
        self._maps = self._collect("bpf_object__next_map", BpfMap)

    @classmethod
    def open(cls, data: Optional[bytes] = None, *, path: Optional[str] = None,
             name: str = "object") -> "BpfObject":
        """Open from bytes (``bpf_object__open_mem``) or a file, without loading anything."""
        if (data is None) == (path is None):
            raise ValueError("give exactly one of data or path")
        opts = _ObjectOpenOpts()
        opts.sz = ctypes.sizeof(_ObjectOpenOpts)
        opts.object_name = name.encode()
        keepalive = None
        with captured_messages() as messages:
            if data is not None:
                keepalive = ctypes.create_string_buffer(data, len(data))
                ptr = lib().bpf_object__open_mem(keepalive, len(data), ctypes.byref(opts))
                call = "bpf_object__open_mem"
            else:
                ptr = lib().bpf_object__open_file(c_path(path), ctypes.byref(opts))
                call = "bpf_object__open_file"
            err = _errno_now()
        if not ptr:
            reason = "; ".join(m.replace("libbpf: ", "") for m in messages[-2:]) or strerror(err)
            raise ObjectOpenError(call, err if err < 4000 else _errno.EINVAL, path or name,
                                  reason=reason, messages=messages)
        obj = cls(ptr, name, keepalive)
        obj.messages.extend(messages)
        return obj

    def _collect(self, iterator: str, wrapper) -> list:
        items, cur = [], None
        func = getattr(lib(), iterator)
        while True:
            cur = func(self._ptr, cur)
            if not cur:
                return items
            items.append(wrapper(self, cur))

    def programs(self) -> List[BpfProgram]:
        return list(self._programs)

    def maps(self) -> List[BpfMap]:
        return list(self._maps)

    def program(self, name: str) -> Optional[BpfProgram]:
        return next((p for p in self._programs if p.name == name), None)

    def map(self, name: str) -> Optional[BpfMap]:
        return next((m for m in self._maps if m.name == name), None)

    def section_map(self, section: str) -> Optional[BpfMap]:
        """The internal map libbpf made of an ELF data section (``.rodata``, ``.data.cfg``)."""
        ptr = lib().bpf_object__find_map_by_name(self._ptr, section.encode())
        return next((m for m in self._maps if m._ptr == ptr), None) if ptr else None

    def btf_raw(self) -> Optional[bytes]:
        """The object's BTF as libbpf holds it after open: DATASEC sizes and variable offsets
        filled in from the ELF symbols (clang leaves them 0). None when the object has no BTF."""
        btf = lib().bpf_object__btf(self._ptr)
        if not btf:
            return None
        size = ctypes.c_uint32(0)
        ptr = lib().btf__raw_data(btf, ctypes.byref(size))
        return ctypes.string_at(ptr, size.value) if ptr else None

    def load(self, *, log_level: int = 0, log_size: Optional[int] = None) -> None:
        """bpf_object__load with each program's verifier log in its own buffer.

        ``log_level`` 0 asks for no log; libbpf then retries a failing program at level 1 so the
        log of a rejection is always there. Raises ObjectLoadError naming the program or map.
        """
        if self._ptr is None:
            raise SyscallError("bpf_object__load", _errno.EBADF, f"object '{self.name}'")
        size = log_size or (VERBOSE_LOG_SIZE if log_level else DEFAULT_LOG_SIZE)
        for prog in self._programs:
            if prog.autoload:
                prog._prepare_log(log_level, size)
        with captured_messages() as messages:
            ret = lib().bpf_object__load(self._ptr)
        self.messages.extend(messages)
        if ret >= 0:
            self.loaded = True
            return
        err = -ret
        program = map_name = None
        for text in messages:
            match = re.search(_FAILED_PROG, text)
            if match and not program:
                program = match.group(1)
            match = re.search(_FAILED_MAP, text)
            if match and not map_name:
                map_name = match.group(1)
        log = ""
        if program and self.program(program) is not None:
            log = self.program(program).log
        raise ObjectLoadError(err, object_name=self.name, messages=messages, program=program,
                              map_name=None if program else map_name, verifier_log=log)

    def close(self) -> None:
        """Free the object: closes every program and map fd it owns (pins keep them alive)."""
        if self._ptr is not None:
            lib().bpf_object__close(self._ptr)
            self._ptr = None
            self._keepalive = None

    def __enter__(self) -> "BpfObject":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# --------------------------------------------------------------------------- fd-level calls
def close(fd: int) -> None:
    """Close a bpf fd."""
    os.close(fd)


@contextlib.contextmanager
def closing_fd(fd: int) -> Iterator[int]:
    """``with closing_fd(obj_get(path)) as fd: ...``"""
    try:
        yield fd
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)


def c_path(path) -> bytes:
    """A path as a C string; one with a NUL byte is refused (C would stop reading at the NUL)."""
    raw = os.fsencode(path)
    if b"\0" in raw:
        raise InvalidInput(f"path {os.fsdecode(raw)!r} contains a NUL byte")
    return raw


def obj_pin(fd: int, path: str) -> None:
    """Pin a program/map/link fd at a bpffs path."""
    _check(lib().bpf_obj_pin(fd, c_path(path)), "bpf_obj_pin", path)


def obj_get(path: str) -> int:
    """Open a pinned object; the caller owns (closes) the fd."""
    return _check(lib().bpf_obj_get(c_path(path)), "bpf_obj_get", path)


def fd_kind(fd: int) -> str:
    """``prog``, ``map``, ``link`` or ``other``: from /proc/self/fdinfo (works for any pin)."""
    info = read_fdinfo(fd)
    return next((kind for kind in ("link", "prog", "map") if f"{kind}_type" in info), "other")


def _get_info(fd: int, info: ctypes.Structure, call_target: str) -> None:
    length = ctypes.c_uint32(ctypes.sizeof(info))
    _check(lib().bpf_obj_get_info_by_fd(fd, ctypes.byref(info), ctypes.byref(length)),
           "bpf_obj_get_info_by_fd", call_target)


@dataclass(frozen=True)
class ProgramInfo:
    """What the kernel says about a loaded program (struct bpf_prog_info)."""
    id: int
    type: int
    type_name: str
    name: str
    tag: str
    verified_insns: int
    xlated_prog_len: int
    jited_prog_len: int
    map_ids: Tuple[int, ...]
    run_cnt: int
    run_time_ns: int
    load_time: int          # ns since boot
    created_by_uid: int
    btf_id: int
    gpl_compatible: bool
    ifindex: int

    def as_dict(self) -> dict:
        data = dict(self.__dict__)
        data["map_ids"] = list(self.map_ids)
        return data


@dataclass(frozen=True)
class MapInfo:
    """What the kernel says about a map (struct bpf_map_info)."""
    id: int
    type: int
    type_name: str
    name: str
    key_size: int
    value_size: int
    max_entries: int
    map_flags: int
    btf_id: int
    ifindex: int
    map_extra: int

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass(frozen=True)
class LinkInfo:
    """What the kernel says about a link (struct bpf_link_info); ifindex for xdp/tcx/netkit."""
    id: int
    type: int
    type_name: str
    prog_id: int
    ifindex: Optional[int] = None
    raw: Tuple[int, ...] = field(default=(), repr=False)

    def as_dict(self) -> dict:
        data = dict(self.__dict__)
        data.pop("raw", None)
        return data


def prog_info(fd: int) -> ProgramInfo:
    """bpf_obj_get_info_by_fd for a program, map ids included (two calls)."""
    info = _BpfProgInfo()
    _get_info(fd, info, f"prog fd {fd}")
    map_ids: Tuple[int, ...] = ()
    if info.nr_map_ids:
        count = info.nr_map_ids
        ids = (ctypes.c_uint32 * count)()
        info2 = _BpfProgInfo()
        info2.nr_map_ids = count
        info2.map_ids = ctypes.addressof(ids)
        _get_info(fd, info2, f"prog fd {fd}")
        map_ids = tuple(ids[: min(count, info2.nr_map_ids)])
    return ProgramInfo(
        id=info.id, type=info.type, type_name=prog_type_name(info.type),
        name=_text(info.name), tag=bytes(info.tag).hex(),
        verified_insns=info.verified_insns, xlated_prog_len=info.xlated_prog_len,
        jited_prog_len=info.jited_prog_len, map_ids=map_ids, run_cnt=info.run_cnt,
        run_time_ns=info.run_time_ns, load_time=info.load_time,
        created_by_uid=info.created_by_uid, btf_id=info.btf_id,
        gpl_compatible=bool(info.gpl_compatible & 1), ifindex=info.ifindex,
    )


def map_info(fd: int) -> MapInfo:
    """bpf_obj_get_info_by_fd for a map."""
    info = _BpfMapInfo()
    _get_info(fd, info, f"map fd {fd}")
    return MapInfo(
        id=info.id, type=info.type, type_name=map_type_name(info.type), name=_text(info.name),
        key_size=info.key_size, value_size=info.value_size, max_entries=info.max_entries,
        map_flags=info.map_flags, btf_id=info.btf_id, ifindex=info.ifindex, map_extra=info.map_extra,
    )


def link_info(fd: int) -> LinkInfo:
    """bpf_obj_get_info_by_fd for a link; ``ifindex`` is set for xdp, tcx and netkit links."""
    info = _BpfLinkInfo()
    _get_info(fd, info, f"link fd {fd}")
    ifindex = info.u[0] if info.type in (BPF_LINK_TYPE_XDP, BPF_LINK_TYPE_TCX, BPF_LINK_TYPE_NETKIT) else None
    return LinkInfo(id=info.id, type=info.type, type_name=link_type_name(info.type),
                    prog_id=info.prog_id, ifindex=ifindex, raw=tuple(info.u))


def _ids(call: str) -> Iterator[int]:
    func = getattr(lib(), call)
    cur, nxt = 0, ctypes.c_uint32(0)
    while True:
        ret = func(cur, ctypes.byref(nxt))
        if ret < 0:
            err = -ret
            if err == _errno.ENOENT:
                return
            raise SyscallError(call, err)
        cur = nxt.value
        yield cur


def prog_ids() -> Iterator[int]:
    """Ids of every loaded program (bpf_prog_get_next_id)."""
    return _ids("bpf_prog_get_next_id")


def map_ids() -> Iterator[int]:
    """Ids of every map (bpf_map_get_next_id)."""
    return _ids("bpf_map_get_next_id")


def link_ids() -> Iterator[int]:
    """Ids of every link (bpf_link_get_next_id)."""
    return _ids("bpf_link_get_next_id")


def prog_fd_by_id(prog_id: int) -> int:
    checked_int(prog_id, "program id")
    return _check(lib().bpf_prog_get_fd_by_id(prog_id), "bpf_prog_get_fd_by_id", f"prog id {prog_id}")


def map_fd_by_id(map_id: int) -> int:
    checked_int(map_id, "map id")
    return _check(lib().bpf_map_get_fd_by_id(map_id), "bpf_map_get_fd_by_id", f"map id {map_id}")


def link_fd_by_id(link_id: int) -> int:
    checked_int(link_id, "link id")
    return _check(lib().bpf_link_get_fd_by_id(link_id), "bpf_link_get_fd_by_id", f"link id {link_id}")


def link_create(prog_fd: int, target_fd: int, attach_type: int, *, flags: int = 0,
                target: Optional[str] = None) -> int:
    """bpf_link_create; for XDP ``target_fd`` is the ifindex. Returns the link fd."""
    checked_int(target_fd, "link target (fd or ifindex)", low=0, high=S32_MAX)
    checked_int(attach_type, "attach type", low=0, high=S32_MAX)
    opts = _LinkCreateOpts()
    opts.sz = ctypes.sizeof(_LinkCreateOpts)
    opts.flags = checked_int(flags, "link flags")
    return _check(lib().bpf_link_create(prog_fd, target_fd, attach_type, ctypes.byref(opts)),
                  "bpf_link_create", target)


def link_create_xdp(prog_fd: int, ifindex: int, *, flags: int = 0, ifname: Optional[str] = None) -> int:
    """An XDP bpf_link on an interface (``flags``: XDP_FLAGS_SKB_MODE/DRV_MODE/...)."""
    return link_create(prog_fd, ifindex, BPF_XDP, flags=flags,
                       target=f"interface {ifname or ifindex} (ifindex {ifindex})")


def link_update(link_fd: int, new_prog_fd: int, *, old_prog_fd: Optional[int] = None,
                target: Optional[str] = None) -> None:
    """Atomically swap a link's program; with ``old_prog_fd`` only if it still runs that one."""
    opts = _LinkUpdateOpts()
    opts.sz = ctypes.sizeof(_LinkUpdateOpts)
    if old_prog_fd is not None:
        opts.flags = BPF_F_REPLACE
        opts.old_prog_fd = old_prog_fd
    _check(lib().bpf_link_update(link_fd, new_prog_fd, ctypes.byref(opts)), "bpf_link_update", target)


def link_detach(link_fd: int, *, target: Optional[str] = None) -> None:
    """Detach a link (it stays a defunct fd/pin until closed/unpinned)."""
    _check(lib().bpf_link_detach(link_fd), "bpf_link_detach", target)


def num_possible_cpus() -> int:
    return _check(lib().libbpf_num_possible_cpus(), "libbpf_num_possible_cpus")


def is_percpu(map_type: int) -> bool:
    return map_type in PERCPU_MAP_TYPES


def value_buffer_size(map_type: int, value_size: int) -> int:
    """Bytes a lookup returns: per-CPU maps give round_up(value_size, 8) for every possible CPU."""
    if is_percpu(map_type):
        return ((value_size + 7) // 8 * 8) * num_possible_cpus()
    return value_size


def map_lookup(fd: int, key: bytes, value_size: int, flags: int = 0) -> Optional[bytes]:
    """The value (``value_size`` bytes, use value_buffer_size for per-CPU maps) or None.
    ``flags``: BPF_F_LOCK reads a value holding a bpf_spin_lock under that lock."""
    checked_int(flags, "map lookup flags", high=U64_MAX)
    kbuf = ctypes.create_string_buffer(key, len(key))
    vbuf = ctypes.create_string_buffer(max(value_size, 1))
    if flags:
        ret, syscall = lib().bpf_map_lookup_elem_flags(fd, kbuf, vbuf, flags), "bpf_map_lookup_elem_flags"
    else:
        ret, syscall = lib().bpf_map_lookup_elem(fd, kbuf, vbuf), "bpf_map_lookup_elem"
    if ret < 0 and -ret == _errno.ENOENT:
        return None
    _check(ret, syscall, f"map fd {fd}")
    return vbuf.raw[:value_size]


def map_update(fd: int, key: bytes, value: bytes, flags: int = BPF_ANY) -> None:
    checked_int(flags, "map update flags", high=U64_MAX)
    kbuf = ctypes.create_string_buffer(key, len(key))
    vbuf = ctypes.create_string_buffer(value, len(value))
    _check(lib().bpf_map_update_elem(fd, kbuf, vbuf, flags), "bpf_map_update_elem", f"map fd {fd}")


def map_delete(fd: int, key: bytes) -> bool:
    """Delete a key; False when it was not there."""
    kbuf = ctypes.create_string_buffer(key, len(key))
    ret = lib().bpf_map_delete_elem(fd, kbuf)
    if ret < 0 and -ret == _errno.ENOENT:
        return False
    _check(ret, "bpf_map_delete_elem", f"map fd {fd}")
    return True


def map_next_key(fd: int, key: Optional[bytes], key_size: int) -> Optional[bytes]:
    """The key after ``key`` (the first with None), or None at the end."""
    kbuf = ctypes.create_string_buffer(key, len(key)) if key is not None else None
    nbuf = ctypes.create_string_buffer(max(key_size, 1))
    ret = lib().bpf_map_get_next_key(fd, kbuf, nbuf)
    if ret < 0 and -ret == _errno.ENOENT:
        return None
    _check(ret, "bpf_map_get_next_key", f"map fd {fd}")
    return nbuf.raw[:key_size]


def map_keys(fd: int, key_size: int) -> Iterator[bytes]:
    """Every key of a map (a snapshot walk; keys deleted meanwhile may restart the walk)."""
    key = map_next_key(fd, None, key_size)
    while key is not None:
        yield key
        key = map_next_key(fd, key, key_size)


def enable_stats(stats_type: int = BPF_STATS_RUN_TIME) -> int:
    """Turn on run_cnt/run_time_ns accounting while the returned fd stays open."""
    return _check(lib().bpf_enable_stats(stats_type), "bpf_enable_stats")


# --- facts and preflight ---
# Feature probes for _features.py and a raw program load for _preflight.py. Their signatures are
# set here (not in _SIGNATURES above) so this section stays self-contained.
class _ProgLoadOpts(ctypes.Structure):
    """struct bpf_prog_load_opts (libbpf 1.1)."""
    _fields_ = [
        ("sz", ctypes.c_size_t), ("attempts", ctypes.c_int), ("expected_attach_type", ctypes.c_int),
        ("prog_btf_fd", ctypes.c_uint32), ("prog_flags", ctypes.c_uint32),
        ("prog_ifindex", ctypes.c_uint32), ("kern_version", ctypes.c_uint32),
        ("attach_btf_id", ctypes.c_uint32), ("attach_prog_fd", ctypes.c_uint32),
        ("attach_btf_obj_fd", ctypes.c_uint32), ("fd_array", ctypes.c_void_p),
        ("func_info", ctypes.c_void_p), ("func_info_cnt", ctypes.c_uint32),
        ("func_info_rec_size", ctypes.c_uint32), ("line_info", ctypes.c_void_p),
        ("line_info_cnt", ctypes.c_uint32), ("line_info_rec_size", ctypes.c_uint32),
        ("log_level", ctypes.c_uint32), ("log_size", ctypes.c_uint32), ("log_buf", ctypes.c_void_p),
    ]


_FACTS_SIGNATURES = {
    "libbpf_probe_bpf_prog_type": (ctypes.c_int, [ctypes.c_int, ctypes.c_void_p]),
    "libbpf_probe_bpf_map_type": (ctypes.c_int, [ctypes.c_int, ctypes.c_void_p]),
    "bpf_prog_load": (ctypes.c_int, [ctypes.c_int, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p,
                                     ctypes.c_size_t, ctypes.c_void_p]),
}
_facts_ready = False


def _facts_lib() -> ctypes.CDLL:
    global _facts_ready
    handle = lib()
    if not _facts_ready:
        for name, (restype, argtypes) in _FACTS_SIGNATURES.items():
            func = getattr(handle, name)
            func.restype = restype
            func.argtypes = argtypes
        _facts_ready = True
    return handle


def _probe_result(ret: int) -> Optional[bool]:
    """libbpf probes: 1 yes, 0 no, <0 cannot tell (e.g. EOPNOTSUPP for tracing/lsm/ext)."""
    return None if ret < 0 else bool(ret)


def probe_prog_type(prog_type: int) -> Optional[bool]:
    """libbpf_probe_bpf_prog_type: can this kernel load a program of this type?"""
    with captured_messages():
        return _probe_result(_facts_lib().libbpf_probe_bpf_prog_type(prog_type, None))


def probe_map_type(map_type: int) -> Optional[bool]:
    """libbpf_probe_bpf_map_type: can this kernel create a map of this type?"""
    with captured_messages():
        return _probe_result(_facts_lib().libbpf_probe_bpf_map_type(map_type, None))


def prog_type_names() -> dict:
    """{number: name} of every program type libbpf knows (1 upwards, until the first gap)."""
    return _type_table(lib().libbpf_bpf_prog_type_str)


def map_type_names() -> dict:
    """{number: name} of every map type libbpf knows."""
    return _type_table(lib().libbpf_bpf_map_type_str)


def _type_table(func) -> dict:
    out = {}
    for value in range(1, 128):
        name = _text(func(value))
        if not name:
            break
        out[value] = name
    return out


def prog_load_raw(prog_type: int, insns: bytes, *, license: str = "GPL", name: str = "ebpfd_probe",
                  expected_attach_type: int = 0, prog_flags: int = 0,
                  log_level: int = 1, log_size: int = 1 << 16) -> Tuple[int, int, str]:
    """bpf_prog_load of raw instructions: (fd or -1, errno or 0, verifier log).

    The caller closes the fd. Used to ask the verifier a question (helper probes: libbpf 1.1's
    libbpf_probe_bpf_helper only knows the pre-6.x "unknown func" wording and answers "yes" to
    every helper on newer kernels), never to deploy.
    """
    log = ctypes.create_string_buffer(log_size)
    opts = _ProgLoadOpts()
    opts.sz = ctypes.sizeof(_ProgLoadOpts)
    opts.expected_attach_type = expected_attach_type
    opts.prog_flags = prog_flags
    opts.log_level = log_level
    opts.log_size = log_size
    opts.log_buf = ctypes.cast(log, ctypes.c_void_p)
    buf = ctypes.create_string_buffer(insns, len(insns))
    with captured_messages():
        ret = _facts_lib().bpf_prog_load(prog_type, name.encode()[:BPF_OBJ_NAME_LEN - 1], license.encode(),
                                         buf, len(insns) // 8, ctypes.byref(opts))
    text = log.value.decode("utf-8", "replace")
    if ret < 0:
        return -1, -ret, text
    return ret, 0, text


# --- maps (bpf_map) ---
# For _map.py: create a standalone map, and read a map's BTF (type ids and the raw blob). The
# signatures are set here, like the section above, so the section stays self-contained.
class _MapCreateOpts(ctypes.Structure):
    """struct bpf_map_create_opts (libbpf 1.1)."""
    _fields_ = [
        ("sz", ctypes.c_size_t), ("btf_fd", ctypes.c_uint32), ("btf_key_type_id", ctypes.c_uint32),
        ("btf_value_type_id", ctypes.c_uint32), ("btf_vmlinux_value_type_id", ctypes.c_uint32),
        ("inner_map_fd", ctypes.c_uint32), ("map_flags", ctypes.c_uint32), ("map_extra", ctypes.c_uint64),
        ("numa_node", ctypes.c_uint32), ("map_ifindex", ctypes.c_uint32),
    ]


class _BpfBtfInfo(ctypes.Structure):
    """struct bpf_btf_info (uapi)."""
    _fields_ = [
        ("btf", ctypes.c_uint64), ("btf_size", ctypes.c_uint32), ("id", ctypes.c_uint32),
        ("name", ctypes.c_uint64), ("name_len", ctypes.c_uint32), ("kernel_btf", ctypes.c_uint32),
    ]


_MAPS_SIGNATURES = {
    "bpf_map_create": (ctypes.c_int, [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32, ctypes.c_uint32,
                                      ctypes.c_uint32, ctypes.c_void_p]),
    "bpf_btf_get_fd_by_id": (ctypes.c_int, [ctypes.c_uint32]),
}
_maps_ready = False


def _maps_lib() -> ctypes.CDLL:
    global _maps_ready
    handle = lib()
    if not _maps_ready:
        for name, (restype, argtypes) in _MAPS_SIGNATURES.items():
            func = getattr(handle, name)
            func.restype = restype
            func.argtypes = argtypes
        _maps_ready = True
    return handle


def map_create(map_type: int, name: Optional[str], key_size: int, value_size: int, max_entries: int, *,
               flags: int = 0) -> int:
    """bpf_map_create: a new map without BTF; the caller owns (pins, closes) the fd."""
    checked_int(map_type, "map type", high=S32_MAX)
    for what, value in (("key_size", key_size), ("value_size", value_size), ("max_entries", max_entries),
                        ("map flags", flags)):
        checked_int(value, what)
    opts = _MapCreateOpts()
    opts.sz = ctypes.sizeof(_MapCreateOpts)
    opts.map_flags = flags
    raw_name = name.encode()[:BPF_OBJ_NAME_LEN - 1] if name else None
    with captured_messages():
        ret = _maps_lib().bpf_map_create(map_type, raw_name, key_size, value_size, max_entries,
                                         ctypes.byref(opts))
    return _check(ret, "bpf_map_create", f"map {name or '(unnamed)'} ({map_type_name(map_type)}, "
                  f"key {key_size} + value {value_size} bytes x {max_entries} entries)")


def map_btf_ids(fd: int) -> Tuple[int, int, int]:
    """(btf_id, btf_key_type_id, btf_value_type_id) of a map; zeros when it carries no BTF."""
    info = _BpfMapInfo()
    _get_info(fd, info, f"map fd {fd}")
    return info.btf_id, info.btf_key_type_id, info.btf_value_type_id


def btf_raw(btf_id: int) -> bytes:
    """The raw BTF blob (header, types, strings) of a BTF object by id, as the kernel holds it."""
    fd = _check(_maps_lib().bpf_btf_get_fd_by_id(btf_id), "bpf_btf_get_fd_by_id", f"btf id {btf_id}")
    with closing_fd(fd):
        info = _BpfBtfInfo()
        _get_info(fd, info, f"btf id {btf_id}")
        size = info.btf_size
        buf = ctypes.create_string_buffer(max(size, 1))
        info = _BpfBtfInfo()
        info.btf = ctypes.addressof(buf)
        info.btf_size = size
        _get_info(fd, info, f"btf id {btf_id}")
        return buf.raw[:min(size, info.btf_size)]


# --- hooks (bpf_attach) ---
# For _hook_*.py: bpf_link create/query for the hooks beyond XDP. libbpf 1.1 (Debian 12) has
# bpf_link_create, but its opts end before the tcx (relative_fd/id, expected_revision, libbpf 1.3)
# and netfilter (pf, hooknum, priority, libbpf 1.2) members, and its bpf_prog_query_opts has no
# link ids or revision. So these few commands go to bpf(2) directly with the kernel's own
# union bpf_attr layout: the same calls libbpf >= 1.3 makes, working with any libbpf. The kernel
# refuses what it does not know with EINVAL; the callers turn that into "requires kernel >= X"
# from _hooks. perf_event_open(2) (tracepoints, kprobes) is here too: it is a syscall as well.
PERF_TYPE_TRACEPOINT = 2
_PERF_FLAG_FD_CLOEXEC = 1 << 3
_PERF_EVENT_IOC_ENABLE = 0x2400
# syscall numbers by machine: (bpf, perf_event_open)
_SYSCALLS = {"x86_64": (321, 298), "aarch64": (280, 241), "armv7l": (386, 364), "ppc64le": (361, 319),
             "s390x": (351, 331), "riscv64": (280, 241)}


class _LinkCreateAttr(ctypes.Structure):
    """union bpf_attr, link_create member: prog_fd, target (fd or ifindex), attach_type, flags,
    then the per-type union kept as words (tcx: relative fd/id, expected_revision at word 2;
    netfilter: pf, hooknum, priority, flags; perf_event: bpf_cookie; freplace: target_btf_id at word 0)."""
    _fields_ = [("prog_fd", ctypes.c_uint32), ("target", ctypes.c_uint32), ("attach_type", ctypes.c_uint32),
                ("flags", ctypes.c_uint32), ("u", ctypes.c_uint32 * 12)]


class _ProgQueryAttr(ctypes.Structure):
    """union bpf_attr, query member (BPF_PROG_QUERY) as of kernel 6.6 (link ids, revision)."""
    _fields_ = [("target", ctypes.c_uint32), ("attach_type", ctypes.c_uint32), ("query_flags", ctypes.c_uint32),
                ("attach_flags", ctypes.c_uint32), ("prog_ids", ctypes.c_uint64), ("count", ctypes.c_uint32),
                ("_pad", ctypes.c_uint32), ("prog_attach_flags", ctypes.c_uint64), ("link_ids", ctypes.c_uint64),
                ("link_attach_flags", ctypes.c_uint64), ("revision", ctypes.c_uint64)]


class _RawTpAttr(ctypes.Structure):
    """union bpf_attr, raw_tracepoint member (BPF_RAW_TRACEPOINT_OPEN)."""
    _fields_ = [("name", ctypes.c_uint64), ("prog_fd", ctypes.c_uint32), ("_pad", ctypes.c_uint32)]


class _PerfEventAttr(ctypes.Structure):
    """struct perf_event_attr up to PERF_ATTR_SIZE_VER5 (112 bytes); only what tracepoints use."""
    _fields_ = [("type", ctypes.c_uint32), ("size", ctypes.c_uint32), ("config", ctypes.c_uint64),
                ("sample_period", ctypes.c_uint64), ("sample_type", ctypes.c_uint64),
                ("read_format", ctypes.c_uint64), ("flags", ctypes.c_uint64), ("wakeup_events", ctypes.c_uint32),
                ("bp_type", ctypes.c_uint32), ("config1", ctypes.c_uint64), ("config2", ctypes.c_uint64),
                ("branch_sample_type", ctypes.c_uint64), ("sample_regs_user", ctypes.c_uint64),
                ("sample_stack_user", ctypes.c_uint32), ("clockid", ctypes.c_int32),
                ("sample_regs_intr", ctypes.c_uint64), ("aux_watermark", ctypes.c_uint32),
                ("sample_max_stack", ctypes.c_uint16), ("_reserved", ctypes.c_uint16)]


def _syscall_numbers() -> Tuple[int, int]:
    machine = os.uname().machine
    if machine not in _SYSCALLS:
        raise SyscallError("bpf", _errno.ENOSYS, f"machine {machine}",
                           detail="this machine's bpf/perf_event_open syscall numbers are not known to ebpf.deploy")
    return _SYSCALLS[machine]


def _sys_bpf(cmd: int, attr: ctypes.Structure, call: str, target: Optional[str]) -> int:
    nr_bpf, _nr_perf = _syscall_numbers()
    ret = _libc().syscall(ctypes.c_long(nr_bpf), ctypes.c_long(cmd), ctypes.byref(attr),
                          ctypes.c_uint(ctypes.sizeof(attr)))
    if ret < 0:
        raise SyscallError(call, _errno_now(), target)
    return ret


def link_create_hook(prog_fd: int, target: int, attach_type: int, *, flags: int = 0,
                     relative: int = 0, expected_revision: int = 0, netfilter: Optional[Tuple[int, int, int, int]] = None,
                     target_btf_id: Optional[int] = None, target_label: Optional[str] = None) -> int:
    """BPF_LINK_CREATE with the kernel's own attr: tcx (``relative`` id/fd + BPF_F_BEFORE/AFTER,
    ``expected_revision``), netfilter (pf, hooknum, priority, flags), cgroup, perf_event, and
    freplace (``target`` the fd of the program whose function is replaced, ``target_btf_id`` that
    function's FUNC id in the program's BTF: the first word of the union).
    ``target`` is the ifindex, cgroup fd, perf event fd or program fd (0 for netfilter). Returns the link fd."""
    attr = _LinkCreateAttr(prog_fd=prog_fd, target=target, attach_type=attach_type, flags=flags)
    if target_btf_id is not None:
        attr.u[0] = target_btf_id
    elif netfilter is not None:
        pf, hooknum, priority, nf_flags = netfilter
        attr.u[0], attr.u[1], attr.u[2], attr.u[3] = pf, hooknum, priority & 0xFFFFFFFF, nf_flags
    else:
        attr.u[0] = relative
        attr.u[2], attr.u[3] = expected_revision & 0xFFFFFFFF, expected_revision >> 32
    return _sys_bpf(BPF_LINK_CREATE, attr, "BPF_LINK_CREATE", target_label)


@dataclass(frozen=True)
class HookQuery:
    """BPF_PROG_QUERY of a hook: program ids in run order, their link ids (0: not a link), revision."""
    prog_ids: Tuple[int, ...]
    link_ids: Tuple[int, ...]
    revision: int


def prog_query(target: int, attach_type: int, *, target_label: Optional[str] = None, capacity: int = 64) -> HookQuery:
    """The programs on a multi-program hook (tcx on an ifindex, a cgroup fd) in the order they run."""
    progs = (ctypes.c_uint32 * capacity)()
    links = (ctypes.c_uint32 * capacity)()
    attr = _ProgQueryAttr(target=target, attach_type=attach_type, count=capacity)
    attr.prog_ids = ctypes.addressof(progs)
    attr.link_ids = ctypes.addressof(links)
    _sys_bpf(BPF_PROG_QUERY, attr, "BPF_PROG_QUERY", target_label)
    count = min(attr.count, capacity)
    return HookQuery(prog_ids=tuple(progs[:count]), link_ids=tuple(links[:count]), revision=attr.revision)


def raw_tracepoint_open(name: str, prog_fd: int) -> int:
    """BPF_RAW_TRACEPOINT_OPEN: a raw_tp link for ``name`` (e.g. ``sys_enter``); returns the link fd."""
    raw = ctypes.create_string_buffer(name.encode())
    attr = _RawTpAttr(name=ctypes.addressof(raw), prog_fd=prog_fd)
    return _sys_bpf(BPF_RAW_TRACEPOINT_OPEN, attr, "BPF_RAW_TRACEPOINT_OPEN", f"raw tracepoint {name}")


def perf_event_open_tracepoint(tracepoint_id: int, *, label: str) -> int:
    """perf_event_open(2) of a tracepoint on CPU 0 (a BPF program on it runs on every CPU); the
    caller links a program to the returned fd and closes it (the link keeps the event)."""
    _nr_bpf, nr_perf = _syscall_numbers()
    attr = _PerfEventAttr(type=PERF_TYPE_TRACEPOINT, size=ctypes.sizeof(_PerfEventAttr), config=tracepoint_id,
                          sample_period=1, wakeup_events=1)
    fd = _libc().syscall(ctypes.c_long(nr_perf), ctypes.byref(attr), ctypes.c_int(-1), ctypes.c_int(0),
                         ctypes.c_int(-1), ctypes.c_ulong(_PERF_FLAG_FD_CLOEXEC))
    if fd < 0:
        raise SyscallError("perf_event_open", _errno_now(), label)
    return fd


def link_info_words(fd: int) -> Tuple[int, Tuple[int, ...]]:
    """(link type, the per-type union of bpf_link_info as 32-bit words) of a link fd."""
    info = link_info(fd)
    return info.type, info.raw


# For _hook_tracing: kprobes and uprobes through their PMU (perf_event_open(2) of type
# /sys/bus/event_source/devices/{kprobe,uprobe}/type, as libbpf does), and fentry/fexit/lsm links
# through BPF_RAW_TRACEPOINT_OPEN with no name (kernel >= 5.5; lsm >= 5.7): the kernel takes the
# target the program was loaded for (its attach_btf_id), which libbpf set from the section.
# freplace (EXT) links are BPF_LINK_CREATE (link_create_hook with target_btf_id): the kernel lets
# an EXT program use BPF_RAW_TRACEPOINT_OPEN's no-name form once only (it consumes the target
# recorded at load), and a link created again after a repair must name its target itself.
def perf_event_open_probe(pmu_type: int, name: str, offset: int, *, retprobe_bit: Optional[int], label: str) -> int:
    """perf_event_open(2) of a kprobe (``name`` a kernel function, ``offset`` into it) or uprobe
    (``name`` a binary's path, ``offset`` in the file) on its PMU, for every process (pid -1, CPU
    0, as libbpf does: a BPF program on it runs on every CPU). ``retprobe_bit`` set: the return
    probe (the bit from the PMU's format/retprobe). The caller links a program to the fd and closes it."""
    _nr_bpf, nr_perf = _syscall_numbers()
    text = ctypes.create_string_buffer(name.encode())
    attr = _PerfEventAttr(type=pmu_type, size=ctypes.sizeof(_PerfEventAttr),
                          config=(1 << retprobe_bit) if retprobe_bit is not None else 0,
                          sample_period=1, wakeup_events=1, config1=ctypes.addressof(text), config2=offset)
    fd = _libc().syscall(ctypes.c_long(nr_perf), ctypes.byref(attr), ctypes.c_int(-1), ctypes.c_int(0),
                         ctypes.c_int(-1), ctypes.c_ulong(_PERF_FLAG_FD_CLOEXEC))
    if fd < 0:
        raise SyscallError("perf_event_open", _errno_now(), label)
    return fd


def tracing_link_open(prog_fd: int, *, label: str) -> int:
    """BPF_RAW_TRACEPOINT_OPEN with a NULL name: the link of an fentry/fexit/lsm program at the
    function or LSM hook it was loaded for; returns the link fd."""
    attr = _RawTpAttr(name=0, prog_fd=prog_fd)
    return _sys_bpf(BPF_RAW_TRACEPOINT_OPEN, attr, "BPF_RAW_TRACEPOINT_OPEN", label)
