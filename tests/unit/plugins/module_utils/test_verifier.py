"""Verifier log classification, tested on real kernel logs (tests/unit/data/verifier/README.md)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[4]
DATA = REPO / "tests" / "unit" / "data" / "verifier"

try:
    from ansible_collections.ebpf.deploy.plugins.module_utils import _verifier as verifier
except ImportError:  # collection link not set up (`make collection`): load the file itself
    _spec = importlib.util.spec_from_file_location(
        "_verifier", REPO / "plugins" / "module_utils" / "_verifier.py")
    verifier = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(verifier)


def log(name: str) -> str:
    return (DATA / f"{name}.log").read_text()


# fixture log -> (error_kind, insn, reason): reasons are the kernel 6.18 lines, verbatim.
REJECTIONS = {
    "reject_packet_access": (
        "bounds", 1, "invalid access to packet, off=12 size=1, R1(id=0,off=12,r=0)"),
    "reject_map_lookup": (
        "null_check", 8, "R0 invalid mem access 'map_value_or_null'"),
    "reject_unbounded_loop": (
        "unbounded_loop", 9, "infinite loop detected at insn 9"),
    "reject_gpl_helper": (
        "gpl_only", 6, "cannot call GPL-restricted function from non-GPL compatible program"),
    "reject_uninit_stack": (
        "uninitialized", 9, "Expected an initialized dynptr as arg #2"),
    "uninit_key_unprivileged": (
        "uninitialized", 4, "invalid read from stack R2 off=-4 size=4"),
    "reject_stack_limit": (
        "stack_limit", None, "combined stack size of 3 calls is 640. Too large"),
    "reject_stack_limit_verbose": (
        "stack_limit", None, "combined stack size of 3 calls is 640. Too large"),
    "too_complex_tail": (
        "too_complex", 15, "BPF program is too large. Processed 1000001 insn"),
    "helper_not_allowed": (
        "helper_not_allowed", 6, "program of this type cannot use helper bpf_skb_load_bytes#26"),
    "core_missing_field": (
        "core_relocation", 11,
        "failed to resolve CO-RE relocation <byte_off> [20] struct task_struct.ebpfd_missing_field (0:0 @ offset 0)"),
    "invalid_return": (
        "invalid_return", 4,
        "At program exit the register R0 has smin=7 smax=7 should have been in [0, 1]"),
}


@pytest.mark.parametrize("name", sorted(REJECTIONS))
def test_classifies_real_rejections(name: str):
    kind, insn, reason = REJECTIONS[name]
    finding = verifier.classify_rejection(log(name))
    assert (finding.error_kind, finding.insn, finding.reason) == (kind, insn, reason)
    assert finding.error_kind in verifier.ERROR_KINDS
    assert finding.error_kind in verifier.HINTS


# The same fixtures rejected by Debian 12's kernel 6.1 and Debian 13's 6.12 (lab VM hosts, loaded by
# bpf_program over SSH): same error_kind and insn as on 6.18, some reasons worded differently.
OLDER_KERNELS = {
    "6.1": {
        "reject_packet_access": ("bounds", 1, "invalid access to packet, off=12 size=1, R1(id=0,off=12,r=0)"),
        "reject_map_lookup": ("null_check", 8, "R0 invalid mem access 'map_value_or_null'"),
        "reject_unbounded_loop": ("unbounded_loop", 9, "infinite loop detected at insn 9"),
        "reject_gpl_helper": ("gpl_only", 6, "cannot call GPL-restricted function from non-GPL compatible program"),
        "reject_uninit_stack": ("uninitialized", 9, "Expected an initialized dynptr as arg #3"),
        "reject_stack_limit": ("stack_limit", None, "combined stack size of 3 calls is 672. Too large"),
    },
    "6.12": {
        "reject_packet_access": ("bounds", 1, "invalid access to packet, off=12 size=1, R1(id=0,off=12,r=0)"),
        "reject_map_lookup": ("null_check", 8, "R0 invalid mem access 'map_value_or_null'"),
        "reject_unbounded_loop": ("unbounded_loop", 9, "infinite loop detected at insn 9"),
        "reject_gpl_helper": ("gpl_only", 6, "cannot call GPL-restricted function from non-GPL compatible program"),
        "reject_uninit_stack": ("uninitialized", 9, "Expected an initialized dynptr as arg #2"),
        "reject_stack_limit": ("stack_limit", None, "combined stack size of 3 calls is 640. Too large"),
    },
}


@pytest.mark.parametrize("kernel,name", [(k, n) for k, logs in OLDER_KERNELS.items() for n in sorted(logs)])
def test_classifies_real_rejections_of_kernel_6_1_and_6_12(kernel: str, name: str):
    kind, insn, reason = OLDER_KERNELS[kernel][name]
    finding = verifier.classify_rejection((DATA / kernel / f"{name}.log").read_text())
    assert (finding.error_kind, finding.insn, finding.reason) == (kind, insn, reason)
    assert finding.error_kind == REJECTIONS[name][0], "the kind must not depend on the kernel"


def test_every_kept_log_of_an_older_kernel_is_tested():
    kept = {(d.name, p.stem) for d in DATA.iterdir() if d.is_dir() for p in d.glob("*.log")}
    assert kept == {(k, n) for k, logs in OLDER_KERNELS.items() for n in logs}


def test_reason_is_the_error_not_the_stats_or_state_lines():
    text = log("reject_unbounded_loop")
    assert text.rstrip().splitlines()[-1].startswith("processed ")
    finding = verifier.classify_rejection(text)
    assert not finding.reason.startswith(("processed", "cur state", "old state"))


def test_short_log_summary_is_whole_up_to_the_error():
    finding = verifier.classify_rejection(log("reject_stack_limit"))
    assert finding.log_lines == 2
    assert finding.summary == "combined stack size of 3 calls is 640. Too large"


def test_summary_keeps_the_last_lines_and_counts_the_rest():
    text = log("reject_map_lookup")
    finding = verifier.classify_rejection(text)
    lines = [line for line in text.splitlines() if line.strip()]
    # everything but the trailing "processed ..." line is before or at the error
    assert finding.log_lines == len(lines) == 16
    summary = finding.summary.splitlines()
    assert summary[0] == "(7 lines omitted)"
    assert summary[1:] == lines[7:15]
    assert summary[-1] == "R0 invalid mem access 'map_value_or_null'"


def test_summary_includes_the_explanation_after_the_error():
    summary = verifier.classify_rejection(log("reject_unbounded_loop")).summary.splitlines()
    assert summary[0] == "(19 lines omitted)"
    assert summary[-3] == "infinite loop detected at insn 9"
    assert summary[-2].startswith("cur state: ")
    assert summary[-1].startswith("old state: ")


def test_summary_of_a_long_verbose_log():
    finding = verifier.classify_rejection(log("reject_stack_limit_verbose"))
    assert finding.log_lines == 980
    summary = finding.summary.splitlines()
    assert len(summary) == verifier.SUMMARY_LINES + 1
    assert summary[0] == "(969 lines omitted)"
    assert summary[-1] == "combined stack size of 3 calls is 640. Too large"


def test_summarize_singular_and_uncut():
    lines = ["a", "b", "c"]
    assert verifier.summarize(lines, 3, keep=2) == "(1 line omitted)\nb\nc"
    assert verifier.summarize(lines, 3, keep=3) == "a\nb\nc"


def test_accepts_the_log_as_libbpf_prints_it():
    wrapped = ("libbpf: prog 'xdp_unchecked_lookup': BPF program load failed: Permission denied\n"
               "libbpf: prog 'xdp_unchecked_lookup': -- BEGIN PROG LOAD LOG --\n"
               + log("reject_map_lookup")
               + "-- END PROG LOAD LOG --\n"
               "libbpf: prog 'xdp_unchecked_lookup': failed to load: -13\n")
    plain = verifier.classify_rejection(log("reject_map_lookup"))
    assert verifier.classify_rejection(wrapped) == plain
    assert verifier.parse_stats(wrapped) == verifier.parse_stats(log("reject_map_lookup"))


@pytest.mark.parametrize("line, kind, insn", [
    # Messages from kernel/bpf/verifier.c that these fixtures cannot trigger as root on 6.18.
    ("back-edge from insn 12 to 7", "unbounded_loop", 12),
    ("The sequence of 8193 jumps is too complex.", "too_complex", 3),
    ("unknown func bpf_ktime_get_coarse_ns#160", "helper_not_allowed", 3),
    ("invalid indirect read from stack R2 off -8+0 size 8", "uninitialized", 3),
    ("invalid read from stack R1 off=8 size=8", "bounds", 3),
    ("invalid access to map value, value_size=8 off=8 size=8", "bounds", 3),
    ("R1 type=map_value_or_null expected=fp, pkt, pkt_meta, map_key, map_value", "null_check", 3),
    ("the call stack of 9 frames is too deep !", "stack_limit", None),
    ("R1 invalid mem access 'scalar'", "unknown", 3),
])
def test_classifies_other_kernel_messages(line: str, kind: str, insn: int | None):
    text = ("0: R1=ctx() R10=fp0\n"
            "3: (79) r0 = *(u64 *)(r1 +0)\n"
            f"{line}\n"
            "processed 4 insns (limit 1000000) max_states_per_insn 0 total_states 0 peak_states 0 "
            "mark_read 0\n")
    finding = verifier.classify_rejection(text)
    assert (finding.error_kind, finding.insn, finding.reason) == (kind, insn, line)


def test_empty_log():
    finding = verifier.classify_rejection("")
    assert finding == verifier.VerifierFinding(
        error_kind="unknown", insn=None, reason="empty verifier log", summary="", log_lines=0)
    assert verifier.parse_stats("") == {}


def test_finding_is_frozen():
    finding = verifier.classify_rejection(log("reject_gpl_helper"))
    with pytest.raises(AttributeError):
        finding.insn = 1  # type: ignore[misc]


def test_stats_of_a_successful_load():
    stats = verifier.parse_stats(log("counter_ok"))
    assert stats.pop("verification_time_usec") > 0  # differs on every capture
    assert stats == {
        "processed_insns": 11,
        "insn_limit": 1000000,
        "max_states_per_insn": 0,
        "total_states": 1,
        "peak_states": 1,
        "mark_read": 0,
        "stack_depth": [8],
    }


def test_stats_per_subprogram_stack_depth():
    stats = verifier.parse_stats(log("reject_stack_limit_verbose"))
    assert stats["stack_depth"] == [0, 320, 320]
    assert stats["processed_insns"] == 258
    assert stats["peak_states"] == 2


def test_stats_of_a_failed_log_level_1():
    stats = verifier.parse_stats(log("too_complex_tail"))
    assert stats == {
        "processed_insns": 1000001,
        "insn_limit": 1000000,
        "max_states_per_insn": 4,
        "total_states": 10003,
        "peak_states": 10003,
        "mark_read": 0,
    }


def test_stats_of_an_older_kernel_format():
    stats = verifier.parse_stats("processed 15 insns (limit 131072), stack depth 8+16\n")
    assert stats == {"processed_insns": 15, "insn_limit": 131072, "stack_depth": [8, 16]}


def test_one_line_message():
    finding = verifier.classify_rejection(log("reject_map_lookup"))
    assert verifier.one_line_message("xdp_unchecked_lookup", finding) == (
        "program 'xdp_unchecked_lookup' rejected by the verifier at insn 8: "
        "R0 invalid mem access 'map_value_or_null' (null_check)")


def test_one_line_message_without_instruction():
    finding = verifier.classify_rejection(log("reject_stack_limit"))
    assert verifier.one_line_message("xdp_stack_limit", finding) == (
        "program 'xdp_stack_limit' rejected by the verifier: "
        "combined stack size of 3 calls is 640. Too large (stack_limit)")


def test_one_line_message_of_a_co_re_relocation_names_the_type_and_field():
    finding = verifier.classify_rejection(log("core_missing_field"))
    assert verifier.one_line_message("core_read_missing", finding) == (
        "program 'core_read_missing' not loaded: CO-RE relocation byte_off of "
        "struct task_struct.ebpfd_missing_field failed at insn 11: this kernel's BTF "
        "(/sys/kernel/btf/vmlinux) has no such field or type; guard the access with "
        "bpf_core_field_exists()/bpf_core_type_exists(), or build the object for this kernel (core_relocation)")
