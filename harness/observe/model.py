"""Typed records the observe tier hands to analyzers: flows, their data chunks and reassembled streams.

Nothing here knows how a capture was made; a capture we simulated and one a user brings look the same.
"""
from __future__ import annotations

from array import array
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Mapping, Sequence

# Per direction, at most this many reassembled payload bytes are kept for payload analyzers.
# Counters (packets, bytes, chunks) keep counting past the cap; `Flow.truncated` records it.
STREAM_CAP = 1 << 20

CLIENT, SERVER = 0, 1  # direction index: 0 = sent by the side that opened the flow


def endpoint(ip: str, port: int) -> str:
    """`ip:port`, with IPv6 addresses in brackets: `[2001:db8::1]:443`."""
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def flow_key(proto: str, src: str, dst: str) -> str:
    """The canonical flow id both the observe tier and the simulator's truth use: `tcp 10.0.0.1:4000 > 10.0.0.2:25`."""
    return f"{proto} {src} > {dst}"


@dataclass(slots=True)
class Chunk:
    """New payload bytes seen in one packet (TCP segment or UDP datagram), in stream order."""

    time: float
    direction: int  # CLIENT or SERVER
    offset: int  # byte offset of the first new byte in that direction's stream
    length: int  # number of new (not retransmitted) bytes


class Chunks:
    """A flow's chunks in the order they came, kept in typed columns (`time`, `direction`, `offset`, `length`):
    a bulk transfer has a million of them, 25 bytes each here and about 160 as Chunk objects. Reads like a
    list of Chunk (each made as it is read); `add` appends one without making it."""

    __slots__ = ("time", "direction", "offset", "length")

    def __init__(self, chunks: Iterable[Chunk] = ()) -> None:
        # Empty tuples until the first chunk: a scan's probe carries none, and an open flow's bytes count.
        self.time: Sequence[float] = ()
        self.direction: Sequence[int] = ()
        self.offset: Sequence[int] = ()
        self.length: Sequence[int] = ()
        for chunk in chunks:
            self.append(chunk)

    def add(self, time: float, direction: int, offset: int, length: int) -> None:
        if not self.time:
            self.time, self.direction, self.offset, self.length = array("d"), array("b"), array("q"), array("q")
        self.time.append(time)
        self.direction.append(direction)
        self.offset.append(offset)
        self.length.append(length)

    def append(self, chunk: Chunk) -> None:
        self.add(chunk.time, chunk.direction, chunk.offset, chunk.length)

    def reverse(self) -> None:
        if self.time:
            for column in (self.time, self.direction, self.offset, self.length):
                column.reverse()

    def __len__(self) -> int:
        return len(self.time)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        return Chunk(self.time[i], self.direction[i], self.offset[i], self.length[i])

    def __iter__(self) -> Iterator[Chunk]:
        return map(Chunk, self.time, self.direction, self.offset, self.length)

    def __eq__(self, other) -> bool:
        if isinstance(other, (Chunks, list, tuple)):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable, like a list

    def __repr__(self) -> str:
        return f"Chunks({list(self)!r})"


def chunk_columns(chunks: Sequence[Chunk]) -> tuple[Sequence[float], Sequence[int], Sequence[int], Sequence[int]]:
    """Times, directions, offsets and lengths of `chunks`: a flow's own columns, or made from a list of Chunk
    (a flow built by hand)."""
    if isinstance(chunks, Chunks):
        return chunks.time, chunks.direction, chunks.offset, chunks.length
    return ([c.time for c in chunks], [c.direction for c in chunks], [c.offset for c in chunks],
            [c.length for c in chunks])


@dataclass(slots=True)
class _FlowFacts:
    """What a flow is and when it was seen: the fields a Flow and its FlowSummary share, in this order."""

    id: str  # flow_key(proto, src, dst); "#2", "#3" appended if the same 5-tuple is reused
    proto: str  # "tcp" or "udp"
    src: str  # endpoint() of the side that opened the flow (TCP SYN sender; first sender for UDP)
    dst: str
    src_ip: str
    dst_ip: str
    sport: int
    dport: int
    first_seen: float
    last_seen: float

    @property
    def total_packets(self) -> int:
        return self.packets[0] + self.packets[1]

    @property
    def total_bytes(self) -> int:
        return self.bytes[0] + self.bytes[1]


@dataclass(slots=True, weakref_slot=True)  # slots: a gateway capture holds a million open flows at once
class Flow(_FlowFacts):
    """One TCP connection or UDP conversation as the tap saw it (its identity and times: `_FlowFacts`)."""

    packets: list[int] = field(default_factory=lambda: [0, 0])  # per direction
    bytes: list[int] = field(default_factory=lambda: [0, 0])  # frame bytes on the wire (original length), per direction
    payload: list[bytearray] = field(default_factory=lambda: [bytearray(), bytearray()])  # reassembled, capped at STREAM_CAP
    payload_bytes: list[int] = field(default_factory=lambda: [0, 0])  # total new payload bytes, not capped
    truncated: list[bool] = field(default_factory=lambda: [False, False])  # cap hit or gap in the stream
    chunks: Chunks = field(default_factory=Chunks)  # in the order they came (time order); reads as list[Chunk]
    handshake: bool = False  # TCP: the SYN was seen, so src/dst are known for certain
    anomalies: Counter = field(default_factory=Counter)  # e.g. retransmission, overlap-inconsistent, gap
    # Views computed from payload and chunks (stream clock, layout, message bursts), memoised so that the
    # analyzers share one of each (harness.observe.views); dropped with the payload.
    derived: dict = field(default_factory=dict, repr=False, compare=False)



class _NoAnomalies(Mapping):
    """The anomalies of a summary whose flow had none: one shared, read-only, empty mapping."""

    def __getitem__(self, key: str) -> int:
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0

    def __reduce__(self) -> str:
        return "_NO_ANOMALIES"  # unpickles as this module's one instance


_NO_ANOMALIES = _NoAnomalies()


@dataclass(slots=True)
class FlowSummary(_FlowFacts):
    """A flow once its bytes are gone: Flow's counters, times and anomalies under Flow's names, so code
    written for a Flow reads it (payload and chunks are empty). What `finish` and the findings document
    get: a large capture has hundreds of thousands, so it is small (slots, shared strings, tuples)."""

    packets: tuple[int, int]
    bytes: tuple[int, int]
    payload_bytes: tuple[int, int]
    truncated: tuple[bool, bool]
    handshake: bool
    anomalies: Mapping[str, int]

    @property
    def payload(self) -> tuple[bytes, bytes]:
        return b"", b""

    @property
    def chunks(self) -> tuple[()]:
        return ()



@dataclass
class Observation:
    """Everything the observe tier saw in one or more captures."""

    captures: list[str]
    flows: list[Flow]
    packets: int = 0  # records read
    skipped: Counter = field(default_factory=Counter)  # reason -> count of packets not decoded
    notes: list[str] = field(default_factory=list)  # e.g. "capture truncated after 1234 records"
