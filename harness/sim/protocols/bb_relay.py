"""Device and relay engines for the BlackBerry device <-> relay connection (envelope version 2, sans-IO).

The service layer hands over whole envelopes (push(("envelope", EnvelopeV2))): data up from the
device, data down from the relay, receipts, presence, key exchanges, keep-alives. Each envelope that
carries something for a user is acknowledged (type 3); the relay answers each keep-alive.
"""
from __future__ import annotations

from harness.sim.protocols.relay import EnvelopePeer
from harness.sim.protocols.relay_envelope import ACK, KEEPALIVE, EnvelopeV2, EnvelopeV2Decoder

ACKED = frozenset((1, 2, 5, 7))  # data up, data down, receipt, key exchange


class _BbPeer(EnvelopePeer):
    acked = ACKED
    decoder = EnvelopeV2Decoder

    def ack(self, env) -> bytes:
        return EnvelopeV2(ACK, self.pin, env.msg_id, service=env.service).encode()

    def keepalive_reply(self, env) -> bytes:
        return EnvelopeV2(KEEPALIVE, self.pin, env.msg_id).encode()

    def push(self, item) -> bytes:
        kind, env = item
        if kind != "envelope":
            raise ValueError(f"unknown push {kind!r}")
        return env.encode()


class BbDevice(_BbPeer):
    """The handset's end of its persistent connection to the relay."""

    role = "device"


class BbRelay(_BbPeer):
    """The relay's end of one device's connection."""

    role = "relay"
