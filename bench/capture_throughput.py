"""Capture throughput: `harness analyze` beside tshark on the same synthetic capture, in the same run.

    python -m bench.capture_throughput [PACKETS ...] [--scan PROBES ...] [--dns QUERIES ...]
                                     [--transfer SEGMENTS ...]
        (default: 100000 1000000 packets, scans of 100000 400000 probes, DNS of 120000 queries, a transfer of
        1000000 segments)
    python -m bench.capture_throughput --observe-only FILE  (the observe tier alone; used by the table)
    python -m bench.capture_throughput --per-analyzer FILE  (seconds spent in each analyzer)

For each size the mixed capture (bench/mixed_capture.py, cached under bench/out/) is read by
`harness analyze` with the full analyzer set (in one process, and with the number of processes it
picks by itself on this machine), by the observe tier alone, by `tshark -q -z conv,tcp`, and by
tshark printing per-packet fields. Each runs as a child process; wall time, CPU time (from `os.wait4`:
all of the child's processes) and peak memory (PSS summed over the child's process tree, sampled) are
printed with packets per second and the ratio to tshark conv. Three more captures show memory, read by
`harness analyze` and tshark conv only: a port scan (bench/scan_capture.py: a flow per probe) per flow; a
gateway's DNS (bench/dns_capture.py: ten minutes of answered queries, a UDP flow each) over a long capture of
flows nothing closes; one transfer (bench/transfer_capture.py: one TCP flow of a million segments, 1.5 GB) per
packet of one flow.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter

from bench import dns_capture, scan_capture, transfer_capture
from bench.mixed_capture import cached

TSHARK_FIELDS = ["frame.time_epoch", "ip.src", "ip.dst", "tcp.srcport", "tcp.dstport", "udp.srcport", "udp.dstport",
                 "tcp.len", "frame.len"]


def _tree(pid: int) -> list[int]:
    """`pid` and its descendants (from /proc; Linux)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except OSError:
            continue
    return out


def _memory_mb(pid: int) -> float:
    """Memory of `pid` and its descendants: PSS summed (/proc/PID/smaps_rollup: a page shared by several
    processes, such as a forked worker's copy-on-write heap, counted once in all), RSS where PSS is not given."""
    total = 0.0
    for p in _tree(pid):
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                total += next(int(line.split()[1]) * 1024 for line in f if line.startswith("Pss:"))
            continue
        except (OSError, StopIteration, ValueError, IndexError):
            pass
        try:
            with open(f"/proc/{p}/statm") as f:
                total += int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            continue
    return total / 1e6


def _child(cmd: list[str]) -> tuple[float, float, float, int]:
    """Run `cmd` as a child: (wall s, CPU s (user + system, its processes included), peak memory MB, exit code).

    Peak memory is the largest PSS summed over the child and all its processes, sampled every 20 ms (a
    process tree: `harness analyze -j N` runs N workers, whose pages shared with the parent summed RSS would
    count twice or more), and never less than the largest single process's maximum RSS from wait4."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peak = 0.0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.wait(0.02):
            peak = max(peak, _memory_mb(proc.pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, status, usage = os.wait4(proc.pid, 0)
    stop.set()
    sampler.join()
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    return wall, usage.ru_utime + usage.ru_stime, max(peak, usage.ru_maxrss / 1024), proc.returncode


def _commands(path: str) -> list[tuple[str, list[str]]]:
    from harness.adversary import default_jobs

    py = sys.executable
    out_json = os.path.join(os.path.dirname(path), "findings.json")
    harness = [py, "-m", "harness", "analyze", path, "--json", out_json]
    out = [("harness analyze -j 1 (all analyzers)", harness + ["-j", "1"])]
    jobs = default_jobs([path])
    if jobs > 1:
        out.append((f"harness analyze -j {jobs} (default here)", harness + ["-j", str(jobs)]))
    out.append(("harness observe tier only", [py, "-m", "bench.capture_throughput", "--observe-only", path]))
    if shutil.which("tshark"):
        out += [("tshark -q -z conv,tcp", ["tshark", "-n", "-r", path, "-q", "-z", "conv,tcp"]),
                ("tshark -T fields (per packet)",
                 ["tshark", "-n", "-r", path, "-T", "fields", *[a for f in TSHARK_FIELDS for a in ("-e", f)]])]
    return out


# The scan, DNS and transfer captures measure memory (per flow, over time, per packet of a flow): harness analyze
# and tshark conv only.
MEMORY_CAPTURE_SKIP = frozenset({"harness observe tier only", "tshark -T fields (per packet)"})


def table(sizes: list[int], skip: frozenset[str] = frozenset(), scans: list[int] = (), dns: list[int] = (),
          transfers: list[int] = ()) -> str:
    """Markdown rows per capture and tool. CPU time is printed beside wall time: on a shared machine the wall
    clock also counts other jobs, CPU time does not; the ratio is tshark conv's time over the tool's, both ways."""
    rows = ["| capture | packets | MB | tool | wall s | CPU s | packets/s (wall) | vs tshark conv (wall / CPU) "
            "| peak memory MB |",
            "| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |"]
    captures = [("mixed", n, cached(n), skip) for n in sizes]
    captures += [(f"scan, {n:,} probes", scan_capture.frames(n), scan_capture.cached(n), skip | MEMORY_CAPTURE_SKIP)
                 for n in scans]
    captures += [(f"DNS, {n:,} queries", dns_capture.frames(n), dns_capture.cached(n), skip | MEMORY_CAPTURE_SKIP)
                 for n in dns]
    captures += [(f"one transfer, {n:,} segments", transfer_capture.frames(n), transfer_capture.cached(n),
                  skip | MEMORY_CAPTURE_SKIP) for n in transfers]
    for label, n, path, skipped in captures:
        mb = os.path.getsize(path) / 1e6
        results = []
        for name, cmd in _commands(path):
            if name in skipped:
                continue
            wall, cpu, peak, rc = _child(cmd)
            results.append((name, wall, cpu, peak, rc))
            print(f"  {label:22} {n:>9,} {name:34} {wall:8.1f} s wall {cpu:8.1f} s CPU {peak:8.0f} MB"
                  f"  (exit {rc})", file=sys.stderr, flush=True)
        conv = next(((w, c) for name, w, c, _, _ in results if name.startswith("tshark -q")), None)
        for name, wall, cpu, peak, rc in results:
            ratio = f"{conv[0] / wall:.2f}x / {conv[1] / cpu:.2f}x" if conv else "-"
            note = "" if rc == 0 else f" (exit {rc})"
            rows.append(f"| {label} | {n:,} | {mb:.0f} | {name}{note} | {wall:.1f} | {cpu:.1f} | {n / wall:,.0f} "
                        f"| {ratio} | {peak:.0f} |")
    return "\n".join(rows)


def observe_only(path: str) -> None:
    from harness.observe import Observer, fewer_gc_passes

    obs = Observer([path])
    with fewer_gc_passes():
        flows = sum(1 for _ in obs.flows())
    print(f"{obs.packets} packets, {flows} flows, skipped {sum(obs.skipped.values())}")


def per_analyzer(path: str) -> None:
    """Seconds in each analyzer's on_batch (on_flow per flow unless it has its own) and finish, on a streamed
    run in the runner's batches (the observe tier timed apart)."""
    from harness.analysis import flow_batches
    from harness.analyzers import Knowledge, registry
    from harness.observe import Observer, fewer_gc_passes
    from harness.observe.flow_log import FlowLog

    analyzers = [cls(Knowledge()) for cls in registry().values()]
    spent: Counter = Counter()
    findings: Counter = Counter()
    seen = FlowLog()  # what finish gets in `harness analyze`
    started = time.perf_counter()
    with fewer_gc_passes():
        for batch in flow_batches(Observer([path]).flows(), []):  # as `harness analyze` hands them over
            for a in analyzers:
                t0 = time.perf_counter()
                findings[a.id] += sum(len(list(found or ())) for found in a.on_batch(batch))
                spent[a.id] += time.perf_counter() - t0
            for flow in batch:
                seen.append(flow)
        for a in analyzers:
            t0 = time.perf_counter()
            findings[a.id] += len(list(a.finish(seen) or ()))
            spent[a.id] += time.perf_counter() - t0
    total = time.perf_counter() - started
    print(f"{len(seen)} flows, {total:.1f} s in all; observe tier {total - sum(spent.values()):.1f} s")
    for aid, secs in spent.most_common():
        print(f"  {aid:32} {secs:8.1f} s  {secs / len(seen) * 1e3:7.2f} ms/flow  {findings[aid]:8} findings")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.capture_throughput",
        description="harness analyze beside tshark on the bench's mixed, scan, DNS and transfer captures")
    parser.add_argument("packets", nargs="*", type=int, default=[100_000, 1_000_000],
                        help="capture sizes in packets (default: 100000 1000000)")
    parser.add_argument("--scan", nargs="*", type=int, default=[100_000, 400_000], metavar="PROBES",
                        help="scan captures (bench/scan_capture.py) of these many probes (default: 100000 400000; "
                             "none: --scan)")
    parser.add_argument("--dns", nargs="*", type=int, default=[120_000], metavar="QUERIES",
                        help="DNS captures (bench/dns_capture.py) of these many queries (default: 120000; "
                             "none: --dns)")
    parser.add_argument("--transfer", nargs="*", type=int, default=[1_000_000], metavar="SEGMENTS",
                        help="one-transfer captures (bench/transfer_capture.py) of these many segments (default: "
                             "1000000, 1.5 GB; none: --transfer)")
    parser.add_argument("--observe-only", metavar="FILE", help="time the observe tier alone on FILE")
    parser.add_argument("--per-analyzer", metavar="FILE", help="seconds in each analyzer on FILE")
    args = parser.parse_args(argv)
    if args.observe_only:
        observe_only(args.observe_only)
        return 0
    if args.per_analyzer:
        per_analyzer(args.per_analyzer)
        return 0
    sizes = args.packets
    scans, dns, transfers = (' '.join(map(str, x)) for x in (args.scan, args.dns, args.transfer))
    print(f"capture throughput: python -m bench.capture_throughput {' '.join(map(str, sizes))} --scan {scans} "
          f"--dns {dns} --transfer {transfers}", file=sys.stderr)
    print(table(sizes, scans=args.scan, dns=args.dns, transfers=args.transfer))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
