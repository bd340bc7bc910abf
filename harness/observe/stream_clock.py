"""Byte offset in a reassembled stream -> the capture time of the packet that carried it.

Part of the observe tier: it sees only observed flows, never the simulator or its truth.
"""
from __future__ import annotations

from bisect import bisect_left, bisect_right

from harness.observe.model import CLIENT, SERVER, Flow


class StreamClock:
    """Maps a byte offset in one direction's stream to the capture time of the chunk holding it."""

    def __init__(self, flow: Flow) -> None:
        self.first_seen = flow.first_seen
        per_dir: tuple[list, list] = ([], [])
        for chunk in flow.chunks:
            if chunk.length > 0 and chunk.direction in (CLIENT, SERVER):
                per_dir[chunk.direction].append((chunk.offset, chunk.length, chunk.time))
        for entries in per_dir:
            entries.sort(key=lambda e: e[0])
        self._offsets = tuple([e[0] for e in entries] for entries in per_dir)
        self._ends = tuple([e[0] + e[1] for e in entries] for entries in per_dir)
        self._times = tuple([e[2] for e in entries] for entries in per_dir)

    def time(self, direction: int, offset: int) -> float:
        """Capture time of the chunk holding byte `offset` (the first chunk's time if before it)."""
        offsets, times = self._offsets[direction], self._times[direction]
        if not offsets:
            return self.first_seen
        i = bisect_right(offsets, offset) - 1
        return times[max(i, 0)]

    def packets(self, direction: int, start: int, end: int) -> int:
        """How many chunks carried bytes of [start, end)."""
        if end <= start:
            return 0
        lo = bisect_right(self._ends[direction], start)  # first chunk ending after start
        hi = bisect_left(self._offsets[direction], end)  # first chunk starting at/after end
        return max(hi - lo, 0)

    def chunk_spans(self, direction: int) -> list[tuple[int, int, float]]:
        """(offset, length, time) of every chunk in that direction, in stream order."""
        return [(o, e - o, t) for o, e, t in zip(self._offsets[direction], self._ends[direction],
                                                  self._times[direction])]
