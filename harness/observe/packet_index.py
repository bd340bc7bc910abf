"""Stream offset -> the number of the packet that carried it, for evidence ("packet 7 of the flow").

Packets are numbered from 1 in capture order over both directions of the flow, as Wireshark numbers a
conversation's frames; only packets with new payload are counted (the chunks the tap kept).
Part of the observe tier: it sees only observed flows, never the simulator or its truth.
"""
from __future__ import annotations

from bisect import bisect_right

from harness.observe.model import Flow


class PacketIndex:
    """Maps (direction, stream offset) to the flow-wide number of the payload packet holding it."""

    def __init__(self, flow: Flow) -> None:
        order = sorted(range(len(flow.chunks)), key=lambda i: (flow.chunks[i].time, i))
        number = {i: n + 1 for n, i in enumerate(order)}
        self._offsets: tuple[list[int], list[int]] = ([], [])
        self._numbers: tuple[list[int], list[int]] = ([], [])
        for i, c in sorted(enumerate(flow.chunks), key=lambda e: (e[1].direction, e[1].offset)):
            if c.length > 0 and c.direction in (0, 1):
                self._offsets[c.direction].append(c.offset)
                self._numbers[c.direction].append(number[i])

    def packet(self, direction: int, offset: int) -> int | None:
        offsets = self._offsets[direction]
        if not offsets:
            return None
        return self._numbers[direction][max(bisect_right(offsets, offset) - 1, 0)]
