"""Fixtures for analyzer tests: Flow records built by hand from (time, direction, bytes) chunks, and
the sample traffic the tests share (an SMTP session, relay envelopes, a real TLS 1.3 handshake)."""
from __future__ import annotations

import datetime
import random
import ssl
import struct
from typing import Callable, Iterable

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.x509.oid import NameOID

from harness.analyzers import Finding, Knowledge, registry
from harness.observe.model import CLIENT, SERVER, Chunk, Flow, endpoint, flow_key
from harness.series import expand

C, S = CLIENT, SERVER
FRAME_OVERHEAD = 54  # Ethernet + IPv4 + TCP headers, for the wire byte counters
TOKEN = "CNRY-0123456789abcdef"
SUBJECT = "Quarterly budget review [a1b2c3]"
SNI = "mail.corp.example"

Chunks = list[tuple[float, int, bytes]]


def make_flow(chunks: Iterable[tuple[float, int, bytes]], *, proto: str = "tcp",
              src: tuple[str, int] = ("10.1.0.5", 40001), dst: tuple[str, int] = ("10.9.0.25", 25),
              handshake: bool = True, start: float | None = None, end: float | None = None) -> Flow:
    """A Flow as the observe tier hands it over, from chunks of new payload bytes (time order)."""
    chunks = sorted(chunks, key=lambda c: c[0])
    s, d = endpoint(*src), endpoint(*dst)
    times = [t for t, _, _ in chunks]
    flow = Flow(id=flow_key(proto, s, d), proto=proto, src=s, dst=d, src_ip=src[0], dst_ip=dst[0],
                sport=src[1], dport=dst[1],
                first_seen=start if start is not None else (min(times) if times else 0.0),
                last_seen=end if end is not None else (max(times) if times else 0.0), handshake=handshake)
    for t, direction, data in chunks:
        if not data:
            continue
        flow.chunks.append(Chunk(t, direction, len(flow.payload[direction]), len(data)))
        flow.payload[direction] += data
        flow.payload_bytes[direction] += len(data)
        flow.packets[direction] += 1
        flow.bytes[direction] += len(data) + FRAME_OVERHEAD
    return flow


def run(analyzer_id: str, *flows: Flow, knowledge: Knowledge | None = None) -> list[Finding]:
    """One analyzer over `flows`: on_flow for each, then finish."""
    analyzer = registry()[analyzer_id](knowledge or Knowledge())
    out: list[Finding] = []
    for flow in flows:
        out.extend(analyzer.on_flow(flow))
    out.extend(analyzer.finish(list(flows)))
    return out


def pick(findings: Iterable[Finding], observable: str | None = None, kind: str | None = None) -> list[Finding]:
    return [f for f in findings if (observable is None or f.observable == observable)
            and (kind is None or f.kind == kind)]


def items(findings: Iterable[Finding], observable: str | None = None, kind: str | None = None) -> list[dict]:
    """The picked findings as the scorer reads them: a series finding as one finding dict per item."""
    return [item for f in pick(findings, observable, kind) for item in expand(f.to_json())]


# --- SMTP ---------------------------------------------------------------------------------------

MESSAGE = (
    "From: Alice Example <Alice@Corp.Example>\r\n"
    "To: Bob <bob@corp.example>\r\n"
    "Cc: carol@corp.example\r\n"
    f"Subject: {SUBJECT}\r\n"
    "Message-ID: <m000001@corp.example>\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n"
    "\r\n"
    f"The quarterly budget review meeting is moved to thursday {TOKEN} please confirm attendance\r\n"
    ".a line that starts with a dot, so it is dot-stuffed on the wire\r\n"
    "and send the draft figures before noon.\r\n"
).encode()
STUFFED = MESSAGE.replace(b"\r\n.", b"\r\n..") + b".\r\n"  # DATA body as sent, with the terminator
SMTP_T0 = 100.0
T_MAIL, T_RCPT, T_DATA_BODY = SMTP_T0 + 0.09, SMTP_T0 + 0.15, SMTP_T0 + 0.27


def smtp_chunks(t0: float = SMTP_T0) -> Chunks:
    """One e-mail over one SMTP connection, in clear; the body goes in two segments."""
    d = t0 - SMTP_T0
    half = len(STUFFED) // 2
    return [
        (t0 + 0.00, S, b"220 mail.corp.example ESMTP ready\r\n"),
        (t0 + 0.03, C, b"EHLO alice-laptop\r\n"),
        (t0 + 0.06, S, b"250-mail.corp.example\r\n250-PIPELINING\r\n250 SMTPUTF8\r\n"),
        (T_MAIL + d, C, b"MAIL FROM:<Alice@Corp.Example> SIZE=900\r\n"),
        (t0 + 0.12, S, b"250 2.1.0 Ok\r\n"),
        (T_RCPT + d, C, b"RCPT TO:<bob@corp.example>\r\n"),
        (t0 + 0.18, S, b"250 2.1.5 Ok\r\n"),
        (t0 + 0.21, C, b"DATA\r\n"),
        (t0 + 0.24, S, b"354 End data with <CR><LF>.<CR><LF>\r\n"),
        (T_DATA_BODY + d, C, STUFFED[:half]),
        (T_DATA_BODY + d + 0.001, C, STUFFED[half:]),
        (t0 + 0.31, S, b"250 2.0.0 Ok: queued\r\n"),
        (t0 + 0.34, C, b"QUIT\r\n"),
        (t0 + 0.37, S, b"221 2.0.0 Bye\r\n"),
    ]


def encrypt_chunks(chunks: Chunks, key: bytes = b"k" * 32) -> Chunks:
    """The same conversation with every chunk replaced by its AES-256-GCM ciphertext (+16-byte tag)."""
    aead = AESGCM(key)
    return [(t, d, aead.encrypt(struct.pack(">4xQ", i), data, None)) for i, (t, d, data) in enumerate(chunks)]


@pytest.fixture
def smtp_flow() -> Flow:
    return make_flow(smtp_chunks())


# --- relay envelope -----------------------------------------------------------------------------

def envelope(etype: int, pin: int, msg_id: int, body: bytes = b"", flags: int = 0) -> bytes:
    return struct.pack(">HBBIII", 0xBB01, etype, flags, len(body), pin, msg_id) + body


def sealed(body: bytes, n: int, key: bytes = b"d" * 32) -> bytes:
    """A body sealed the way a device would: 12-byte nonce, AES-256-GCM ciphertext and tag."""
    nonce = struct.pack(">4xQ", n)
    return nonce + AESGCM(key).encrypt(nonce, body, None)


def relay_chunks(pin=0x2B0B58A4, t0=30.0, spacing=180.0, sizes=(300, 44, 1200, 5000, 20), down=(1, 3)):
    """A persistent relay connection: data envelopes minutes apart (sealed bodies), each acked by the
    other side; keepalives between; the 5000-byte one crosses several segments."""
    chunks, expected = [], []
    for i, n in enumerate(sizes):
        t = t0 + i * spacing
        body = sealed(random.Random(i).randbytes(n), i)
        direction = S if i in down else C
        wire = envelope(2 if direction == S else 1, pin, i + 1, body, flags=1)
        for k in range(0, len(wire), 1448):
            chunks.append((t + k / 1448 * 0.0005, direction, wire[k:k + 1448]))
        chunks.append((t + 0.12, 1 - direction, envelope(3, pin, i + 1)))
        chunks.append((t + 60.0, C, envelope(4, pin, 100 + i)))
        chunks.append((t + 60.06, S, envelope(4, pin, 100 + i)))
        expected.append((round(t, 3), len(body), "server" if direction == S else "client"))
    return chunks, expected


# --- TLS 1.3 with Python's ssl over memory BIOs -------------------------------------------------

def client_hello(server_hostname: str = SNI, alpn: list[str] | None = None) -> bytes:
    """The ClientHello a real client (OpenSSL through Python's ssl) sends."""
    ctx = ssl.create_default_context()
    if alpn:
        ctx.set_alpn_protocols(alpn)
    sock = ctx.wrap_bio(ssl.MemoryBIO(), outgoing := ssl.MemoryBIO(), server_hostname=server_hostname)
    try:
        sock.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


@pytest.fixture(scope="session")
def server_cert(tmp_path_factory) -> tuple[str, str]:
    """A self-signed certificate for mail.corp.example: (cert path, key path)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, SNI)])
    now = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=36500))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(SNI)]), critical=False)
            .sign(key, hashes.SHA256()))
    folder = tmp_path_factory.mktemp("tls")
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


@pytest.fixture
def tls_session(server_cert) -> Callable[..., Chunks]:
    """A factory: a real TLS 1.3 connection, then the given application writes, as chunks.

    `writes` is [(time, direction, plaintext)]; the handshake happens at t0, t0+0.03, t0+0.06.
    """
    cert_path, key_path = server_cert

    def build(writes: list[tuple[float, int, bytes]], t0: float = 10.0, tickets: int = 0) -> Chunks:
        sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        sctx.minimum_version = ssl.TLSVersion.TLSv1_3
        sctx.num_tickets = tickets
        sctx.load_cert_chain(cert_path, key_path)
        cctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        cctx.load_verify_locations(cert_path)
        bios = [(ssl.MemoryBIO(), ssl.MemoryBIO()), (ssl.MemoryBIO(), ssl.MemoryBIO())]  # (in, out) per side
        ends = [cctx.wrap_bio(*bios[C], server_hostname=SNI), sctx.wrap_bio(*bios[S], server_side=True)]
        chunks: Chunks = []

        def flush(side: int, t: float) -> None:
            data = bios[side][1].read()
            if data:
                chunks.append((t, side, data))
                bios[1 - side][0].write(data)

        def step(side: int) -> None:
            try:
                ends[side].do_handshake()
            except ssl.SSLWantReadError:
                pass

        step(C)
        flush(C, t0)
        step(S)
        flush(S, t0 + 0.03)
        step(C)
        flush(C, t0 + 0.06)
        step(S)
        flush(S, t0 + 0.061)  # tickets, if any
        for t, side, plaintext in writes:
            ends[side].write(plaintext)
            flush(side, t)
            try:
                while ends[1 - side].read(65536):
                    pass
            except ssl.SSLWantReadError:
                pass
        return chunks

    return build


@pytest.fixture
def knowledge() -> Knowledge:
    return Knowledge()
