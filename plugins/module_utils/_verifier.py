# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Classify kernel BPF verifier logs.

This module is private to the ebpf.deploy collection: its interface may change
without notice and it is not meant to be used from outside the collection.

It turns the text log that the kernel fills in for BPF_PROG_LOAD into a short,
classified result: which kind of error the verifier found, at which
instruction, the decisive line, and the last lines of the log (the way
cilium/ebpf's VerifierError prints them). It only reads text: no Ansible
import, no kernel access, Python standard library only.

The patterns follow the wording of real kernels (checked on 6.18); the unit
tests use logs captured from the fixtures in tests/bpf/.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

SUMMARY_LINES = 8
"""How many decisive lines a summary keeps before it says how many it omitted."""

MAX_STACK = 512
"""The BPF stack size limit in bytes; offsets outside it are bounds errors."""

# Kinds, checked in this order; the first whose pattern matches a line wins.
_KIND_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    # libbpf's rewrite of the verifier's complaint about an instruction it poisoned because a CO-RE
    # relocation found no match in the kernel's BTF (libbpf >= 1.0)
    ("core_relocation", re.compile(r"failed to resolve CO-RE relocation")),
    ("gpl_only", re.compile(r"cannot call GPL-restricted function")),
    ("null_check", re.compile(
        r"invalid mem access '\w*_or_null'"
        r"|type=\w*_or_null expected="
        r"|Possibly NULL pointer passed")),
    ("uninitialized", re.compile(
        r"invalid (?:indirect )?read from stack"
        r"|!read_ok"
        r"|[Ee]xpected an initialized (?:dynptr|iter)")),
    ("unbounded_loop", re.compile(
        r"infinite loop detected"
        r"|back-edge from insn"
        r"|loop is not bounded"
        r"|unbounded loop")),
    ("too_complex", re.compile(
        r"BPF program is too large"
        r"|The sequence of \d+ jumps is too complex")),
    ("stack_limit", re.compile(
        r"combined stack size of \d+ calls"
        r"|the call stack of \d+ frames is too deep"
        r"|tail_calls are not allowed when call stack of previous frames"
        r"|stack size \d+\(extra \d+\) is too large")),
    ("helper_not_allowed", re.compile(
        r"unknown func"
        r"|program of this type cannot use helper"
        r"|calling kernel function \S+ is not allowed")),
    ("invalid_return", re.compile(r"At program exit the register R0")),
    ("bounds", re.compile(
        r"invalid access to (?:packet|map value|memory)"
        r"|outside of the packet"
        r"|is outside of the allowed memory range"
        r"|unbounded memory access"
        r"|invalid (?:write to|indirect access to) stack"
        r"|invalid mem access .*\boff=")),
)

ERROR_KINDS: tuple[str, ...] = tuple(kind for kind, _pattern in _KIND_PATTERNS) + ("unknown",)

# Kinds about the program as a whole: the kernel reports them after walking
# every path, so the last instruction in the log is not where the error is.
_WHOLE_PROGRAM_KINDS = frozenset({"stack_limit"})

HINTS: dict[str, str] = {
    "bounds": "compare every packet pointer with data_end (and map value offsets with the value "
              "size) before reading or writing through it",
    "null_check": "check the result of bpf_map_lookup_elem() (and other *_or_null pointers) "
                  "for NULL before using it",
    "uninitialized": "initialize stack variables and objects (keys, dynptrs) before passing "
                     "or reading them",
    "unbounded_loop": "give the loop a constant upper bound the verifier can see, or use bpf_loop()",
    "too_complex": "reduce branches and unrolled code, or split the program with tail calls",
    "helper_not_allowed": "this program type or kernel does not offer the helper/kfunc",
    "gpl_only": "the helper is GPL-only: the program's license must be GPL compatible",
    "stack_limit": "the stack of all nested bpf-to-bpf calls must fit in 512 bytes",
    "invalid_return": "return a value this program type accepts (e.g. an XDP action)",
    "core_relocation": "guard the access with bpf_core_field_exists()/bpf_core_type_exists(), or build "
                       "the object for this kernel",
    "unknown": "see the verifier log",
}

_LOG_BEGIN = "-- BEGIN PROG LOAD LOG --"
_LOG_END = "-- END PROG LOAD LOG --"

# "8: (db) lock *(u64 *)(r0 +0) += r1": an instruction the verifier walked; "11: <invalid CO-RE
# relocation>" is one libbpf poisoned (it rewrites the kernel's line for it).
_INSN_LINE = re.compile(r"^(\d+): (?:\([0-9a-f]{2}\) |<invalid CO-RE relocation>)")
# "failed to resolve CO-RE relocation <byte_off> [20] struct task_struct.pid (0:0 @ offset 0)"
_CORE_RELOCATION = re.compile(r"failed to resolve CO-RE relocation <(?P<kind>\w+)> \[\d+\] (?P<target>.+?) \(")
# An explicit instruction number inside an error message.
_INSN_IN_MESSAGE = re.compile(r"\b(?:at|from) insn (\d+)\b")
_STACK_OFFSET = re.compile(r"invalid (?:indirect )?read from stack R\d+ off[= ](-?\d+)")

# Lines that follow or surround an error without being the error.
_NOISE = re.compile(
    r"^(?:processed \d+ insns"
    r"|verification time \d+"
    r"|stack depth "
    r"|cur state:"
    r"|old state:"
    r"|; "
    r"|\d+: (?:R\d|fp|frame)"
    r"|from \d+ to \d+:"
    r"|mark_precise:"
    r"|Live regs"
    r"|func#\d+"
    r"|-- (?:BEGIN|END) PROG LOAD LOG --"
    r"|libbpf: )"
)

# Statistics lines printed after the error (log_level 1 and 4).
_STAT_LINE = re.compile(r"^(?:processed \d+ insns|verification time \d+|stack depth )")

_STAT_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("processed_insns", re.compile(r"^processed (\d+) insns", re.M)),
    ("insn_limit", re.compile(r"^processed \d+ insns \(limit (\d+)\)", re.M)),
    ("max_states_per_insn", re.compile(r"\bmax_states_per_insn (\d+)")),
    ("total_states", re.compile(r"\btotal_states (\d+)")),
    ("peak_states", re.compile(r"\bpeak_states (\d+)")),
    ("mark_read", re.compile(r"\bmark_read (\d+)")),
    ("verification_time_usec", re.compile(r"^verification time (\d+) usec", re.M)),
)
_STACK_DEPTH = re.compile(r"\bstack depth (\d+(?:\+\d+)*)")


@dataclass(frozen=True)
class VerifierFinding:
    """What a verifier log says about why a program was rejected."""

    error_kind: str
    """One of ERROR_KINDS."""
    insn: int | None
    """Index of the instruction the error refers to, when the log names one."""
    reason: str
    """The decisive error line, as the kernel wrote it."""
    summary: str
    """The last lines of the log up to the error, with "(N lines omitted)" when cut."""
    log_lines: int
    """Number of non-empty lines in the whole log."""


def kernel_log(text: str) -> str:
    """Return the kernel's own log from text that may be wrapped by libbpf's printout."""
    begin = text.rfind(_LOG_BEGIN)
    if begin < 0:
        return text
    newline = text.find("\n", begin)
    body = "" if newline < 0 else text[newline + 1:]
    end = body.find(_LOG_END)
    return body if end < 0 else body[:end]


def _lines(log: str) -> list[str]:
    return [line.rstrip() for line in kernel_log(log).splitlines() if line.strip()]


def _kind_of(line: str) -> str | None:
    for kind, pattern in _KIND_PATTERNS:
        if pattern.search(line):
            return _refine(kind, line)
    return None


def _refine(kind: str, line: str) -> str:
    """Tell an out-of-range stack read (bounds) from an uninitialized one."""
    match = _STACK_OFFSET.search(line)
    if kind == "uninitialized" and match:
        offset = int(match.group(1))
        if offset >= 0 or offset < -MAX_STACK:
            return "bounds"
    return kind


def _last_insn_index(lines: list[str], before: int) -> int | None:
    """Index in `lines` of the last instruction line before position `before`."""
    for pos in range(before - 1, -1, -1):
        if _INSN_LINE.match(lines[pos]):
            return pos
    return None


def _decisive_line(lines: list[str]) -> tuple[int, str] | None:
    """Position and kind of the line that explains the rejection.

    The kernel prints the error right after the last instruction it walked,
    sometimes followed by explanations ("R1 offset is outside of the packet",
    "cur state: ..."). The first classifiable line of that block wins; when
    none is classifiable, the last line that is not noise.
    """
    last_insn = _last_insn_index(lines, len(lines))
    start = 0 if last_insn is None else last_insn + 1
    candidates = [pos for pos in range(start, len(lines)) if not _NOISE.match(lines[pos])]
    if not candidates:
        candidates = [pos for pos in range(len(lines)) if not _NOISE.match(lines[pos])]
    for pos in candidates:
        kind = _kind_of(lines[pos])
        if kind:
            return pos, kind
    if candidates:
        return candidates[-1], "unknown"
    return None


def _insn_for(lines: list[str], pos: int, kind: str) -> int | None:
    named = _INSN_IN_MESSAGE.search(lines[pos])
    if named:
        return int(named.group(1))
    if kind in _WHOLE_PROGRAM_KINDS:
        return None
    insn_pos = _last_insn_index(lines, pos)
    if insn_pos is None:
        return None
    match = _INSN_LINE.match(lines[insn_pos])
    return int(match.group(1)) if match else None


def summarize(lines: list[str], end: int, *, keep: int = SUMMARY_LINES) -> str:
    """The last `keep` lines up to `end` (exclusive), saying how many were left out."""
    shown = lines[max(0, end - keep):end]
    omitted = end - len(shown)
    if omitted > 0:
        plural = "" if omitted == 1 else "s"
        shown = ["(%d line%s omitted)" % (omitted, plural)] + shown
    return "\n".join(shown)


def _error_block_end(lines: list[str], pos: int) -> int:
    """End (exclusive) of the error and the explanation lines right after it."""
    end = pos + 1
    while end < len(lines) and not _STAT_LINE.match(lines[end]):
        end += 1
    return end


def classify_rejection(log: str) -> VerifierFinding:
    """Classify the verifier log of a program the kernel refused to load."""
    lines = _lines(log)
    found = _decisive_line(lines)
    if found is None:
        return VerifierFinding(error_kind="unknown", insn=None, reason="empty verifier log",
                               summary="", log_lines=len(lines))
    pos, kind = found
    return VerifierFinding(
        error_kind=kind,
        insn=_insn_for(lines, pos, kind),
        reason=lines[pos].strip(),
        summary=summarize(lines, _error_block_end(lines, pos)),
        log_lines=len(lines),
    )


def parse_stats(log: str) -> dict[str, int | list[int]]:
    """Verifier statistics from a log loaded with log_level >= 1 (empty dict if none).

    Keys present when the log has them: processed_insns, insn_limit,
    max_states_per_insn, total_states, peak_states, mark_read,
    verification_time_usec (ints) and stack_depth (one int per subprogram).
    """
    text = kernel_log(log)
    stats: dict[str, int | list[int]] = {}
    for key, pattern in _STAT_PATTERNS:
        matches = pattern.findall(text)
        if matches:
            stats[key] = int(matches[-1])
    depths = _STACK_DEPTH.findall(text)
    if depths:
        stats["stack_depth"] = [int(part) for part in depths[-1].split("+")]
    return stats


def one_line_message(program: str, finding: VerifierFinding) -> str:
    """A one-line error such as a module puts in `msg`."""
    where = "" if finding.insn is None else " at insn %d" % finding.insn
    core = _CORE_RELOCATION.search(finding.reason) if finding.error_kind == "core_relocation" else None
    if core:
        # the kernel only met a poisoned instruction: say what libbpf could not find, and where it looked
        return ("program '%s' not loaded: CO-RE relocation %s of %s failed%s: this kernel's BTF "
                "(/sys/kernel/btf/vmlinux) has no such field or type; %s (core_relocation)" % (
                    program, core.group("kind"), core.group("target"), where, HINTS["core_relocation"]))
    return "program '%s' rejected by the verifier%s: %s (%s)" % (
        program, where, finding.reason, finding.error_kind)
