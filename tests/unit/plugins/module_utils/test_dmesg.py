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
