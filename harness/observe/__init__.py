"""Observe tier: capture files -> packets -> flows and reassembled streams, what a tap can see, computed once."""
from __future__ import annotations

import gc
import heapq
import os
from collections import Counter
from contextlib import contextmanager
from operator import itemgetter
from typing import Iterator

from harness.observe.decode import Decoder, Packet
from harness.observe.fastpath import fast_flows
from harness.observe.flows import FlowTable, build_flows
from harness.observe.model import Flow, Observation
from harness.observe.progress import Progress
from harness.wire.capture_reader import CaptureReader, Record

__all__ = ["Observer", "fewer_gc_passes", "iter_flows", "observe"]


class Observer:
    """Reads one or more captures (merged in time order) into flows; counts what it read, skipped and noticed.

    The constructor checks every path up front and raises `HarnessError` for one that is not a capture.
    """

    def __init__(self, paths: list[str], skipped: Counter | None = None, notes: list[str] | None = None,
                 progress: Progress | None = None, fast: bool = True) -> None:
        self.paths = list(paths)
        self.readers = [CaptureReader(p) for p in self.paths]
        self.skipped: Counter = skipped if skipped is not None else Counter()
        self.notes: list[str] = notes if notes is not None else []
        self.packets = 0  # records read, once iteration is done
        self.progress = progress
        self.fast = fast  # False: always the general path (the fast one must give the same; tests compare them)

    def records(self) -> Iterator[Record]:
        """Every record of every capture; several captures are merged on record time."""
        streams = [r.records() for r in self.readers]
        try:
            if len(streams) == 1:
                merged = streams[0]
            else:
                merged = heapq.merge(*streams, key=itemgetter(0))
            if self.progress is None:
                yield from merged
            else:
                yield from self._reported(merged)
        finally:
            for s in streams:
                s.close()
            self._read_done()

    def _read_done(self) -> None:
        self.packets = sum(r.count for r in self.readers)
        for r in self.readers:
            self.notes.extend(f"{r.path}: {note}" for note in r.notes)

    def _reported(self, records: Iterator[Record]) -> Iterator[Record]:
        progress, readers = self.progress, self.readers
        total = sum(os.path.getsize(p) for p in self.paths)
        n = 0
        try:
            for n, record in enumerate(records, 1):
                if not n & 0xFFFF:
                    offsets = [r.offset for r in readers]
                    progress(None if None in offsets else sum(offsets), total, n)
                yield record
        finally:
            progress.close()

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
        mapped = self.readers[0].mapped_pcap() if self.fast and len(self.readers) == 1 else None
        if mapped is None:
            return build_flows(self.decoded(), table)
        return self._fast_flows(mapped, table if table is not None else FlowTable())

    def _fast_flows(self, mapped, table: FlowTable) -> Iterator[Flow]:
        """`build_flows(self.decoded())` for one mapped classic pcap, by `harness.observe.fastpath`."""
        decoder = Decoder(self.skipped)
        progress = self.progress
        total = os.path.getsize(self.paths[0]) if progress is not None else 0
        try:
            yield from fast_flows(self.readers[0], mapped, decoder, table, progress, total)
        finally:
            if progress is not None:
                progress.close()
            self._read_done()
        decoder.flush()
        table.close()
        done = table.finished[:]
        table.finished.clear()
        yield from done


def iter_flows(paths: list[str], skipped: Counter, notes: list[str]) -> Iterator[Flow]:
    """Stream the flows of `paths` as they finish; skip reasons and reader notes are added to `skipped` and `notes`.

    Raises `HarnessError` at once if a path is not a capture file.
    """
    return Observer(paths, skipped, notes).flows()


@contextmanager
def fewer_gc_passes() -> Iterator[None]:
    """Run the cyclic garbage collector less often for a while.

    Open flows are many small containers without reference cycles; at the default thresholds the collector
    rescans them again and again, about a quarter of the time spent reading a large capture.
    """
    old = gc.get_threshold()
    gc.set_threshold(max(old[0], 50_000), max(old[1], 20), max(old[2], 100))
    try:
        yield
    finally:
        gc.set_threshold(*old)


def observe(paths: list[str]) -> Observation:
    """Read captures into an `Observation`: all flows in order of first packet, with counts and notes."""
    observer = Observer(paths)
    with fewer_gc_passes():
        flows = sorted(observer.flows(), key=lambda f: f.first_seen)
    return Observation(captures=list(paths), flows=flows, packets=observer.packets, skipped=observer.skipped,
                       notes=observer.notes)
