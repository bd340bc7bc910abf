"""What a service planner gets (scenario, users, messages, links, keys) and what it returns."""
from __future__ import annotations

from dataclasses import dataclass, field

from harness.errors import HarnessError
from harness.sim.rng import substream
from harness.sim.truth import TruthFlow, TruthUser
from harness.sim.workload import Message
from harness.wire.tcp_sim import ConnectionPlan, LinkTiming


@dataclass
class PlannedConnection:
    link: str  # link name
    plan: ConnectionPlan
    app: str
    transport: str
    server: str  # final destination host name
    # message id -> the user device (IP) a leg on this connection concerns, where the connection's client is
    # not that device (the enterprise <-> relay link carries every user's mail, named by PIN)
    leg_devices: dict[str, str] = field(default_factory=dict)


@dataclass
class ServicePlan:
    connections: list[PlannedConnection] = field(default_factory=list)


@dataclass
class SimContext:
    scenario: object  # harness.scenario.schema.Scenario
    users: list[TruthUser]
    messages: list[Message]
    keys: dict[str, tuple[str, bytes]] = field(default_factory=dict)  # key name -> (kind, material)
    _ports: dict[str, int] = field(default_factory=dict)
    costs: dict = field(default_factory=dict)  # what enabled defences cost (harness.sim.defences)

    @property
    def seed(self) -> int:
        return self.scenario.seed

    def host(self, name: str):
        return self.scenario.topology.host(name)

    def link_between(self, a: str, b: str) -> str:
        """Name of the link joining a and b (either order); "devices" stands for every device."""
        for link in self.scenario.topology.links:
            if {link.a, link.b} == {a, b}:
                return link.name
        raise HarnessError(f"topology.links: no link between {a} and {b}", path=self.scenario.path)

    def timing(self, link_name: str) -> LinkTiming:
        link = self.scenario.topology.link(link_name)
        return LinkTiming(latency=link.latency_ms / 1000.0, jitter=link.jitter_ms / 1000.0,
                          bandwidth=link.bandwidth_mbps * 1e6 / 8.0, mss=link.mss,
                          tap_position=link.tap_position)

    def tapped(self, link_name: str) -> bool:
        return link_name in self.scenario.adversary.taps

    def ephemeral_port(self, ip: str) -> int:
        if ip not in self._ports:
            self._ports[ip] = 49152 + int(substream(self.seed, "ports", ip).integers(0, 8000))
        self._ports[ip] += 1
        return self._ports[ip]

    def grant(self, name: str, kind: str, material: bytes) -> None:
        """Make a key the scenario's adversary may be granted (adversary.keys names it)."""
        self.keys[name] = (kind, material)


def truth_flow(pc: PlannedConnection, ctx: SimContext) -> TruthFlow:
    from harness.observe.model import endpoint, flow_key

    p = pc.plan
    server = ctx.host(pc.server)
    return TruthFlow(flow=flow_key("tcp", endpoint(p.client_ip, p.client_port), endpoint(p.server_ip, p.server_port)),
                     app=pc.app, transport=pc.transport, server=pc.server, server_ip=server.ip,
                     server_hostname=server.hostname)
