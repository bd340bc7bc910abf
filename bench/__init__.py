"""Benchmarks and the leak zoo: run with `make bench` or `python -m bench.leakzoo`."""

import harness  # noqa: F401,E402 - first, so numpy loads with harness's one BLAS thread, as `harness analyze` runs
