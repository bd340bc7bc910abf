"""`make bench`: every benchmark in bench/, one after another, each printing its own table.

    python -m bench.run [--only NAME ...] [--list]

A benchmark is a module in bench/ with `main(argv) -> int`, listed in BENCHMARKS (in run order);
one that is missing or fails is reported and the rest still run. Exit status: 0 when all ran.
"""
from __future__ import annotations

import argparse
import importlib
import sys
import time

# (name, module, default arguments). Others' benchmarks join this list as they land.
BENCHMARKS = [
    ("capture", "bench.capture_throughput", []),
    ("correlation", "bench.bench_correlation", []),
    ("payload", "bench.payload_throughput", []),
]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    p.add_argument("--only", nargs="+", metavar="NAME", help="run only these (see --list)")
    p.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    args = p.parse_args(argv)
    if args.list:
        for name, module, _ in BENCHMARKS:
            print(f"{name:12} {module}")
        return 0
    failed = []
    for name, module, default in BENCHMARKS:
        if args.only and name not in args.only:
            continue
        print(f"== {name} ({module})", flush=True)
        started = time.perf_counter()
        try:
            entry = getattr(importlib.import_module(module), "main")
        except (ImportError, AttributeError) as exc:
            print(f"   skipped: {exc}")
            continue
        try:
            code = entry(list(default))
        except SystemExit as exc:  # a benchmark written as a script
            code = exc.code if isinstance(exc.code, int) else 1
        except Exception as exc:  # noqa: BLE001 - one benchmark's failure does not stop the others
            print(f"   failed: {type(exc).__name__}: {exc}")
            code = 1
        if code:
            failed.append(name)
        print(f"   ({time.perf_counter() - started:.1f} s)\n", flush=True)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
