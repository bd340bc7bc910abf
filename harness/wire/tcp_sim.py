"""TCP over one simulated link: handshake, MSS segmentation, sliding window, ACKs, FIN, timed at the tap.

The simulated clock is the only clock. Each connection is a small discrete-event simulation: engines
(sans-IO endpoints) are handed bytes when their segments arrive, and what they return is sent after a
short processing delay. Per-packet one-way delay is latency plus jitter, never reordering a direction.
The tap sits at `tap_position` along the link and stamps each packet when it passes.
"""
from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from harness.sim.protocols.interface import Endpoint
from harness.wire.packets import ACK, FIN, PSH, SYN, TcpPacket

WINDOW = 65535
DELAYED_ACK = 0.040


@dataclass(frozen=True)
class LinkTiming:
    latency: float  # one-way, seconds
    jitter: float  # seconds (scale of |normal| added per packet)
    bandwidth: float  # bytes per second
    mss: int
    tap_position: float  # 0 = at the client's end, 1 = at the server's end


@dataclass
class Push:
    """The application at `side` ("client"/"server") sends `item` at `time`; `message_id` for the truth."""

    time: float
    side: str
    item: Any
    message_id: str | None = None


@dataclass
class ConnectionPlan:
    client_ip: str
    client_port: int
    server_ip: str
    server_port: int
    link: LinkTiming
    client: Endpoint
    server: Endpoint
    open_time: float
    pushes: list[Push] = field(default_factory=list)
    close_time: float | None = None  # persistent connections: client closes then; else when engines are done
    message_ids: list[str] = field(default_factory=list)  # messages the whole connection carries
    client_ttl: int = 64
    server_ttl: int = 56


@dataclass
class ConnectionResult:
    packets: list[TcpPacket]
    legs: dict[str, tuple[str, float]]  # message id -> (direction "client"/"server", tap time of first byte)
    end_time: float


class _Side:
    def __init__(self, name: str, ip: str, port: int, engine: Endpoint, isn: int, ip_id: int, ttl: int) -> None:
        self.name, self.ip, self.port, self.engine = name, ip, port, engine
        self.isn = isn
        self.snd_nxt = isn  # next sequence number to send
        self.snd_una = isn  # oldest unacknowledged
        self.rcv_nxt = 0
        self.queue = bytearray()  # bytes waiting for window
        self.queue_tags: list[tuple[int, str]] = []  # (stream offset, message id) for truth legs
        self.stream_sent = 0  # payload bytes sent so far
        self.ip_id = ip_id
        self.ttl = ttl
        self.link_free = 0.0  # when this side's transmitter is next free
        self.last_arrival = 0.0  # monotonic arrival at the peer
        self.unacked_segments = 0
        self.delack_token = 0
        self.fin_sent = False
        self.fin_received = False
        self.want_fin = False
        self.established = False


class TcpConnection:
    """Runs one ConnectionPlan to completion and returns what the tap saw."""

    def __init__(self, plan: ConnectionPlan, rng: np.random.Generator) -> None:
        self.plan, self.rng = plan, rng
        isn_c, isn_s = (int(x) for x in rng.integers(0, 2**32, 2))
        id_c, id_s = (int(x) for x in rng.integers(0, 2**16, 2))
        self.c = _Side("client", plan.client_ip, plan.client_port, plan.client, isn_c, id_c, plan.client_ttl)
        self.s = _Side("server", plan.server_ip, plan.server_port, plan.server, isn_s, id_s, plan.server_ttl)
        self.events: list = []
        self.counter = itertools.count()
        self.packets: list[TcpPacket] = []
        self.legs: dict[str, tuple[str, float]] = {}
        self.now = plan.open_time
        self.closed = False

    # -- event queue -------------------------------------------------------------------------
    def _at(self, t: float, kind: str, *args) -> None:
        heapq.heappush(self.events, (t, next(self.counter), kind, args))

    def _peer(self, side: _Side) -> _Side:
        return self.s if side is self.c else self.c

    def _delay(self) -> float:
        return 0.0002 + float(self.rng.exponential(0.0008))

    # -- transmitting ----------------------------------------------------------------------
    def _transmit(self, side: _Side, flags: int, payload: bytes = b"", mss: int = 0) -> None:
        link = self.plan.link
        start = max(self.now, side.link_free)
        size = len(payload) + 54
        depart = start + size / link.bandwidth
        side.link_free = depart
        one_way = link.latency + abs(float(self.rng.normal(0.0, link.jitter))) if link.jitter else link.latency
        arrive = max(depart + one_way, side.last_arrival + 1e-6)
        side.last_arrival = arrive
        frac = link.tap_position if side is self.c else 1.0 - link.tap_position
        tap_time = depart + frac * (arrive - depart)
        peer = self._peer(side)
        ack = 0
        if side.established or flags & ACK:
            ack = side.rcv_nxt
        seq = side.snd_nxt
        pkt = TcpPacket(tap_time, side.ip, peer.ip, side.port, peer.port, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF,
                        flags, payload, WINDOW, side.ip_id & 0xFFFF, side.ttl, mss)
        side.ip_id += 1
        self.packets.append(pkt)
        advance = len(payload) + (1 if flags & (SYN | FIN) else 0)
        side.snd_nxt += advance
        if flags & ACK:
            side.unacked_segments = 0
            side.delack_token += 1
        self._at(arrive, "arrive", peer, seq, flags, payload, ack)

    def _send_data(self, side: _Side, data: bytes, message_id: str | None = None) -> None:
        if not data:
            return
        if message_id is not None:
            side.queue_tags.append((side.stream_sent + len(side.queue), message_id))
        side.queue += data
        self._pump(side)

    def _pump(self, side: _Side) -> None:
        """Send queued bytes as far as the peer's window allows (never filling it exactly)."""
        if not side.established:
            return  # sent once the handshake completes
        mss = self.plan.link.mss
        while side.queue:
            in_flight = side.snd_nxt - side.snd_una
            room = WINDOW - 1 - in_flight
            if room <= 0:
                return
            n = min(mss, len(side.queue), room)
            chunk = bytes(side.queue[:n])
            del side.queue[:n]
            offset = side.stream_sent
            side.stream_sent += n
            starting = []  # messages whose first byte is in this segment
            while side.queue_tags and side.queue_tags[0][0] < offset + n:
                starting.append(side.queue_tags.pop(0)[1])
            self._transmit(side, ACK | (PSH if not side.queue else 0), chunk)
            for mid in starting:
                self.legs.setdefault(mid, (side.name, self.packets[-1].time))
        if side.want_fin and not side.fin_sent:
            self._send_fin(side)

    def _send_fin(self, side: _Side) -> None:
        if side.fin_sent:
            return
        if side.queue:
            side.want_fin = True
            return
        side.fin_sent = True
        self._transmit(side, FIN | ACK)

    # -- receiving -------------------------------------------------------------------------
    def _on_arrive(self, side: _Side, seq: int, flags: int, payload: bytes, ack: int) -> None:
        if flags & SYN and not flags & ACK:  # server gets SYN
            side.rcv_nxt = seq + 1
            self._transmit(side, SYN | ACK, mss=self.plan.link.mss)
            return
        if flags & SYN and flags & ACK:  # client gets SYN+ACK
            side.rcv_nxt = seq + 1
            side.snd_una = ack
            side.established = True
            self._transmit(side, ACK)
            self.now += self._delay()
            self._send_data(side, side.engine.start())
            self._pump(side)
            return
        if flags & ACK and ack > side.snd_una:
            side.snd_una = ack
            if not side.established:
                side.established = True  # server: handshake complete
                self.now += self._delay()
                self._send_data(side, side.engine.start())
            self._pump(side)
        if payload:
            side.rcv_nxt = seq + len(payload)
            side.unacked_segments += 1
            reply = side.engine.receive(payload)
            if reply:
                self._at(self.now + self._delay(), "reply", side, reply)
            elif side.unacked_segments >= 2:
                self._transmit(side, ACK)
            else:
                side.delack_token += 1
                self._at(self.now + DELAYED_ACK, "delack", side, side.delack_token)
            if side.engine.wants_close and self.plan.close_time is None:
                self._at(self.now + 2 * self._delay(), "close", side)
        if flags & FIN:
            side.rcv_nxt = seq + len(payload) + 1
            side.fin_received = True
            if side.fin_sent:
                self._transmit(side, ACK)
                self.closed = True
            else:
                side.fin_sent = True
                self._transmit(side, FIN | ACK)
        elif side.fin_sent and side.fin_received and ack == side.snd_nxt:
            self.closed = True

    def run(self) -> ConnectionResult:
        plan = self.plan
        self._transmit(self.c, SYN, mss=plan.link.mss)
        for p in plan.pushes:
            self._at(p.time, "push", p)
        if plan.close_time is not None:
            self._at(plan.close_time, "close", self.c)
        while self.events:
            t, _, kind, args = heapq.heappop(self.events)
            self.now = max(self.now, t)
            if kind == "arrive":
                self._on_arrive(*args)
            elif kind == "reply":
                side, data = args
                self._send_data(side, data)
            elif kind == "delack":
                side, token = args
                if token == side.delack_token and side.unacked_segments:
                    self._transmit(side, ACK)
            elif kind == "push":
                (p,) = args
                side = self.c if p.side == "client" else self.s
                if not side.fin_sent:
                    self._send_data(side, side.engine.push(p.item), p.message_id)
            elif kind == "close":
                (side,) = args
                self._send_fin(side)
        syn_time = self.packets[0].time
        for mid in plan.message_ids:
            self.legs.setdefault(mid, ("client", syn_time))
        self.packets.sort(key=lambda p: p.time)
        return ConnectionResult(self.packets, self.legs, self.now)


def simulate_connection(plan: ConnectionPlan, rng: np.random.Generator) -> ConnectionResult:
    return TcpConnection(plan, rng).run()
