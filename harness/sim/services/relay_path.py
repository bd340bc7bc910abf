"""The device <-> relay <-> enterprise path every relayed service shares.

A relayed service describes its traffic as a list of `Transmission`s (what is handed to which hop,
when); `harness.sim.defences.apply_defences` may pad, delay, batch or add to them; `build_connections`
turns the result into the persistent TCP connections (one per device on the carrier link, one
enterprise <-> relay on the backbone) that carry relay envelopes. Only tapped links are simulated.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable

from harness.sim.crypto import server_identity
from harness.sim.protocols.relay import RelayDevice, RelayServer
from harness.sim.protocols.tls import TlsLayer, client_context, server_context
from harness.sim.rng import substream
from harness.sim.services.context import PlannedConnection, ServicePlan, SimContext
from harness.wire.tcp_sim import LinkTiming, Push

UPLINK, DOWNLINK, TO_ENTERPRISE, FROM_ENTERPRISE = "uplink", "downlink", "to-enterprise", "from-enterprise"
KEEPALIVE_INTERVAL = 120.0
RELAY_PROCESSING = 0.002  # seconds the relay takes to pass an envelope on
ENTERPRISE_PROCESSING = (0.05, 0.30)  # seconds, uniform

Seal = Callable[[bytes], tuple[bytes, int]]  # plaintext -> (envelope body, envelope flags)


def clear(plaintext: bytes) -> tuple[bytes, int]:
    return plaintext, 0


@dataclass
class Transmission:
    """One envelope handed to one hop of the path."""

    time: float  # when the sending end hands it over
    hop: str  # UPLINK, DOWNLINK, TO_ENTERPRISE or FROM_ENTERPRISE
    user: str  # the user whose device this concerns (owner of the carrier connection)
    kind: str  # "data", "keepalive", "receipt", "presence", "cover"
    plaintext: bytes = b""
    seal: Seal = clear  # applied after defences (padding goes inside the seal)
    message_id: str | None = None  # truth message id, if this carries a message
    msg_no: int = 0  # envelope message id
    pin: int = 0  # PIN written in the envelope
    service: int = 0  # envelope version 2: service id (harness.blackberry.formats.SERVICES)
    peer_pin: int = 0  # envelope version 2: the other device's PIN (PIN-to-PIN, BBM), in clear
    ext: bytes = b""  # envelope version 2: clear extension (BBM Protected keying material)

    def at(self, time: float) -> "Transmission":
        return replace(self, time=time)


@dataclass
class RelayPath:
    relay: object  # schema Host
    enterprise: object
    carrier: str  # link names
    backbone: str
    port: int
    t_carrier: LinkTiming
    t_backbone: LinkTiming
    app: str = "bes-relay"
    costs: dict = field(default_factory=dict)  # what defences report they cost
    # A service with its own wire formats plugs them in here (None: the version-1 relay engines):
    carrier_engines: Callable[[int], tuple] | None = None  # device PIN -> (device engine, relay engine)
    backbone_engines: Callable[[], tuple] | None = None  # -> (enterprise engine, relay engine)
    push_item: Callable[[Transmission, str], object] | None = None  # (transmission, side) -> engine push item

    @classmethod
    def from_scenario(cls, ctx: SimContext, default_port: int, app: str) -> "RelayPath":
        sc = ctx.scenario
        relay, enterprise = ctx.host(sc.service.relay), ctx.host(sc.service.server)
        carrier = ctx.link_between("devices", relay.name)
        backbone = ctx.link_between(relay.name, enterprise.name)
        return cls(relay, enterprise, carrier, backbone, sc.service.port or default_port,
                   ctx.timing(carrier), ctx.timing(backbone), app)


def relay_message(ctx: SimContext, path: RelayPath, m, msg_no: int, seal_for: Callable[[object], Seal],
                  rng) -> list[Transmission]:
    """A message from one device to another through relay and enterprise: the four hops, timed."""
    sender, recipient = m.sender, m.recipient
    at_relay = m.send_time + path.t_carrier.latency + RELAY_PROCESSING
    out = [Transmission(m.send_time, UPLINK, sender.name, "data", m.text, seal_for(sender), m.id, msg_no,
                        int(sender.pin, 16)),
           Transmission(at_relay, TO_ENTERPRISE, sender.name, "data", m.text, seal_for(sender), m.id, msg_no,
                        int(sender.pin, 16))]
    if recipient.name != sender.name:
        processing = float(rng.uniform(*ENTERPRISE_PROCESSING))
        back = at_relay + 2 * path.t_backbone.latency + processing
        out += [Transmission(back - path.t_backbone.latency, FROM_ENTERPRISE, recipient.name, "data", m.text,
                             seal_for(recipient), m.id, msg_no, int(recipient.pin, 16)),
                Transmission(back + RELAY_PROCESSING, DOWNLINK, recipient.name, "data", m.text, seal_for(recipient),
                             m.id, msg_no, int(recipient.pin, 16))]
    return out


def keepalives(ctx: SimContext, path: RelayPath) -> list[Transmission]:
    """Each device's periodic keep-alive to the relay (every ~KEEPALIVE_INTERVAL s, +-10%)."""
    out = []
    for u in ctx.users:
        rng = substream(ctx.seed, "keepalive", u.name)
        t, seq = float(rng.uniform(5, KEEPALIVE_INTERVAL)), 0
        while t < ctx.scenario.duration - 1.0:
            seq += 1
            out.append(Transmission(t, UPLINK, u.name, "keepalive", msg_no=seq, pin=int(u.pin, 16)))
            t += KEEPALIVE_INTERVAL * float(rng.uniform(0.9, 1.1))
    return out


def _push_v1(t: Transmission, side: str) -> Push:
    if t.kind == "keepalive":
        return Push(t.time, side, ("keepalive", t.msg_no), None)
    body, flags = t.seal(t.plaintext)
    verb = "up" if side == "client" else "down"
    return Push(t.time, side, (verb, t.msg_no, body, flags, t.pin), t.message_id)


def build_connections(ctx: SimContext, path: RelayPath, transmissions: list[Transmission]) -> ServicePlan:
    """The TCP connections that carry `transmissions` on the tapped links of the path."""
    sc = ctx.scenario
    tls = sc.protection.transport == "tls13"
    hostname = path.relay.hostname or path.relay.name
    contexts = None
    if tls:
        identity = server_identity(ctx.seed, hostname)
        contexts = (client_context(identity), server_context(identity))

    def engines(pin: int, backbone: bool = False):
        if backbone and path.backbone_engines is not None:
            client, server = path.backbone_engines()
        elif path.carrier_engines is not None and not backbone:
            client, server = path.carrier_engines(pin)
        else:
            client, server = RelayDevice(pin), RelayServer(pin)
        if contexts:
            client = TlsLayer(client, contexts[0], server_side=False, server_hostname=hostname)
            server = TlsLayer(server, contexts[1], server_side=True)
        return client, server

    from harness.wire.tcp_sim import ConnectionPlan

    plan = ServicePlan()
    transport = "tls" if tls else "tcp"
    item = path.push_item

    def _push(t: Transmission, side: str) -> Push:
        if item is None:
            return _push_v1(t, side)
        return Push(t.time, side, item(t, side), t.message_id)
    ordered = sorted(transmissions, key=lambda t: (t.time, t.hop, t.user, t.msg_no))
    if ctx.tapped(path.carrier):
        by_user: dict[str, list[Push]] = {u.name: [] for u in ctx.users}
        for t in ordered:
            if t.hop == UPLINK:
                by_user[t.user].append(_push(t, "client"))
            elif t.hop == DOWNLINK:
                by_user[t.user].append(_push(t, "server"))
        for u in ctx.users:
            start = float(substream(ctx.seed, "connect", u.name).uniform(0.0, 1.0))
            client, server = engines(int(u.pin, 16))
            cp = ConnectionPlan(u.device_ip, ctx.ephemeral_port(u.device_ip), path.relay.ip, path.port, path.t_carrier,
                                client, server, open_time=start, pushes=by_user[u.name],
                                close_time=sc.duration - 0.5)
            plan.connections.append(PlannedConnection(path.carrier, cp, app=path.app, transport=transport,
                                                      server=path.enterprise.name))
    if ctx.tapped(path.backbone):
        # The enterprise server opens the long-lived connection to the relay.
        pushes = [_push(t, "server" if t.hop == TO_ENTERPRISE else "client") for t in ordered
                  if t.hop in (TO_ENTERPRISE, FROM_ENTERPRISE)]
        client, server = engines(0, backbone=True)
        cp = ConnectionPlan(path.enterprise.ip, ctx.ephemeral_port(path.enterprise.ip), path.relay.ip, path.port,
                            path.t_backbone, client, server, open_time=0.2, pushes=pushes,
                            close_time=sc.duration - 0.2)
        ips = {u.name: u.device_ip for u in ctx.users}
        leg_devices: dict[str, str] = {}
        for t in ordered:
            if t.hop in (TO_ENTERPRISE, FROM_ENTERPRISE) and t.message_id and t.user in ips:
                leg_devices.setdefault(t.message_id, ips[t.user])
        plan.connections.append(PlannedConnection(path.backbone, cp, app=path.app, transport=transport,
                                                  server=path.enterprise.name, leg_devices=leg_devices))
    return plan
