"""Typed records the observe tier hands to analyzers: flows, their data chunks and reassembled streams.

Nothing here knows how a capture was made; a capture we simulated and one a user brings look the same.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Iterator, Mapping

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
    chunks: list[Chunk] = field(default_factory=list)  # time order
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
