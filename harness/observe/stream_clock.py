"""Byte offset in a reassembled stream -> the capture time of the packet that carried it.

Part of the observe tier: it sees only observed flows, never the simulator or its truth.
"""
from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right

from harness.observe.model import CLIENT, SERVER, Flow, chunk_columns


class StreamClock:
    """Maps a byte offset in one direction's stream to the capture time of the chunk holding it."""

    def __init__(self, flow: Flow) -> None:
        self.first_seen = flow.first_seen
        # Per direction, typed columns (a bulk transfer has a million chunks): start, end and time of each
        # chunk that carried bytes, in stream order.
        self._offsets = (array("q"), array("q"))
        self._ends = (array("q"), array("q"))
        self._times = (array("d"), array("d"))
        ordered = True  # the flow table gives each direction's chunks in stream order
        offsets_of, ends_of, times_of = self._offsets, self._ends, self._times
        for time, d, offset, length in zip(*chunk_columns(flow.chunks)):
            if length > 0 and (d == CLIENT or d == SERVER):
                offsets = offsets_of[d]
                if ordered and offsets and offsets[-1] > offset:
                    ordered = False
                offsets.append(offset)
                ends_of[d].append(offset + length)
                times_of[d].append(time)
        if not ordered:  # chunks made elsewhere: sorted by offset, ties in the order they came
            for d in (CLIENT, SERVER):
                rows = sorted(zip(self._offsets[d], self._ends[d], self._times[d]), key=lambda e: e[0])
                for column, values in zip((self._offsets[d], self._ends[d], self._times[d]), zip(*rows)):
                    column[:] = array(column.typecode, values)

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

    def chunk_spans(self, direction: int, limit: int | None = None) -> list[tuple[int, int, float]]:
        """(offset, length, time) of every chunk in that direction (the first `limit`), in stream order."""
        offsets, ends, times = self._offsets[direction], self._ends[direction], self._times[direction]
        if limit is not None:
            offsets, ends, times = offsets[:limit], ends[:limit], times[:limit]
        return [(o, e - o, t) for o, e, t in zip(offsets, ends, times)]
