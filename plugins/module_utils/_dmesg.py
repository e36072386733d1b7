# -*- coding: utf-8 -*-
# Copyright: contributors to ebpf.deploy
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private to ebpf.deploy: the kernel log lines about BPF and XDP since a cursor.

/dev/kmsg hands out one record per read(): ``prio,seq,usec,flags[,...];message`` followed by
optional continuation lines (`` KEY=value``). ``seq`` grows by one per record for the life of the
boot, so the cursor is simply the last ``seq`` seen. The device cannot seek to a sequence number:
we read the whole ring (it is bounded, usually a few hundred KiB) non-blocking from its start and
keep the records newer than the cursor. Records overwritten while reading give EPIPE and are
skipped; ``missed`` counts records that were already gone from the ring since the cursor.

The cursor is ``<boot id>:<seq>`` (/proc/sys/kernel/random/boot_id): ``seq`` restarts at every
boot, so a cursor of another boot is never compared with this boot's numbers. A window that spans a
reboot says so (``rebooted``, both boot ids) and holds this boot's lines only, never a mix. A bare
number (a cursor from before boot ids) is still taken: one greater than the newest ``seq`` comes
from an earlier boot, then every record is new (``restarted``). With no cursor the answer is the
current cursor and the last ``recent`` matching lines, so a first call both shows context and
starts the window for the next one.

A BPF/XDP line is one that names BPF or XDP, except the lines every boot prints while it sets the
kernel up (``LSM: initializing lsm=...,bpf``, ``Registered PF_XDP protocol family``, ...): they say
nothing about a program, and the audit used to print them as "kernel lines".

No Ansible here. Pure parts (parse_record, matches, select) are unit-tested; read_kmsg does I/O.
"""
from __future__ import annotations

import errno
import os
import re
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Optional, Tuple

from ansible_collections.ebpf.deploy.plugins.module_utils._errors import InvalidInput

KMSG = "/dev/kmsg"
BOOT_ID = "/proc/sys/kernel/random/boot_id"
RECENT_LINES = 50
MAX_LINES = 1000

LEVELS = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")

# What makes a kernel line about BPF/XDP: "Illegal XDP return value" (bpf_warn_invalid_xdp_action),
# "bpf"/"BPF"/"eBPF" (helpers, "BPF: ..." BTF messages, bpf_prog_* in oopses), XDP drivers
# ("xdp", "XDP", "xdpgeneric"), the JIT ("bpf_jit: ...", "JIT"), page_pool leaks and warnings,
# and verifier warnings. "bpf" must stand as a word or a prefix (bpf_jit, bpf:): interface and
# namespace names such as "ebpfd-..." are not BPF lines.
_BPF_LINE = re.compile(
    r"(?<![A-Za-z0-9])e?(?:bpf|BPF)(?![A-Za-z])"
    r"|(?<![A-Za-z0-9])(?:xdp|XDP)"
    r"|\bJIT\b|page_pool|verifier",
    re.ASCII)
# Lines a kernel prints while it boots, whatever runs later: features announced, not events.
_BOOT_NOISE = re.compile(
    r"^LSM: initializing lsm="                  # security/security.c: the LSM list, bpf in it
    r"|^LSM support for eBPF active"            # security/bpf/hooks.c
    r"|^NET: Registered PF_XDP protocol family"  # net/xdp/xsk.c (AF_XDP sockets)
    r"|^Spectre V2 : .*\bBPF\b"               # arch/x86/kernel/cpu/bugs.c mitigations
    r"|^systemd\[1\]: systemd \S+ running in ",  # systemd's banner in kmsg: its features, -BPF_FRAMEWORK
    re.ASCII)
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


@dataclass(frozen=True)
class Record:
    seq: int
    level: int
    facility: int
    usec: int
    message: str

    def to_dict(self) -> dict:
        return {"seq": self.seq, "level": LEVELS[self.level] if 0 <= self.level < 8 else str(self.level),
                "facility": self.facility, "time": round(self.usec / 1e6, 6), "message": self.message}


def parse_record(raw: bytes | str) -> Optional[Record]:
    """One /dev/kmsg record → Record (continuation lines dropped); None if it does not parse."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, (bytes, bytearray)) else raw
    head, sep, rest = text.partition(";")
    if not sep:
        return None
    fields = head.split(",")
    if len(fields) < 3:
        return None
    try:
        prio, seq, usec = int(fields[0]), int(fields[1]), int(fields[2])
    except ValueError:
        return None
    message = rest.split("\n", 1)[0]
    message = _unescape(message)
    return Record(seq=seq, level=prio & 7, facility=prio >> 3, usec=usec, message=message)


def _unescape(message: str) -> str:
    r"""The kernel escapes unprintable bytes as \xNN in /dev/kmsg; decode the common ones."""
    if "\\x" not in message:
        return message
    return re.sub(r"\\x([0-9a-f]{2})", lambda m: chr(int(m.group(1), 16)), message)


def matches(message: str) -> bool:
    """Is this kernel line about BPF or XDP (and not one every boot prints)?"""
    return bool(_BPF_LINE.search(message)) and not is_boot_noise(message)


def is_boot_noise(message: str) -> bool:
    """A line the kernel prints at every boot while it sets BPF/XDP up (not about a program)."""
    return bool(_BOOT_NOISE.search(message))


def boot_id(path: str = BOOT_ID) -> Optional[str]:
    """This boot's id (a UUID), None when the kernel does not say."""
    try:
        with open(path, encoding="ascii") as handle:
            value = handle.read().strip()
    except OSError:
        return None
    return value if _UUID.match(value) else None


def make_cursor(boot: Optional[str], seq: Optional[int]) -> Any:
    """``"<boot id>:<seq>"``; the bare number when the boot id is unknown."""
    if seq is None:
        return None
    return f"{boot}:{seq}" if boot else seq


def parse_cursor(value: Any) -> Tuple[Optional[str], Optional[int]]:
    """``"<boot id>:<seq>"`` or a bare number (older cursors) -> (boot id or None, seq)."""
    if value is None or value == "":
        return None, None
    if isinstance(value, bool):
        raise InvalidInput(f"dmesg_since must be a cursor from dmesg_cursor, got {value!r}")
    if isinstance(value, int):
        boot, seq_text = None, str(value)
    else:
        boot, sep, seq_text = str(value).strip().rpartition(":")
        boot = boot or None
        if sep and not (boot and _UUID.match(boot)):
            raise InvalidInput(f"dmesg_since {value!r} is not a cursor ('<boot id>:<seq>' from dmesg_cursor)")
    if not seq_text.isdigit():
        raise InvalidInput(f"dmesg_since {value!r} is not a cursor ('<boot id>:<seq>' from dmesg_cursor)")
    return boot, int(seq_text)


@dataclass
class Window:
    """What select() returns: the matching lines, the new cursor and how many records were lost."""

    lines: list
    cursor: Any                     # "<boot id>:<seq>" (make_cursor)
    missed: int = 0
    restarted: bool = False
    truncated: int = 0
    boot_id: Optional[str] = None
    rebooted: bool = False          # the cursor is of another boot: lines are this boot's only
    since_boot_id: Optional[str] = None

    def to_dict(self) -> dict:
        return {"lines": [r.to_dict() for r in self.lines], "cursor": self.cursor,
                "missed": self.missed, "restarted": self.restarted, "truncated": self.truncated,
                "boot_id": self.boot_id, "rebooted": self.rebooted, "since_boot_id": self.since_boot_id}


def select(records: Iterable[Record], since: Any, *, recent: int = RECENT_LINES,
           limit: int = MAX_LINES, match_all: bool = False, boot: Optional[str] = None) -> Window:
    """Keep the BPF/XDP records newer than the cursor ``since`` (all of them when it is None, the
    last ``recent``), of the boot ``boot`` (the one the records are from).

    The new cursor is the highest seq seen (matching or not), or ``since`` when there is nothing.
    """
    since_boot, since = parse_cursor(since)
    records = sorted(records, key=lambda r: r.seq)
    newest = records[-1].seq if records else None
    rebooted = bool(since_boot and boot and since_boot != boot)
    restarted = rebooted or (since is not None and newest is not None and newest < since)
    if restarted:
        since = -1  # an earlier boot's cursor: everything is new
    keep = [r for r in records if (since is None or r.seq > since) and (match_all or matches(r.message))]
    missed = 0
    if since is not None and since >= 0 and records and records[0].seq > since + 1:
        missed = records[0].seq - since - 1
    truncated = 0
    cap = recent if since is None else limit
    if len(keep) > cap:
        truncated = len(keep) - cap
        keep = keep[-cap:]
    seq = newest if newest is not None else (None if restarted else since)
    return Window(lines=keep, cursor=make_cursor(boot, seq), missed=missed, restarted=restarted,
                  truncated=truncated, boot_id=boot, rebooted=rebooted,
                  since_boot_id=since_boot if rebooted else None)


def iter_kmsg(path: str = KMSG) -> Iterator[Record]:
    """Every record currently in the kernel ring buffer, read non-blocking (never waits)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        while True:
            try:
                raw = os.read(fd, 8192)
            except BlockingIOError:
                return  # EAGAIN: no more records
            except OSError as exc:
                if exc.errno == errno.EPIPE:
                    continue  # the record was overwritten while we read: skip to the next
                raise
            if not raw:
                return
            record = parse_record(raw)
            if record is not None:
                yield record
    finally:
        os.close(fd)


def read_kmsg(since: Any = None, *, path: str = KMSG, recent: int = RECENT_LINES,
              limit: int = MAX_LINES) -> Window:
    """BPF/XDP kernel lines newer than the cursor ``since``, and the new cursor."""
    parse_cursor(since)  # a malformed cursor is refused before the ring is read
    boot = boot_id()
    return select(iter_kmsg(path), since, recent=recent, limit=limit, boot=boot)


def write_kmsg(message: str, *, level: int = 4, path: str = KMSG) -> None:
    """Write one line to the kernel log (for tests and markers); needs CAP_SYSLOG or root."""
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(f"<{level}>{message}\n")
