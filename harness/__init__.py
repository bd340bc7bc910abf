"""Traffic-monitoring resistance test harness: what a passive adversary on tapped links can learn."""
import os

# One BLAS thread: the analyzers' matrix products are small, and on a batch of flows OpenBLAS would spin a
# thread per core for them (twice the CPU for a few percent of wall time, and fighting `--jobs` workers for
# the cores). Parallelism is `harness analyze --jobs`. Set before numpy loads; a caller's own setting wins.
for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

__version__ = "0.1.0"
