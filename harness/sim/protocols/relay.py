"""Device and relay engines for the persistent device <-> relay connection (sans-IO).

The device pushes its user's messages up (type 1) and keep-alives (type 4); the relay pushes messages
down (type 2). Each data envelope is acknowledged (type 3), each keep-alive answered. Bodies are
whatever the service layer hands over: clear text, or sealed end-to-end with the device key.
"""
from __future__ import annotations

from harness.sim.protocols.relay_envelope import (
    ACK,
    DATA_DOWN,
    DATA_UP,
    KEEPALIVE,
    Envelope,
    EnvelopeDecoder,
)


class EnvelopePeer:
    """Shared by both ends of every relay connection (envelope v1 here, v2 in bb_relay): decode what
    arrives, acknowledge what carries something for a user, and (relay side) answer keep-alives."""

    role = ""
    acked: frozenset[int] = frozenset((DATA_UP, DATA_DOWN))
    decoder = EnvelopeDecoder

    def __init__(self, pin: int) -> None:
        self.pin = pin
        self.events: list = []
        self._decoder = self.decoder()

    def start(self) -> bytes:
        return b""

    def ack(self, env) -> bytes:
        return Envelope(ACK, self.pin, env.msg_id).encode()

    def keepalive_reply(self, env) -> bytes:
        return Envelope(KEEPALIVE, self.pin, env.msg_id).encode()

    def receive(self, data: bytes) -> bytes:
        out = b""
        for env in self._decoder.feed(data):
            self.events.append(("envelope", env))
            if env.type in self.acked:
                out += self.ack(env)
            elif env.type == KEEPALIVE and self.role == "relay":
                out += self.keepalive_reply(env)
        return out

    @property
    def wants_close(self) -> bool:
        return False


class RelayDevice(EnvelopePeer):
    """The handset. push(("up", msg_id, body, flags[, pin])) or push(("keepalive", seq))."""

    role = "device"

    def push(self, item) -> bytes:
        if item[0] == "keepalive":
            return Envelope(KEEPALIVE, self.pin, item[1]).encode()
        _, msg_id, body, flags, *pin = item
        return Envelope(DATA_UP, pin[0] if pin else self.pin, msg_id, body, flags).encode()


class RelayServer(EnvelopePeer):
    """The relay's end. push(("down", msg_id, body, flags[, pin]))."""

    role = "relay"

    def push(self, item) -> bytes:
        _, msg_id, body, flags, *pin = item
        return Envelope(DATA_DOWN, pin[0] if pin else self.pin, msg_id, body, flags).encode()
