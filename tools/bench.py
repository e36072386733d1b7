"""Runs the benchmarks: every tests/bench/bench_*.py main(), or those named on the command line.

Each benchmark prints its own table and writes its figures to build/bench/<name>.json; the run ends
with one table of every figure issue 19 names beside its target (tests/bench/summary.py), read from
those files, so figures of benchmarks not run this time are shown as last measured or "not measured".
"""
from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / ".build" / "collections"))
sys.path.insert(0, str(REPO))


from tests.bench import summary  # noqa: E402


def load(path: Path):
    spec = importlib.util.spec_from_file_location(f"bench_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(names: list[str]) -> int:
    paths = sorted((REPO / "tests" / "bench").glob("bench_*.py"))
    if names:
        paths = [p for p in paths if p.stem in names or p.stem.removeprefix("bench_") in names]
    failed = 0
    for path in paths:
        print(f"\n### {path.stem}", flush=True)
        start = time.monotonic()
        try:
            rc = load(path).main() or 0
        except Exception as exc:  # a broken benchmark must not hide the others' figures
            print(f"{path.stem} failed: {exc!r}")
            rc = 1
        failed |= bool(rc)
        print(f"### {path.stem}: {'ok' if not rc else 'FAILED'} in {time.monotonic() - start:.1f} s", flush=True)
    summary.main([])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
