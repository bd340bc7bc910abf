"""Stream tools shared by the payload analyzers: byte offset -> capture time, printable text, and the
framings a tap strips without keys (TLS records, the relay envelope), down to message-sized bursts.

This module registers no analyzer. Like every analyzer it sees only observed flows: it must never
import the simulator, its truth, or the scorer.
"""
from __future__ import annotations

import re
import struct
import zlib
from bisect import bisect_left, bisect_right
from collections import Counter
from dataclasses import dataclass, field

from harness.observe.model import CLIENT, SERVER, Flow

# ---------------------------------------------------------------------------------------------
# Offset -> time


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


# ---------------------------------------------------------------------------------------------
# Printable text

_RUN = re.compile(rb"[\t\n\r\x20-\x7e]{6,}")
_ALNUM = bytes(range(0x30, 0x3A)) + bytes(range(0x41, 0x5B)) + bytes(range(0x61, 0x7B))
_PRINTABLE = bytes([9, 10, 13]) + bytes(range(0x20, 0x7F))
CANARY = re.compile(rb"\bCNRY-[0-9a-f]{16}\b")
EMAIL = re.compile(rb"[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63})*\.[A-Za-z]{2,24}")

MIN_TEXT = 24  # bytes: shortest printable run reported as content
MAX_GAP = 3  # non-printable bytes bridged when merging runs
MIN_ALNUM = 8  # a run "of substance" holds at least this many letters/digits


def count_of(data: bytes, alphabet: bytes) -> int:
    """How many bytes of `data` belong to `alphabet`."""
    return len(data) - len(data.translate(None, alphabet))


def printable_fraction(data: bytes) -> float:
    return count_of(data, _PRINTABLE) / len(data) if data else 0.0


def text_spans(data: bytes, min_len: int = MIN_TEXT, max_gap: int = MAX_GAP) -> list[tuple[int, int]]:
    """[start, end) of printable text in `data`: runs of >= 6 printable bytes merged across gaps of
    at most `max_gap` bytes, kept when >= `min_len` long and holding >= 8 letters/digits."""
    spans: list[list[int]] = []
    for m in _RUN.finditer(data):
        if spans and m.start() - spans[-1][1] <= max_gap:
            spans[-1][1] = m.end()
        else:
            spans.append([m.start(), m.end()])
    return [(s, e) for s, e in spans
            if e - s >= min_len and count_of(data[s:e], _ALNUM) >= MIN_ALNUM]


_CONTROL_TO_REPLACEMENT = {c: 0xFFFD for c in list(range(0, 32)) + [127] if c not in (9, 10, 13)}


def as_text(data: bytes) -> str:
    """Bytes as text: UTF-8 where valid, control bytes other than tab/CR/LF shown as U+FFFD."""
    return data.decode("utf-8", "replace").translate(_CONTROL_TO_REPLACEMENT)


def excerpt(data: bytes | str, limit: int = 120) -> str:
    """A short printable excerpt: whitespace runs collapsed, other unprintables shown as '.'."""
    text = data.decode("utf-8", "replace") if isinstance(data, (bytes, bytearray)) else data
    text = " ".join(text[: limit * 4].split())
    text = "".join(c if c.isprintable() else "." for c in text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def inflate(data: bytes, cap: int = 1 << 20) -> bytes | None:
    """The inflated bytes (at most `cap`) when `data` starts a zlib or gzip stream, else None."""
    if len(data) < 8:
        return None
    if data[:2] == b"\x1f\x8b" and data[2] == 8:
        wbits = 31
    elif data[0] == 0x78 and data[1] in (0x01, 0x5E, 0x9C, 0xDA) and (data[0] << 8 | data[1]) % 31 == 0:
        wbits = 15
    else:
        return None
    try:
        out = zlib.decompressobj(wbits).decompress(data, cap)
    except zlib.error:
        return None
    return out or None


def canary_tokens(data: bytes) -> list[str]:
    """Canary-shaped tokens (`CNRY-` + 16 hex digits), in order of first appearance."""
    if data.find(b"CNRY-") < 0:
        return []
    return list(dict.fromkeys(m.group().decode() for m in CANARY.finditer(data)))


def email_addresses(data: bytes) -> list[str]:
    """E-mail addresses (lower-cased), in order of first appearance."""
    if data.find(b"@") < 0:
        return []
    return list(dict.fromkeys(m.group().decode().lower() for m in EMAIL.finditer(data)))


def lines(data: bytes, start: int = 0, end: int | None = None):
    """(line start, line end without the EOL, next line start) for each line of data[start:end]."""
    end = len(data) if end is None else end
    pos = start
    while pos < end:
        nl = data.find(b"\n", pos, end)
        if nl < 0:
            yield pos, end, end
            return
        stop = nl - 1 if nl > pos and data[nl - 1] == 0x0D else nl
        yield pos, stop, nl + 1
        pos = nl + 1


# ---------------------------------------------------------------------------------------------
# DNS


def parse_dns_question(dgram: bytes) -> str | None:
    """The first question name of a plausible DNS message, or None."""
    if len(dgram) < 17:
        return None
    _, flags, qd, an, ns, ar = struct.unpack_from(">HHHHHH", dgram)
    if (flags >> 11) & 0xF not in (0, 1, 2, 4, 5) or not 1 <= qd <= 4 or max(an, ns, ar) > 256:
        return None
    labels, pos = [], 12
    while True:
        if pos >= len(dgram):
            return None
        n = dgram[pos]
        if n == 0:
            pos += 1
            break
        if n > 63 or pos + 1 + n > len(dgram):
            return None
        labels.append(dgram[pos + 1:pos + 1 + n])
        pos += 1 + n
        if sum(len(x) + 1 for x in labels) > 255:
            return None
    if pos + 4 > len(dgram):
        return None
    qclass = struct.unpack_from(">H", dgram, pos + 2)[0] & 0x7FFF
    if qclass not in (1, 3, 4, 255):
        return None
    try:
        return ".".join(x.decode("ascii") for x in labels).lower() or "."
    except UnicodeDecodeError:
        return None


# ---------------------------------------------------------------------------------------------
# TLS record layer and hellos

TLS_CHANGE_CIPHER_SPEC, TLS_ALERT, TLS_HANDSHAKE, TLS_APPLICATION_DATA, TLS_HEARTBEAT = 20, 21, 22, 23, 24
_TLS_TYPES = frozenset((20, 21, 22, 23, 24))
TLS_MAX_RECORD = (1 << 14) + 2048  # ciphertext limit in TLS 1.2; TLS 1.3 allows 2^14 + 256
TLS13_OVERHEAD = 17  # 16-byte AEAD tag + 1 inner content-type byte
# TLS 1.2 per-record overhead by cipher suite family (explicit nonce + tag); others unknown.
_TLS12_GCM_SUITES = frozenset((0x009C, 0x009D, 0x009E, 0x009F, 0xC02B, 0xC02C, 0xC02F, 0xC030))
_TLS12_CHACHA_SUITES = frozenset((0xCCA8, 0xCCA9, 0xCCAA))
TLS_VERSION_NAMES = {0x0300: "SSLv3", 0x0301: "TLSv1.0", 0x0302: "TLSv1.1", 0x0303: "TLSv1.2", 0x0304: "TLSv1.3"}


@dataclass(frozen=True)
class TlsRecord:
    offset: int  # stream offset of the 5-byte header
    type: int
    version: int
    length: int  # declared body length
    complete: bool  # the whole body is in the (possibly capped) stream

    @property
    def body_offset(self) -> int:
        return self.offset + 5

    @property
    def end(self) -> int:
        return self.offset + 5 + self.length


def is_tls_record(data: bytes, pos: int) -> bool:
    """True when a plausible TLS record header starts at `pos`."""
    if pos + 5 > len(data):
        return False
    ctype, major, minor = data[pos], data[pos + 1], data[pos + 2]
    length = (data[pos + 3] << 8) | data[pos + 4]
    return ctype in _TLS_TYPES and major == 3 and minor <= 4 and 0 < length <= TLS_MAX_RECORD


def tls_records(data: bytes, start: int = 0, limit: int = 1 << 20) -> list[TlsRecord]:
    """Back-to-back TLS records from `start` until the framing stops (or the stream ends)."""
    records: list[TlsRecord] = []
    pos = start
    while len(records) < limit and is_tls_record(data, pos):
        length = (data[pos + 3] << 8) | data[pos + 4]
        records.append(TlsRecord(pos, data[pos], (data[pos + 1] << 8) | data[pos + 2], length,
                                 pos + 5 + length <= len(data)))
        pos += 5 + length
    return records


def find_tls_start(data: bytes, after: int = 0, hello: int | None = None, scan: int = 1 << 16) -> int | None:
    """Offset of the first TLS handshake record at or after `after` (within `scan` bytes) whose first
    handshake message is of type `hello` (1 ClientHello, 2 ServerHello; None: either)."""
    pos = after
    stop = min(len(data), after + scan)
    while True:
        pos = data.find(b"\x16\x03", pos, stop)
        if pos < 0:
            return None
        if is_tls_record(data, pos) and pos + 5 < len(data) and (
                data[pos + 5] == hello if hello is not None else data[pos + 5] in (1, 2)):
            return pos
        pos += 1


def handshake_messages(data: bytes, records: list[TlsRecord]) -> list[tuple[int, int, bytes]]:
    """(type, stream offset, body) of each clear handshake message, reassembled across records.

    Stops at the first ChangeCipherSpec or application-data record: what follows is encrypted.
    """
    buf = bytearray()
    first_offset: list[int] = []
    for rec in records:
        if rec.type != TLS_HANDSHAKE:
            if rec.type in (TLS_CHANGE_CIPHER_SPEC, TLS_APPLICATION_DATA):
                break
            continue
        first_offset.append(rec.body_offset)
        buf += data[rec.body_offset:rec.end]
    messages = []
    pos = 0
    base = first_offset[0] if first_offset else 0
    while pos + 4 <= len(buf):
        mtype = buf[pos]
        length = int.from_bytes(buf[pos + 1:pos + 4], "big")
        if pos + 4 + length > len(buf):
            break
        messages.append((mtype, base + pos, bytes(buf[pos + 4:pos + 4 + length])))
        pos += 4 + length
    return messages


class _Reader:
    """Bounds-checked big-endian reads; raises ValueError on overrun."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise ValueError("short")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return int.from_bytes(self.take(2), "big")

    def vec(self, width: int) -> bytes:
        return self.take(int.from_bytes(self.take(width), "big"))

    @property
    def left(self) -> int:
        return len(self.data) - self.pos


@dataclass
class ClientHello:
    legacy_version: int
    session_id_length: int
    cipher_suites: list[int]
    sni: str | None = None
    alpn: list[str] = field(default_factory=list)
    supported_versions: list[int] = field(default_factory=list)
    extensions: list[int] = field(default_factory=list)


@dataclass
class ServerHello:
    legacy_version: int
    cipher_suite: int
    version: int  # negotiated: supported_versions if present, else legacy_version


def parse_client_hello(body: bytes) -> ClientHello | None:
    """A ClientHello handshake body (after the 4-byte handshake header), or None if malformed."""
    try:
        r = _Reader(body)
        legacy_version = r.u16()
        r.take(32)  # random
        session_id = r.vec(1)
        suites_raw = r.vec(2)
        r.vec(1)  # compression methods
        hello = ClientHello(legacy_version, len(session_id),
                            [int.from_bytes(suites_raw[i:i + 2], "big") for i in range(0, len(suites_raw) - 1, 2)])
        if r.left == 0:
            return hello
        ext = _Reader(r.vec(2))
        while ext.left >= 4:
            etype = ext.u16()
            edata = _Reader(ext.vec(2))
            hello.extensions.append(etype)
            if etype == 0 and edata.left:  # server_name
                names = _Reader(edata.vec(2))
                while names.left >= 3:
                    name_type, name = names.u8(), names.vec(2)
                    if name_type == 0 and hello.sni is None:
                        hello.sni = name.decode("ascii", "replace").lower().rstrip(".")
            elif etype == 16 and edata.left:  # application_layer_protocol_negotiation
                protos = _Reader(edata.vec(2))
                while protos.left:
                    hello.alpn.append(protos.vec(1).decode("ascii", "replace"))
            elif etype == 43 and edata.left:  # supported_versions
                versions = edata.vec(1)
                hello.supported_versions = [int.from_bytes(versions[i:i + 2], "big")
                                            for i in range(0, len(versions) - 1, 2)]
        return hello
    except ValueError:
        return None


def parse_server_hello(body: bytes) -> ServerHello | None:
    try:
        r = _Reader(body)
        legacy_version = r.u16()
        r.take(32)
        r.vec(1)
        suite = r.u16()
        r.u8()
        version = legacy_version
        if r.left >= 2:
            ext = _Reader(r.vec(2))
            while ext.left >= 4:
                etype, edata = ext.u16(), ext.vec(2)
                if etype == 43 and len(edata) == 2:
                    version = int.from_bytes(edata, "big")
        return ServerHello(legacy_version, suite, version)
    except ValueError:
        return None


def tls_overhead(server_hello: ServerHello | None) -> tuple[int, bool]:
    """Per-record bytes that are not application payload, and whether that number is known."""
    if server_hello is None:
        return TLS13_OVERHEAD, False  # assume TLS 1.3, the common case
    if server_hello.version == 0x0304:
        return TLS13_OVERHEAD, True
    if server_hello.cipher_suite in _TLS12_GCM_SUITES:
        return 24, True
    if server_hello.cipher_suite in _TLS12_CHACHA_SUITES:
        return 16, True
    return 0, False


# ---------------------------------------------------------------------------------------------
# Relay envelope:  magic BB 01 | type u8 | flags u8 | length u32 | pin u32 | msg_id u32 | body

RELAY_MAGIC = b"\xbb\x01"
RELAY_HEADER = struct.Struct(">2sBBIII")
RELAY_HEADER_LEN = RELAY_HEADER.size  # 16
RELAY_TYPES = {1: "data-up", 2: "data-down", 3: "ack", 4: "keepalive"}
RELAY_DATA_TYPES = frozenset((1, 2))
RELAY_MAX_BODY = 1 << 24


@dataclass(frozen=True)
class RelayEnvelope:
    offset: int  # stream offset of the header
    type: int
    flags: int
    length: int  # declared body length
    pin: int
    msg_id: int
    complete: bool

    @property
    def body_offset(self) -> int:
        return self.offset + RELAY_HEADER_LEN

    @property
    def end(self) -> int:
        return self.offset + RELAY_HEADER_LEN + self.length

    @property
    def is_data(self) -> bool:
        return self.type in RELAY_DATA_TYPES


def _relay_header_at(data: bytes, pos: int) -> tuple | None:
    if pos + RELAY_HEADER_LEN > len(data) or data[pos:pos + 2] != RELAY_MAGIC:
        return None
    fields = RELAY_HEADER.unpack_from(data, pos)
    if fields[1] not in RELAY_TYPES or fields[3] > RELAY_MAX_BODY:
        return None
    return fields


def relay_envelopes(data: bytes, start: int = 0) -> list[RelayEnvelope]:
    """Back-to-back relay envelopes from `start` until the framing stops (or the stream ends)."""
    out: list[RelayEnvelope] = []
    pos = start
    while (fields := _relay_header_at(data, pos)) is not None:
        _, etype, flags, length, pin, msg_id = fields
        out.append(RelayEnvelope(pos, etype, flags, length, pin, msg_id,
                                 pos + RELAY_HEADER_LEN + length <= len(data)))
        pos += RELAY_HEADER_LEN + length
    return out


def find_relay_start(data: bytes, scan: int = 1 << 16) -> int | None:
    """Offset where relay framing starts: 0, or (a capture that began mid-stream) the first magic
    followed by a second envelope or the end of the stream."""
    if _relay_header_at(data, 0) is not None:
        return 0
    pos, stop = 0, min(len(data), scan)
    while (pos := data.find(RELAY_MAGIC, pos + 1, stop)) >= 0:
        envs = relay_envelopes(data, pos)
        if len(envs) >= 2 or (len(envs) == 1 and envs[0].end == len(data)):
            return pos
    return None


# ---------------------------------------------------------------------------------------------
# Framing layout and message-sized bursts

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
    relay_at = find_relay_start(data)
    if relay_at is not None:
        return DirectionLayout("relay", envelopes=relay_envelopes(data, relay_at), clear_end=relay_at)
    if is_tls_record(data, 0):
        return DirectionLayout("tls", tls_start=0, records=tls_records(data, 0))
    # STARTTLS (SMTP/IMAP: "STARTTLS", POP3: "STLS"): the client asks in clear, both sides then speak TLS.
    asked = _STARTTLS.search(data[:1 << 16] if direction == CLIENT else other[:1 << 16])
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
    units.sort(key=lambda u: (u.start_time, u.direction, u.offset))
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
    for rec in layout.directions[direction].records:
        if rec.type == TLS_APPLICATION_DATA:
            kind, payload = "data", max(rec.length - layout.tls_overhead, 0)
        elif rec.type == TLS_HANDSHAKE:
            kind, payload = "handshake", 0
        else:
            kind, payload = "control", 0
        out.append(Unit(direction, rec.offset, rec.end, clock.time(direction, rec.offset),
                        clock.time(direction, max(min(rec.end, len(data)) - 1, rec.offset)), "tls", payload,
                        (rec.body_offset, min(rec.end, len(data))), kind, record_type=rec.type))
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
    tls = sorted((u for u in units if u.layer == "tls" and u.kind == "data"), key=lambda u: (u.start_time, u.offset))
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
    sizes = Counter(b.payload for b in candidates)
    if not sizes:
        return None
    size, count = sizes.most_common(1)[0]
    directions = {b.direction for b in candidates if b.payload == size}
    if size <= CONTROL_MAX and count >= 4 and count >= 0.3 * len(candidates) and len(directions) == 2:
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
    generic: list[Burst] = []
    for b in candidates:
        if any(u.layer.startswith("relay") for u in b.units):
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
        elif b.payload > 0:
            generic.append(b)
    control = control_size(generic)
    for b in generic:
        if b.payload >= MESSAGE_MIN_PAYLOAD:
            b.rule = "payload>=%d" % MESSAGE_MIN_PAYLOAD
            messages.append(b)
        elif control is not None and b.payload > control:
            b.rule = "above-control-size"
            messages.append(b)
    if not messages and layout.proto == "tcp":
        client = [b for b in generic if b.direction == CLIENT]
        if client:
            largest = max(client, key=lambda b: (b.payload, -b.start_time))
            largest.rule = "largest-client-burst"
            messages.append(largest)
    messages.sort(key=lambda b: (b.start_time, b.direction, b.offset))
    return messages
