"""Example protocol plugin for the harness: CHAT/1 between user devices and a chat server.

`plan` is the entry point (group `harness.protocols`, name `chatproto`): given the scenario's users,
messages and links (a `harness.sim.services.context.SimContext`) it returns the connections that carry
them (a `ServicePlan`). Each device keeps one connection to the server: it sends its user's messages
up, the server delivers each message down the recipient's connection. With `protection.payload =
"aes-256-gcm"` bodies are sealed end to end under the sender's device key (the addresses stay clear).
"""
from __future__ import annotations

from harness.sim.crypto import NonceSequence, aead_seal, device_key
from harness.sim.rng import substream
from harness.sim.services.context import PlannedConnection, ServicePlan, SimContext
from harness.wire.tcp_sim import ConnectionPlan, Push

from chatproto.engine import ChatClient, ChatServer

DEFAULT_PORT = 7070
SERVER_DELAY = (0.02, 0.15)  # seconds between a message reaching the server and its delivery
SEALED = 1


def plan(ctx: SimContext) -> ServicePlan:
    sc = ctx.scenario
    server = ctx.host(sc.service.server)
    link = ctx.link_between("devices", server.name)
    port = sc.service.port or DEFAULT_PORT
    sealed = sc.protection.payload == "aes-256-gcm"
    keys = {u.name: device_key(ctx.seed, u.device) for u in ctx.users}
    nonces = {u.name: NonceSequence(ctx.seed, u.device) for u in ctx.users}
    for u in ctx.users:
        ctx.grant(f"device:{u.name}", "aes-256-gcm", keys[u.name])
    out = ServicePlan()
    if not ctx.tapped(link):
        return out
    rng = substream(ctx.seed, "chatproto")
    pushes: dict[str, list[Push]] = {u.name: [] for u in ctx.users}
    for m in ctx.messages:
        body, flags = m.text, 0
        if sealed:
            body, flags = aead_seal(keys[m.sender.name], nonces[m.sender.name].next(), m.text), SEALED
        pushes[m.sender.name].append(Push(m.send_time, "client", ("send", m.recipient.email, body, flags), m.id))
        if m.recipient.name != m.sender.name:
            at = m.send_time + 2 * ctx.timing(link).latency + float(rng.uniform(*SERVER_DELAY))
            pushes[m.recipient.name].append(Push(at, "server", ("deliver", m.sender.email, body, flags), m.id))
    for u in ctx.users:
        start = float(substream(ctx.seed, "chatproto-connect", u.name).uniform(0.0, 1.0))
        cp = ConnectionPlan(u.device_ip, ctx.ephemeral_port(u.device_ip), server.ip, port, ctx.timing(link),
                            ChatClient(u.email), ChatServer(), open_time=start,
                            pushes=sorted(pushes[u.name], key=lambda p: p.time), close_time=sc.duration - 0.5)
        out.connections.append(PlannedConnection(link, cp, app="chatproto", transport="tcp", server=server.name))
    return out
