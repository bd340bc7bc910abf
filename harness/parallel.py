"""`harness analyze` on several cores: the analyzers split into groups, one process per group.

No analyzer's state crosses a process: each analyzer sees every flow, in one process, exactly as it would
alone, so cross-flow work (relay correlation, keystream reuse across flows, per-client volume) is
unchanged. Every process reads the captures itself: the observe tier is a small share of the work and
gives the same flows, in the same order, in each. A process spools its findings one per line behind their
sort key and records its blocks (one per flow, then finish's); the parent merges the spools block by
block into the order one process gives, so the document is the same byte for byte whatever `jobs` is.
Groups are balanced by each analyzer's `cost` (relative per-flow cost, measured by
`python -m bench.capture_throughput --per-analyzer`).
"""
from __future__ import annotations

import heapq
import multiprocessing
import os
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from harness.analysis import AnalysisResult, FlowLabels, _Labels, run_analyzers
from harness.analyzers import Finding, registry
from harness.analyzers.interface import reads_flows_in_finish
from harness.findings_file import encode_finding
from harness.observe.flow_log import FlowLog
from harness.sorted_spool import SEP as _SEP  # between the sort key fields and the JSON on a spooled line


def analyzer_groups(jobs: int, only: list[str] | None = None) -> list[list[str]]:
    """At most `jobs` groups of analyzer ids, balanced by `cost` (largest first onto the lightest group)."""
    available = registry()
    ids = [a for a in available if only is None or a in only]
    groups: list[list[str]] = [[] for _ in range(max(1, min(jobs, len(ids))))]
    loads = [0.0] * len(groups)
    for aid in sorted(ids, key=lambda a: (-float(getattr(available[a], "cost", 1.0)), a)):
        i = loads.index(min(loads))
        groups[i].append(aid)
        loads[i] += float(getattr(available[aid], "cost", 1.0))
    return [sorted(g) for g in groups if g]


class _KeyedSpool:
    """A worker's sink: each finding as `key<US>json` on its own line; the blocks as (flow id, lines)."""

    def __init__(self, path: str) -> None:
        self.file = open(path, "w", encoding="utf-8")
        self.blocks: list[tuple[str | None, int]] = []

    def __call__(self, findings: list[Finding], flow_id: str) -> None:
        write = self.file.write
        for f in findings:
            write(f.analyzer + _SEP + f.kind + _SEP + f.id + _SEP + encode_finding(f) + "\n")
        self.blocks.append((flow_id, len(findings)))

    def finish_lines(self, keyed) -> None:
        write, n = self.file.write, 0
        for key, line in keyed:
            write(key + _SEP + line + "\n")
            n += 1
        self.blocks.append((None, n))


@dataclass
class _WorkerResult:
    blocks: list[tuple[str | None, int]]
    flow_labels: FlowLabels
    errors: list[str]
    counts: Counter
    flows: "FlowLog | list" = field(default_factory=list)  # flow summaries: from one worker only (flows_group)
    packets: int = 0
    skipped: Counter = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)


def _work(paths: list[str], keys_path: str | None, group: list[str], spool: str, returns_flows: bool,
          progress: bool) -> _WorkerResult:
    from harness.keys import load_knowledge
    from harness.observe import Observer, fewer_gc_passes
    from harness.observe.progress import terminal_progress

    knowledge = load_knowledge(keys_path)
    observer = Observer(paths, progress=terminal_progress(paths) if progress else None)
    sink = _KeyedSpool(spool)
    keep = returns_flows or group_reads_flows(group)
    try:
        with fewer_gc_passes():
            result = run_analyzers(observer.flows(), knowledge, only=group, sink=sink, keep_flows=keep)
    finally:
        sink.file.close()
    return _WorkerResult(sink.blocks, result.flow_labels, result.errors, result.counts,
                         result.flows if returns_flows else [], observer.packets, observer.skipped, observer.notes,
                         list(observer.paths))


def group_reads_flows(group: list[str]) -> bool:
    """Does one of the group's analyzers read the flow summaries in `finish`?"""
    available = registry()
    return any(reads_flows_in_finish(available[a]) for a in group)


def flows_group(groups: list[list[str]]) -> int:
    """The group whose process returns the flow summaries: one that keeps them anyway for its `finish`
    (so the others keep none), else the first."""
    return next((i for i, g in enumerate(groups) if group_reads_flows(g)), 0)


def _read_lines(f, n: int):
    """The next `n` lines of `f`, one at a time (a finish block can hold millions)."""
    for _ in range(n):
        yield f.readline()


def _merge_blocks(spools: list[str], results: list[_WorkerResult], flows: FlowLog, out) -> None:
    """Write every worker's findings to `out.lines` in single-process order: per flow block, then finish."""
    files = [open(p, encoding="utf-8") for p in spools]
    try:
        cursors = [0] * len(results)
        order = [*flows.ids(), None]
        for flow_id in order:
            parts = []
            for w, res in enumerate(results):
                at = cursors[w]
                if at < len(res.blocks) and res.blocks[at][0] == flow_id:
                    n = res.blocks[at][1]
                    cursors[w] = at + 1
                    parts.append(_read_lines(files[w], n))
            if not parts:
                continue
            # Lines compare as their keys do: a key's fields are joined by _SEP, which sorts below every
            # character they hold, and keys are unique in a block (an id names its analyzer).
            lines = parts[0] if len(parts) == 1 else heapq.merge(*parts)
            out.lines(line.rsplit(_SEP, 1)[1].rstrip("\n") for line in lines)
    finally:
        for f in files:
            f.close()


def run_parallel(paths: list[str], keys_path: str | None, jobs: int, sink, progress: bool = False,
                 only: list[str] | None = None) -> tuple[AnalysisResult, dict]:
    """Analyze `paths` with the analyzers split over `jobs` processes; findings go to `sink.lines`.

    Returns the merged AnalysisResult (flows, labels, errors, counts; no findings) and what the observe tier
    reported (packets, skipped, notes, paths) for the document.
    """
    groups = analyzer_groups(jobs, only)
    folder = tempfile.mkdtemp(prefix="harness-jobs-")
    spools = [os.path.join(folder, f"group{i}.spool") for i in range(len(groups))]
    try:
        context = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods()
                                              else "spawn")
        # One task per process: a worker exits as soon as its result is sent, so its memory is returned while
        # the others are still in their finish (the peak on a 2 GB capture was one idle worker holding it).
        keeper = flows_group(groups)
        with context.Pool(len(groups), maxtasksperchild=1) as pool:
            pending = [pool.apply_async(_work, (paths, keys_path, g, spools[i], i == keeper, progress and i == 0))
                       for i, g in enumerate(groups)]
            results = [p.get() for p in pending]
        _merge_blocks(spools, results, results[keeper].flows, sink)
    finally:
        for p in spools:
            Path(p).unlink(missing_ok=True)
        os.rmdir(folder)
    merged = AnalysisResult(flows=results[keeper].flows)
    labels = _Labels(merged.flow_labels)
    for flow_id in merged.flows.ids():
        labels.flow(flow_id)
    for res in results:
        labels.merge(res.flow_labels)
        merged.counts.update(res.counts)
    merged.errors = [e for res in results for e in res.errors if not e.startswith("harness: ")]
    merged.errors += [e for e in results[0].errors if e.startswith("harness: ")]
    first = results[0]
    return merged, {"packets": first.packets, "skipped": first.skipped, "notes": first.notes, "paths": first.paths}
