"""The adversary's half of the pipeline: capture files and a keys file in, the findings document out.

Nothing here reads truth or imports the simulator or the scorer (tests/test_boundary.py); `harness
analyze` starts from here, so it does not pay for importing them either.
"""
from __future__ import annotations

import os
from collections import Counter
from contextlib import closing
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

from harness.analysis import AnalysisResult, findings_document, run_analyzers
from harness.findings_file import FindingsFile
from harness.keys import load_knowledge
from harness.observe import Observer, fewer_gc_passes
from harness.observe.flow_log import FlowLog
from harness.observe.model import Observation
from harness.parallel import run_parallel
from harness.errors import HarnessError
from harness.observe.decode import Decoder
from harness.observe.flows import MAX_CHUNKS
from harness.wire.capture_reader import CaptureReader, capture_size

PARALLEL_MIN_BYTES = 16 * 1024 * 1024  # captures smaller than this in all are analysed in one process
MAX_AUTO_JOBS = 4  # processes `harness analyze` starts by itself (each holds its own open flows)
MEMORY_BUDGET_MB = 1000  # ... and the memory they may use in all, by `estimated_peak_mb` (`--jobs` overrides)


def _analyze(paths: list[str], keys_path: str | None, progress, sink) -> tuple[dict, AnalysisResult]:
    knowledge = load_knowledge(keys_path)
    observer = Observer([str(p) for p in paths], progress=progress)  # refuses a non-capture before any work
    with fewer_gc_passes():
        result = run_analyzers(observer.flows(), knowledge, sink=sink)
    return _document(result, list(observer.paths), observer.packets, observer.skipped, observer.notes,
                     lazy=sink is not None), result


def _document(result: AnalysisResult, paths: list[str], packets: int, skipped: Counter, notes: list[str],
              lazy: bool = False) -> dict:
    """The findings document of one run: its flows in order of first packet, with what the reader counted
    (`lazy`: the flow rows are made as the file writer reads them)."""
    flows = (result.flows.by_first_seen() if isinstance(result.flows, FlowLog)
             else sorted(result.flows, key=lambda f: f.first_seen))
    observation = Observation(captures=paths, flows=flows, packets=packets, skipped=skipped, notes=notes)
    return findings_document(observation, result, lazy)


def analyze_captures(paths: list[str], keys_path: str | None = None, progress=None) -> dict:
    """The adversary: captures and declared keys in, `harness.findings/1` document out (held in memory).

    Streams: each flow goes to the analyzers as soon as it finishes and its payload is dropped after, so
    memory does not grow with the capture's bytes (the findings do: for a large capture use
    `analyze_to_file`). `progress(done_bytes, total_bytes, records)`, if given, is called now and then
    while reading (see `harness.observe.progress`).
    """
    return _analyze(paths, keys_path, progress, None)[0]


def analyze_to_file(paths: list[str], keys_path: str | None, out_path: str | Path, progress=None,
                    jobs: int = 1) -> tuple[dict, Counter]:
    """As `analyze_captures`, but findings stream to `out_path` as each flow finishes; memory holds one
    small summary per flow, not the findings. With `jobs` > 1 the analyzers are split over that many
    processes (harness/parallel.py); the document is the same. Returns the document without its
    findings, and the count of findings per observable. Nothing is left at `out_path` if the run fails."""
    with FindingsFile(out_path) as sink:
        if jobs > 1:
            Observer([str(p) for p in paths])  # refuses a non-capture before any process starts
            load_knowledge(keys_path)  # and a bad keys file
            result, seen = run_parallel([str(p) for p in paths], keys_path, jobs, sink, progress=progress is not None)
            doc = _document(result, seen["paths"], seen["packets"], seen["skipped"], seen["notes"], lazy=True)
        else:
            doc, result = _analyze(paths, keys_path, progress, sink)
        sink.finish(doc)
    doc.pop("findings", None)
    return doc, result.counts


def estimated_peak_mb(capture_mb: float, jobs: int, flows: float = 0.0, largest_flow: float = 0.0) -> float:
    """Peak memory of `harness analyze -j jobs` (all processes) on `capture_mb` of capture holding about
    `flows` flows, the busiest with about `largest_flow` payload packets: the largest of three fits, with a
    margin, measured with `python -m bench.capture_throughput`.
    By bytes, on the mixed capture (the 2 GB `bench.mixed_capture 5000000`, PSS summed: one process 569 MB,
    two 728, three 863): one process 140 + 0.215 MB per MB, each further one 100 + 0.05 MB per MB (its own
    open flows and labels; only one process keeps the flow summaries). By flows, on the port scan
    (`bench.scan_capture 400000`, a flow per probe: one process 566 MB, two 926 MB PSS summed, the parent
    holding 220 of them while it merges): one process 140 + 1.1 kB per flow, each further one 100 + 1 kB.
    By the busiest flow: its packets' offsets and times are held while it is open and analysed, in every
    process (a 1.5 GB capture of one transfer, 1,000,000 segments: one process 640 MB, two 1,216 MB PSS
    summed): 90 + 0.55 kB per payload packet (at most MAX_CHUNKS) per process."""
    by_bytes = 140 + 0.215 * capture_mb + (jobs - 1) * (100 + 0.05 * capture_mb)
    by_flows = 140 + 1.1e-3 * flows + (jobs - 1) * (100 + 1.0e-3 * flows)
    by_largest_flow = jobs * (90 + 0.55e-3 * min(largest_flow, MAX_CHUNKS))
    return max(by_bytes, by_flows, by_largest_flow)


SAMPLE_RECORDS = 20_000  # records read from the start of each capture to estimate its flows


@dataclass(frozen=True)
class CaptureSample:
    """What the first SAMPLE_RECORDS records of a capture say about all of it, scaled by its size."""

    flows: float = 0.0  # TCP/UDP flows
    largest_flow: float = 0.0  # payload packets of the busiest flow


def sample_capture(path: str, total_bytes: int) -> CaptureSample:
    """Flows in the capture at `path` (`total_bytes` long, uncompressed), and the payload packets of its busiest
    one, from its first SAMPLE_RECORDS records: distinct TCP/UDP address-and-port pairs per byte there, and the
    busiest pair's packets with payload per byte, times the bytes (the bench's captures: flows within 1% for a
    port scan, 0.4% low at 30,000 mixed packets, 32% high at 5,000,000, where flows seen at the start go on past
    it; a capture of one transfer: its packets exactly). Nothing (zeros) if the file cannot be read."""
    decoder = Decoder(Counter())
    pairs: Counter = Counter()
    read = 0
    try:
        records = CaptureReader(path).records()
        with closing(records):  # stopped early: the file is closed now, not when the generator is collected
            for record in islice(records, SAMPLE_RECORDS):
                read += len(record.data) + 16  # record header: 16 bytes in pcap, more in pcapng
                p = decoder.decode(record)
                if p is not None:
                    pairs[(p.proto, *sorted(((p.src, p.sport), (p.dst, p.dport))))] += p.paylen > 0
    except HarnessError:  # not a capture, or unreadable: the run itself says so, in one line
        return CaptureSample()
    if not read:
        return CaptureSample()
    scale = total_bytes / read
    return CaptureSample(len(pairs) * scale, max(pairs.values(), default=0) * scale)


def default_jobs(paths: list[str]) -> int:
    """Processes for `harness analyze` when not told: one for small captures (start-up would cost more than
    it saves), else one per core up to MAX_AUTO_JOBS, and fewer where the estimated peak memory
    (`estimated_peak_mb`, flows and the busiest flow estimated from the start of each capture) would pass
    MEMORY_BUDGET_MB: a 2 GB capture of the bench's mixed traffic gets two at most, a port scan one, and so
    does a capture of one large transfer."""
    sizes = {p: capture_size(p) for p in paths if os.path.isfile(p)}  # gzip: uncompressed
    total = sum(sizes.values()) / 1e6  # MB
    if total * 1e6 < PARALLEL_MIN_BYTES:
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    jobs = max(1, min(MAX_AUTO_JOBS, cores))
    if jobs == 1:
        return 1
    samples = [sample_capture(p, size) for p, size in sizes.items()]
    flows = sum(s.flows for s in samples)
    largest = max((s.largest_flow for s in samples), default=0.0)
    while jobs > 1 and estimated_peak_mb(total, jobs, flows, largest) > MEMORY_BUDGET_MB:
        jobs -= 1
    return jobs
