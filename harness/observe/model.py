"""Typed records the observe tier hands to analyzers: flows, their data chunks and reassembled streams.

Nothing here knows how a capture was made; a capture we simulated and one a user brings look the same.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

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


@dataclass
class Flow:
    """One TCP connection or UDP conversation as the tap saw it."""

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

    @property
    def total_packets(self) -> int:
        return self.packets[0] + self.packets[1]

    @property
    def total_bytes(self) -> int:
        return self.bytes[0] + self.bytes[1]


@dataclass
class Observation:
    """Everything the observe tier saw in one or more captures."""

    captures: list[str]
    flows: list[Flow]
    packets: int = 0  # records read
    skipped: Counter = field(default_factory=Counter)  # reason -> count of packets not decoded
    notes: list[str] = field(default_factory=list)  # e.g. "capture truncated after 1234 records"
