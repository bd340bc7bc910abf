"""Deep packet inspection of each flow's reassembled streams: which protocol it is (by content, not
port), and whatever travels in clear - text, canary tokens, SMTP envelopes and headers, TLS SNI,
relay PINs.

Sees only observed flows; never imports the simulator, its truth, or the scorer.
"""
from __future__ import annotations

import base64
import binascii
import email
import email.policy
import re
from email.header import decode_header, make_header
from email.utils import getaddresses
from typing import Iterable

import numpy as np

from harness.analyzers import register
from harness.analyzers.interface import Analyzer, Finding
from harness.observe import views
from harness.observe.bursts import StreamLayout
from harness.observe.dns import dns_message_names, is_netbios_name, parse_dns_question
from harness.observe.model import CLIENT, SERVER, Flow
from harness.observe.packet_index import PacketIndex
from harness.observe.stream_clock import StreamClock
from harness.observe.text import (
    PrintableView,
    as_text,
    canary_tokens,
    email_addresses,
    excerpt,
    lines,
    printable_fraction,
    text_spans,
)
from harness.observe.tls_wire import (
    TLS_VERSION_NAMES,
    certificate_chain,
    certificate_summary,
    handshake_messages,
    is_grease,
    ja4,
)
from harness.observe.transforms import undo_transforms

ID = "payload.dpi"
DIRECTION_NAMES = ("client", "server")
CONTENT_WINDOW = 4096  # bytes of text per content finding (the value cap)
CONTENT_STEP = 4032  # windows overlap by 64 bytes so a token on a boundary is whole in one of them
MAX_TOKENS_IN_EVIDENCE = 32
MAX_PIN_TIMES = 100_000  # moments kept per PIN on a flow that carries several PINs
MAX_TIMES = 256  # moments kept per repeated finding
MAX_TRANSFORM_INPUT = 1 << 18  # bytes of one clear segment searched for encodings

# --- protocol signatures (checked on the first bytes of each direction) ------------------------
_SMTP_GREETING = re.compile(rb"220[ -]")
_SMTP_HELLO = re.compile(rb"(?i)(?:EHLO|HELO|LHLO) ")
_IMAP_GREETING = re.compile(rb"\* (?:OK|PREAUTH)\b")
_IMAP_COMMAND = re.compile(rb"(?i)[A-Za-z0-9.]{1,16} (?:CAPABILITY|LOGIN|AUTHENTICATE|STARTTLS|SELECT|EXAMINE|"
                           rb"FETCH|UID|LIST|LSUB|NOOP|LOGOUT|ID|ENABLE|APPEND|IDLE|STATUS|NAMESPACE)\b")
_POP3_COMMAND = re.compile(rb"(?i)(?:USER|APOP|CAPA|STLS|AUTH|QUIT|STAT|LIST|RETR|UIDL|TOP)\b")
_HTTP_REQUEST = re.compile(rb"(?:GET|POST|PUT|HEAD|DELETE|OPTIONS|PATCH|CONNECT|TRACE) \S+ HTTP/[0-9.]+\r?\n")
_HTTP_HOST = re.compile(rb"(?im)^Host:[ \t]*([^\r\n]+)")
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_HOSTNAME = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*$")
_USER_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
_MDNS_GROUPS = frozenset(("224.0.0.251", "ff02::fb"))


def quic_long_header_version(d: bytes) -> str | None:
    """The version of a QUIC long-header packet (RFC 9000/9369 v1/v2, IETF drafts ff0000xx, Google
    QUIC Qxxx/Txxx, Facebook mvfst faceb00x), or None."""
    if len(d) >= 13 and d[0] & 0x80 == 0 and d[0] & 0x09 == 0x09 and d[9:10] == b"Q" and d[10:13].isdigit():
        return d[9:13].decode()  # Google QUIC before Q046: public flags, 8-byte connection id, version
    if len(d) < 7 or d[0] & 0x80 == 0:
        return None
    v = d[1:5]
    if v in (b"\x00\x00\x00\x01", b"\x6b\x33\x43\xcf") or v[:3] == b"\xff\x00\x00" or v[:3] == b"\xfa\xce\xb0":
        return v.hex() if d[0] & 0x40 and d[5] <= 20 else None
    if v[:1] in (b"Q", b"T") and v[1:].isdigit():  # Google QUIC: version as ASCII, e.g. Q046
        return v.decode()
    return None

# --- SMTP client commands -----------------------------------------------------------------------
_MAIL_FROM = re.compile(rb"(?i)MAIL FROM:[ \t]*<?([^<>\s]*)>?")
_RCPT_TO = re.compile(rb"(?i)RCPT TO:[ \t]*<?([^<>\s]*)>?")
_BDAT = re.compile(rb"(?i)BDAT[ \t]+(\d+)([ \t]+LAST)?")

# --- RFC 822 headers in any clear text ----------------------------------------------------------
_KEY_HEADER = re.compile(rb"(?im)^(?:from|to|cc|subject)[ \t]*:")
_FIELD = re.compile(rb"([!-9;-~]+)[ \t]*:[ \t]*")


def identities(header_value: str) -> list[str]:
    """Identities in an address header: lower-cased e-mail addresses; failing those, a bare user
    name when the whole value is one (display names alone are not identities)."""
    out = [addr.strip().strip("<>").lower() for _, addr in getaddresses([header_value]) if "@" in addr]
    if not out:
        out = email_addresses(header_value.encode("utf-8", "replace"))
    if not out and _USER_NAME.fullmatch(header_value.strip()):
        out = [header_value.strip()]
    return [i for i in dict.fromkeys(out) if i]


def decode_subject(raw: str) -> str:
    try:
        return str(make_header(decode_header(raw))).strip()
    except Exception:  # malformed encoded-words: keep the raw text
        return raw.strip()


def header_fields(text: bytes, start: int, end: int) -> list[tuple[str, str, int]]:
    """(lower-case name, unfolded value, offset) of each header field line in text[start:end]."""
    fields: list[list] = []
    for ls, le, _ in lines(text, start, end):
        line = text[ls:le]
        if not line:
            break
        if line[:1] in (b" ", b"\t"):
            if fields:
                fields[-1][1] += b" " + line.strip()
            continue
        m = _FIELD.match(line)
        if m is None:
            break
        fields.append([m.group(1).decode("ascii").lower(), line[m.end():].strip(), ls])
    return [(n, v.decode("utf-8", "replace"), o) for n, v, o in fields]


def header_blocks(text: bytes) -> list[tuple[int, int]]:
    """[start, end) of each block of header-like lines holding a From/To/Cc/Subject field."""
    blocks: list[tuple[int, int]] = []
    if text.find(b":") < 0:
        return blocks
    last_end = -1
    for m in _KEY_HEADER.finditer(text):
        if m.start() < last_end:
            continue
        start = m.start()
        while start > max(last_end, 0):  # walk back over header-like lines
            prev_start = text.rfind(b"\n", 0, start - 1) + 1
            line = text[prev_start:start - 1].rstrip(b"\r")
            if not line or not (line[:1] in (b" ", b"\t") or _FIELD.match(line)):
                break
            start = prev_start
        end = m.start()
        for ls, le, nxt in lines(text, m.start(), min(len(text), m.start() + (1 << 16))):
            line = text[ls:le]
            if not line or not (line[:1] in (b" ", b"\t") or _FIELD.match(line)):
                break
            end = nxt
        blocks.append((start, end))
        last_end = end
    return blocks


def encoded_text_parts(body: bytes) -> list[str]:
    """The decoded text of each base64 or quoted-printable text part of a message; [] if it is malformed."""
    if b"content-transfer-encoding" not in body.lower():
        return []  # no part names an encoding (nothing to decode): spare the slow MIME parse
    texts = []
    try:
        message = email.message_from_bytes(body, policy=email.policy.default)
        for part in message.walk():
            if part.is_multipart() or part.get_content_maintype() != "text":
                continue
            if str(part.get("Content-Transfer-Encoding", "")).lower() in ("base64", "quoted-printable"):
                texts.append(part.get_content())
    except Exception:  # a malformed MIME tree: the raw body is reported anyway
        return []
    return texts


def _unstuff(raw: bytes) -> bytes:
    """SMTP dot-unstuffing: a "." opening the data or a line is dropped (the regex (^|\\n)\\. -> \\1,
    as literal replaces: its matches never overlap, and ^ is the data's start only)."""
    body = raw[1:] if raw.startswith(b".") else raw
    return body.replace(b"\n.", b"\n")


def first_datagram(flow: Flow, clock: StreamClock, direction: int) -> bytes:
    spans = clock.chunk_spans(direction, 1)
    if not spans:
        return b""
    off, length, _ = spans[0]
    return bytes(flow.payload[direction][off:off + length])


class _FlowDpi:
    """The DPI pass over one flow; collects findings in `out` (deduplicated by id)."""

    def __init__(self, flow: Flow) -> None:
        self.flow = flow
        self.clock = views.clock(flow)
        self._packets: PacketIndex | None = None  # built on the first located finding
        self.layout: StreamLayout = views.layout(flow)
        self.data = (bytes(flow.payload[CLIENT]), bytes(flow.payload[SERVER]))
        self.out: dict[str, Finding] = {}
        self.covered: tuple[list, list] = ([], [])  # stream ranges a protocol parser already reported
        self.transformed: list[tuple[int, int, int, str]] = []  # (direction, offset, length, chain) undone

    # -- emitting -----------------------------------------------------------------------------
    def emit(self, observable: str, kind: str, value, *, rule: str, confidence: float,
             direction: int | None = None, offset: int | None = None, length: int | None = None,
             text: bytes | str | None = None, timed: bool = True, **extra) -> None:
        """Record a finding. `timed=False` for facts about the whole flow (its protocol, a PIN, the
        SNI): those get "seen_at" instead of "time", so they are not tied to one moment."""
        evidence: dict = {"rule": rule}
        if direction is not None:
            evidence["direction"] = DIRECTION_NAMES[direction]
        if offset is not None:
            evidence["offset"] = offset
            evidence["length"] = length if length is not None else 0
        if direction is not None and offset is not None:
            t = self.clock.time(direction, offset)
            if self._packets is None:
                self._packets = PacketIndex(self.flow)
            evidence["packet"] = self._packets.packet(direction, offset)
        else:
            t = self.flow.first_seen
        evidence["time" if timed else "seen_at"] = round(t, 6)
        if text is not None:
            evidence["excerpt"] = excerpt(text)
        evidence.update({k: v for k, v in extra.items() if v not in (None, [], {})})
        finding = Finding(analyzer=ID, observable=observable, kind=kind, flow=self.flow.id, value=value,
                          evidence=evidence, confidence=confidence)
        first = self.out.setdefault(finding.id, finding)
        if first is not finding and timed and evidence["time"] != first.evidence.get("time"):
            # The same leak again later in the flow (one sender, many messages on a persistent
            # connection): the id leaves time out, so one finding keeps every moment it was seen.
            times = first.evidence.setdefault("times", [first.evidence.get("time")])
            if len(times) < MAX_TIMES and evidence["time"] not in times:
                times.append(evidence["time"])

    def emit_content(self, text: bytes, direction: int, offset: int, length: int, rule: str,
                     confidence: float, **extra) -> None:
        """Content findings for `text`, cut into <= 4096-byte windows. `offset`/`length` say where the
        text (or the encoded bytes it was decoded from, when rule says so) lies in the stream."""
        decoded = rule.endswith(("-decoded", "-inflated"))
        pos = 0
        while True:
            window = text[pos:pos + CONTENT_WINDOW]
            if decoded:
                where = {"offset": offset, "length": length, "decoded_offset": pos}
            else:
                where = {"offset": offset + pos, "length": len(window)}
            self.emit("content", "text", as_text(window), rule=rule, confidence=confidence,
                      direction=direction, text=window, tokens=canary_tokens(window)[:MAX_TOKENS_IN_EVIDENCE],
                      addresses=email_addresses(window)[:16], **where, **extra)
            if pos + CONTENT_WINDOW >= len(text):
                break
            pos += CONTENT_STEP

    # -- the pass ------------------------------------------------------------------------------
    def run(self) -> dict[str, Finding]:
        label, confidence, rule, details = self.identify()
        self.emit("service", "app", label, rule=rule, confidence=confidence, timed=False, **details)
        self.tls_hello()
        self.tls_certificates()
        if self.layout.is_relay:
            self.relay_pins()
        if label == "smtp":
            self.smtp()
        elif label == "http":
            self.http_hosts()
        elif label in ("dns", "mdns"):
            self.dns_question()
        self.clear_text()
        return self.out

    def identify(self) -> tuple[str, float, str, dict]:
        c, s = self.data
        layout = self.layout
        if layout.is_relay:
            n = sum(len(d.envelopes) for d in layout.directions)
            return "bes-relay", 0.95 if n >= 2 else 0.8, "relay-envelope", {"envelopes": n}
        if self.flow.proto == "udp":
            for direction in (CLIENT, SERVER):
                d = first_datagram(self.flow, self.clock, direction)
                version = quic_long_header_version(d)
                if version is not None:
                    return "quic", 0.9, "quic-long-header", {"quic_version": version}
            d = first_datagram(self.flow, self.clock, CLIENT) or first_datagram(self.flow, self.clock, SERVER)
            names = dns_message_names(d)
            if names is not None:
                if any(is_netbios_name(n) for n in names):
                    return "netbios-ns", 0.85, "netbios-name-encoding", {}
                if self.flow.dst_ip in _MDNS_GROUPS or any(n.endswith(".local") for n in names):
                    return "mdns", 0.9, "dns-header-local-names", {}
                return "dns", 0.9, "dns-header", {}
            return self.statistical_guess()
        if c.startswith((b"SSH-2.0-", b"SSH-1.99-")) or s.startswith((b"SSH-2.0-", b"SSH-1.99-")):
            banner = (c if c.startswith(b"SSH-") else s).split(b"\r\n", 1)[0][:80]
            return "ssh", 0.95, "ssh-banner", {"banner": excerpt(banner)}
        if any(d.layer == "tls" for d in layout.directions):
            details = {}
            if layout.server_hello is not None:
                details["tls_version"] = TLS_VERSION_NAMES.get(layout.server_hello.version,
                                                               hex(layout.server_hello.version))
            if layout.client_hello is not None and layout.client_hello.alpn:
                details["alpn"] = layout.client_hello.alpn
            sure = layout.client_hello is not None or layout.server_hello is not None
            return "tls", 0.95 if sure else 0.7, "tls-record", details
        hello = _SMTP_HELLO.match(c) is not None
        if _SMTP_GREETING.match(s) and (hello or not c):
            return "smtp", 0.95 if hello else 0.5, "smtp-greeting", {}
        if hello:
            return "smtp", 0.7, "smtp-hello", {}
        if _IMAP_GREETING.match(s) or (_IMAP_COMMAND.match(c) and not s.startswith(b"+OK")):
            both = _IMAP_GREETING.match(s) is not None and _IMAP_COMMAND.match(c) is not None
            return "imap", 0.95 if both else 0.7, "imap-greeting", {}
        if s.startswith(b"+OK"):
            return "pop3", 0.95 if _POP3_COMMAND.match(c) else 0.7, "pop3-greeting", {}
        if _HTTP_REQUEST.match(c) or s.startswith(b"HTTP/1."):
            return "http", 0.95 if _HTTP_REQUEST.match(c) else 0.8, "http-request-line", {}
        if c.startswith(b"HTTP/1.") and not s:  # capture began mid-flow: the responder looks like the opener
            return "http", 0.6, "http-status-line", {}
        for d in (c, s):  # DNS over TCP: a 2-byte length prefix, then a DNS message
            if len(d) >= 19 and int.from_bytes(d[:2], "big") <= len(d) - 2 and parse_dns_question(d[2:]):
                return "dns", 0.8, "dns-over-tcp", {}
        return self.statistical_guess()

    def statistical_guess(self) -> tuple[str, float, str, dict]:
        """No signature matched: say what the first bytes look like (a clear-text protocol, fully
        encrypted, or structured binary), keeping the label "unknown" so no application is guessed."""
        c, s = self.data
        head = (c or s)[:2048]
        if not head:
            return "unknown", 0.5, "no-payload", {}
        a = np.frombuffer(head, dtype=np.uint8)
        distinct = int(np.count_nonzero(np.bincount(a, minlength=256)))
        expected = 256 * (1 - (255 / 256) ** a.size)
        if printable_fraction(head) > 0.9:
            guess = "clear-text-protocol"
        elif distinct >= 0.8 * expected and a.size >= 32:
            guess = "fully-encrypted-or-compressed"
        else:
            guess = "binary-protocol"
        return "unknown", 0.5, "statistical-fallback", {"looks_like": guess, "measured_bytes": int(a.size),
                                                        "distinct_bytes": distinct}

    # -- TLS -----------------------------------------------------------------------------------
    def tls_hello(self) -> None:
        hello, offset = self.layout.client_hello, self.layout.client_hello_offset
        if hello is None:
            return
        versions = [TLS_VERSION_NAMES.get(v, hex(v)) for v in hello.supported_versions if not is_grease(v)]
        fingerprint, fingerprint_raw = ja4(hello)
        if hello.sni:
            self.emit("endpoint", "tls-sni", hello.sni, rule="tls-client-hello-sni", confidence=0.95,
                      direction=CLIENT, offset=offset, length=0, timed=False, alpn=hello.alpn,
                      supported_versions=versions, ja4=fingerprint)
        # The client's software, not an identity: a dict value, so no observable's scorer reads it as a guess.
        self.emit("service", "tls-client-fingerprint",
                  {"ja4": fingerprint, "alpn": hello.alpn, "versions": versions or
                   [TLS_VERSION_NAMES.get(hello.legacy_version, hex(hello.legacy_version))]},
                  rule="ja4-client-hello", confidence=0.9, direction=CLIENT, offset=offset, length=0, timed=False,
                  ja4_r=fingerprint_raw, cipher_suites=len(hello.cipher_suites))

    def tls_certificates(self) -> None:
        """TLS 1.0-1.2 send the server's certificate chain in clear: subject, issuer, names."""
        d = self.layout.directions[SERVER]
        if d.tls_start is None:
            return
        for mtype, offset, body in handshake_messages(self.data[SERVER], d.records):
            if mtype != 11:
                continue
            for depth, der in enumerate(certificate_chain(body)[:4]):
                summary = certificate_summary(der)
                if summary is None:
                    continue
                host = summary["common_name"] or (summary["san"][0] if summary["san"] else None)
                self.emit("endpoint", "tls-certificate", {"host": host if depth == 0 else None, **summary},
                          rule="tls12-certificate-message", confidence=0.9 if depth == 0 else 0.6,
                          direction=SERVER, offset=offset, length=len(body) + 4, timed=False, chain_depth=depth)
            break

    # -- relay envelope --------------------------------------------------------------------------
    def relay_pins(self) -> None:
        """One device finding per distinct PIN in the flow, located at its first envelope. On a flow that
        carries several PINs (the enterprise <-> relay link), the finding lists every moment its PIN was
        seen (evidence "times"), so each message is tied to its own device, not to all of them."""
        seen: dict[int, dict] = {}
        envelopes = [(self.clock.time(d, env.offset), d, env) for d in (CLIENT, SERVER)
                     for env in self.layout.directions[d].envelopes]
        for t, direction, env in sorted(envelopes, key=lambda e: (e[0], e[1], e[2].offset)):
            entry = seen.setdefault(env.pin, {"first": (direction, env), "count": 0, "directions": set(),
                                              "flags": set(), "times": []})
            entry["count"] += 1
            if len(entry["times"]) < MAX_PIN_TIMES:
                entry["times"].append(round(t, 6))
            entry["directions"].add(DIRECTION_NAMES[direction])
            entry["flags"].add(env.flags)
        for pin, entry in seen.items():
            direction, env = entry["first"]
            self.emit("device", "relay-pin", f"pin:{pin:08x}", rule="relay-envelope-pin", confidence=0.95,
                      direction=direction, offset=env.offset + 8, length=4, timed=False, envelopes=entry["count"],
                      directions=sorted(entry["directions"]), flags=sorted(entry["flags"]),
                      times=entry["times"] if len(seen) > 1 else None)

    # -- SMTP ------------------------------------------------------------------------------------
    def smtp(self) -> None:
        c, s = self.data
        greeting = _SMTP_GREETING.match(s)
        if greeting:
            eol = s.find(b"\n")
            first = s[greeting.end():eol if eol >= 0 else len(s)].strip()
            name = first.split(b" ", 1)[0].decode("ascii", "replace").lower()
            if _HOSTNAME.match(name) and "." in name:
                self.emit("endpoint", "smtp-greeting", name, rule="smtp-220-greeting", confidence=0.7,
                          direction=SERVER, offset=0, length=greeting.end() + len(name), text=s[:80],
                          timed=False)
        sender: str | None = None
        login_next = False
        pos = 0
        while pos < len(c):
            nl = c.find(b"\n", pos)
            line_end = len(c) if nl < 0 else nl + 1
            line = c[pos:line_end].rstrip(b"\r\n")
            upper = line[:12].upper()
            if login_next:
                login_next = False
                self._smtp_auth_user(line, pos)
            elif upper.startswith((b"EHLO ", b"HELO ", b"LHLO ")):
                name = line[5:].strip().split(b" ", 1)[0].decode("ascii", "replace").lower()
                if _HOSTNAME.match(name):  # the client's own name; an address literal "[10.0.0.1]" is not
                    self.emit("device", "smtp-ehlo", name, rule="smtp-hello-name", confidence=0.6,
                              direction=CLIENT, offset=pos, length=len(line), text=line, timed=False)
            elif upper.startswith(b"MAIL FROM:"):
                m = _MAIL_FROM.match(line)
                sender = m.group(1).decode("utf-8", "replace").lower() if m and m.group(1) else None
                if sender:
                    self.emit("sender", "smtp-mail-from", sender, rule="smtp-envelope", confidence=0.95,
                              direction=CLIENT, offset=pos, length=len(line), text=line)
            elif upper.startswith(b"RCPT TO:"):
                m = _RCPT_TO.match(line)
                rcpt = m.group(1).decode("utf-8", "replace").lower() if m and m.group(1) else None
                if rcpt:
                    self.emit("recipient", "smtp-rcpt-to", rcpt, rule="smtp-envelope", confidence=0.95,
                              direction=CLIENT, offset=pos, length=len(line), text=line)
                    if sender:
                        self.emit("contacts", "smtp-envelope", {"sender": sender, "recipient": rcpt},
                                  rule="smtp-envelope", confidence=0.95, direction=CLIENT, offset=pos,
                                  length=len(line), text=line)
            elif upper.startswith(b"AUTH "):
                parts = line.split()
                mech = parts[1].upper() if len(parts) > 1 else b""
                if mech == b"PLAIN" and len(parts) > 2:
                    self._smtp_auth_plain(parts[2], pos)
                elif mech == b"PLAIN":
                    login_next = True  # initial response follows on its own line
                elif mech == b"LOGIN" and len(parts) > 2:
                    self._smtp_auth_user(parts[2], pos)
                elif mech == b"LOGIN":
                    login_next = True
            elif line.strip().upper() == b"DATA":
                body_start = line_end
                if c.startswith(b".\r\n", body_start):
                    body_end = body_start
                else:
                    idx = c.find(b"\r\n.\r\n", body_start)
                    body_end = idx + 2 if idx >= 0 else len(c)
                self._smtp_message(c[body_start:body_end], body_start, dot_stuffed=True)
                self.covered[CLIENT].append((body_start, body_end))
                pos = min(body_end + 3, len(c)) if body_end < len(c) else len(c)
                continue
            elif upper.startswith(b"BDAT"):
                m = _BDAT.match(line)
                if m:
                    size = int(m.group(1))
                    self._smtp_message(c[line_end:line_end + size], line_end, dot_stuffed=False)
                    self.covered[CLIENT].append((line_end, line_end + size))
                    pos = line_end + size
                    continue
            elif upper.startswith(b"STARTTLS"):
                break  # the rest is TLS
            elif upper.startswith(b"RSET"):
                sender = None
            pos = line_end

    def _smtp_auth_user(self, b64: bytes, offset: int) -> None:
        try:
            user = base64.b64decode(b64.strip(), validate=True)
        except (binascii.Error, ValueError):
            return
        if b"\0" in user:  # AUTH PLAIN initial response on its own line
            self._smtp_auth_plain(b64, offset)
            return
        self._emit_auth_user(user, offset)

    def _smtp_auth_plain(self, b64: bytes, offset: int) -> None:
        try:
            parts = base64.b64decode(b64.strip(), validate=True).split(b"\0")
        except (binascii.Error, ValueError):
            return
        if len(parts) == 3:
            self._emit_auth_user(parts[1] or parts[0], offset)

    def _emit_auth_user(self, user: bytes, offset: int) -> None:
        name = user.decode("utf-8", "replace").strip()
        if name and printable_fraction(user) == 1.0:
            name = name.lower() if "@" in name else name
            # No excerpt: the line carries the credential.
            self.emit("sender", "smtp-auth", name, rule="smtp-auth-user", confidence=0.8,
                      direction=CLIENT, offset=offset, length=0)

    def _smtp_message(self, raw: bytes, offset: int, dot_stuffed: bool) -> None:
        body = _unstuff(raw) if dot_stuffed else raw
        if not body:
            return
        self.emit_content(body, CLIENT, offset, len(raw), "smtp-data", 1.0)
        header_end = body.find(b"\r\n\r\n")
        header_end = len(body) if header_end < 0 else header_end + 2
        self.headers(body, 0, header_end, CLIENT, offset, confidence=0.95, rule="smtp-data-header")
        texts = encoded_text_parts(body)
        if texts:
            self.emit_content("\n".join(texts).encode(), CLIENT, offset, len(raw), "mime-decoded", 1.0)

    # -- RFC 822 headers -------------------------------------------------------------------------
    def headers(self, text: bytes, start: int, end: int, direction: int, base: int, *, confidence: float,
                rule: str, exact_offsets: bool = True) -> None:
        """Subject/From/To/Cc fields of the header block text[start:end]; `base` is text[0]'s stream offset."""
        fields = header_fields(text, start, end)
        senders: list[tuple[str, int]] = []
        recipients: list[tuple[str, int]] = []
        for name, value, off in fields:
            where = base + off if exact_offsets else base
            if name == "subject":
                subject = decode_subject(value)
                if subject:
                    self.emit("subject", "header-subject", subject[:998], rule=rule, confidence=confidence,
                              direction=direction, offset=where, length=len(value), text=subject)
            elif name in ("from", "to", "cc"):
                for ident in identities(value):
                    observable = "sender" if name == "from" else "recipient"
                    (senders if name == "from" else recipients).append((ident, where))
                    self.emit(observable, f"header-{name}", ident, rule=rule, confidence=confidence,
                              direction=direction, offset=where, length=len(value), text=value)
        for sender, _ in senders:
            for rcpt, where in recipients:
                self.emit("contacts", "header-pair", {"sender": sender, "recipient": rcpt}, rule=rule,
                          confidence=confidence * 0.9, direction=direction, offset=where, length=0)

    # -- HTTP, DNS -------------------------------------------------------------------------------
    def http_hosts(self) -> None:
        c = self.data[CLIENT]
        for m in _HTTP_HOST.finditer(c[:1 << 16]):
            host = m.group(1).strip().decode("ascii", "replace").lower()
            name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
            if name:
                self.emit("endpoint", "http-host", name, rule="http-host-header", confidence=0.9,
                          direction=CLIENT, offset=m.start(), length=m.end() - m.start(), text=m.group(),
                          timed=False)

    def dns_question(self) -> None:
        skip = 2 if self.flow.proto == "tcp" else 0  # DNS over TCP: length prefix
        for direction in (CLIENT, SERVER):
            for off, length, _ in self.clock.chunk_spans(direction, 64):
                name = parse_dns_question(self.data[direction][off + skip:off + length])
                if name and name != ".":
                    self.emit("endpoint", "dns-query", name, rule="dns-question", confidence=0.6,
                              direction=direction, offset=off, length=length)

    # -- clear text anywhere -------------------------------------------------------------------
    def clear_text(self) -> None:
        for direction in (CLIENT, SERVER):
            data = self.data[direction]
            d = self.layout.directions[direction]
            if d.layer == "relay":
                segments = [(0, d.clear_end, "printable-run")] + [
                    (env.body_offset, min(env.end, len(data)), "relay-body") for env in d.envelopes]
            else:
                segments = [(s, e, "printable-run") for s, e in _uncovered(len(data), self.covered[direction])]
            for start, end, rule in segments:
                if end <= start:
                    continue
                segment = data[start:end]
                view = PrintableView(segment)  # one pass, for both scans
                self.scan_text(segment, direction, start, len(segment), rule, view=view)
                # Encoded or compressed regions (nested too): undone and read like clear text.
                capped = len(segment) > MAX_TRANSFORM_INPUT
                for result in undo_transforms(segment[:MAX_TRANSFORM_INPUT], view=None if capped else view):
                    self.transformed.append((direction, start + result.offset, result.length, result.rule))
                    self.scan_text(result.data, direction, start + result.offset, result.length,
                                   f"{result.rule}-decoded", depth=1)

    def scan_text(self, data: bytes, direction: int, base: int, length: int, rule: str, depth: int = 0,
                  view: PrintableView | None = None) -> None:
        """Content, headers and base64-wrapped text in the printable parts of `data`.

        `base`/`length` locate `data` in the stream; for decoded data (rule ending in -decoded or
        -inflated) they locate the encoded bytes, and offsets inside are not stream offsets. `view`:
        `PrintableView(data)` if the caller has it.
        """
        decoded = rule.endswith(("-decoded", "-inflated"))
        confidence = {"relay-body": 0.9, "printable-run": 0.6}.get(rule, 0.85 if decoded else 0.7)
        for s, e in text_spans(data, view=view):
            text = data[s:e]
            if decoded:
                self.emit_content(text, direction, base, length, rule, confidence)
            else:
                self.emit_content(text, direction, base + s, e - s, rule, confidence)
            for hs, he in header_blocks(text):
                self.headers(text, hs, he, direction, base + (0 if decoded else s), confidence=0.8,
                             rule=f"{rule}-header", exact_offsets=not decoded)


def _uncovered(size: int, covered: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out, pos = [], 0
    for start, end in sorted(covered):
        if start > pos:
            out.append((pos, start))
        pos = max(pos, end)
    if pos < size:
        out.append((pos, size))
    return out


@register
class PayloadDpi(Analyzer):
    """Protocol by content, and everything readable in clear, per flow."""

    id = ID
    cost = 4.5  # relative CPU cost (Analyzer.cost), measured at 1M packets: balances analyze --jobs
    description = ("Identifies each flow's protocol from its bytes and reports what travels in clear: text and "
                   "canary tokens, SMTP envelopes and headers, TLS SNI/ALPN, relay PINs, HTTP Host, DNS names.")

    def on_flow(self, flow: Flow) -> Iterable[Finding]:
        return list(_FlowDpi(flow).run().values())
