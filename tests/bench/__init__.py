"""Benchmarks: `python -m tests.bench.<name>` (each writes build/bench/<name>.json)."""
