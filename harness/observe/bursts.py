"""Framing layout of a flow (clear, TLS records, relay envelopes) and its message-sized bursts.

Part of the observe tier: it sees only observed flows, never the simulator or its truth.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from operator import attrgetter

from harness.observe.model import CLIENT, SERVER, Flow
from harness.observe.relay_wire import (
    RELAY_HEADER_LEN,
    RelayEnvelope,
    find_relay_start,
    find_srp_start,
    relay_envelopes,
    srp_envelopes,
)
from harness.observe.stream_clock import StreamClock
from harness.observe.tls_wire import (
    TLS13_OVERHEAD,
    TLS_APPLICATION_DATA,
    TLS_HANDSHAKE,
    TLS_MAX_RECORD,
    ClientHello,
    ServerHello,
    TlsRecord,
    find_tls_start,
    handshake_messages,
    is_tls_record,
    parse_client_hello,
    parse_server_hello,
    tls_overhead,
    tls_records,
)

BURST_GAP = 0.3  # seconds: a longer pause in one direction starts a new burst
MESSAGE_MIN_PAYLOAD = 200  # bytes: a burst this large (after framing) is message-sized


@dataclass
class Unit:
    """One piece of a direction's stream as the framing cuts it: a clear chunk, a TLS record or a
    relay envelope. `payload` is the application bytes it carries (framing and AEAD overhead removed)."""

    direction: int
    offset: int  # stream offset of the unit (its header, if framed)
    end: int  # stream offset just past it
    start_time: float
    end_time: float
    layer: str  # "clear", "tls", "relay"
    payload: int
    body: tuple[int, int]  # [start, end) of the bytes measured for entropy (record/envelope body)
    kind: str = "data"  # "data", "control" (ack, keepalive, alert, CCS), "handshake"
    msg_id: int | None = None  # relay data envelopes
    pin: int | None = None
    record_type: int | None = None  # TLS records


@dataclass
class DirectionLayout:
    layer: str  # "empty", "clear", "tls", "relay", "starttls" (clear prefix, then TLS)
    tls_start: int | None = None
    records: list[TlsRecord] = field(default_factory=list)
    envelopes: list[RelayEnvelope] = field(default_factory=list)
    clear_end: int = 0  # clear bytes before the framing starts


@dataclass
class StreamLayout:
    """How each direction of a flow is framed, and its units in time order."""

    directions: tuple[DirectionLayout, DirectionLayout]
    proto: str = "tcp"
    client_hello: ClientHello | None = None
    client_hello_offset: int | None = None
    server_hello: ServerHello | None = None
    tls_overhead: int = TLS13_OVERHEAD
    tls_overhead_known: bool = False
    units: list[Unit] = field(default_factory=list)

    @property
    def is_tls(self) -> bool:
        return any(d.tls_start is not None for d in self.directions)

    @property
    def is_relay(self) -> bool:
        return any(d.layer == "relay" for d in self.directions)


_STARTTLS = re.compile(rb"(?im)^(?:[A-Za-z0-9.]+ )?(?:STARTTLS|STLS)\r?$")


def _direction_layout(data: bytes, direction: int, other: bytes) -> DirectionLayout:
    if not data:
        return DirectionLayout("empty")
    srp_at = find_srp_start(data)  # the BES <-> relay SRP link: device envelopes inside SRP frames
    if srp_at is not None:
        return DirectionLayout("relay", envelopes=srp_envelopes(data, srp_at), clear_end=srp_at)
    relay_at = find_relay_start(data)
    if relay_at is not None:
        return DirectionLayout("relay", envelopes=relay_envelopes(data, relay_at), clear_end=relay_at)
    if is_tls_record(data, 0):
        return DirectionLayout("tls", tls_start=0, records=tls_records(data, 0))
    # STARTTLS (SMTP/IMAP: "STARTTLS", POP3: "STLS"): the client asks in clear, both sides then speak TLS.
    # Either word holds "TLS": without it (any case) the case-blind regex cannot match, so it is not run.
    command = data[:1 << 16] if direction == CLIENT else other[:1 << 16]
    asked = _STARTTLS.search(command) if b"tls" in command.lower() else None
    if asked is not None:
        after = asked.end() if direction == CLIENT else 0
        start = find_tls_start(data, after, hello=1 if direction == CLIENT else 2)
        if start is not None:
            return DirectionLayout("starttls", tls_start=start, records=tls_records(data, start), clear_end=start)
    return DirectionLayout("clear", clear_end=len(data))


def stream_layout(flow: Flow, clock: StreamClock | None = None) -> StreamLayout:
    """Framing of both directions and the flow's units (clear chunks, TLS records, relay envelopes)."""
    clock = clock or StreamClock(flow)
    data = (bytes(flow.payload[CLIENT]), bytes(flow.payload[SERVER]))
    dirs = (_direction_layout(data[CLIENT], CLIENT, data[SERVER]),
            _direction_layout(data[SERVER], SERVER, data[CLIENT]))
    layout = StreamLayout(dirs, flow.proto)

    # Hellos in clear: SNI/ALPN, negotiated version and hence the per-record overhead.
    for direction, want in ((CLIENT, 1), (SERVER, 2)):
        d = dirs[direction]
        if d.tls_start is None:
            continue
        for mtype, offset, body in handshake_messages(data[direction], d.records):
            if mtype == want == 1 and layout.client_hello is None:
                layout.client_hello, layout.client_hello_offset = parse_client_hello(body), offset
            elif mtype == want == 2 and layout.server_hello is None:
                layout.server_hello = parse_server_hello(body)
    layout.tls_overhead, layout.tls_overhead_known = tls_overhead(layout.server_hello)

    units: list[Unit] = []
    for direction in (CLIENT, SERVER):
        d = dirs[direction]
        if d.layer == "empty":
            continue
        size = len(data[direction])
        framed: list[Unit] = []
        if d.tls_start is not None:
            framed = _tls_units(layout, direction, data[direction], clock)
        for env in d.envelopes:
            framed.append(Unit(direction, env.offset, env.end, clock.time(direction, env.offset),
                               clock.time(direction, max(min(env.end, size) - 1, env.offset)), "relay",
                               env.length if env.is_data else 0, (env.body_offset, min(env.end, size)),
                               "data" if env.is_data else "control", env.msg_id if env.is_data else None, env.pin))
        units.extend(framed)
        # Clear bytes (the whole stream, or the prefix before the framing) are one unit per chunk; so
        # is whatever follows the last parsed record/envelope (stream cap hit, or framing lost).
        tail = max((u.end for u in framed), default=None) if d.layer != "clear" else None
        for off, length, t in clock.chunk_spans(direction):
            stop = off + length
            if d.layer == "clear" or off < d.clear_end:
                stop = stop if d.layer == "clear" else min(stop, d.clear_end)
                units.append(Unit(direction, off, stop, t, t, "clear", stop - off, (off, min(stop, size))))
            elif tail is not None and stop > tail:
                start = max(off, tail)
                units.append(_tail_unit(layout, d.layer, direction, start, stop, t, size))
    _mark_tls13_handshake(layout, units)
    units.sort(key=attrgetter("start_time", "direction", "offset"))
    layout.units = units
    return layout


def _tail_unit(layout: StreamLayout, layer: str, direction: int, start: int, stop: int, t: float,
               size: int) -> Unit:
    """A chunk past the parsed framing: its payload estimated from its length."""
    length = stop - start
    if layer == "relay":
        payload = max(length - RELAY_HEADER_LEN, 0)
    else:  # TLS: at least one record header + AEAD overhead per 16 KiB
        payload = max(length - (5 + layout.tls_overhead) * max(1, -(-length // (TLS_MAX_RECORD + 5))), 0)
    return Unit(direction, start, stop, t, t, layer + "-tail", payload, (start, min(stop, size)),
                "data" if payload > 0 else "control")


def _tls_units(layout: StreamLayout, direction: int, data: bytes, clock: StreamClock) -> list[Unit]:
    out = []
    size, overhead, time = len(data), layout.tls_overhead, clock.time
    for offset, rtype, _, length, _ in layout.directions[direction].records:
        if rtype == TLS_APPLICATION_DATA:
            kind, payload = "data", max(length - overhead, 0)
        elif rtype == TLS_HANDSHAKE:
            kind, payload = "handshake", 0
        else:
            kind, payload = "control", 0
        end = offset + 5 + length  # TlsRecord.end; the body starts after the 5-byte header
        stop = min(end, size)
        out.append(Unit(direction, offset, end, time(direction, offset), time(direction, max(stop - 1, offset)),
                        "tls", payload, (offset + 5, stop), kind, record_type=rtype))
    return out


def _mark_tls13_handshake(layout: StreamLayout, units: list[Unit]) -> None:
    """In TLS 1.3 the handshake continues inside application-data records: the server's flight after
    ServerHello (EncryptedExtensions .. Finished) and the client's Finished. Mark those as handshake:
    the client's first application-data record, and every server one sent before it. Then the
    NewSessionTickets a server sends right after the handshake: two or more records of one length
    (OpenSSL sends two by default) leading the server's next flight, before any client data."""
    hello = layout.server_hello
    if hello is None or hello.version != 0x0304:
        return
    tls = sorted((u for u in units if u.layer == "tls" and u.kind == "data"), key=attrgetter("start_time", "offset"))
    client_data = [u for u in tls if u.direction == CLIENT]
    finished_time = client_data[0].start_time if client_data else float("inf")
    if client_data:
        client_data[0].kind, client_data[0].payload = "handshake", 0
    for u in tls:
        if u.direction == SERVER and u.start_time < finished_time:
            u.kind, u.payload = "handshake", 0
    next_client = client_data[1].start_time if len(client_data) > 1 else float("inf")
    after = [u for u in tls if u.direction == SERVER and finished_time <= u.start_time <= next_client
             and u.start_time - finished_time < 1.0]
    lead = []
    for u in after:
        if lead and u.end - u.offset != lead[0].end - lead[0].offset:
            break
        lead.append(u)
    if len(lead) >= 2 and 64 <= lead[0].end - lead[0].offset - 5 - TLS13_OVERHEAD <= 2048:
        for u in lead:
            u.kind, u.payload = "handshake", 0


@dataclass
class Burst:
    """Consecutive units of one direction, none from the other direction in between, no pause >= BURST_GAP."""

    direction: int
    units: list[Unit]
    rule: str = "burst"  # why message_bursts() kept it

    @property
    def start_time(self) -> float:
        return self.units[0].start_time

    @property
    def end_time(self) -> float:
        return self.units[-1].end_time

    @property
    def payload(self) -> int:
        return sum(u.payload for u in self.units)

    @property
    def offset(self) -> int:
        return self.units[0].offset

    @property
    def end(self) -> int:
        return self.units[-1].end

    @property
    def layer(self) -> str:
        return self.units[-1].layer

    def bodies(self, data: bytes) -> list[bytes]:
        """The measured bytes of each data unit (clear bytes, record bodies, envelope bodies)."""
        return [data[u.body[0]:u.body[1]] for u in self.units if u.kind == "data" and u.body[1] > u.body[0]]


def bursts(layout: StreamLayout) -> list[Burst]:
    """Group the layout's units (handshake records left out) into bursts."""
    out: list[Burst] = []
    for u in layout.units:
        if u.kind == "handshake":
            continue
        last = out[-1] if out else None
        if last is not None and last.direction == u.direction and u.start_time - last.end_time < BURST_GAP:
            last.units.append(u)
        else:
            out.append(Burst(u.direction, [u]))
    return out


CONTROL_MAX = 64  # bytes: the largest payload taken for a control message (ack, keepalive)


def control_size(candidates: list[Burst]) -> int | None:
    """The payload size of a flow's control messages, when it has them: a size <= CONTROL_MAX shared
    by at least 4 bursts, 30% of all, in both directions (acks go both ways, keepalives are echoed).
    A persistent connection of acked messages and keepalives has one; a request/response
    conversation, whose commands and replies vary in size, does not."""
    return _control_size([(b, b.payload) for b in candidates])


def _control_size(sized: list[tuple[Burst, int]]) -> int | None:
    """`control_size` over (burst, its payload) pairs, each payload summed once."""
    if len(sized) < 4:
        return None  # fewer than 4 bursts: no size is shared by 4
    size, count = Counter(p for _, p in sized).most_common(1)[0]
    if size <= CONTROL_MAX and count >= 4 and count >= 0.3 * len(sized) and \
            len({b.direction for b, p in sized if p == size}) == 2:
        return size
    return None


def message_bursts(layout: StreamLayout) -> list[Burst]:
    """The bursts that carry one application message each.

    Relay framing: every data envelope (consecutive data envelopes of one msg_id are one message);
    acks and keepalives never are. Otherwise: each burst with >= MESSAGE_MIN_PAYLOAD payload bytes
    after framing; in a flow with a control size (see `control_size`: acks and keepalives inside
    TLS), also every burst larger than it; if a TCP flow has none of these, its largest client burst
    (a request/response connection whose one message is small; not for UDP, where that would make
    every DNS query a message).
    """
    candidates = bursts(layout)
    messages: list[Burst] = []
    generic: list[tuple[Burst, int]] = []  # with each burst's payload, summed once
    relay = layout.is_relay  # relay units ("relay", "relay-tail") come only from a relay-framed direction
    for b in candidates:
        if relay and any(u.layer.startswith("relay") for u in b.units):
            group: list[Unit] = []
            for u in b.units:
                if u.kind != "data":
                    continue
                if group and u.msg_id != group[-1].msg_id:
                    messages.append(Burst(b.direction, group, "relay-data-envelope"))
                    group = []
                group.append(u)
            if group:
                messages.append(Burst(b.direction, group, "relay-data-envelope"))
        elif (payload := b.payload) > 0:
            generic.append((b, payload))
    control = _control_size(generic)
    for b, payload in generic:
        if payload >= MESSAGE_MIN_PAYLOAD:
            b.rule = "payload>=%d" % MESSAGE_MIN_PAYLOAD
            messages.append(b)
        elif control is not None and payload > control:
            b.rule = "above-control-size"
            messages.append(b)
    if not messages and layout.proto == "tcp":
        client = [(b, payload) for b, payload in generic if b.direction == CLIENT]
        if client:
            largest = max(client, key=lambda bp: (bp[1], -bp[0].start_time))[0]
            largest.rule = "largest-client-burst"
            messages.append(largest)
    messages.sort(key=lambda b: (b.start_time, b.direction, b.offset))
    return messages
