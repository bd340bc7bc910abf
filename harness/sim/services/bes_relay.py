"""BlackBerry-style relay: each device keeps one connection to a relay abroad; the relay forwards to the
enterprise server over the backbone and pushes incoming messages down to the recipient's device.

Bodies are sealed end-to-end with AES-256-GCM under the device's key when `protection.payload =
"aes-256-gcm"` (the relay cannot read them); the routing envelope (PIN, type, length) is always clear.
Devices send keep-alives every ~2 minutes.
"""
from __future__ import annotations

from harness.sim.crypto import NonceSequence, aead_seal, device_key
from harness.sim.defences import apply_defences
from harness.sim.protocols.relay_envelope import FLAG_ENCRYPTED
from harness.sim.rng import substream
from harness.sim.services import service
from harness.sim.services.context import ServicePlan, SimContext
from harness.sim.services.relay_path import RelayPath, build_connections, clear, keepalives, relay_message

DEFAULT_PORT = 3101


@service("bes-relay")
def plan_bes_relay(ctx: SimContext) -> ServicePlan:
    path = RelayPath.from_scenario(ctx, DEFAULT_PORT, app="bes-relay")
    encrypt = ctx.scenario.protection.payload == "aes-256-gcm"
    for u in ctx.users:
        ctx.grant(f"device:{u.name}", "aes-256-gcm", device_key(ctx.seed, u.device))
    nonces = {u.name: NonceSequence(ctx.seed, u.device) for u in ctx.users}

    def seal_for(user):
        if not encrypt:
            return clear
        key, seq = device_key(ctx.seed, user.device), nonces[user.name]
        return lambda plaintext: (aead_seal(key, seq.next(), plaintext), FLAG_ENCRYPTED)

    rng = substream(ctx.seed, "bes-relay")
    transmissions = keepalives(ctx, path)
    for n, m in enumerate(ctx.messages, start=1):
        transmissions += relay_message(ctx, path, m, n, seal_for, rng)
    return build_connections(ctx, path, apply_defences(ctx, path, transmissions))
