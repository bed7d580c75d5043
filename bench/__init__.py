"""Benchmarks of hitl-temporal: `python -m bench.run [--quick] [--out bench/results.json]`."""
