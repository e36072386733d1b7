# -*- coding: utf-8 -*-
# Copyright: contributors to ebpf.deploy
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private to ebpf.deploy: reading the kernel's small text files (/proc, /sys, cgroupfs).

- ``read_text(path)``: the file's text without its surrounding white space; None when it cannot
  be read (missing, no permission, a file the kernel refuses to show).
- ``read_int(path)``: the file as an integer; None when it cannot be read or is not one (``max``
  in a cgroup file, an empty sysctl).
- ``read_fdinfo(fd)``: /proc/self/fdinfo/<fd> as {field: value}; a BPF object's fd shows its kind
  (``prog_type``, ``map_type`` or ``link_type``), ``memlock`` (the kernel's own memory figure),
  ``owner_prog_type`` of a PROG_ARRAY, ``frozen``. {} when the fd is gone.

Never raises for a file that cannot be read: what the kernel does not show is simply absent.
"""
from __future__ import annotations

from typing import Dict, Optional


def read_text(path: str) -> Optional[str]:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read().strip()
    except OSError:
        return None


def read_int(path: str) -> Optional[int]:
    text = read_text(path)
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def parse_fdinfo(text: str) -> Dict[str, str]:
    """``key:\\tvalue`` lines → {key: value}; lines without a colon are skipped."""
    out: Dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            out[key.strip()] = value.strip()
    return out


def read_fdinfo(fd: int) -> Dict[str, str]:
    return parse_fdinfo(read_text(f"/proc/self/fdinfo/{fd}") or "")
