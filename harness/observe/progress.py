"""A one-line progress bar on stderr while a long capture is read; only when stderr is a terminal.

The reader reports every 8,192 records (`CHECKPOINT_MASK` in harness/wire/capture_reader.py); the bar
redraws at most a few times a second and erases itself at the end, so nothing of it stays in a log or a pipe.
"""
from __future__ import annotations

import os
import sys
import time
from typing import Protocol, TextIO

MIN_BYTES = 64 * 1024 * 1024  # captures smaller than this in all get no bar: they take a few seconds at most
_REDRAW = 0.25  # seconds between redraws
_WIDTH = 30


class Progress(Protocol):
    def __call__(self, done: int | None, total: int, records: int) -> None: ...

    def close(self) -> None: ...


class TerminalProgress:
    """`[#####.....]  45%  1,234,567 packets  12 s` on one line of `stream`, redrawn in place."""

    def __init__(self, stream: TextIO, label: str = "reading") -> None:
        self.stream = stream
        self.label = label
        self.started = time.monotonic()
        self._last = 0.0
        self._drawn = False

    def __call__(self, done: int | None, total: int, records: int) -> None:
        now = time.monotonic()
        if now - self._last < _REDRAW:
            return
        self._last = now
        secs = now - self.started
        if done is None or total <= 0:  # compressed input: no fraction to show
            line = f"harness: {self.label} {records:,} packets  {secs:.0f} s"
        else:
            frac = min(done / total, 1.0)
            fill = int(frac * _WIDTH)
            line = (f"harness: {self.label} [{'#' * fill}{'.' * (_WIDTH - fill)}] {frac * 100:3.0f}%  "
                    f"{records:,} packets  {secs:.0f} s")
        self.stream.write("\r" + line + "\x1b[K")
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        if self._drawn:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._drawn = False


def terminal_progress(paths: list[str], stream: TextIO | None = None) -> TerminalProgress | None:
    """A bar for reading `paths` if `stream` (stderr) is a terminal and the captures are long; else None."""
    stream = stream if stream is not None else sys.stderr
    try:
        if not stream.isatty():
            return None
        total = sum(os.path.getsize(p) for p in paths)
    except (OSError, ValueError):
        return None
    return TerminalProgress(stream) if total >= MIN_BYTES else None
