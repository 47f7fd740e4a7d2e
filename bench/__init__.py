"""Benchmarks: each module runs with `python -m bench.<name>` and records its results in bench/results/."""
