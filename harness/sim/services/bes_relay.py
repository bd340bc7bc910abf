"""BlackBerry-style relay: each device keeps one connection to a relay abroad; the relay forwards to the
enterprise server over the backbone and pushes incoming messages down to the recipient's device.

Bodies are sealed end-to-end with AES-256-GCM under the device's key when `protection.payload =
"aes-256-gcm"` (the relay cannot read them); the routing envelope (PIN, type, length) is always clear.
Devices send keep-alives every ~2 minutes. Two options model builds that leak (the release gate's
mutations): `protection.debug_header = true` puts a line "To: <recipient address>" in clear before each
sealed body, `protection.nonce = "reused"` seals every message of a device under one nonce, and
`service.keepalive = "on-activity"` adds a keep-alive each time a user sends.
"""
from __future__ import annotations

from dataclasses import replace

from harness.sim.crypto import NonceSequence, aead_seal, device_key
from harness.sim.defences import apply_defences
from harness.sim.protocols.relay_envelope import FLAG_ENCRYPTED
from harness.sim.rng import substream
from harness.sim.services import service
from harness.sim.services.context import ServicePlan, SimContext
from harness.sim.services.relay_path import (
    UPLINK,
    RelayPath,
    Transmission,
    build_connections,
    clear,
    keepalives,
    relay_message,
)

DEFAULT_PORT = 3101
ACTIVITY_PING_DELAY = 0.01  # seconds from the user pressing send to the activity ping


class FixedNonce:
    """`protection.nonce = "reused"`: a build whose nonce counter never advances (one nonce per key)."""

    def __init__(self, seed: int, name: str) -> None:
        self.nonce = NonceSequence(seed, name).next()

    def next(self) -> bytes:
        return self.nonce


def with_debug_header(seal, recipient: str):
    """`protection.debug_header = true`: "To: <recipient>" in clear, then the sealed body."""
    def sealed(plaintext: bytes) -> tuple[bytes, int]:
        body, flags = seal(plaintext)
        return f"To: {recipient}\r\n\r\n".encode() + body, flags
    return sealed


def activity_pings(ctx: SimContext) -> list[Transmission]:
    """`service.keepalive = "on-activity"`: the app also pings the relay the moment its user sends (to
    check the connection before queueing), on top of the periodic keep-alives: a build that betrays
    when each user is active, whatever the defences do to the message itself (they never touch
    keep-alives)."""
    out, seq = [], {}
    for m in ctx.messages:
        seq[m.sender.name] = seq.get(m.sender.name, 0) + 1
        out.append(Transmission(m.send_time + ACTIVITY_PING_DELAY, UPLINK, m.sender.name, "keepalive",
                                msg_no=(1 << 20) + seq[m.sender.name], pin=int(m.sender.pin, 16)))
    return out


@service("bes-relay")
def plan_bes_relay(ctx: SimContext) -> ServicePlan:
    path = RelayPath.from_scenario(ctx, DEFAULT_PORT, app="bes-relay")
    encrypt = ctx.scenario.protection.payload == "aes-256-gcm"
    for u in ctx.users:
        ctx.grant(f"device:{u.name}", "aes-256-gcm", device_key(ctx.seed, u.device))
    nonces = {u.name: (FixedNonce if ctx.scenario.protection.nonce == "reused" else NonceSequence)(ctx.seed, u.device)
              for u in ctx.users}

    def seal_for(user):
        if not encrypt:
            return clear
        key, seq = device_key(ctx.seed, user.device), nonces[user.name]
        return lambda plaintext: (aead_seal(key, seq.next(), plaintext), FLAG_ENCRYPTED)

    rng = substream(ctx.seed, "bes-relay")
    transmissions = keepalives(ctx, path)
    if ctx.scenario.service.keepalive == "on-activity":
        transmissions += activity_pings(ctx)
    for n, m in enumerate(ctx.messages, start=1):
        sent = relay_message(ctx, path, m, n, seal_for, rng)
        if ctx.scenario.protection.debug_header:
            sent = [replace(t, seal=with_debug_header(t.seal, m.recipient.email)) for t in sent]
        transmissions += sent
    return build_connections(ctx, path, apply_defences(ctx, path, transmissions))
