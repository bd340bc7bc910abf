"""Lines sorted by a text key on disk: the findings of `finish`, however many, in bounded memory.

`finish` findings are ordered across analyzers (by flow, analyzer, kind, id) and can number in the
millions on a large capture (relay correlation reports one per outbound message). Holding them as
objects to sort them was most of the peak memory of `harness analyze`, so instead each is encoded when
made, kept in memory up to RUN_LINES lines, then written out as a sorted run; iterating merges the runs.
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


class SortedSpool:
    """Add (key, text) pairs; iterate them back sorted by key, stable. Use as a context manager."""

    def __init__(self, run_lines: int | None = None) -> None:
        self._run_lines = run_lines or RUN_LINES
        self._buffer: list[tuple[str, str]] = []
        self._runs: list[str] = []
        self._folder: str | None = None

    def add(self, key: str, text: str) -> None:
        """`key` may join fields with SEP (they then sort field by field); neither it nor `text` may hold a
        newline, and `text` may not hold SEP."""
        self._buffer.append((key, text))
        if len(self._buffer) >= self._run_lines:
            self._flush()

    def mark(self) -> int:
        """A point to `rollback` to."""
        self._flush()
        return len(self._runs)

    def rollback(self, point: int) -> None:
        """Forget every line added since `mark` returned `point`."""
        self._buffer.clear()
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

    def __iter__(self) -> Iterator[tuple[str, str]]:
        """Every (key, text) in key order; equal keys in the order they were added. Iterate once."""
        self._flush()
        files = [open(path, encoding="utf-8", newline="\n") for path in self._runs]
        try:
            runs = [(tuple(line[:-1].rsplit(SEP, 1)) for line in f) for f in files]
            # heapq.merge is stable across its inputs (ties go to the earlier run) and runs are in the
            # order they were written, so the merge keeps the order lines were added.
            yield from heapq.merge(*runs, key=lambda item: item[0])
        finally:
            for f in files:
                f.close()

    def close(self) -> None:
        self._buffer.clear()
        for path in self._runs:
            if os.path.exists(path):
                os.unlink(path)
        self._runs.clear()
        if self._folder is not None:
            os.rmdir(self._folder)
            self._folder = None

    def __enter__(self) -> "SortedSpool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
