"""The adversary's half of the pipeline: capture files and a keys file in, the findings document out.

Nothing here reads truth or imports the simulator or the scorer (tests/test_boundary.py); `harness
analyze` starts from here, so it does not pay for importing them either.
"""
from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

from harness.analysis import AnalysisResult, findings_document, run_analyzers
from harness.findings_file import FindingsFile
from harness.keys import load_knowledge
from harness.observe import Observer, fewer_gc_passes
from harness.observe.flow_log import FlowLog
from harness.observe.model import Observation
from harness.parallel import run_parallel

PARALLEL_MIN_BYTES = 16 * 1024 * 1024  # captures smaller than this in all are analysed in one process
MAX_AUTO_JOBS = 4  # processes `harness analyze` starts by itself (each holds its own open flows)


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


def default_jobs(paths: list[str]) -> int:
    """Processes for `harness analyze` when not told: one for small captures (start-up would cost more than
    it saves), else one per core up to MAX_AUTO_JOBS."""
    total = sum(os.path.getsize(p) for p in paths if os.path.isfile(p))
    if total < PARALLEL_MIN_BYTES:
        return 1
    return max(1, min(MAX_AUTO_JOBS, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                      else os.cpu_count() or 1))
