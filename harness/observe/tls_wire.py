"""The TLS record layer and hellos as a passive tap reads them: records, ClientHello, ServerHello.

Part of the observe tier: it sees only observed flows, never the simulator or its truth.
"""
from __future__ import annotations

from dataclasses import dataclass, field

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
