"""Network namespaces: entering one (this thread only), listing them, their processes,
links, addresses and neighbours.

Part of the lab tool (package docstring: the whole picture). Standard library only.
"""
from __future__ import annotations

import contextlib
import ctypes
import json
import os
from pathlib import Path
from typing import Iterator

from labtool.commands import run
from labtool.errors import LabError

NETNS_DIR = Path("/run/netns")
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise LabError(f"setns failed: {os.strerror(err)}")


@contextlib.contextmanager
def in_netns(name: str) -> Iterator[None]:
    """Move the calling thread (only) into the named network namespace for the block."""
    with open("/proc/thread-self/ns/net", "rb") as orig, open(NETNS_DIR / name, "rb") as target:
        _setns(target.fileno())
        try:
            yield
        finally:
            _setns(orig.fileno())


def write_sysctl(path: str, value: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        Path("/proc/sys", path).write_text(value)


def netns_names() -> set[str]:
    try:
        return {p.name for p in NETNS_DIR.iterdir()}
    except FileNotFoundError:
        return set()


def netns_inode(name: str) -> tuple[int, int] | None:
    try:
        st = os.stat(NETNS_DIR / name)
    except FileNotFoundError:
        return None
    return (st.st_dev, st.st_ino)


def pids_in_netns(names: list[str]) -> dict[str, list[int]]:
    """Like `ip netns pids NAME` for several namespaces with one scan of /proc."""
    wanted = {}
    for name in names:
        ino = netns_inode(name)
        if ino is not None:
            # /proc/PID/ns/net reports the nsfs inode; compare inode numbers only (dev differs for nsfs)
            wanted[ino[1]] = name
    found: dict[str, list[int]] = {name: [] for name in names}
    if not wanted:
        return found
    me = os.getpid()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            ino = os.stat(f"/proc/{entry.name}/ns/net").st_ino
        except OSError:
            continue
        if ino in wanted:
            found[wanted[ino]].append(int(entry.name))
    return found


def _ns_view(netns: str) -> tuple[dict[str, dict], list[dict]]:
    """Interfaces (by name) and neighbours of a namespace, with one `ip` call."""
    proc = run(["ip", "-n", netns, "-j", "-batch", "-"], stdin="addr show\nneigh show\n", check=False)
    out = proc.stdout if proc.returncode == 0 else ""
    decoder, pos, docs = json.JSONDecoder(), 0, []
    while pos < len(out):
        while pos < len(out) and out[pos].isspace():
            pos += 1
        if pos >= len(out):
            break
        doc, pos = decoder.raw_decode(out, pos)
        docs.append(doc)
    links = {d["ifname"]: d for d in (docs[0] if docs else [])}
    return links, (docs[1] if len(docs) > 1 else [])


def _has_addr(link: dict | None, address: str, prefixlen: int) -> bool:
    return bool(link) and any(a.get("local") == address and a.get("prefixlen") == prefixlen
                              for a in link.get("addr_info", []))


def _is_up(link: dict | None) -> bool:
    return bool(link) and "UP" in link.get("flags", [])


def _has_neigh(neighs: list[dict], address: str, lladdr: str) -> bool:
    return any(n.get("dst") == address and n.get("dev") == "eth0" and n.get("lladdr") == lladdr
               and "PERMANENT" in n.get("state", []) for n in neighs)
