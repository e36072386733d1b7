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

A cursor greater than the newest ``seq`` comes from an earlier boot (seq restarts at 0): then every
record is new. With no cursor the answer is the current cursor and the last ``recent`` matching
lines, so a first call both shows context and starts the window for the next one.

No Ansible here. Pure parts (parse_record, matches, select) are unit-tested; read_kmsg does I/O.
"""
from __future__ import annotations

import errno
import os
import re
from dataclasses import dataclass
from typing import Iterable, Iterator, Optional

KMSG = "/dev/kmsg"
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
    """Is this kernel line about BPF or XDP?"""
    return bool(_BPF_LINE.search(message))


@dataclass
class Window:
    """What select() returns: the matching lines, the new cursor and how many records were lost."""

    lines: list
    cursor: Optional[int]
    missed: int = 0
    restarted: bool = False
    truncated: int = 0

    def to_dict(self) -> dict:
        return {"lines": [r.to_dict() for r in self.lines], "cursor": self.cursor,
                "missed": self.missed, "restarted": self.restarted, "truncated": self.truncated}


def select(records: Iterable[Record], since: Optional[int], *, recent: int = RECENT_LINES,
           limit: int = MAX_LINES, match_all: bool = False) -> Window:
    """Keep the BPF/XDP records newer than ``since`` (all of them when since is None, last ``recent``).

    The new cursor is the highest seq seen (matching or not), or ``since`` when there is nothing.
    """
    records = sorted(records, key=lambda r: r.seq)
    newest = records[-1].seq if records else None
    restarted = since is not None and newest is not None and newest < since
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
    cursor = newest if newest is not None else (None if restarted else since)
    return Window(lines=keep, cursor=cursor, missed=missed, restarted=restarted, truncated=truncated)


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


def read_kmsg(since: Optional[int] = None, *, path: str = KMSG, recent: int = RECENT_LINES,
              limit: int = MAX_LINES) -> Window:
    """BPF/XDP kernel lines newer than the cursor ``since``, and the new cursor."""
    return select(iter_kmsg(path), since, recent=recent, limit=limit)


def write_kmsg(message: str, *, level: int = 4, path: str = KMSG) -> None:
    """Write one line to the kernel log (for tests and markers); needs CAP_SYSLOG or root."""
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(f"<{level}>{message}\n")
