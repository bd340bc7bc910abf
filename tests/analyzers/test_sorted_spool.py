"""harness.sorted_spool and the streamed finish: finish's findings sorted on disk, same document as in memory."""
from __future__ import annotations

import json
import os
from contextlib import contextmanager

from hypothesis import given, settings
from hypothesis import strategies as st

from harness.analysis import finish_key, run_analyzers
from harness.analyzers import _REGISTRY, Analyzer, Finding, register
from harness.findings_file import encode_finding
from harness import sorted_spool
from harness.sorted_spool import SEP, SortedSpool

from .conftest import C, make_flow, smtp_chunks

keys = st.lists(st.text(alphabet="ab" + SEP, max_size=4), max_size=40)


@settings(max_examples=200, deadline=None)
@given(keys, st.integers(1, 6), st.integers(0, 40), st.integers(2, 5))
def test_lines_come_back_sorted_by_key_stable_with_rollback(items, run_lines, cut, max_merge):
    """Any runs, merged MAX_MERGE at a time (up to 40 runs here, so runs are first merged into longer ones)."""
    cut = min(cut, len(items))
    with SortedSpool(run_lines) as spool, _max_merge(max_merge):
        for n, key in enumerate(items[:cut]):
            spool.add(key, f"t{n}")
        point = spool.mark()
        for n, key in enumerate(items[cut:]):
            spool.add(key, f"dropped{n}")
        spool.rollback(point)
        got = list(spool)
        folder = spool._folder
    kept = [(key, f"t{n}") for n, key in enumerate(items[:cut])]
    # Tuple order of the SEP-joined fields is the order of the joined text (SEP sorts below the rest).
    assert got == sorted(kept, key=lambda item: item[0])
    assert sorted(got, key=lambda item: item[0].split(SEP)) == got
    assert folder is None or not os.path.exists(folder)  # runs and their folder are gone


@contextmanager
def _max_merge(n: int):
    kept = sorted_spool.MAX_MERGE
    sorted_spool.MAX_MERGE = n
    try:
        yield
    finally:
        sorted_spool.MAX_MERGE = kept


def test_a_run_is_written_when_its_characters_reach_run_bytes(monkeypatch):
    """Long lines are spilled by size, not only by count: memory is bounded however long each line is."""
    monkeypatch.setattr("harness.sorted_spool.RUN_BYTES", 1000)
    with SortedSpool() as spool:
        for n in range(10):
            spool.add(f"k{9 - n}", "x" * 298)  # 300 characters a line: a run every 4 lines
        assert len(spool._runs) == 2 and len(spool._buffer) == 2
        assert [key for key, _ in spool] == [f"k{n}" for n in range(10)]


def test_a_merge_cut_short_leaves_nothing_behind(monkeypatch):
    """A disk that fills while runs are merged: the error comes through, and closing removes every file."""
    monkeypatch.setattr("harness.sorted_spool.MAX_MERGE", 2)
    merged = SortedSpool._merged

    def failing(paths):
        for n, item in enumerate(merged(paths)):
            if n == 1:
                raise OSError(28, "No space left on device")
            yield item

    monkeypatch.setattr(SortedSpool, "_merged", staticmethod(failing))
    spool = SortedSpool(1)
    for n in range(5):
        spool.add(f"k{n}", "x")
    try:
        list(spool)
    except OSError as exc:
        assert exc.errno == 28
    else:
        raise AssertionError("the merge should have failed")
    folder = spool._folder
    assert any(name.endswith(".merged") for name in os.listdir(folder))
    spool.close()
    assert not os.path.exists(folder)


class _Lines:
    """A sink that keeps the document's lines, as FindingsFile writes them."""

    def __init__(self):
        self.lines = []

    def __call__(self, block, flow_id):
        self.lines += [encode_finding(f) for f in block]

    def finish_lines(self, keyed):
        self.lines += [line for _key, line in keyed]


def test_streamed_finish_gives_the_in_memory_document(monkeypatch, knowledge):
    """Spilled runs, a repeated finding, and a finish that fails half-way: same lines, counts and labels."""
    monkeypatch.setattr("harness.sorted_spool.RUN_LINES", 2)

    @register
    class Repeats(Analyzer):
        id = "test.repeats"

        def finish(self, flows):
            for n, f in enumerate(list(flows) * 2):  # every finding twice: the first kept
                yield Finding(self.id, "service", "app", f.id, "x", {"n": n}, confidence=0.99)
                yield Finding(self.id, "volume", "total", None, len(flows), {"n": n})

    @register
    class HalfWay(Analyzer):
        id = "test.half-way"

        def finish(self, flows):
            yield from (Finding(self.id, "content", "text", f.id, "half") for f in flows)
            raise RuntimeError("stops")

    flows = [make_flow(smtp_chunks(100.0), src=("10.1.0.5", 40001)),
             make_flow([(5.0, C, b"\x00" * 10)], proto="udp", src=("10.1.0.6", 999), dst=("10.9.0.9", 9999))]
    try:
        memory = run_analyzers(flows, knowledge)
        sink = _Lines()
        streamed = run_analyzers(flows, knowledge, sink=sink)
    finally:
        _REGISTRY.pop("test.repeats", None)
        _REGISTRY.pop("test.half-way", None)
    assert sink.lines == [encode_finding(f) for f in memory.findings]
    assert streamed.counts == memory.counts and sum(memory.counts.values()) == len(sink.lines)
    assert streamed.flow_labels == memory.flow_labels
    assert streamed.flow_labels[flows[1].id]["app"] == "x"  # a finish finding can name the app
    assert streamed.errors == memory.errors == ["test.half-way: RuntimeError: stops (finish)"]
    assert not any(json.loads(line)["analyzer"] == "test.half-way" for line in sink.lines)
    final = [json.loads(line) for line in sink.lines if json.loads(line)["analyzer"] == "test.repeats"]
    assert [f["evidence"]["n"] for f in final if f["flow"] is None] == [0]  # the first of a repeated finding
    keyed = [finish_key(f) for f in memory.findings if f.analyzer == "test.repeats"]
    assert keyed == sorted(keyed)


def test_the_streamed_finish_spills_runs_to_disk(monkeypatch, knowledge):
    """The test above is only a test of the disk path if runs were really written: count them."""
    monkeypatch.setattr("harness.sorted_spool.RUN_LINES", 2)
    written = []
    flush = SortedSpool._flush
    monkeypatch.setattr(SortedSpool, "_flush", lambda self: (written.append(len(self._buffer)), flush(self)))
    flows = [make_flow(smtp_chunks(100.0), src=("10.1.0.5", 40001 + n)) for n in range(3)]
    run_analyzers(flows, knowledge, sink=_Lines())
    assert sum(1 for n in written if n) >= 2
