"""The summary table `make bench` ends with (tests/bench/summary.py): each figure of issue 19 is read
from its benchmark's file and judged against the issue's target; a missing file is "not measured"."""
from __future__ import annotations

import json
from pathlib import Path

from tests.bench import summary


def _write(tmp_path: Path, name: str, data: dict) -> None:
    (tmp_path / name).write_text(json.dumps(data))


def _fleet(*, changed: float = 2.4, rerun: float = 1.4, growth: float | None = 1.2, largest: int = 100) -> dict:
    return {"rows": [{"hosts": 5, "changed_ratio": 9.0, "rerun_ratio": 9.0},
                     {"hosts": 20, "changed_ratio": changed, "rerun_ratio": rerun, "changed_vs_commands": 1.8}],
            "growth": {"largest_hosts": largest, "changed_per_host_ratio": growth}}


def _by_figure(tmp_path: Path) -> dict[str, summary.Row]:
    return {row.figure: row for row in summary.summary_rows(tmp_path)}


def test_every_row_is_not_measured_without_files(tmp_path):
    rows = summary.summary_rows(tmp_path)
    assert len(rows) == 7
    assert {row.verdict for row in rows} == {summary.NOT_MEASURED}
    assert [row.target for row in rows] == ["<= 2.5x", "<= 1.3x", "<= 1.3x", "<= 60 ms", "100 hosts, <= 1.3x",
                                            "0", "0"]


def test_rollout_ratios_are_read_at_20_hosts_and_judged_against_the_issue(tmp_path):
    _write(tmp_path, "fleet.json", _fleet())
    rows = _by_figure(tmp_path)
    changed = rows["20-host changed rollout / ping floor"]
    assert (changed.measured, changed.verdict) == ("2.40x", "met")
    rerun = rows["20-host idempotent re-run / ping floor"]
    assert (rerun.measured, rerun.verdict) == ("1.40x", "missed by 0.10x")
    assert rows["20-host changed rollout / the same work as bpftool+ip command tasks"].measured == "1.80x"


def test_growth_needs_100_hosts_and_the_ratio(tmp_path):
    figure = "largest fleet; its changed rollout s/host / the 20-host s/host"
    _write(tmp_path, "fleet.json", _fleet(growth=1.2))
    assert _by_figure(tmp_path)[figure].verdict == "met"
    _write(tmp_path, "fleet.json", _fleet(growth=1.5, largest=50))
    assert _by_figure(tmp_path)[figure].verdict == "missed by 50 hosts; missed by 0.20x"
    _write(tmp_path, "fleet.json", _fleet(growth=None, largest=20))
    assert _by_figure(tmp_path)[figure].verdict == summary.NOT_MEASURED


def test_overhead_and_module_startup(tmp_path):
    _write(tmp_path, "overhead.json", {"target": 1.3, "ratio": {"tasks": 1.25}})
    rows = _by_figure(tmp_path)
    assert rows["bpf_program + xdp_attach tasks / bpftool + ip command tasks"].verdict == "met"
    assert rows["module process on the host (wall, peak RSS)"].verdict == summary.NOT_MEASURED
    _write(tmp_path, "overhead.json", {"target": 1.3, "ratio": {"tasks": 1.7}, "startup": {
        "target_ms": 60, "modules": {"bpf_program": {"wall_ms": 55.0, "maxrss_mib": 20.0},
                                     "xdp_attach": {"wall_ms": 72.4, "maxrss_mib": 21.0}}}})
    rows = _by_figure(tmp_path)
    assert rows["bpf_program + xdp_attach tasks / bpftool + ip command tasks"].verdict == "missed by 0.40x"
    startup = rows["module process on the host (wall, peak RSS)"]
    assert startup.measured == "bpf_program 55 ms 20 MiB, xdp_attach 72 ms 21 MiB"
    assert startup.verdict == "missed by 12 ms"
    _write(tmp_path, "overhead.json", {"startup": {"target_ms": 60, "modules": {
        "bpf_program": {"wall_ms": 55.0, "maxrss_mib": 20.0, "wall_ms_uncached": 81.2}}}})
    startup = _by_figure(tmp_path)["module process on the host (wall, peak RSS)"]
    assert (startup.measured, startup.verdict) == ("bpf_program 55 ms 20 MiB (81 ms without the bytecode cache)", "met")


def test_zero_loss_rows_per_kind_and_tcx_absent(tmp_path):
    _write(tmp_path, "xdp_swap.json", {"results": [
        {"method": "link", "passed_uncounted": 0}, {"method": "netlink", "passed_uncounted": 3},
        {"method": "ip-off-on", "passed_uncounted": 900}]})
    rows = _by_figure(tmp_path)
    xdp = rows["zero-loss upgrade, XDP link and netlink: packets that met no program"]
    assert (xdp.measured, xdp.verdict) == ("link 0, netlink 3", "missed by 3 packets")
    assert rows["zero-loss upgrade, tcx: packets that met no program"].verdict == summary.NOT_MEASURED


def test_render_has_a_header_and_one_line_per_row(tmp_path):
    rows = summary.summary_rows(tmp_path)
    lines = summary.render(rows).splitlines()
    assert lines[0].startswith("figure") and set(lines[1]) == {"-"}
    assert len(lines) == len(rows) + 2
    assert summary.written(tmp_path) == ["fleet.json: absent", "overhead.json: absent", "xdp_swap.json: absent"]
