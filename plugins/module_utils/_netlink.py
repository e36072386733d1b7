# -*- coding: utf-8 -*-
# Copyright: contributors to ebpf.deploy
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private to ebpf.deploy: the one file that speaks rtnetlink (and imports pyroute2).

It answers three questions about an interface, in the root network namespace or in a named one
(/run/netns/<name>): does it exist and what is its ifindex, which XDP program is attached in which
mode, and what are its packet counters. It also sets and clears IFLA_XDP with the mode flags,
atomically replacing a program with XDP_FLAGS_REPLACE + IFLA_XDP_EXPECTED_FD.

For tc (``_hook_tc``) it reads whether an interface has a clsact qdisc and the filters under its
ingress/egress parents (RTM_GETQDISC, RTM_GETTFILTER dumps on the plain socket: pyroute2 0.7 to 0.9
do not decode TCA_BPF_ID, the program id), and adds or removes the qdisc and one ``bpf`` filter in
direct-action mode through pyroute2 (``IPRoute.tc``, as in 0.7).

The three questions are one RTM_GETLINK each, sent and parsed here on a plain netlink socket
(``_Rtnl``): the attributes read are few and fixed by the kernel's UAPI, and pyroute2's import
(about 0.1 s) was most of the cost of a module run that only reads. pyroute2 is imported for the
writes (RTM_SETLINK IFLA_XDP), the first time one is made.

No Ansible here, and no bpf syscalls: program file descriptors come in from the caller.
Kernel refusals are raised as NetlinkOpError (errno + the kernel's extended-ack message) so the
caller can turn them into an error that names the interface and the mode.
"""
from __future__ import annotations

import contextlib
import ctypes
import errno as _errno
import importlib
import importlib.util
import os
import socket
import struct
import sys
from dataclasses import dataclass, field
from typing import Iterator

# The pyroute2 modules this file needs, plus pyroute2.config.log: the package's __init__.py
# imports it first, and it gives the "pyroute2" logger the NullHandler that keeps its records off stderr.
_PYROUTE2_MODULES = ("pyroute2.config.log", "pyroute2.iproute.linux", "pyroute2.netlink.exceptions")


def _import_pyroute2() -> tuple:
    """(IPRoute, NetlinkError, how): how is "lean" or "package" (the plain `import pyroute2`).

    pyroute2/__init__.py imports every subpackage (ipdb, ndb with sqlite3, conntrack, nl80211, ...):
    ~40 ms of an xdp_attach run, which uses three names. So when no one has imported pyroute2 yet,
    its package is registered without running __init__.py, and only _PYROUTE2_MODULES are imported
    from it. The package runs its __init__.py the first time anyone asks it for a name it does not
    have (PEP 562 module __getattr__), so `from pyroute2 import NDB` elsewhere in the process still
    works. Any failure on the way undoes the partial import and takes the plain path.
    """
    if "pyroute2" not in sys.modules:
        try:
            return _import_pyroute2_lean() + ("lean",)
        # any surprise (a pyroute2 that is laid out differently, ...): the plain import decides
        except Exception:  # pylint: disable=broad-exception-caught
            for name in [name for name in sys.modules if name == "pyroute2" or name.startswith("pyroute2.")]:
                del sys.modules[name]
    from pyroute2 import IPRoute as iproute  # pylint: disable=import-outside-toplevel
    from pyroute2.netlink.exceptions import NetlinkError as netlink_error  # pylint: disable=import-outside-toplevel
    return iproute, netlink_error, "package"


def _import_pyroute2_lean() -> tuple:
    spec = importlib.util.find_spec("pyroute2")
    if spec is None or spec.loader is None or not spec.submodule_search_locations:
        raise ImportError("pyroute2 is not an importable package")
    package = importlib.util.module_from_spec(spec)  # __path__, __file__, ... set; __init__.py not run

    def complete(name: str):
        """A name the package lacks: a submodule is imported alone (pyroute2's own modules do
        `from pyroute2 import netns`); any other name runs __init__.py, once, in this module object."""
        try:
            return importlib.import_module(f"pyroute2.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"pyroute2.{name}":
                raise
        del package.__getattr__
        spec.loader.exec_module(package)
        try:
            return package.__dict__[name]
        except KeyError:
            raise AttributeError(f"module 'pyroute2' has no attribute {name!r}") from None

    package.__getattr__ = complete
    sys.modules["pyroute2"] = package
    for name in _PYROUTE2_MODULES:
        importlib.import_module(name)
    return sys.modules["pyroute2.iproute.linux"].IPRoute, sys.modules["pyroute2.netlink.exceptions"].NetlinkError


def _find_pyroute2() -> ImportError | None:
    """Whether pyroute2 can be imported, without importing it (that waits for the first write)."""
    try:
        found = importlib.util.find_spec("pyroute2") is not None
    except (ImportError, ValueError) as exc:
        return ImportError(str(exc))
    return None if found else ImportError("No module named 'pyroute2'")


PYROUTE2_IMPORT_ERROR = _find_pyroute2()
HAS_PYROUTE2 = PYROUTE2_IMPORT_ERROR is None
_PYROUTE2: dict = {}   # IPRoute, NetlinkError and how they were imported, once imported


def pyroute2_api() -> dict:
    """{"IPRoute", "NetlinkError", "how"}, imported on first use (ImportError without pyroute2)."""
    if not _PYROUTE2:
        _require_pyroute2()
        iproute, netlink_error, how = _import_pyroute2()
        _PYROUTE2.update(IPRoute=iproute, NetlinkError=netlink_error, how=how)
    return _PYROUTE2


NETNS_RUN_DIR = "/run/netns"

# setns(2) from the C library this process already has (Python 3.11 has no os.setns)
_LIBC = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNET = 0x40000000

# include/uapi/linux/if_link.h
XDP_FLAGS_UPDATE_IF_NOEXIST = 1 << 0
XDP_FLAGS_SKB_MODE = 1 << 1
XDP_FLAGS_DRV_MODE = 1 << 2
XDP_FLAGS_HW_MODE = 1 << 3
XDP_FLAGS_REPLACE = 1 << 4

# The module's mode names, their flag, and the IFLA_XDP_*_PROG_ID attribute that reports them.
MODE_FLAGS = {
    "native": XDP_FLAGS_DRV_MODE,
    "generic": XDP_FLAGS_SKB_MODE,
    "offload": XDP_FLAGS_HW_MODE,
}
_MODE_PROG_ID_ATTR = {
    "native": "IFLA_XDP_DRV_PROG_ID",
    "generic": "IFLA_XDP_SKB_PROG_ID",
    "offload": "IFLA_XDP_HW_PROG_ID",
}
# IFLA_XDP_ATTACHED as pyroute2 decodes it.
_ATTACHED_MODE = {"xdp": "native", "xdpgeneric": "generic", "xdpoffload": "offload"}


class NetlinkOpError(OSError):
    """The kernel refused a netlink request: errno plus its extended-ack text (may be empty)."""

    def __init__(self, err: int, message: str, *, request: str):
        super().__init__(err, message or os.strerror(err))
        self.request = request
        self.extack = message if message and message != os.strerror(err) else ""


class NoSuchNetns(LookupError):
    def __init__(self, netns: str):
        super().__init__(f"network namespace {netns!r} does not exist ({NETNS_RUN_DIR}/{netns})")
        self.netns = netns


class NoSuchInterface(LookupError):
    def __init__(self, ifname: str, netns: str | None):
        where = f"network namespace {netns!r}" if netns else "the root network namespace"
        super().__init__(f"interface {ifname!r} does not exist in {where}")
        self.ifname = ifname
        self.netns = netns


@dataclass(frozen=True)
class Interface:
    name: str
    ifindex: int
    netns: str | None = None
    kind: str | None = None  # IFLA_INFO_KIND (veth, bridge, ...); None for real NICs and lo


@dataclass(frozen=True)
class XdpState:
    """What IFLA_XDP says: the program id attached in each mode (absent modes are left out)."""

    progs: dict = field(default_factory=dict)

    @property
    def mode(self) -> str | None:
        """The attached mode; with programs in two modes (offload + one other) the non-offload one."""
        for mode in ("native", "generic", "offload"):
            if mode in self.progs:
                return mode
        return None

    @property
    def prog_id(self) -> int | None:
        mode = self.mode
        return self.progs[mode] if mode else None


def netns_path(netns: str) -> str:
    if not netns or "/" in netns or netns in (".", ".."):
        raise NoSuchNetns(netns)
    return os.path.join(NETNS_RUN_DIR, netns)


def netns_exists(netns: str) -> bool:
    try:
        return os.path.exists(netns_path(netns))
    except NoSuchNetns:
        return False


@contextlib.contextmanager
def in_netns(netns: str | None) -> Iterator[None]:
    """Move this thread into a named network namespace for the block, then back.

    Sockets and bpf_links created inside the block stay bound to that namespace. With
    netns=None the block runs where it is. Never creates a namespace.
    """
    if not netns:
        yield
        return
    try:
        target = os.open(netns_path(netns), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise NoSuchNetns(netns) from None
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        _setns(target)
        try:
            yield
        finally:
            _setns(home)
    finally:
        os.close(target)
        os.close(home)


def _setns(fd: int) -> None:
    if _LIBC.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def _require_pyroute2() -> None:
    if not HAS_PYROUTE2:
        raise ImportError(f"pyroute2 is required: {PYROUTE2_IMPORT_ERROR}")


def _op_error(exc: Exception, request: str) -> NetlinkOpError:
    code = getattr(exc, "code", None) or _errno.EIO
    text = exc.args[1] if len(getattr(exc, "args", ())) > 1 else ""
    return NetlinkOpError(code, str(text or ""), request=request)


# --- rtnetlink on a plain socket (include/uapi/linux/netlink.h, rtnetlink.h, if_link.h) ----------
_NLMSG_HDR = struct.Struct("=IHHII")        # len, type, flags, seq, pid
_IFINFOMSG = struct.Struct("=BxHiII")       # family, pad, type, index, flags, change
_RTATTR = struct.Struct("=HH")              # len, type
NLMSG_ERROR, NLMSG_DONE, RTM_NEWLINK, RTM_GETLINK = 2, 3, 16, 18
RTM_NEWQDISC, RTM_GETQDISC, RTM_NEWTFILTER, RTM_GETTFILTER = 36, 38, 44, 46
NLM_F_REQUEST, NLM_F_DUMP = 1, 0x300
NLA_TYPE_MASK = 0x3FFF                      # without NLA_F_NESTED / NLA_F_NET_BYTEORDER
IFLA_IFNAME, IFLA_LINKINFO, IFLA_STATS64, IFLA_XDP = 3, 18, 23, 43
IFLA_INFO_KIND = 1
# IFLA_XDP_* ids → the names parse_xdp_attrs() reads (pyroute2's names, and the kernel's)
_XDP_ATTRS = {2: "IFLA_XDP_ATTACHED", 4: "IFLA_XDP_PROG_ID", 5: "IFLA_XDP_DRV_PROG_ID",
              6: "IFLA_XDP_SKB_PROG_ID", 7: "IFLA_XDP_HW_PROG_ID"}
# XDP_ATTACHED_DRV/SKB/HW (MULTI reports the per-mode ids instead)
_XDP_ATTACHED_NAMES = {1: "xdp", 2: "xdpgeneric", 3: "xdpoffload"}
# the counters() reports: their position among the u64 fields of struct rtnl_link_stats64
_STATS64_INDEX = {"rx_packets": 0, "tx_packets": 1, "rx_bytes": 2, "tx_bytes": 3, "rx_dropped": 6, "tx_dropped": 7}


# include/uapi/linux/pkt_sched.h, pkt_cls.h: struct tcmsg, the clsact parents, the bpf filter's attributes
_TCMSG = struct.Struct("=BxxxiIII")         # family, pad, ifindex, handle, parent, info
TCA_KIND, TCA_OPTIONS = 1, 2
TCA_BPF_NAME, TCA_BPF_FLAGS, TCA_BPF_ID = 7, 8, 11
TCA_BPF_FLAG_ACT_DIRECT = 1
TC_H_CLSACT = 0xFFFFFFF1
TC_PARENTS = {"ingress": 0xFFFFFFF2, "egress": 0xFFFFFFF3}   # TC_H_MIN_INGRESS / TC_H_MIN_EGRESS under clsact
ETH_P_ALL = 0x0003


@dataclass(frozen=True)
class TcFilter:
    """One tc filter under a clsact parent: its priority and handle, kind and, for ``bpf``, the program."""

    parent: int
    prio: int
    handle: int
    kind: str | None = None
    prog_id: int | None = None
    prog_name: str | None = None
    direct_action: bool = False


def _cstr(value: bytes) -> str:
    return value.split(b"\0", 1)[0].decode(errors="replace")


def parse_tcmsg(payload: bytes) -> dict:
    """An RTM_NEWQDISC/RTM_NEWTFILTER payload → {ifindex, handle, parent, info, kind, options}. Pure."""
    _family, ifindex, handle, parent, info = _TCMSG.unpack_from(payload)
    out = {"ifindex": ifindex, "handle": handle, "parent": parent, "info": info, "kind": None, "options": {}}
    for kind, value in _attrs(payload, _TCMSG.size):
        if kind == TCA_KIND:
            out["kind"] = _cstr(value)
        elif kind == TCA_OPTIONS:
            out["options"] = dict(_attrs(value))
    return out


def tc_filter(msg: dict) -> TcFilter | None:
    """A parsed filter message → TcFilter; None for the header of a priority (handle 0, no options)."""
    if not msg["handle"]:
        return None
    opts = msg["options"] if msg["kind"] == "bpf" else {}
    prog_id = struct.unpack_from("=I", opts[TCA_BPF_ID])[0] if len(opts.get(TCA_BPF_ID, b"")) >= 4 else None
    flags = struct.unpack_from("=I", opts[TCA_BPF_FLAGS])[0] if len(opts.get(TCA_BPF_FLAGS, b"")) >= 4 else 0
    return TcFilter(parent=msg["parent"], prio=msg["info"] >> 16, handle=msg["handle"], kind=msg["kind"],
                    prog_id=prog_id, prog_name=_cstr(opts[TCA_BPF_NAME]) if TCA_BPF_NAME in opts else None,
                    direct_action=bool(flags & TCA_BPF_FLAG_ACT_DIRECT))


def _attrs(data: bytes, offset: int = 0) -> Iterator[tuple]:
    """(type, payload) of each rtattr in data[offset:]."""
    while offset + _RTATTR.size <= len(data):
        length, kind = _RTATTR.unpack_from(data, offset)
        if length < _RTATTR.size:
            break
        yield kind & NLA_TYPE_MASK, data[offset + _RTATTR.size:offset + length]
        offset += (length + 3) & ~3


def parse_link(payload: bytes) -> dict:
    """An RTM_NEWLINK payload (ifinfomsg + attributes) → {index, ifname, kind, xdp, stats64}. Pure."""
    _family, _type, index, _flags, _change = _IFINFOMSG.unpack_from(payload)
    link = {"index": index, "ifname": None, "kind": None, "xdp": None, "stats64": None}
    for kind, value in _attrs(payload, _IFINFOMSG.size):
        if kind == IFLA_IFNAME:
            link["ifname"] = value.split(b"\0", 1)[0].decode()
        elif kind == IFLA_LINKINFO:
            for sub, sub_value in _attrs(value):
                if sub == IFLA_INFO_KIND:
                    link["kind"] = sub_value.split(b"\0", 1)[0].decode()
        elif kind == IFLA_XDP:
            attrs = []
            for sub, sub_value in _attrs(value):
                name = _XDP_ATTRS.get(sub)
                if name == "IFLA_XDP_ATTACHED":
                    attrs.append((name, _XDP_ATTACHED_NAMES.get(sub_value[0]) if sub_value else None))
                elif name:
                    attrs.append((name, struct.unpack_from("=I", sub_value)[0]))
            link["xdp"] = {"attrs": attrs}
        elif kind == IFLA_STATS64:
            count = len(value) // 8
            link["stats64"] = struct.unpack_from(f"={count}Q", value)
    return link


class _Rtnl:
    """An NETLINK_ROUTE socket that asks for one link at a time (RTM_GETLINK)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE)
        self.sock.bind((0, 0))
        self.seq = 0

    def close(self) -> None:
        self.sock.close()

    def get_link(self, *, index: int = 0, ifname: str | None = None) -> dict:
        """parse_link() of the link; OSError(errno) when the kernel refuses (ENODEV: no such link)."""
        body = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, index, 0, 0)
        if ifname is not None:
            name = ifname.encode() + b"\0"
            body += _RTATTR.pack(_RTATTR.size + len(name), IFLA_IFNAME) + name + b"\0" * (-len(name) % 4)
        # one link's reply is a few KiB (no VF list: RTEXT_FILTER_VF is not asked for)
        for kind, payload in self._exchange(RTM_GETLINK, NLM_F_REQUEST, body, what="RTM_GETLINK reply"):
            if kind == RTM_NEWLINK:
                return parse_link(payload)
            if kind == NLMSG_DONE:
                raise OSError(_errno.ENODEV, os.strerror(_errno.ENODEV))
        raise AssertionError("unreachable: _exchange does not end by itself")

    def dump(self, msg_type: int, body: bytes, answer: int) -> list:
        """The payloads of every ``answer`` message of a dump request; OSError(errno) when refused."""
        payloads = []
        for kind, payload in self._exchange(msg_type, NLM_F_REQUEST | NLM_F_DUMP, body, what="netlink dump part"):
            if kind == NLMSG_DONE:
                return payloads
            if kind == answer:
                payloads.append(payload)
        raise AssertionError("unreachable: _exchange does not end by itself")

    def _exchange(self, msg_type: int, flags: int, body: bytes, *, what: str) -> Iterator[tuple]:
        """Send one request; yield (type, payload) of each message answering it, for as long as the
        caller reads. NLMSG_ERROR is raised as OSError(errno)."""
        self.seq += 1
        self.sock.send(_NLMSG_HDR.pack(_NLMSG_HDR.size + len(body), msg_type, flags, self.seq, 0) + body)
        while True:
            data, _ancdata, msg_flags, _addr = self.sock.recvmsg(1 << 20)
            if msg_flags & socket.MSG_TRUNC:
                raise OSError(_errno.EMSGSIZE, f"{what} larger than 1 MiB")
            offset = 0
            while offset + _NLMSG_HDR.size <= len(data):
                length, kind, _flags, seq, _pid = _NLMSG_HDR.unpack_from(data, offset)
                if length < _NLMSG_HDR.size:  # malformed: it would never advance
                    raise OSError(_errno.EBADMSG, f"malformed {what}")
                payload = data[offset + _NLMSG_HDR.size:offset + length]
                offset += (length + 3) & ~3
                if seq != self.seq:
                    continue  # an answer to an earlier request
                if kind == NLMSG_ERROR:
                    err = -struct.unpack_from("=i", payload)[0]
                    raise OSError(err, os.strerror(err))
                yield kind, payload


class Netlink:
    """An rtnetlink socket bound to one network namespace (None: the one we run in)."""

    def __init__(self, netns: str | None = None):
        self.netns = netns or None
        if self.netns and not netns_exists(self.netns):
            raise NoSuchNetns(self.netns)
        with in_netns(self.netns):
            self._rtnl = _Rtnl()
        self._ipr = None   # pyroute2's IPRoute, made for the first write

    def close(self) -> None:
        self._rtnl.close()
        if self._ipr is not None:
            self._ipr.close()

    def __enter__(self) -> "Netlink":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- reading ------------------------------------------------------------------------------
    def _get(self, ifindex: int) -> dict:
        try:
            return self._rtnl.get_link(index=ifindex)
        except OSError as exc:
            if exc.errno == _errno.ENODEV:
                raise NoSuchInterface(f"#{ifindex}", self.netns) from None
            raise NetlinkOpError(exc.errno or _errno.EIO, "", request="RTM_GETLINK") from None

    def interface(self, ifname: str) -> Interface:
        """Look an interface up by name; NoSuchInterface names it and the namespace."""
        if not ifname or len(ifname) > 15 or "/" in ifname:
            raise NoSuchInterface(ifname, self.netns)
        try:
            link = self._rtnl.get_link(ifname=ifname)
        except OSError as exc:
            if exc.errno in (_errno.ENODEV, _errno.EINVAL):
                raise NoSuchInterface(ifname, self.netns) from None
            raise NetlinkOpError(exc.errno or _errno.EIO, "", request="RTM_GETLINK") from None
        return Interface(name=link["ifname"], ifindex=link["index"], netns=self.netns, kind=link["kind"])

    def xdp_state(self, ifindex: int) -> XdpState:
        """Program ids attached per mode, read from IFLA_XDP."""
        return parse_xdp_attrs(self._get(ifindex)["xdp"])

    def counters(self, ifindex: int) -> dict:
        """rx/tx packets, bytes and drops (IFLA_STATS64)."""
        stats = self._get(ifindex)["stats64"] or ()
        return {key: int(stats[i]) if i < len(stats) else 0 for key, i in _STATS64_INDEX.items()}

    # --- writing ------------------------------------------------------------------------------
    def _iproute(self):
        if self._ipr is None:
            with in_netns(self.netns):
                self._ipr = pyroute2_api()["IPRoute"](ext_ack=True)
        return self._ipr

    def set_xdp(self, ifindex: int, prog_fd: int, *, mode: str | None,
                expected_fd: int | None = None, if_noexist: bool = False) -> None:
        """Attach prog_fd in `mode` (None: the kernel's choice, native where the driver has it).

        expected_fd: replace atomically, and only if that program is the one attached now
        (XDP_FLAGS_REPLACE; EEXIST otherwise). if_noexist: refuse (EBUSY) if any program is
        attached in that mode. prog_fd=-1 detaches.
        """
        flags = MODE_FLAGS[mode] if mode else 0
        attrs = [("IFLA_XDP_FD", prog_fd)]
        if expected_fd is not None:
            flags |= XDP_FLAGS_REPLACE
            attrs.append(("IFLA_XDP_EXPECTED_FD", expected_fd))
        if if_noexist:
            flags |= XDP_FLAGS_UPDATE_IF_NOEXIST
        attrs.append(("IFLA_XDP_FLAGS", flags))
        ipr = self._iproute()
        try:
            ipr.link("set", index=ifindex, xdp={"attrs": attrs})
        except pyroute2_api()["NetlinkError"] as exc:
            raise _op_error(exc, "RTM_SETLINK IFLA_XDP") from None

    def detach_xdp(self, ifindex: int, *, mode: str | None, expected_fd: int | None = None) -> None:
        """Clear the program in `mode`; with expected_fd only if that program is still attached."""
        self.set_xdp(ifindex, -1, mode=mode, expected_fd=expected_fd)

    # --- tc: the clsact qdisc and bpf filters ------------------------------------------------------
    def _tc_dump(self, msg_type: int, answer: int, ifindex: int, parent: int = 0) -> list:
        body = _TCMSG.pack(socket.AF_UNSPEC, ifindex, 0, parent, 0)
        try:
            return [parse_tcmsg(p) for p in self._rtnl.dump(msg_type, body, answer)]
        except OSError as exc:
            raise NetlinkOpError(exc.errno or _errno.EIO, "", request="RTM_GETQDISC/RTM_GETTFILTER") from None

    def has_clsact(self, ifindex: int) -> bool:
        return any(q["ifindex"] == ifindex and q["kind"] == "clsact" and q["parent"] == TC_H_CLSACT
                   for q in self._tc_dump(RTM_GETQDISC, RTM_NEWQDISC, ifindex))

    def tc_filters(self, ifindex: int, direction: str) -> list:
        """The filters under clsact's ingress or egress parent, in priority order ([] without clsact)."""
        found = [tc_filter(m) for m in self._tc_dump(RTM_GETTFILTER, RTM_NEWTFILTER, ifindex, TC_PARENTS[direction])]
        return sorted((f for f in found if f is not None), key=lambda f: (f.prio, f.handle))

    def _tc(self, request: str, *argv, **kwargs) -> None:
        try:
            self._iproute().tc(*argv, **kwargs)
        except pyroute2_api()["NetlinkError"] as exc:
            raise _op_error(exc, request) from None

    def add_clsact(self, ifindex: int) -> None:
        """Create the clsact qdisc (EEXIST when the interface has one)."""
        self._tc("RTM_NEWQDISC clsact", "add", "clsact", ifindex)

    def del_clsact(self, ifindex: int) -> None:
        self._tc("RTM_DELQDISC clsact", "del", "clsact", ifindex)

    def set_tc_filter(self, ifindex: int, direction: str, *, prio: int, handle: int, prog_fd: int, name: str,
                      replace: bool) -> None:
        """A ``bpf`` filter in direct-action mode at (prio, handle). replace=False refuses (EEXIST) when
        one is there; replace=True swaps it in place (NLM_F_REPLACE: the classifier swaps its program
        under RCU, so every packet meets the old program or the new one)."""
        command = "replace-filter" if replace else "add-filter"
        self._tc(f"RTM_NEWTFILTER bpf ({command})", command, "bpf", ifindex, f":{handle:x}", fd=prog_fd,
                 name=name, parent=TC_PARENTS[direction], direct_action=True, prio=prio, protocol=ETH_P_ALL)

    def del_tc_filter(self, ifindex: int, direction: str, *, prio: int, handle: int) -> None:
        """Remove the one filter at (prio, handle); other handles at that priority stay."""
        self._tc("RTM_DELTFILTER bpf", "del-filter", "bpf", ifindex, f":{handle:x}", parent=TC_PARENTS[direction],
                 prio=prio, protocol=ETH_P_ALL)


def parse_xdp_attrs(xdp) -> XdpState:
    """IFLA_XDP (a pyroute2 nla, or None) → XdpState. Pure, for the unit tests too."""
    if xdp is None:
        return XdpState()
    get = xdp.get_attr if hasattr(xdp, "get_attr") else dict(xdp.get("attrs", ())).get
    progs = {}
    for mode, attr in _MODE_PROG_ID_ATTR.items():
        prog_id = get(attr)
        if prog_id:
            progs[mode] = int(prog_id)
    if not progs:
        attached = _ATTACHED_MODE.get(get("IFLA_XDP_ATTACHED"))
        prog_id = get("IFLA_XDP_PROG_ID")
        if attached and prog_id:
            progs[attached] = int(prog_id)
    return XdpState(progs=progs)
