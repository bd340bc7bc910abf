"""Lines sorted by a text key on disk: the findings of `finish`, however many, in bounded memory.

`finish` findings are ordered across analyzers (by flow, analyzer, kind, id) and can number in the
millions on a large capture (relay correlation reports one per outbound message). Holding them as
objects to sort them was most of the peak memory of `harness analyze`, so instead each is encoded when
made, kept in memory up to RUN_BYTES characters (or RUN_LINES lines), then written out as a sorted run;
iterating merges the runs, at most MAX_MERGE files open at once.
The sort is stable: lines with equal keys come out in the order they were added (the first added wins
when the caller drops repeats). `mark` and `rollback` drop everything added since a point (an analyzer
that failed half-way contributes nothing), which is why a mark starts a new run.
"""
from __future__ import annotations

import heapq
import os
import tempfile
from typing import Iterator

SEP = "\x1f"  # between fields of a spooled line; JSON escapes it, and ids, kinds and flow ids never hold it
RUN_LINES = 50_000  # lines held in memory before a sorted run is written to disk
# Characters of key and text held in memory before a run is written: a bound on memory, however long the
# lines (a flow-graph finding is ~500 characters, so 50,000 of them held ~30 MB at 1M packets; this ~10 MB).
RUN_BYTES = 4 << 20
MAX_MERGE = 64  # runs merged at once; more are first merged into longer runs, this many at a time


class SortedSpool:
    """Add (key, text) pairs; iterate them back sorted by key, stable. Use as a context manager."""

    def __init__(self, run_lines: int | None = None) -> None:
        self._run_lines = run_lines or RUN_LINES
        self._buffer: list[tuple[str, str]] = []
        self._held = 0  # characters of key and text in _buffer
        self._runs: list[str] = []
        self._folder: str | None = None

    def add(self, key: str, text: str) -> None:
        """`key` may join fields with SEP (they then sort field by field); neither it nor `text` may hold a
        newline, and `text` may not hold SEP."""
        self._buffer.append((key, text))
        self._held += len(key) + len(text)
        if len(self._buffer) >= self._run_lines or self._held >= RUN_BYTES:
            self._flush()

    def mark(self) -> int:
        """A point to `rollback` to."""
        self._flush()
        return len(self._runs)

    def rollback(self, point: int) -> None:
        """Forget every line added since `mark` returned `point`."""
        self._buffer.clear()
        self._held = 0
        for path in self._runs[point:]:
            os.unlink(path)
        del self._runs[point:]

    def _flush(self) -> None:
        if not self._buffer:
            return
        self._buffer.sort(key=lambda item: item[0])  # stable: equal keys keep their order
        if self._folder is None:
            self._folder = tempfile.mkdtemp(prefix="harness-sort-")
        path = os.path.join(self._folder, f"run{len(self._runs)}")
        with open(path, "w", encoding="utf-8", newline="\n") as out:
            out.writelines(f"{key}{SEP}{text}\n" for key, text in self._buffer)
        self._runs.append(path)
        self._buffer.clear()
        self._held = 0

    def __iter__(self) -> Iterator[tuple[str, str]]:
        """Every (key, text) in key order; equal keys in the order they were added. Iterate once."""
        self._flush()
        while len(self._runs) > MAX_MERGE:  # consecutive runs into one: the order of runs is kept
            groups = [self._runs[i:i + MAX_MERGE] for i in range(0, len(self._runs), MAX_MERGE)]
            self._runs = [self._merge_into_one(group) for group in groups]
        yield from self._merged(self._runs)

    @staticmethod
    def _merged(paths: list[str]) -> Iterator[tuple[str, str]]:
        files = [open(path, encoding="utf-8", newline="\n") for path in paths]
        try:
            runs = [(tuple(line[:-1].rsplit(SEP, 1)) for line in f) for f in files]
            # heapq.merge is stable across its inputs (ties go to the earlier run) and runs are in the
            # order they were written, so the merge keeps the order lines were added.
            yield from heapq.merge(*runs, key=lambda item: item[0])
        finally:
            for f in files:
                f.close()

    def _merge_into_one(self, paths: list[str]) -> str:
        """The runs at `paths` merged into the first of them (written beside, then renamed); the rest deleted."""
        if len(paths) == 1:
            return paths[0]
        merged = paths[0] + ".merged"
        with open(merged, "w", encoding="utf-8", newline="\n") as out:
            out.writelines(f"{key}{SEP}{text}\n" for key, text in self._merged(paths))
        for path in paths:
            os.unlink(path)
        os.replace(merged, paths[0])
        return paths[0]

    def close(self) -> None:
        """Forget everything and remove the runs and their folder (a merge cut short included)."""
        self._buffer.clear()
        self._held = 0
        self._runs.clear()
        if self._folder is not None:
            for name in os.listdir(self._folder):
                os.unlink(os.path.join(self._folder, name))
            os.rmdir(self._folder)
            self._folder = None

    def __enter__(self) -> "SortedSpool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
