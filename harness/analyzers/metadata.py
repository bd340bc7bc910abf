"""What a tap learns without reading any payload: who talks to whom (addresses, ports, flow graph),
when each message-sized burst went and how large it was, and how many messages each client sent.

Message bursts come from `message_bursts` (TLS and relay framing stripped, which needs no
keys); their times and sizes are series findings, one per flow and observable (harness/series.py).
Sees only observed flows; never imports the simulator, its truth, or the scorer.
"""
from __future__ import annotations

from array import array
from collections import defaultdict
from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

from harness.analyzers import register
from harness.analyzers.interface import Analyzer, Finding
from harness.observe import views
from harness.observe.model import CLIENT, Flow
from harness.series import SERIES

ID = "metadata.flows"
DIRECTION_NAMES = ("client", "server")
DIRECT_MAX_PEERS = 20  # an address more clients than this reach is a server, not a peer

WELL_KNOWN_PORTS = {25: "smtp", 465: "smtps", 587: "submission", 143: "imap", 993: "imaps", 110: "pop3",
                    995: "pop3s", 80: "http", 443: "https", 53: "dns", 22: "ssh", 3101: "bes-relay"}

# How far a burst's size can be trusted, by how the burst was cut out.
_BURST_CONFIDENCE = {"relay-data-envelope": 0.9, "above-control-size": 0.7, "largest-client-burst": 0.5}


@dataclass(slots=True)
class _Sent:
    """Per client address, what it sent in message-sized bursts over all its flows (kept for finish())."""

    client: str
    messages: int = 0
    bytes: int = 0
    first_time: float | None = None


@register
class FlowMetadata(Analyzer):
    """Addresses, ports, message timing and sizes, per-client volume and the flow graph."""

    id = ID
    cost = 3.6  # relative CPU cost (Analyzer.cost), measured at 1M packets: balances analyze --jobs
    description = ("Reports each flow's server address, client address and port hint, the time and size of every "
                   "message-sized burst (framing stripped), per-client message volume and who opened flows to whom.")

    def __init__(self, knowledge) -> None:
        super().__init__(knowledge)
        self._sent: dict[str, _Sent] = {}  # client address -> its messages in all flows
        self._first_message: dict[str, float] = {}  # flow id -> its client's first message (flows with a SYN)

    def _finding(self, flow: Flow | None, observable: str, kind: str, value, confidence: float,
                 **evidence) -> Finding:
        return Finding(analyzer=ID, observable=observable, kind=kind, flow=flow.id if flow else None, value=value,
                       evidence=evidence, confidence=confidence)

    def on_flow(self, flow: Flow) -> Iterable[Finding]:
        # Facts about the whole flow carry its span, not a "time": they hold for every message in it.
        span = {"first_seen": round(flow.first_seen, 6), "last_seen": round(flow.last_seen, 6)}
        out = [
            self._finding(flow, "endpoint", "server-address", flow.dst, 0.95 if flow.handshake else 0.7,
                          rule="flow-responder", **span),
            self._finding(flow, "device", "client-address", flow.src_ip, 0.95 if flow.handshake else 0.7,
                          rule="flow-initiator", **span),
        ]
        if flow.dport in WELL_KNOWN_PORTS:
            out.append(self._finding(flow, "service", "port-hint", WELL_KNOWN_PORTS[flow.dport], 0.5,
                                     rule="well-known-port", port=flow.dport, **span))
        elif not flow.handshake and flow.sport in WELL_KNOWN_PORTS:  # mid-stream capture: sides may be swapped
            out.append(self._finding(flow, "service", "port-hint", WELL_KNOWN_PORTS[flow.sport], 0.3,
                                     rule="well-known-port-reversed", port=flow.sport, **span))

        clock = views.clock(flow)
        layout = views.layout(flow)
        sent = self._sent.get(flow.src_ip)
        if sent is None:
            sent = self._sent[flow.src_ip] = _Sent(flow.src_ip)
        first_message = None
        bursts = views.messages(flow)
        if bursts:
            out += self._burst_series(flow, bursts, layout, clock)
        for burst in bursts:
            if burst.direction == CLIENT:
                sent.messages += 1
                sent.bytes += burst.payload
                first_message = burst.start_time if first_message is None else first_message
        if first_message is not None:
            sent.first_time = first_message if sent.first_time is None else min(sent.first_time, first_message)
            if flow.handshake:
                self._first_message[flow.id] = first_message
        return out

    def _burst_series(self, flow: Flow, bursts: list, layout, clock) -> list[Finding]:
        """Each message burst's time (timing) and size (size), one series finding each (harness/series.py):
        item i is what a finding per burst would say, `{"time"}` and `{"time", "bytes"}`, with its evidence."""
        sizes_known = layout.tls_overhead_known or not layout.is_tls
        fallback = 0.8 if sizes_known else 0.6
        times = [round(b.start_time, 3) for b in bursts]
        pins = [sorted({f"pin:{u.pin:08x}" for u in b.units if u.pin is not None}) or None for b in bursts]
        confidence = [_BURST_CONFIDENCE.get(b.rule, fallback) for b in bursts]
        evidence = {"device": flow.src_ip, SERIES: {
            "rule": [b.rule for b in bursts], "direction": [DIRECTION_NAMES[b.direction] for b in bursts],
            "time": [round(b.start_time, 6) for b in bursts], "end_time": [round(b.end_time, 6) for b in bursts],
            "packets": [clock.packets(b.direction, b.offset, b.end) for b in bursts],
            "offset": [b.offset for b in bursts], "length": [b.end - b.offset for b in bursts],
            "layer": [b.layer for b in bursts], "units": [len(b.units) for b in bursts], "confidence": confidence}}
        if any(pins):
            evidence[SERIES]["pins"] = pins
        top = max(confidence)
        return [self._finding(flow, "timing", "message-burst", {SERIES: {"time": times}}, top, **evidence),
                self._finding(flow, "size", "message-burst",
                              {SERIES: {"time": times, "bytes": [b.payload for b in bursts]}}, top, **evidence)]

    def finish(self, flows: Sequence[Flow]) -> Iterator[Finding]:
        """Yielded one by one (the runner encodes each as it comes: a client and a pair per flow, at most);
        the per-address and per-pair tallies are small lists, not dicts."""
        volume: dict[str, list] = {}  # client -> [flows, payload bytes sent]
        # (client, server) -> its row in the columns below: a scan gives a pair per flow, so no list per pair
        pair_row: dict[tuple[str, str], int] = {}
        pair_flows, pair_bytes, pair_packets = array("q"), array("q"), array("q")
        pair_first, pair_last = array("d"), array("d")
        for flow in flows:
            v = volume.get(flow.src_ip)
            if v is None:
                v = volume[flow.src_ip] = [0, 0]
            v[0] += 1
            v[1] += flow.payload_bytes[CLIENT]
            row = pair_row.setdefault((flow.src_ip, flow.dst), len(pair_flows))
            if row == len(pair_flows):
                pair_flows.append(1)
                pair_bytes.append(flow.total_bytes)
                pair_packets.append(flow.total_packets)
                pair_first.append(flow.first_seen)
                pair_last.append(flow.last_seen)
                continue
            pair_flows[row] += 1
            pair_bytes[row] += flow.total_bytes
            pair_packets[row] += flow.total_packets
            pair_first[row] = min(pair_first[row], flow.first_seen)
            pair_last[row] = max(pair_last[row], flow.last_seen)
        for ip in sorted(volume):
            n_flows, payload_sent = volume.pop(ip)
            sent = self._sent.get(ip)
            messages, size, first = (sent.messages, sent.bytes, sent.first_time) if sent is not None else (0, 0, None)
            evidence = {"rule": "client-message-bursts", "flows": n_flows, "payload_bytes_sent": payload_sent}
            if first is not None:
                evidence["first_message_time"] = round(first, 6)
            yield self._finding(None, "volume", "per-client-volume", {"endpoint": ip, "messages": messages,
                                                                      "bytes": size}, 0.7, **evidence)
        for (client, server) in sorted(pair_row):
            row = pair_row[(client, server)]
            value = {"client": client, "server": server, "flows": pair_flows[row], "bytes": pair_bytes[row]}
            yield self._finding(None, "endpoint", "flow-graph", value, 0.95, rule="flow-graph",
                                first_seen=round(pair_first[row], 6), last_seen=round(pair_last[row], 6),
                                packets=pair_packets[row])
        yield from self._direct_contacts(flows)

    def _direct_contacts(self, flows: Sequence[Flow]) -> list[Finding]:
        """Who writes to whom directly: a flow whose opener sent a message to an address that itself opens
        flows (a peer, not a server) and that few others reach (at most DIRECT_MAX_PEERS): the opener wrote
        to it. Servers never open flows to their clients here, and relays do not open flows to devices."""
        initiators = {f.src_ip for f in flows if f.handshake}
        reached_by: dict[str, set] = defaultdict(set)  # only initiators: a scan reaches a million addresses
        for f in flows:
            if f.dst_ip in initiators:
                reached_by[f.dst_ip].add(f.src_ip)
        pairs: dict[tuple[str, str], list[float]] = defaultdict(list)
        for f in flows:
            first = self._first_message.get(f.id)
            if (f.handshake and first is not None and f.dst_ip in initiators
                    and f.dst_ip != f.src_ip and len(reached_by[f.dst_ip]) <= DIRECT_MAX_PEERS):
                pairs[(f.src_ip, f.dst_ip)].append(round(first, 6))
        return [self._finding(None, "contacts", "direct-flow", {"sender": a, "recipient": b}, 0.6,
                              rule="peer-opens-flow-to-peer", times=sorted(t)) for (a, b), t in sorted(pairs.items())]
