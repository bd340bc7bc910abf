"""E-mail submission over SMTP: one connection per message from the sender's device to the mail server.

With `protection.transport = "tls13"` the session runs inside real TLS 1.3 (implicit TLS, port 465).
"""
from __future__ import annotations

from harness.sim.crypto import server_identity
from harness.sim.protocols.smtp import Envelope, SmtpClient, SmtpServer
from harness.sim.protocols.tls import TlsLayer, client_context, server_context
from harness.sim.services import service
from harness.sim.services.context import PlannedConnection, ServicePlan, SimContext
from harness.wire.tcp_sim import ConnectionPlan


@service("smtp")
def plan_smtp(ctx: SimContext) -> ServicePlan:
    sc = ctx.scenario
    server = ctx.host(sc.service.server)
    hostname = server.hostname or server.name
    link = ctx.link_between("devices", server.name)
    tls = sc.protection.transport == "tls13"
    port = sc.service.port or (465 if tls else 25)
    timing = ctx.timing(link)
    contexts = None
    if tls:
        identity = server_identity(ctx.seed, hostname)
        contexts = (client_context(identity), server_context(identity))
    plan = ServicePlan()
    if not ctx.tapped(link):
        return plan
    for m in ctx.messages:
        client = SmtpClient(Envelope(m.sender.email, [m.recipient.email], m.text), helo=m.sender.device)
        srv = SmtpServer(hostname)
        if contexts:
            client = TlsLayer(client, contexts[0], server_side=False, server_hostname=hostname)
            srv = TlsLayer(srv, contexts[1], server_side=True)
        cp = ConnectionPlan(m.sender.device_ip, ctx.ephemeral_port(m.sender.device_ip), server.ip, port, timing,
                            client, srv, open_time=m.send_time + 0.05, message_ids=[m.id])
        plan.connections.append(PlannedConnection(link, cp, app="smtp", transport="tls" if tls else "tcp",
                                                  server=server.name))
    return plan
