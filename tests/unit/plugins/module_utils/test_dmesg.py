"""_dmesg: /dev/kmsg records, the BPF/XDP line filter and the cursor window (pure parts)."""
from __future__ import annotations

from ansible_collections.ebpf.deploy.plugins.module_utils import _dmesg as d


def rec(seq: int, message: str, *, prio: int = 4) -> d.Record:
    return d.parse_record(f"{prio},{seq},{seq * 1000},-;{message}\n")


def test_parse_record_fields_and_continuation_lines():
    raw = b"12,345,6789012,-,caller=T1;Illegal XDP return value 7 on prog xdp_x (id 9) dev veth0, expect packet loss!\n SUBSYSTEM=net\n DEVICE=n3\n"
    record = d.parse_record(raw)
    assert record.seq == 345
    assert record.level == 4 and record.facility == 1  # 12 = facility 1 (user) << 3 | warning
    assert record.usec == 6789012
    assert record.message.startswith("Illegal XDP return value 7")
    assert "SUBSYSTEM" not in record.message
    assert record.to_dict()["level"] == "warning"
    assert record.to_dict()["time"] == 6.789012


def test_parse_record_unescapes_and_refuses_garbage():
    assert d.parse_record(r"6,1,2,-;tab\x09here").message == "tab\there"
    assert d.parse_record("no separator") is None
    assert d.parse_record("x,y,z;message") is None
    assert d.parse_record("6,1;short header") is None


def test_matches_bpf_and_xdp_lines():
    for line in ("Illegal XDP return value 7 on prog xdp_x (id 9) dev veth0, expect packet loss!",
                 "bpf_jit: proglen=4 passes=2",
                 "BPF: [123] Invalid name",
                 "eBPF program loaded",
                 "ebpfd-test: XDP marker 1234",
                 "veth0: xdpgeneric attached",
                 "page_pool_release_retry() stalled pool shutdown",
                 "JIT compiler refused",
                 "WARNING: CPU: 1 PID: 7 at kernel/bpf/verifier.c:123"):
        assert d.matches(line), line


def test_matches_ignores_names_that_only_contain_bpf():
    for line in ("ebpfd3a2h: entered promiscuous mode",
                 "ebpfd-br0: port 3(ebpfd-m3) entered disabled state",
                 "ebpfd-test: plain marker 1234",
                 "bpfilter: Loaded bpfilter_umh",
                 "eth0: link up"):
        assert not d.matches(line), line


def test_select_returns_only_newer_matching_lines_and_the_new_cursor():
    records = [rec(10, "XDP old"), rec(11, "ebpfd plain"), rec(12, "XDP new"), rec(13, "link up")]
    window = d.select(records, 11)
    assert [r.seq for r in window.lines] == [12]
    assert window.cursor == 13
    assert window.missed == 0 and not window.restarted


def test_select_without_cursor_gives_recent_lines_and_the_cursor():
    records = [rec(i, f"bpf line {i}") for i in range(100)]
    window = d.select(records, None, recent=5)
    assert [r.seq for r in window.lines] == [95, 96, 97, 98, 99]
    assert window.cursor == 99
    assert window.truncated == 95


def test_select_nothing_new_keeps_the_cursor():
    window = d.select([rec(5, "XDP a")], 5)
    assert window.lines == [] and window.cursor == 5
    assert d.select([], 7).cursor == 7


def test_select_counts_records_lost_from_the_ring():
    window = d.select([rec(50, "XDP a"), rec(51, "XDP b")], 40)
    assert window.missed == 9
    assert [r.seq for r in window.lines] == [50, 51]


def test_select_cursor_from_an_earlier_boot_returns_everything():
    window = d.select([rec(0, "XDP boot"), rec(1, "bpf x")], 5000)
    assert window.restarted
    assert [r.seq for r in window.lines] == [0, 1]
    assert window.cursor == 1


def test_select_caps_a_huge_window():
    records = [rec(i, "XDP") for i in range(20)]
    window = d.select(records, 0, limit=3)
    assert [r.seq for r in window.lines] == [17, 18, 19]
    assert window.truncated == 16
    assert window.to_dict()["cursor"] == 19


# --- boot ids and boot noise (issue 16) ----------------------------------------------------------
BOOT_A = "30b27bd1-24b0-488c-9aeb-5555d8b25b29"
BOOT_B = "0d3e2a51-8a5c-4d1e-9b1e-2f4c6a8b0c1d"


def test_lines_every_boot_prints_are_not_bpf_lines():
    """The audit printed these (this host's own boot) as "kernel lines"."""
    for line in ("LSM: initializing lsm=lockdown,capability,landlock,bpf",
                 "LSM support for eBPF active",
                 "NET: Registered PF_XDP protocol family",
                 "Spectre V2 : Enabling IBPB for BPF",
                 # a Debian 12 VM's audit (make demo LAB_VMS=1) printed this as a kernel line
                 "systemd[1]: systemd 252.39-1~deb12u2 running in system mode (+PAM +AUDIT -IDN +IPTC +KMOD "
                 "+ZSTD -BPF_FRAMEWORK -XKBCOMMON +UTMP +SYSVINIT default-hierarchy=unified)"):
        assert not d.matches(line), line
    assert d.matches("Illegal XDP return value 7 on prog xdp_x (id 9) dev veth0, expect packet loss!")


def test_the_cursor_carries_the_boot_id_and_a_window_across_a_reboot_says_so():
    records = [rec(i, "XDP line") for i in range(1, 40)]
    first = d.select(records[:20], None, boot=BOOT_A)
    assert first.cursor == f"{BOOT_A}:20" and not first.rebooted
    same = d.select(records, first.cursor, boot=BOOT_A)
    assert [r.seq for r in same.lines] == list(range(21, 40)) and same.cursor == f"{BOOT_A}:39"
    # rebooted: this boot's seq 1..39 overlaps the old cursor's 20 -- never compared, never mixed
    after = d.select(records, first.cursor, boot=BOOT_B)
    assert after.rebooted and after.restarted and after.since_boot_id == BOOT_A and after.boot_id == BOOT_B
    assert [r.seq for r in after.lines] == list(range(1, 40)) and after.cursor == f"{BOOT_B}:39"
    assert after.to_dict()["rebooted"] is True
    # a bare number (a cursor from before boot ids) still works
    assert [r.seq for r in d.select(records, 37, boot=BOOT_A).lines] == [38, 39]


def test_a_malformed_cursor_is_refused_in_one_line():
    import pytest
    from ansible_collections.ebpf.deploy.plugins.module_utils._errors import InvalidInput
    for bad in ("yesterday", "nope:12", f"{BOOT_A}:x", True):
        with pytest.raises(InvalidInput, match="dmesg_since"):
            d.parse_cursor(bad)
    assert d.parse_cursor(f"{BOOT_A}:7") == (BOOT_A, 7) and d.parse_cursor("7") == (None, 7)
