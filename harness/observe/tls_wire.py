"""The TLS record layer and hellos as a passive tap reads them: records, ClientHello, ServerHello.

Part of the observe tier: it sees only observed flows, never the simulator or its truth.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import NamedTuple

TLS_CHANGE_CIPHER_SPEC, TLS_ALERT, TLS_HANDSHAKE, TLS_APPLICATION_DATA, TLS_HEARTBEAT = 20, 21, 22, 23, 24
_TLS_TYPES = frozenset((20, 21, 22, 23, 24))
_RECORD_HEADER = struct.Struct(">BBBH")  # content type, version major, minor, length
TLS_MAX_RECORD = (1 << 14) + 2048  # ciphertext limit in TLS 1.2; TLS 1.3 allows 2^14 + 256
TLS13_OVERHEAD = 17  # 16-byte AEAD tag + 1 inner content-type byte
# TLS 1.2 per-record overhead by cipher suite family (explicit nonce + tag); others unknown.
_TLS12_GCM_SUITES = frozenset((0x009C, 0x009D, 0x009E, 0x009F, 0xC02B, 0xC02C, 0xC02F, 0xC030))
_TLS12_CHACHA_SUITES = frozenset((0xCCA8, 0xCCA9, 0xCCAA))
TLS_VERSION_NAMES = {0x0300: "SSLv3", 0x0301: "TLSv1.0", 0x0302: "TLSv1.1", 0x0303: "TLSv1.2", 0x0304: "TLSv1.3"}


class TlsRecord(NamedTuple):
    """One record header as read (a named tuple: a stream holds many, and a tuple is cheap to build)."""

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
    pos, size = start, len(data)
    while len(records) < limit and pos + 5 <= size:
        ctype, major, minor, length = _RECORD_HEADER.unpack_from(data, pos)  # the test of is_tls_record
        if ctype not in _TLS_TYPES or major != 3 or minor > 4 or not 0 < length <= TLS_MAX_RECORD:
            break
        records.append(TlsRecord(pos, ctype, (major << 8) | minor, length, pos + 5 + length <= size))
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
    signature_algorithms: list[int] = field(default_factory=list)
    alpn_raw: list[bytes] = field(default_factory=list)


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
                    raw = protos.vec(1)
                    hello.alpn_raw.append(raw)
                    hello.alpn.append(raw.decode("ascii", "replace"))
            elif etype == 13 and edata.left:  # signature_algorithms
                algs = edata.vec(2)
                hello.signature_algorithms = [int.from_bytes(algs[i:i + 2], "big") for i in range(0, len(algs) - 1, 2)]
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


# --- JA4 client fingerprint -----------------------------------------------------------------------

_JA4_VERSIONS = {0x0304: "13", 0x0303: "12", 0x0302: "11", 0x0301: "10", 0x0300: "s3", 0x0200: "s2",
                 0xFEFF: "d1", 0xFEFD: "d2", 0xFEFC: "d3"}


def is_grease(value: int) -> bool:
    """RFC 8701 GREASE values: 0x0a0a, 0x1a1a, ... 0xfafa."""
    return value & 0x0F0F == 0x0A0A and value >> 8 == value & 0xFF


def ja4(hello: ClientHello, transport: str = "t") -> tuple[str, str]:
    """(JA4, JA4_r) of a ClientHello, following FoxIO's JA4 specification:

    a = transport ("t" TCP, "q" QUIC) + version (highest non-GREASE supported_versions entry, else the
        legacy version: 13/12/11/10/s3) + "d" if an SNI extension is present else "i" + two-digit
        count of non-GREASE cipher suites + two-digit count of non-GREASE extensions + first and last
        character of the first ALPN value ("00" without ALPN; hex digits when not alphanumeric);
    b = first 12 hex digits of SHA-256 over the non-GREASE cipher suites, sorted, as 4-hex-digit
        values joined by ",";
    c = the same over the non-GREASE extensions sorted, without SNI (0000) and ALPN (0010), then "_"
        and the signature algorithms in the order sent (no "_" part when there are none).
    An empty list hashes to "000000000000". JA4_r is the same with the lists in clear.
    """
    import hashlib

    ciphers = [c for c in hello.cipher_suites if not is_grease(c)]
    exts = [e for e in hello.extensions if not is_grease(e)]
    versions = [v for v in hello.supported_versions if not is_grease(v)]
    version = _JA4_VERSIONS.get(max(versions) if versions else hello.legacy_version, "00")
    sni = "d" if 0 in exts else "i"
    alpn = "00"
    if hello.alpn_raw and hello.alpn_raw[0]:
        first = hello.alpn_raw[0]
        a0, a1 = chr(first[0]), chr(first[-1])
        if a0.isascii() and a0.isalnum() and a1.isascii() and a1.isalnum():
            alpn = a0 + a1
        else:
            alpn = first[:1].hex()[0] + first[-1:].hex()[1]
    part_a = f"{transport}{version}{sni}{min(len(ciphers), 99):02d}{min(len(exts), 99):02d}{alpn}"
    cipher_list = ",".join(f"{c:04x}" for c in sorted(ciphers))
    ext_list = ",".join(f"{e:04x}" for e in sorted(e for e in exts if e not in (0x0000, 0x0010)))
    sigs = ",".join(f"{a:04x}" for a in hello.signature_algorithms)
    ext_text = ext_list + (f"_{sigs}" if sigs else "")

    def h(text: str) -> str:
        return hashlib.sha256(text.encode()).hexdigest()[:12] if text else "000000000000"

    return f"{part_a}_{h(cipher_list)}_{h(ext_text) if ext_list else '000000000000'}", \
        f"{part_a}_{cipher_list}_{ext_text}"


# --- certificates (in clear up to TLS 1.2) ---------------------------------------------------------

def certificate_chain(body: bytes) -> list[bytes]:
    """The DER certificates of a TLS 1.0-1.2 Certificate handshake body (type 11), leaf first."""
    out: list[bytes] = []
    try:
        r = _Reader(body)
        chain = _Reader(r.take(int.from_bytes(r.take(3), "big")))
        while chain.left >= 3:
            out.append(chain.take(int.from_bytes(chain.take(3), "big")))
    except ValueError:
        pass
    return out


def _name_text(name) -> str:
    """An X.509 name as "C=US, O=Example, CN=host" (RDNs in certificate order, as nDPI prints them)."""
    parts = []
    for rdn in name.rdns:
        for attr in rdn:
            try:
                key = attr.rfc4514_attribute_name
            except AttributeError:  # older cryptography
                key = attr.oid._name
            parts.append(f"{key}={attr.value}")
    return ", ".join(parts)


def certificate_summary(der: bytes) -> dict | None:
    """Subject, issuer, subject alternative names and validity of a DER certificate, or None."""
    from cryptography import x509

    try:
        cert = x509.load_der_x509_certificate(der)
        subject, issuer = _name_text(cert.subject), _name_text(cert.issuer)
    except Exception:  # noqa: BLE001 - malformed or unsupported certificates are skipped
        return None
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
            x509.DNSName)
    except Exception:  # noqa: BLE001 - no or malformed SAN extension
        san = []
    cn = [a.value for a in cert.subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)]
    try:
        start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    except AttributeError:
        start, end = cert.not_valid_before, cert.not_valid_after
    return {"subject": subject, "issuer": issuer, "common_name": str(cn[0]) if cn else None, "san": list(san)[:64],
            "not_before": start.isoformat(), "not_after": end.isoformat(), "serial": format(cert.serial_number, "x")}
