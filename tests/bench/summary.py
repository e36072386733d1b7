"""The one table `make bench` ends with: every figure of issue 19, measured, beside its target.

Read from the benchmarks' own files in build/bench (fleet.json, overhead.json, xdp_swap.json), so
the table also shows the figures of benchmarks that ran earlier or alone. A figure whose file or key
is missing is "not measured"; a missed target is a figure like any other, never a failure.

    python tests/bench/summary.py [BENCH_DIR]
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:   # also run as a script
    sys.path.insert(0, str(REPO))

from tests.bench.bench_fleet import GROWTH_TARGET, REFERENCE_HOSTS, TARGETS  # noqa: E402

BENCH_DIR = REPO / "build" / "bench"
NOT_MEASURED = "not measured"
FLEET_TARGET_HOSTS = 100
OVERHEAD_TARGET = 1.3   # bench_overhead.TARGET, when overhead.json does not say


@dataclass(frozen=True)
class Row:
    figure: str
    measured: str
    target: str
    verdict: str      # "met", "missed by ...", "not measured", or "-" for a figure without target
    source: str


def _read(bench_dir: Path, name: str) -> dict | None:
    try:
        return json.loads((bench_dir / name).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _ratio_verdict(value: float, target: float) -> str:
    return "met" if value <= target else f"missed by {value - target:.2f}x"


def _absent(figure: str, target: str, source: str) -> Row:
    return Row(figure, NOT_MEASURED, target, NOT_MEASURED, source)


def _reference_row(fleet: dict | None) -> dict:
    return next((r for r in (fleet or {}).get("rows", []) if r["hosts"] == REFERENCE_HOSTS), {})


def rollout_rows(fleet: dict | None) -> list[Row]:
    src = "fleet.json"
    ref = _reference_row(fleet)
    rows = []
    for kind, what in (("changed", "changed rollout"), ("rerun", "idempotent re-run")):
        figure = f"{REFERENCE_HOSTS}-host {what} / ping floor"
        target = TARGETS[kind]
        value = ref.get(f"{kind}_ratio")
        if value is None:
            rows.append(_absent(figure, f"<= {target}x", src))
        else:
            rows.append(Row(figure, f"{value:.2f}x", f"<= {target}x", _ratio_verdict(value, target), src))
    return rows


def scale_rows(fleet: dict | None) -> list[Row]:
    """The largest fleet and its growth, then the changed rollout against the same work done with
    bpftool/ip command tasks (a comparison the issue asks for, without a target)."""
    src = "fleet.json"
    rows = []
    growth = (fleet or {}).get("growth") or {}
    figure = f"largest fleet; its changed rollout s/host / the {REFERENCE_HOSTS}-host s/host"
    target = f"{FLEET_TARGET_HOSTS} hosts, <= {GROWTH_TARGET}x"
    largest, ratio = growth.get("largest_hosts"), growth.get("changed_per_host_ratio")
    if largest is None:
        rows.append(_absent(figure, target, src))
    elif ratio is None:
        rows.append(Row(figure, f"{largest} hosts, ratio {NOT_MEASURED}", target, NOT_MEASURED, src))
    else:
        verdicts = []
        if largest < FLEET_TARGET_HOSTS:
            verdicts.append(f"missed by {FLEET_TARGET_HOSTS - largest} hosts")
        if ratio > GROWTH_TARGET:
            verdicts.append(f"missed by {ratio - GROWTH_TARGET:.2f}x")
        rows.append(Row(figure, f"{largest} hosts, {ratio:.2f}x", target, "; ".join(verdicts) or "met", src))
    for row in (fleet or {}).get("rows", []):
        if row.get("changed_vs_commands") is not None:
            rows.append(Row(f"{row['hosts']}-host changed rollout / the same work as bpftool+ip command tasks",
                            f"{row['changed_vs_commands']:.2f}x", "-", "-", src))
    return rows


def overhead_rows(overhead: dict | None) -> list[Row]:
    src = "overhead.json"
    figure = "bpf_program + xdp_attach tasks / bpftool + ip command tasks"
    target = (overhead or {}).get("target", OVERHEAD_TARGET)
    value = ((overhead or {}).get("ratio") or {}).get("tasks")
    if value is None:
        rows = [_absent(figure, f"<= {target}x", src)]
    else:
        rows = [Row(figure, f"{value:.2f}x", f"<= {target}x", _ratio_verdict(value, target), src)]

    figure = "module process on the host (wall, peak RSS)"
    startup = (overhead or {}).get("startup") or {}
    modules, target_ms = startup.get("modules") or {}, startup.get("target_ms", 60)
    if not modules:
        rows.append(_absent(figure, f"<= {target_ms} ms", src))
    else:
        worst = max(m["wall_ms"] for m in modules.values())
        measured = ", ".join(f"{name} {m['wall_ms']:.0f} ms {m['maxrss_mib']:.0f} MiB" + (
            f" ({m['wall_ms_uncached']:.0f} ms without the bytecode cache)" if "wall_ms_uncached" in m else "")
            for name, m in sorted(modules.items()))
        verdict = "met" if worst <= target_ms else f"missed by {worst - target_ms:.0f} ms"
        rows.append(Row(figure, measured, f"<= {target_ms} ms", verdict, src))
    return rows


def swap_rows(swap: dict | None) -> list[Row]:
    src = "xdp_swap.json"
    results = (swap or {}).get("results") or []
    rows = []
    for label, wanted in (("XDP link and netlink", lambda m: m in ("link", "netlink")),
                          ("tcx", lambda m: m.startswith("tcx"))):
        figure = f"zero-loss upgrade, {label}: packets that met no program"
        mine = [r for r in results if wanted(r.get("method", ""))]
        if not mine:
            rows.append(_absent(figure, "0", src))
            continue
        measured = ", ".join(f"{r['method']} {r['passed_uncounted']}" for r in mine)
        lost = sum(r["passed_uncounted"] for r in mine)
        rows.append(Row(figure, measured, "0", "met" if lost == 0 else f"missed by {lost} packets", src))
    return rows


def summary_rows(bench_dir: Path = BENCH_DIR) -> list[Row]:
    """In the order of the issue's table."""
    fleet = _read(bench_dir, "fleet.json")
    return [*rollout_rows(fleet), *overhead_rows(_read(bench_dir, "overhead.json")), *scale_rows(fleet),
            *swap_rows(_read(bench_dir, "xdp_swap.json"))]


def written(bench_dir: Path) -> list[str]:
    """When each file was written: the table may mix this run's figures with older ones."""
    lines = []
    for name in ("fleet.json", "overhead.json", "xdp_swap.json"):
        try:
            stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime((bench_dir / name).stat().st_mtime))
        except FileNotFoundError:
            stamp = "absent"
        lines.append(f"{name}: {stamp}")
    return lines


def render(rows: list[Row]) -> str:
    head = Row("figure", "measured", "target", "result", "from build/bench/")
    widths = [max(len(getattr(r, f)) for r in [head, *rows]) for f in Row.__dataclass_fields__]
    lines = []
    for index, row in enumerate([head, *rows]):
        cells = [getattr(row, f) for f in Row.__dataclass_fields__]
        lines.append("  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip())
        if index == 0:
            lines.append("-" * len(lines[0]))
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    bench_dir = Path(argv[0]) if argv else BENCH_DIR
    print(f"\nIssue 19, every figure beside its target (read from {bench_dir})")
    print(render(summary_rows(bench_dir)))
    print("written: " + "; ".join(written(bench_dir)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
