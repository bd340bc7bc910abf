"""payload.dpi: protocol by content and what travels in clear."""
from __future__ import annotations

import base64
import zlib

import pytest

from harness.observe.tls_wire import handshake_messages, parse_client_hello, tls_records

from .conftest import (
    MESSAGE,
    SNI,
    SUBJECT,
    T_DATA_BODY,
    T_MAIL,
    T_RCPT,
    TOKEN,
    C,
    S,
    client_hello,
    encrypt_chunks,
    envelope,
    make_flow,
    pick,
    run,
    sealed,
    smtp_chunks,
)

DPI = "payload.dpi"


def values(findings, observable, kind=None):
    return sorted({str(f.value) if isinstance(f.value, dict) else f.value for f in pick(findings, observable, kind)})


def app_of(findings):
    (app,) = pick(findings, "service", "app")
    return app.value


def test_smtp_in_clear_gives_envelope_headers_subject_and_content_with_times(smtp_flow):
    found = run(DPI, smtp_flow)
    assert app_of(found) == "smtp"

    (mail_from,) = pick(found, "sender", "smtp-mail-from")
    assert mail_from.value == "alice@corp.example"  # lower-cased, no brackets, no ESMTP parameters
    assert mail_from.time == pytest.approx(T_MAIL)
    assert mail_from.evidence["direction"] == "client" and mail_from.evidence["excerpt"].startswith("MAIL FROM:")
    (rcpt,) = pick(found, "recipient", "smtp-rcpt-to")
    assert rcpt.value == "bob@corp.example" and rcpt.time == pytest.approx(T_RCPT)
    (pair,) = pick(found, "contacts", "smtp-envelope")
    assert pair.value == {"sender": "alice@corp.example", "recipient": "bob@corp.example"}
    assert pair.time == pytest.approx(T_RCPT)

    assert values(found, "sender", "header-from") == ["alice@corp.example"]
    assert values(found, "recipient", "header-to") == ["bob@corp.example"]
    assert values(found, "recipient", "header-cc") == ["carol@corp.example"]
    assert sorted(tuple(f.value.values()) for f in pick(found, "contacts", "header-pair")) == [
        ("alice@corp.example", "bob@corp.example"), ("alice@corp.example", "carol@corp.example")]
    (subject,) = pick(found, "subject")
    assert subject.value == SUBJECT and subject.time == pytest.approx(T_DATA_BODY)

    (body,) = [f for f in pick(found, "content") if f.evidence["rule"] == "smtp-data"]
    assert body.value == MESSAGE.decode()  # dot-stuffing undone, terminator gone
    assert body.evidence["tokens"] == [TOKEN]
    assert body.time == pytest.approx(T_DATA_BODY)
    assert len(body.evidence["excerpt"]) <= 120 and body.evidence["excerpt"].isprintable()

    (ehlo,) = pick(found, "device", "smtp-ehlo")  # the client names itself
    assert ehlo.value == "alice-laptop" and ehlo.time is None
    (greeting,) = pick(found, "endpoint", "smtp-greeting")
    assert greeting.value == "mail.corp.example"
    # The commands and replies outside DATA are clear text too, reported once, not the body again.
    runs = [f for f in pick(found, "content") if f.evidence["rule"] == "printable-run"]
    assert any("EHLO alice-laptop" in f.value for f in runs)
    assert not any(TOKEN in f.value for f in runs)


def test_the_same_bytes_encrypted_reveal_nothing(smtp_flow):
    flow = make_flow(encrypt_chunks(smtp_chunks()))
    found = run(DPI, flow)
    assert app_of(found) == "unknown"
    for observable in ("content", "subject", "sender", "recipient", "contacts", "device", "endpoint"):
        assert pick(found, observable) == [], observable


def test_smtp_auth_names_the_user_but_evidence_leaves_the_password_out():
    plain = base64.b64encode(b"\0alice\0s3cret-pw").decode()
    chunks = [(1.0, S, b"220 mx.corp.example ESMTP\r\n"), (1.1, C, b"EHLO x\r\n"), (1.2, S, b"250 ok\r\n"),
              (1.3, C, f"AUTH PLAIN {plain}\r\n".encode()), (1.4, S, b"235 ok\r\n")]
    found = run(DPI, make_flow(chunks))
    (auth,) = pick(found, "sender", "smtp-auth")
    assert auth.value == "alice" and auth.time == pytest.approx(1.3)
    assert "excerpt" not in auth.evidence


def test_smtp_bdat_message_is_read():
    body = MESSAGE
    envelope_lines = b"EHLO x\r\nMAIL FROM:<a@x.example>\r\nRCPT TO:<b@y.example>\r\n"
    chunks = [(1.0, S, b"220 mx ESMTP\r\n"), (1.1, C, envelope_lines),
              (1.2, S, b"250 ok\r\n250 ok\r\n250 ok\r\n"), (1.3, C, b"BDAT %d LAST\r\n" % len(body) + body)]
    found = run(DPI, make_flow(chunks))
    assert [f.value for f in pick(found, "subject")] == [SUBJECT]
    assert any(f.evidence["rule"] == "smtp-data" and TOKEN in f.value for f in pick(found, "content"))


def test_tls_client_hello_sni_and_alpn_from_a_real_client():
    hello = client_hello(SNI, alpn=["smtp", "http/1.1"])
    flow = make_flow([(5.0, C, hello)], dst=("10.9.0.25", 465))
    found = run(DPI, flow)
    assert app_of(found) == "tls"
    (sni,) = pick(found, "endpoint", "tls-sni")
    assert sni.value == SNI
    assert sni.evidence["alpn"] == ["smtp", "http/1.1"]
    assert "TLSv1.3" in sni.evidence["supported_versions"]
    assert sni.time is None and sni.evidence["seen_at"] == 5.0  # a fact about the flow, not one moment
    assert pick(found, "content") == []  # nothing of substance in clear


def test_client_hello_parser_reads_the_fields():
    hello = client_hello("Mail.Corp.Example.", alpn=["h2"])
    (msg_type, offset, body), = [m for m in handshake_messages(hello, tls_records(hello)) if m[0] == 1]
    parsed = parse_client_hello(body)
    assert offset == 5 and parsed.sni == "mail.corp.example"
    assert parsed.alpn == ["h2"] and 0x0304 in parsed.supported_versions
    assert parsed.legacy_version == 0x0303 and parsed.session_id_length == 32
    assert 0x1301 in parsed.cipher_suites and 0 in parsed.extensions and 16 in parsed.extensions
    for cut in range(0, len(body), 7):  # truncated: no exception, at most a partial result
        parse_client_hello(body[:cut])


def test_relay_envelopes_give_pins_and_clear_bodies():
    text = f"meet at the harbour at noon {TOKEN} bring the contract".encode()
    chunks = [
        (1.0, C, envelope(1, 0x2B0B58A4, 7, text) + envelope(4, 0x2B0B58A4, 1)),
        (1.1, S, envelope(3, 0x2B0B58A4, 7) + envelope(4, 0x2B0B58A4, 1)),
        (9.0, S, envelope(2, 0x0000ABCD, 8, b"short reply from the other side of the relay")),
        (9.1, C, envelope(3, 0x2B0B58A4, 8)),
    ]
    found = run(DPI, make_flow(chunks, dst=("198.51.100.10", 3101)))
    assert app_of(found) == "bes-relay"
    pins = pick(found, "device", "relay-pin")
    assert sorted({f.value for f in pins}) == ["pin:0000abcd", "pin:2b0b58a4"]
    # One finding per distinct PIN in the flow, located at its first envelope.
    assert sorted((f.value, f.evidence["direction"], f.evidence["offset"], f.evidence["envelopes"]) for f in pins) == [
        ("pin:0000abcd", "server", 40, 1), ("pin:2b0b58a4", "client", 8, 5)]
    bodies = [f for f in pick(found, "content") if f.evidence["rule"] == "relay-body"]
    assert [f.value for f in bodies] == [text.decode(), "short reply from the other side of the relay"]
    assert bodies[0].evidence["tokens"] == [TOKEN] and bodies[0].time == 1.0
    assert bodies[0].evidence["offset"] == 16  # right after the 16-byte header


def test_sealed_relay_bodies_give_pins_only():
    chunks = [(1.0, C, envelope(1, 0x11223344, 1, sealed(f"secret {TOKEN} text".encode(), 1), flags=1)),
              (1.1, S, envelope(3, 0x11223344, 1))]
    found = run(DPI, make_flow(chunks, dst=("198.51.100.10", 3101)))
    assert values(found, "device") == ["pin:11223344"]
    assert pick(found, "content") == []


def test_base64_and_zlib_wrapped_text_is_unwrapped():
    text = f"The board asked for a summary of risks {TOKEN} before the meeting on thursday. " * 3
    b64 = base64.encodebytes(text.encode())  # 76-column lines
    found = run(DPI, make_flow([(1.0, C, b64)], dst=("10.9.0.9", 7000)))
    assert any(f.evidence["rule"] == "base64-decoded" and TOKEN in f.value for f in pick(found, "content"))
    found = run(DPI, make_flow([(1.0, C, zlib.compress(text.encode()))], dst=("10.9.0.9", 7000)))
    (inflated,) = [f for f in pick(found, "content") if f.evidence["rule"] == "zlib-decoded"]
    assert inflated.value == text and inflated.evidence["tokens"] == [TOKEN]


def test_long_text_is_cut_into_windows_that_keep_every_token_whole():
    tokens = [f"CNRY-{i:016x}" for i in range(3)]
    # Tokens straddling the first two window ends (4096 and 4032 + 4096) and one in the last window.
    text = ("a " * 2045 + tokens[0] + " " + "b " * 2000 + tokens[1] + " " + "c " * 900 + tokens[2]).encode()
    assert text.index(tokens[0].encode()) < 4096 < text.index(tokens[0].encode()) + 21
    assert text.index(tokens[1].encode()) < 8128 < text.index(tokens[1].encode()) + 21
    found = run(DPI, make_flow([(1.0, C, text)], dst=("10.9.0.9", 7000)))
    contents = pick(found, "content")
    assert len(contents) == 3 and all(len(f.value) <= 4096 for f in contents)
    assert [f.evidence["offset"] for f in contents] == [0, 4032, 8064]
    for t in tokens:
        assert any(t in f.value for f in contents), t


@pytest.mark.parametrize("chunks, proto, app", [
    ([(0.0, C, b"SSH-2.0-OpenSSH_9.6\r\n"), (0.1, S, b"SSH-2.0-OpenSSH_9.3\r\n")], "tcp", "ssh"),
    ([(0.0, S, b"* OK IMAP4rev1 ready\r\n"), (0.1, C, b"a1 LOGIN bob pw\r\n")], "tcp", "imap"),
    ([(0.0, S, b"+OK POP3 ready\r\n"), (0.1, C, b"USER bob\r\n")], "tcp", "pop3"),
    ([(0.0, C, b"GET /index.html HTTP/1.1\r\nHost: www.corp.example\r\n\r\n")], "tcp", "http"),
    ([(0.0, C, bytes.fromhex("abcd01000001000000000000") + b"\x04mail\x04corp\x07example\x00\x00\x01\x00\x01")],
     "udp", "dns"),
    ([(0.0, C, b"\xc3\x00\x00\x00\x01\x08" + bytes(range(8)) + b"\x00" + bytes(1200))], "udp", "quic"),
    ([(0.0, C, bytes(range(256)))], "tcp", "unknown"),
    ([], "tcp", "unknown"),
])
def test_protocol_is_recognised_by_content_not_port(chunks, proto, app):
    found = run(DPI, make_flow(chunks, proto=proto, dst=("10.9.0.9", 7000)))  # no well-known port
    assert app_of(found) == app


def test_http_host_and_dns_question_name_the_destination():
    http = make_flow([(0.0, C, b"GET / HTTP/1.1\r\nHost: WWW.Corp.Example:8080\r\n\r\n")], dst=("10.9.0.9", 80))
    assert values(run(DPI, http), "endpoint", "http-host") == ["www.corp.example"]
    query = bytes.fromhex("abcd01000001000000000000") + b"\x04mail\x04corp\x07example\x00\x00\x01\x00\x01"
    dns = make_flow([(0.0, C, query)], proto="udp", dst=("10.9.0.53", 53))
    assert values(run(DPI, dns), "endpoint", "dns-query") == ["mail.corp.example"]


def test_empty_flow_is_unknown_with_nothing_else():
    found = run(DPI, make_flow([], start=3.0, end=3.2))
    assert [f.kind for f in found] == ["app"] and found[0].value == "unknown"


def test_a_repeated_leak_on_a_persistent_flow_keeps_every_moment():
    mail = ("From: Alice <alice@corp.example>\r\nTo: bob@corp.example\r\nSubject: {}\r\n\r\n"
            "body text of the message number {}\r\n")
    chunks = [(60.0 * i, C, envelope(1, 0x2B0B58A4, i, mail.format(f"subject {i}", i).encode())) for i in range(3)]
    found = run(DPI, make_flow(chunks, dst=("198.51.100.10", 3101)))
    (sender,) = pick(found, "sender", "header-from")  # same flow, kind and value: one finding (same id)
    assert sender.time == 0.0 and sender.evidence["times"] == [0.0, 60.0, 120.0]
    assert sorted(f.value for f in pick(found, "subject")) == ["subject 0", "subject 1", "subject 2"]
    assert sorted(f.time for f in pick(found, "subject")) == [0.0, 60.0, 120.0]
