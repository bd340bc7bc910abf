"""Each BlackBerry engine round-trips between two endpoints in memory; the tap-side parsers agree with
the simulator's field tables."""
import pytest

from harness.blackberry import formats
from harness.blackberry.formats import AGREE_P521, AGREE_X25519, MAIL_3DES_CBC, MAIL_AES_CBC, PIN_MESSAGE
from harness.blackberry.payloads import OpenError, mail_key_from_escrow, open_mail_with_key, parse_bes_mail
from harness.blackberry import ciphers
from harness.observe import relay_wire
from harness.sim.protocols.bb_relay import BbDevice, BbRelay
from harness.sim.protocols.bbm_protected import BbmProtectedParty
from harness.sim.protocols.bes_mail import BesMailDevice, BesServer
from harness.sim.protocols.interface import converse
from harness.sim.protocols.pin_message import PinEndpoint, pin_text
from harness.sim.protocols.relay_envelope import (
    ACK,
    DATA_UP,
    HEADER_V2,
    KEEPALIVE,
    EnvelopeV2,
    EnvelopeV2Decoder,
)
from harness.sim.protocols.srp import SrpBes, SrpRelay

MAIL = b"From: Alice <alice@corp.example>\r\nTo: bob@corp.example\r\nSubject: Q3\r\n\r\nbudget CNRY-0123456789abcdef\r\n"


def test_tap_parsers_mirror_the_simulator_tables():
    assert relay_wire.RELAY_HEADER_V2.format.replace("2s", "H") == HEADER_V2.format
    assert relay_wire.RELAY_HEADER_V2_LEN == HEADER_V2.size == 24
    assert relay_wire.SRP_HEADER.size == formats.SRP_FRAME.size
    assert relay_wire.SRP_HEADER.format.replace("2s", "H") == formats.SRP_FRAME.struct.format
    assert relay_wire.SRP_TYPES == formats.SRP_TYPES and relay_wire.RELAY_SERVICES == formats.SERVICES


def test_envelope_v2_round_trip_and_tap_parse():
    env = EnvelopeV2(DATA_UP, 0x2ABCDEF0, 7, b"body", 1, 0x21234567, 4, b"k" * 29)
    wire = env.encode() + EnvelopeV2(KEEPALIVE, 0x2ABCDEF0, 8).encode()
    dec = EnvelopeV2Decoder()
    assert dec.feed(wire[:10]) == [] and dec.feed(wire[10:]) == [env, EnvelopeV2(KEEPALIVE, 0x2ABCDEF0, 8)]
    seen = relay_wire.relay_envelopes(wire)
    assert [(e.type, e.pin, e.peer_pin, e.service, e.ext_len, e.length) for e in seen] == [
        (1, 0x2ABCDEF0, 0x21234567, 4, 29, 4), (4, 0x2ABCDEF0, 0, 0, 0, 0)]
    assert wire[seen[0].body_offset:seen[0].end] == b"body"


def test_device_and_relay_ack_and_echo():
    device, relay = BbDevice(0x2AAAAAAA), BbRelay(0x2AAAAAAA)
    up = device.push(("envelope", EnvelopeV2(DATA_UP, 0x2AAAAAAA, 1, b"x", 1, 0x2BBBBBBB, 2)))
    ack = relay.receive(up)
    assert relay.events[0][1].peer_pin == 0x2BBBBBBB
    assert device.receive(ack) == b"" and device.events[0][1].type == ACK
    echo = relay.receive(device.push(("envelope", EnvelopeV2(KEEPALIVE, 0x2AAAAAAA, 2))))
    assert EnvelopeV2Decoder().feed(echo)[0].type == KEEPALIVE


def test_srp_link_authenticates_then_carries_envelopes():
    key = b"k" * 32
    bes, relay = SrpBes("S12345678", key), SrpRelay({"S12345678": key}, b"n" * 16)
    early = bes.push(("data", b"queued-before-auth"))
    assert early == b""
    turns = converse(bes, relay)
    assert ("authenticated", "S12345678") in relay.events and bes.authenticated
    assert ("data", b"queued-before-auth") in relay.events  # flushed after auth-ok
    frame = relay.push(("data", b"envelope-for-a-device"))
    assert relay.receive(bes.receive(frame)) == b"" and ("data", b"envelope-for-a-device") in bes.events
    assert any(e[0] == "data-ack" for e in relay.events)
    relay.receive(b"")  # nothing to do
    assert bes.receive(relay.receive(bes.push(("keepalive",)))) == b""
    assert any(e[0] == "keepalive-ack" for e in bes.events)
    assert turns[0][0] == "server"  # the relay challenges first


def test_srp_link_refuses_a_wrong_key():
    bes, relay = SrpBes("S12345678", b"w" * 32), SrpRelay({"S12345678": b"k" * 32}, b"n" * 16)
    converse(bes, relay)
    assert ("refused",) in bes.events and relay.wants_close and not bes.authenticated


@pytest.mark.parametrize("cipher", [MAIL_AES_CBC, MAIL_3DES_CBC])
def test_bes_mail_device_to_bes_to_device(cipher):
    n = 32 if cipher == MAIL_AES_CBC else 16
    iv = b"i" * (16 if cipher == MAIL_AES_CBC else 8)
    alice_key, bob_key, escrow = b"a" * n, b"b" * n, b"e" * 32
    alice, bob = BesMailDevice(alice_key, cipher, escrow), BesMailDevice(bob_key, cipher, escrow)
    bes = BesServer({1: alice_key, 2: bob_key}, cipher, escrow)
    up = alice.seal(MAIL, b"m" * n, iv)
    assert b"CNRY" not in up and len(up) < len(MAIL) + 100  # compressed, then encrypted
    message = bes.receive(1, up)
    assert message == MAIL
    down = bes.deliver(2, message, b"M" * n, iv)
    assert bob.open(down) == MAIL
    with pytest.raises(OpenError):
        BesMailDevice(b"z" * n, cipher).open(down)  # another device's transport key
    parts = parse_bes_mail(down)
    assert open_mail_with_key(parts, mail_key_from_escrow(parts, escrow)) == MAIL  # the back door
    with pytest.raises(OpenError):
        mail_key_from_escrow(parts, b"x" * 32)


def test_pin_messages_open_only_with_the_same_pin_key():
    a, b = PinEndpoint(1, b"g" * 16), PinEndpoint(2, b"g" * 16)
    body = a.send(PIN_MESSAGE, pin_text("alice@corp.example", "bob@corp.example", "hi CNRY-1", "s"), b"v" * 8)
    kind, _, text = b.receive(body)
    assert kind == PIN_MESSAGE and text.endswith(b"hi CNRY-1")
    with pytest.raises(OpenError):
        PinEndpoint(3, b"o" * 16).receive(body)


@pytest.mark.parametrize("agreement,size", [(AGREE_X25519, 32), (AGREE_P521, 66)])
def test_bbm_protected_key_exchange_then_messages(agreement, size):
    a = BbmProtectedParty(0x2AAAAAAA, agreement, b"\x11" * size, ciphers.p521_private(b"\x21" * 66))
    b = BbmProtectedParty(0x2BBBBBBB, agreement, b"\x12" * size, ciphers.p521_private(b"\x22" * 66))
    assert a.learn(b.key_exchange(a.pin)) == b.learn(a.key_exchange(b.pin))
    ext, inner = a.seal(b.pin, 1, b"N" * 16, b"From: alice\r\nTo: bob\r\n\r\nsecret CNRY-2")
    assert len(ext) == formats.BBMP_KEYING.size and b"secret" not in inner
    assert b.open(ext, inner).endswith(b"secret CNRY-2")
    tampered = inner[:3] + bytes([inner[3] ^ 1]) + inner[4:]
    with pytest.raises(OpenError):
        b.open(ext, tampered)  # the ECDSA P-521 signature no longer verifies
    ext2, inner2 = b.seal(a.pin, 2, b"M" * 16, b"From: bob\r\nTo: alice\r\n\r\nreply")
    assert a.open(ext2, inner2).endswith(b"reply")
