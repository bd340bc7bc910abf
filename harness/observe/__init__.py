"""Observe tier: capture files -> packets -> flows and reassembled streams, what a tap can see, computed once."""
from __future__ import annotations

import heapq
from collections import Counter
from operator import itemgetter
from typing import Iterator

from harness.observe.decode import Decoder, Packet
from harness.observe.flows import FlowTable, build_flows
from harness.observe.model import Flow, Observation
from harness.wire.capture_reader import CaptureReader, Record

__all__ = ["Observer", "iter_flows", "observe"]


class Observer:
    """Reads one or more captures (merged in time order) into flows; counts what it read, skipped and noticed.

    The constructor checks every path up front and raises `HarnessError` for one that is not a capture.
    """

    def __init__(self, paths: list[str], skipped: Counter | None = None, notes: list[str] | None = None) -> None:
        self.paths = list(paths)
        self.readers = [CaptureReader(p) for p in self.paths]
        self.skipped: Counter = skipped if skipped is not None else Counter()
        self.notes: list[str] = notes if notes is not None else []
        self.packets = 0  # records read, once iteration is done

    def records(self) -> Iterator[Record]:
        """Every record of every capture; several captures are merged on record time."""
        streams = [r.records() for r in self.readers]
        try:
            if len(streams) == 1:
                yield from streams[0]
            else:
                yield from heapq.merge(*streams, key=itemgetter(0))
        finally:
            for s in streams:
                s.close()
            self.packets = sum(r.count for r in self.readers)
            for r in self.readers:
                self.notes.extend(f"{r.path}: {note}" for note in r.notes)

    def decoded(self) -> Iterator[Packet]:
        """The TCP and UDP packets of all captures; everything else is counted in `skipped`."""
        decoder = Decoder(self.skipped)
        decode = decoder.decode
        for record in self.records():
            packet = decode(record)
            if packet is not None:
                yield packet
        decoder.flush()

    def flows(self, table: FlowTable | None = None) -> Iterator[Flow]:
        """Flows as they finish (not in first-seen order); the rest when the input ends."""
        return build_flows(self.decoded(), table)


def iter_flows(paths: list[str], skipped: Counter, notes: list[str]) -> Iterator[Flow]:
    """Stream the flows of `paths` as they finish; skip reasons and reader notes are added to `skipped` and `notes`.

    Raises `HarnessError` at once if a path is not a capture file.
    """
    return Observer(paths, skipped, notes).flows()


def observe(paths: list[str]) -> Observation:
    """Read captures into an `Observation`: all flows in order of first packet, with counts and notes."""
    observer = Observer(paths)
    flows = sorted(observer.flows(), key=lambda f: f.first_seen)
    return Observation(captures=list(paths), flows=flows, packets=observer.packets, skipped=observer.skipped,
                       notes=observer.notes)
