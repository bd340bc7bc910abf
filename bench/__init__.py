"""Benchmarks and the leak zoo: run with `make bench` or `python -m bench.leakzoo`."""
