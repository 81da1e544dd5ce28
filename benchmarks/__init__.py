"""Benchmark harness: `make bench` / `python -m benchmarks.run_all` (see benchmarks/README.md)."""
