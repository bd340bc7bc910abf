"""BlackBerry-style relay: each device keeps one connection to a relay abroad; the relay forwards to the
enterprise server over the backbone and pushes incoming messages down to the recipient's device.

Bodies are sealed end-to-end with AES-256-GCM under the device's key when `protection.payload =
"aes-256-gcm"` (the relay cannot read them); the routing envelope (PIN, type, length) is always clear.
Devices send keep-alives every KEEPALIVE_INTERVAL seconds. The relay <-> enterprise connection is
simulated only if the adversary taps that link.
"""
from __future__ import annotations

from harness.sim.crypto import NonceSequence, aead_seal, device_key, server_identity
from harness.sim.protocols.relay import RelayDevice, RelayServer
from harness.sim.protocols.relay_envelope import FLAG_ENCRYPTED
from harness.sim.protocols.tls import TlsLayer, client_context, server_context
from harness.sim.rng import substream
from harness.sim.services import service
from harness.sim.services.context import PlannedConnection, ServicePlan, SimContext
from harness.wire.tcp_sim import ConnectionPlan, Push

DEFAULT_PORT = 3101
KEEPALIVE_INTERVAL = 120.0
ENTERPRISE_PROCESSING = (0.05, 0.30)  # seconds, uniform


@service("bes-relay")
def plan_bes_relay(ctx: SimContext) -> ServicePlan:
    sc = ctx.scenario
    relay, enterprise = ctx.host(sc.service.relay), ctx.host(sc.service.server)
    carrier = ctx.link_between("devices", relay.name)
    backbone = ctx.link_between(relay.name, enterprise.name)
    port = sc.service.port or DEFAULT_PORT
    t_car, t_bb = ctx.timing(carrier), ctx.timing(backbone)
    encrypt = sc.protection.payload == "aes-256-gcm"
    rng = substream(ctx.seed, "bes-relay")

    for u in ctx.users:
        ctx.grant(f"device:{u.name}", "aes-256-gcm", device_key(ctx.seed, u.device))
    nonces = {u.name: NonceSequence(ctx.seed, u.device) for u in ctx.users}

    def body(user, m) -> tuple[bytes, int]:
        if not encrypt:
            return m.text, 0
        return aead_seal(device_key(ctx.seed, user.device), nonces[user.name].next(), m.text), FLAG_ENCRYPTED

    device_pushes: dict[str, list[Push]] = {u.name: [] for u in ctx.users}
    backbone_pushes: list[Push] = []
    for n, m in enumerate(ctx.messages, start=1):
        up_body, flags = body(m.sender, m)
        device_pushes[m.sender.name].append(Push(m.send_time, "client", ("up", n, up_body, flags), m.id))
        at_relay = m.send_time + t_car.latency + 0.002
        backbone_pushes.append(Push(at_relay, "server", ("down", n, up_body, flags, int(m.sender.pin, 16)), m.id))
        if m.recipient.name == m.sender.name:
            continue
        processing = float(rng.uniform(*ENTERPRISE_PROCESSING))
        back_at_relay = at_relay + 2 * t_bb.latency + processing
        down_body, flags = body(m.recipient, m)
        backbone_pushes.append(Push(back_at_relay - t_bb.latency, "client",
                                    ("up", n, down_body, flags, int(m.recipient.pin, 16)), m.id))
        device_pushes[m.recipient.name].append(Push(back_at_relay + 0.002, "server",
                                                    ("down", n, down_body, flags), m.id))

    tls = sc.protection.transport == "tls13"
    ctxs = None
    if tls:
        identity = server_identity(ctx.seed, relay.hostname or relay.name)
        ctxs = (client_context(identity), server_context(identity))

    def wrap(client, server, hostname):
        if not ctxs:
            return client, server
        return (TlsLayer(client, ctxs[0], server_side=False, server_hostname=hostname),
                TlsLayer(server, ctxs[1], server_side=True))

    plan = ServicePlan()
    transport = "tls" if tls else "tcp"
    if ctx.tapped(carrier):
        for u in ctx.users:
            urng = substream(ctx.seed, "bes-relay", u.name)
            start = float(urng.uniform(0.0, 1.0))
            pushes = list(device_pushes[u.name])
            t, seq = start + float(urng.uniform(5, KEEPALIVE_INTERVAL)), 0
            while t < sc.duration - 1.0:
                seq += 1
                pushes.append(Push(t, "client", ("keepalive", seq)))
                t += KEEPALIVE_INTERVAL * float(urng.uniform(0.9, 1.1))
            pushes.sort(key=lambda p: p.time)
            pin = int(u.pin, 16)
            client, server = wrap(RelayDevice(pin), RelayServer(pin), relay.hostname or relay.name)
            cp = ConnectionPlan(u.device_ip, ctx.ephemeral_port(u.device_ip), relay.ip, port, t_car, client, server,
                                open_time=start, pushes=pushes, close_time=sc.duration - 0.5)
            plan.connections.append(PlannedConnection(carrier, cp, app="bes-relay", transport=transport,
                                                      server=enterprise.name))
    if ctx.tapped(backbone):
        # The enterprise server opens the long-lived connection to the relay.
        client, server = wrap(RelayDevice(0), RelayServer(0), relay.hostname or relay.name)
        cp = ConnectionPlan(enterprise.ip, ctx.ephemeral_port(enterprise.ip), relay.ip, port, t_bb, client, server,
                            open_time=0.2, pushes=sorted(backbone_pushes, key=lambda p: p.time),
                            close_time=sc.duration - 0.2)
        plan.connections.append(PlannedConnection(backbone, cp, app="bes-relay", transport=transport,
                                                  server=enterprise.name))
    return plan
