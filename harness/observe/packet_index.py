"""Stream offset -> the number of the packet that carried it, for evidence ("packet 7 of the flow").

Packets are numbered from 1 in capture order over both directions of the flow, as Wireshark numbers a
conversation's frames; only packets with new payload are counted (the chunks the tap kept).
Part of the observe tier: it sees only observed flows, never the simulator or its truth.
"""
from __future__ import annotations

from array import array
from bisect import bisect_right

from harness.observe.model import Flow, chunk_columns


class PacketIndex:
    """Maps (direction, stream offset) to the flow-wide number of the payload packet holding it."""

    def __init__(self, flow: Flow) -> None:
        times, directions, offsets_in, lengths = chunk_columns(flow.chunks)
        order = sorted(range(len(times)), key=times.__getitem__)  # stable: ties in capture order
        number = array("q", bytes(8 * len(times)))  # chunk -> packet number, typed (a transfer: 10^6 chunks)
        for n, i in enumerate(order, 1):
            number[i] = n
        del order
        self._offsets: tuple[array, array] = (array("q"), array("q"))
        self._numbers: tuple[array, array] = (array("q"), array("q"))
        ordered = True  # a direction's chunks come in stream order (each starts where the last one ended)
        for i, (d, offset, length) in enumerate(zip(directions, offsets_in, lengths)):
            if length > 0 and d in (0, 1):
                offsets = self._offsets[d]
                ordered = ordered and (not offsets or offsets[-1] <= offset)
                offsets.append(offset)
                self._numbers[d].append(number[i])
        if not ordered:  # not from the flow table: sorted by offset, ties in capture order
            for d in (0, 1):
                pairs = sorted(zip(self._offsets[d], self._numbers[d]), key=lambda e: e[0])
                self._offsets[d][:] = array("q", (o for o, _ in pairs))
                self._numbers[d][:] = array("q", (n for _, n in pairs))

    def packet(self, direction: int, offset: int) -> int | None:
        offsets = self._offsets[direction]
        if not offsets:
            return None
        return self._numbers[direction][max(bisect_right(offsets, offset) - 1, 0)]
