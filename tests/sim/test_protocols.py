"""Each sans-IO engine round-trips messages between two endpoints in memory."""
import pytest
from cryptography.exceptions import InvalidTag

from harness.sim.crypto import (
    NonceSequence,
    aead_open,
    aead_seal,
    device_key,
    server_identity,
)
from harness.sim.protocols.interface import converse
from harness.sim.protocols.relay import RelayDevice, RelayServer
from harness.sim.protocols.relay_envelope import (
    ACK,
    DATA_DOWN,
    DATA_UP,
    KEEPALIVE,
    Envelope,
    EnvelopeDecoder,
)
from harness.sim.protocols.smtp import Envelope as SmtpEnvelope
from harness.sim.protocols.smtp import SmtpClient, SmtpServer, dot_stuff, dot_unstuff
from harness.sim.protocols.tls import TlsLayer, client_context, server_context

MAIL = b"From: a@x\r\nTo: b@x\r\nSubject: test\r\n\r\nline one\r\n.starts with a dot\r\n..two\r\n"


def test_smtp_round_trip():
    server = SmtpServer("mail.example")
    turns = converse(SmtpClient(SmtpEnvelope("a@x", ["b@x", "c@x"], MAIL), "dev"), server)
    assert turns[0] == ("server", b"220 mail.example ESMTP ready\r\n")
    [(kind, env)] = server.events
    assert kind == "message" and env.mail_from == "a@x" and env.rcpt_to == ["b@x", "c@x"] and env.data == MAIL
    assert turns[-1] == ("server", b"221 2.0.0 Bye\r\n")


def test_dot_stuffing_inverse():
    assert dot_unstuff(dot_stuff(MAIL)[:-3]) == MAIL


def test_smtp_inside_real_tls13():
    ident = server_identity(5, "mail.example")
    server = SmtpServer("mail.example")
    client = TlsLayer(SmtpClient(SmtpEnvelope("a@x", ["b@x"], MAIL), "dev"), client_context(ident),
                      server_side=False, server_hostname="mail.example")
    tls_server = TlsLayer(server, server_context(ident), server_side=True)
    turns = converse(client, tls_server)
    assert server.events[0][1].data == MAIL
    assert tls_server.events[0][1] == "TLSv1.3"
    wire = b"".join(d for _, d in turns)
    assert b"Subject: test" not in wire and b"a@x" not in wire
    assert b"mail.example" in turns[0][1]  # the SNI travels in clear in the ClientHello
    assert turns[0][1][:3] == b"\x16\x03\x01"


def test_tls_rejects_wrong_server_name():
    ident = server_identity(5, "mail.example")
    client = TlsLayer(SmtpClient(SmtpEnvelope("a@x", ["b@x"], MAIL), "dev"), client_context(ident),
                      server_side=False, server_hostname="other.example")
    with pytest.raises(Exception, match="certificate|hostname"):
        converse(client, TlsLayer(SmtpServer("mail.example"), server_context(ident), server_side=True))


def test_server_identity_is_deterministic():
    assert server_identity(9, "h.example") == server_identity(9, "h.example")
    assert server_identity(9, "h.example").cert_pem != server_identity(10, "h.example").cert_pem


def test_relay_envelope_round_trip():
    envs = [Envelope(DATA_UP, 0x2ABCDEF0, 7, b"hello"), Envelope(KEEPALIVE, 0x2ABCDEF0, 8)]
    wire = b"".join(e.encode() for e in envs)
    assert wire[:2] == b"\xbb\x01" and len(envs[1].encode()) == 16
    dec = EnvelopeDecoder()
    assert dec.feed(wire[:10]) == [] and dec.feed(wire[10:]) == envs


def test_relay_engines_ack_data_and_answer_keepalives():
    device, relay = RelayDevice(0x21234567), RelayServer(0x21234567)
    up = device.push(("up", 1, b"sealed", 1))
    ack = relay.receive(up)
    assert EnvelopeDecoder().feed(ack) == [Envelope(ACK, 0x21234567, 1)]
    down = relay.push(("down", 2, b"for you", 1))
    assert EnvelopeDecoder().feed(device.receive(down)) == [Envelope(ACK, 0x21234567, 2)]
    assert device.events[0][1] == Envelope(DATA_DOWN, 0x21234567, 2, b"for you", 1)
    ka = relay.receive(device.push(("keepalive", 3)))
    assert EnvelopeDecoder().feed(ka)[0].type == KEEPALIVE


def test_aead_with_device_keys():
    k = device_key(1, "alice-device")
    nonces = NonceSequence(1, "alice-device")
    sealed = aead_seal(k, nonces.next(), b"secret")
    assert aead_open(k, sealed) == b"secret"
    assert nonces.next() != sealed[:12]
    with pytest.raises(InvalidTag):
        aead_open(device_key(1, "bob-device"), sealed)
