"""Builds flows from decoded packets: TCP connections with per-direction stream reassembly, and UDP conversations.

A flow leaves the table as soon as it is finished (FIN both ways and acknowledged, or RST, each after a short
linger for stragglers; or idle for `IDLE_TIMEOUT` seconds of capture time, `SHORT_TIMEOUT` for a UDP flow or
an unanswered TCP attempt; or the end of input), so memory follows the flows still open, not the packets
already seen. `build_flows` yields flows as they finish.

Reassembly, per direction: in-order bytes are appended to `Flow.payload[d]` (capped at `STREAM_CAP`) and each
packet that brings new bytes adds a `Chunk`. Out-of-order segments wait in a bounded buffer until the hole fills;
a hole that never fills (buffer full, the receiver acknowledged past it, or the flow ended) is skipped:
`anomalies["gap"]` and `anomalies["missed-bytes"]` count it, `truncated[d]` is set, and the stream goes on after
it. Bytes the capture cut short (snaplen) are skipped the same way. So `Chunk.offset` and `payload_bytes` count
delivered bytes: missed bytes take no room in `payload[d]`. Re-sent bytes count as `retransmission`, and as
`overlap-inconsistent` when they differ from what was delivered first (first copy wins).
"""
from __future__ import annotations

import itertools
from collections import Counter, deque
from heapq import heappop, heappush
from typing import Iterable, Iterator

from harness.observe.decode import ACK, FIN, RST, SYN, TCP, Packet
from harness.observe.model import STREAM_CAP, Chunks, Flow, endpoint, flow_key

IDLE_TIMEOUT = 300.0  # seconds of capture time without a packet after which a TCP connection is finished
# The same for a UDP flow, and for an unanswered TCP attempt (packets from one side only, no payload either way:
# an unanswered SYN, a port scan's probe). A gateway capture can hold millions of them (a DNS query a flow, a
# scan's probes), each an open flow (~3 kB) until it times out, so they go sooner. Zeek ends any UDP flow after
# 60 s idle (udp_inactivity_timeout) and gives up on a TCP attempt after 5 s; 60 s outlasts a client's SYN
# retransmissions (Linux: 1, 2, 4, ... 32 s apart) and the keepalives that hold a UDP NAT binding open (WireGuard
# 25 s, IPsec NAT-T 20 s). A probe re-sent later, or a UDP conversation that pauses for over 60 s, opens a new
# flow here (tshark keeps one conversation per 5-tuple).
SHORT_TIMEOUT = 60.0
CLOSE_LINGER = 5.0  # seconds a closed TCP flow still takes stragglers (last ACK, retransmitted FIN) before it leaves
SWEEP_INTERVAL = 30.0  # how often (capture time) the table is swept for idle flows
MAX_OOO_SEGMENTS = 64  # out-of-order segments buffered per direction
MAX_OOO_BYTES = 1 << 20  # out-of-order bytes buffered per direction
MAX_CHUNKS = 1 << 20  # chunks kept per flow; more are counted in anomalies["chunks-dropped"]
MAX_ACTIVE = 1 << 20  # open flows; past this the least recently seen tenth is finished early ("evicted")

_M = 0xFFFFFFFF
_HALF = 0x80000000
_PROTO_NAME = {6: "tcp", 17: "udp"}
_new_counter = Counter.__new__


class _Stream:
    """Reassembly state of one direction of a TCP connection (positions are relative to the first data byte)."""

    __slots__ = ("base", "next", "pending", "pending_bytes", "gap_end", "missed", "fin_end", "fin_acked", "isn")

    def __init__(self) -> None:
        self.base: int | None = None  # sequence number of stream position 0 (None until a SYN or data is seen)
        self.next = 0  # next expected stream position
        # Heap of (pos, serial, bytes, length, time); an empty tuple until the first segment waits (most
        # directions never buffer one, and an open flow's every byte counts on a busy gateway).
        self.pending: list[tuple[int, int, bytes, int, float]] | tuple = ()
        self.pending_bytes = 0
        self.gap_end = 0  # stream position where the last skipped gap ended
        self.missed = 0  # stream bytes skipped so far: delivered offset = position - missed (after gap_end)
        self.fin_end: int | None = None  # sequence number that acknowledges this side's FIN
        self.fin_acked = False
        self.isn: int | None = None


class _Conn:
    """A flow in the table, with its TCP state."""

    __slots__ = ("flow", "keys", "streams", "closed_at", "fin", "done", "wire_keys")

    def __init__(self, flow: Flow, keys: tuple[tuple, tuple]) -> None:
        self.flow = flow
        self.keys = keys
        self.wire_keys: list[bytes] = []  # its keys in `FlowTable.by_wire_key` (at most one per direction)
        self.streams = (_Stream(), _Stream())
        self.closed_at: float | None = None
        self.fin = False
        self.done = False


def _append(f: Flow, d: int, t: float, payload: bytes) -> None:
    """New bytes in direction d: a chunk (up to MAX_CHUNKS per flow) and the stream (up to STREAM_CAP)."""
    n = len(payload)
    off = f.payload_bytes[d]
    if len(f.chunks) < MAX_CHUNKS:
        f.chunks.add(t, d, off, n)
    else:
        f.anomalies["chunks-dropped"] += 1
    if n:
        f.payload_bytes[d] = off + n
        buf = f.payload[d]
        room = STREAM_CAP - len(buf)
        if room >= n:
            buf += payload
        else:
            if room > 0:
                buf += payload[:room]
            f.truncated[d] = True


class FlowTable:
    """The open flows. `add` packets in capture order; finished flows collect in `finished` for the caller to take."""

    def __init__(self, idle_timeout: float = IDLE_TIMEOUT, close_linger: float = CLOSE_LINGER,
                 max_active: int = MAX_ACTIVE, short_timeout: float = SHORT_TIMEOUT) -> None:
        self.idle_timeout = idle_timeout
        self.short_timeout = min(short_timeout, idle_timeout)
        self.close_linger = close_linger
        self.max_active = max_active
        self.finished: list[Flow] = []
        self.now = float("-inf")  # latest packet time seen
        self._table: dict[tuple, tuple[_Conn, int]] = {}  # (proto, src, sport, dst, dport) -> (conn, direction)
        # The same entries for open TCP/IPv4 flows keyed by the 12 header bytes src ip, dst ip, sport, dport as
        # they stand in the frame, for the fast path (harness.observe.fastpath): filled by `remember_wire_key`,
        # emptied by `_finish`, so a key found here always names an open flow and the direction `_table` gives.
        # Value: (conn, d, flow, stream d, stream 1 - d, and the flow's packets, bytes, payload_bytes, chunks
        # and payload[d], none of which is ever replaced while the flow is open).
        self.by_wire_key: dict[bytes, tuple] = {}
        self._uses: dict[str, int] = {}  # flow id -> times used, for the "#2" suffixes
        self._closing: deque[tuple[float, _Conn]] = deque()
        self._next_sweep = float("-inf")
        self._serial = itertools.count()
        self.active = 0

    # -- the table -------------------------------------------------------------------------------------------

    def add(self, p: Packet) -> None:
        """Account one packet to its flow (opening, or finishing and reopening, flows as needed)."""
        t, _, src, dst, proto, sport, dport, seq, ack, flags, payload, paylen, _, wire, frames, anomalies = p
        if t > self.now:
            self.now = t
            if self._closing and self._closing[0][0] <= t - self.close_linger:
                self._reap(t)
            if t >= self._next_sweep:
                self._sweep(t)
        hit = self._table.get((proto, src, sport, dst, dport))
        if hit is None:
            conn, d = self._open(p)
        else:
            conn, d = hit
            if self.timed_out(conn, t) or (flags & SYN and proto == TCP and self._reused(conn, d, flags, seq)):
                self._finish(conn)
                conn, d = self._open(p)
        f = conn.flow
        f.packets[d] += frames
        f.bytes[d] += wire
        if t > f.last_seen:
            f.last_seen = t
        elif t < f.first_seen:
            f.first_seen = t
        if anomalies:
            for a in anomalies:
                f.anomalies[a] += 1
        if proto != TCP:
            self._datagram(f, d, p)
            return
        s = conn.streams[d]
        if flags & (SYN | FIN | RST):
            self._tcp_control(conn, d, s, t, flags, seq, ack, payload, paylen)
            return
        if paylen:
            base = s.base
            if base is None:  # flow seen from mid-stream: this direction's stream starts here
                base = s.base = seq
            nxt = s.next
            pos = nxt + ((((seq - base - nxt) & _M) ^ _HALF) - _HALF)  # unwrap against the next expected byte
            if pos == nxt and len(payload) == paylen and not s.pending:  # in order, complete: the common case
                off = f.payload_bytes[d]
                chunks = f.chunks
                if len(chunks) < MAX_CHUNKS:
                    chunks.add(t, d, off, paylen)
                else:
                    f.anomalies["chunks-dropped"] += 1
                f.payload_bytes[d] = off + paylen
                buf = f.payload[d]
                if len(buf) + paylen <= STREAM_CAP:
                    buf += payload
                else:
                    room = STREAM_CAP - len(buf)
                    if room > 0:
                        buf += payload[:room]
                    f.truncated[d] = True
                s.next = nxt + paylen
            else:
                self._segment(f, d, s, pos, payload, paylen, t)
        if flags & ACK:
            o = conn.streams[1 - d]
            if o.fin_end is not None or o.pending:
                self._ack(conn, 1 - d, o, ack)

    def remember_wire_key(self, wire_key: bytes, key: tuple) -> None:
        """Index the open flow at `key` (proto, src, sport, dst, dport) also by its frame bytes `wire_key`
        (src ip, dst ip, sport, dport), both ways."""
        proto, src, sport, dst, dport = key
        back = wire_key[4:8] + wire_key[:4] + wire_key[10:12] + wire_key[8:10]
        for wire, k in ((wire_key, key), (back, (proto, dst, dport, src, sport))):
            hit = self._table.get(k)
            if hit is not None and not hit[0].done and wire not in self.by_wire_key:
                conn, d = hit
                f = conn.flow
                self.by_wire_key[wire] = (conn, d, f, conn.streams[d], conn.streams[1 - d], f.packets, f.bytes,
                                          f.payload_bytes, f.chunks, f.payload[d])
                conn.wire_keys.append(wire)

    def close(self) -> None:
        """End of input: finish every open flow."""
        for conn, d in list(self._table.values()):
            if d == 0:
                self._finish(conn)
        self._closing.clear()

    def _open(self, p: Packet) -> tuple[_Conn, int]:
        if p.proto == TCP and p.flags & SYN and p.flags & ACK:  # SYN+ACK first: its receiver opened the flow
            src_ip, sport, dst_ip, dport, d = p.dst, p.dport, p.src, p.sport, 1
        else:
            src_ip, sport, dst_ip, dport, d = p.src, p.sport, p.dst, p.dport, 0
        src, dst = endpoint(src_ip, sport), endpoint(dst_ip, dport)
        base = flow_key(_PROTO_NAME[p.proto], src, dst)
        uses = self._uses[base] = self._uses.get(base, 0) + 1
        # Every field given: the same Flow as with the defaults, without their factories' calls (one flow per
        # handful of packets); a Counter made by __new__ alone is an empty Counter (its __init__ only updates).
        flow = Flow(base if uses == 1 else f"{base}#{uses}", _PROTO_NAME[p.proto], src, dst, src_ip, dst_ip, sport,
                    dport, p.time, p.time, [0, 0], [0, 0], [bytearray(), bytearray()], [0, 0], [False, False],
                    Chunks(), False, _new_counter(Counter), {})
        fwd, rev = (p.proto, src_ip, sport, dst_ip, dport), (p.proto, dst_ip, dport, src_ip, sport)
        conn = _Conn(flow, (fwd, rev))
        self._table[rev] = (conn, 1)
        self._table[fwd] = (conn, 0)  # written last: with identical endpoints both keys are one, direction 0
        self.active += 1
        if self.active > self.max_active:
            self._evict()
        return conn, d

    def timed_out(self, conn: _Conn, t: float) -> bool:
        """Has the flow been idle too long by `t`: `idle_timeout`, or `short_timeout` for UDP or a TCP attempt?"""
        idle = t - conn.flow.last_seen
        return idle > self.idle_timeout or (idle > self.short_timeout and self._short_lived(conn))

    @staticmethod
    def _short_lived(conn: _Conn) -> bool:
        """A flow that times out early: any UDP flow, or an unanswered TCP attempt (packets from one side
        only, and no payload delivered or waiting either way)."""
        f = conn.flow
        if f.proto != "tcp":
            return True
        if f.packets[0] and f.packets[1]:
            return False
        return not (f.payload_bytes[0] or f.payload_bytes[1] or conn.streams[0].pending or conn.streams[1].pending)

    @staticmethod
    def _reused(conn: _Conn, d: int, flags: int, seq: int) -> bool:
        """Does this SYN (with these flags and sequence number) start a new connection on the same 5-tuple?"""
        if conn.closed_at is not None:
            return True
        if flags & ACK:
            return False
        isn = conn.streams[d].isn
        f = conn.flow
        return isn is not None and seq != isn and (conn.fin or f.payload_bytes[0] + f.payload_bytes[1] > 0)

    def _finish(self, conn: _Conn) -> None:
        if conn.done:
            return
        conn.done = True
        f = conn.flow
        for d, s in enumerate(conn.streams):
            while s.pending:
                self._skip_hole(f, d, s)
        for key in conn.keys:
            hit = self._table.get(key)
            if hit is not None and hit[0] is conn:
                del self._table[key]
        for key in conn.wire_keys:
            del self.by_wire_key[key]
        self.active -= 1
        self.finished.append(f)

    def _reap(self, now: float) -> None:
        closing, limit = self._closing, now - self.close_linger
        while closing and closing[0][0] <= limit:
            self._finish(closing.popleft()[1])

    def _sweep(self, now: float) -> None:
        self._next_sweep = now + SWEEP_INTERVAL
        limit, short_limit, short_lived = now - self.idle_timeout, now - self.short_timeout, self._short_lived
        idle = [conn for conn, d in self._table.values() if d == 0 and conn.flow.last_seen < short_limit
                and (conn.flow.last_seen < limit or short_lived(conn))]
        for conn in idle:
            self._finish(conn)

    def _evict(self) -> None:
        conns = sorted((conn for conn, d in self._table.values() if d == 0), key=lambda c: c.flow.last_seen)
        for conn in conns[:max(1, len(conns) // 10)]:
            conn.flow.anomalies["evicted"] += 1
            self._finish(conn)

    # -- TCP -------------------------------------------------------------------------------------------------

    def _tcp_control(self, conn: _Conn, d: int, s: _Stream, t: float, flags: int, seq: int, ack: int,
                     payload: bytes, paylen: int) -> None:
        """A segment with SYN, FIN or RST: the slow path, which also tracks the connection's end."""
        if flags & SYN:
            if d == 0 and not flags & ACK:
                conn.flow.handshake = True
            if s.isn is None:
                s.isn = seq
            seq = (seq + 1) & _M  # the SYN takes one sequence number; data (if any) follows it
            if s.base is None:
                s.base = seq
        if paylen:
            if s.base is None:
                s.base = seq
            nxt = s.next
            pos = nxt + ((((seq - s.base - nxt) & _M) ^ _HALF) - _HALF)
            self._segment(conn.flow, d, s, pos, payload, paylen, t)
        if flags & FIN:
            s.fin_end = (seq + paylen + 1) & _M
            conn.fin = True
        if flags & ACK:
            self._ack(conn, 1 - d, conn.streams[1 - d], ack)
        if conn.closed_at is None and flags & RST:
            self._closed(conn)

    def _ack(self, conn: _Conn, d: int, s: _Stream, ack: int) -> None:
        """An acknowledgement of direction `d`'s stream `s`: may complete a close or show a hole is lost."""
        if s.fin_end is not None and not s.fin_acked and (ack - s.fin_end) & _M < _HALF:
            s.fin_acked = True
            if conn.closed_at is None and conn.streams[0].fin_acked and conn.streams[1].fin_acked:
                self._closed(conn)
        if s.pending:
            self._acked_past_hole(conn.flow, d, s, ack)

    def _closed(self, conn: _Conn) -> None:
        conn.closed_at = self.now
        self._closing.append((self.now, conn))

    def _segment(self, f: Flow, d: int, s: _Stream, pos: int, payload: bytes, paylen: int, t: float) -> None:
        """Data at stream position `pos`: deliver, buffer out of order, or count as re-sent."""
        nxt = s.next
        if pos == nxt:
            self._deliver(f, d, s, payload, paylen, t)
        elif pos + paylen <= nxt:
            f.anomalies["retransmission"] += 1
            self._compare(f, d, s, pos, payload)
            return
        elif pos > nxt:
            if not s.pending:
                s.pending = []
            heappush(s.pending, (pos, next(self._serial), payload, paylen, t))
            s.pending_bytes += len(payload)
            while len(s.pending) > MAX_OOO_SEGMENTS or s.pending_bytes > MAX_OOO_BYTES:
                self._skip_hole(f, d, s)
            return
        else:  # starts before the next expected byte, ends after it
            f.anomalies["retransmission"] += 1
            cut = nxt - pos
            self._compare(f, d, s, pos, payload[:cut])
            self._deliver(f, d, s, payload[cut:], paylen - cut, t)
        if s.pending:
            self._drain(f, d, s)

    def _deliver(self, f: Flow, d: int, s: _Stream, payload: bytes, paylen: int, t: float) -> None:
        n = len(payload)
        if n:
            _append(f, d, t, payload)
        s.next += n
        if paylen > n:  # the capture cut this segment short: the rest is a gap
            self._gap(f, d, s, paylen - n)

    @staticmethod
    def _gap(f: Flow, d: int, s: _Stream, missing: int) -> None:
        s.next += missing
        s.missed += missing
        s.gap_end = s.next
        f.anomalies["gap"] += 1
        f.anomalies["missed-bytes"] += missing
        f.truncated[d] = True

    @staticmethod
    def _compare(f: Flow, d: int, s: _Stream, pos: int, data: bytes) -> None:
        """Flag re-sent bytes at stream position `pos` that differ from those already delivered there."""
        lo = max(pos, s.gap_end)  # before the last gap, delivered offsets are not tracked
        i = lo - s.missed
        buf = f.payload[d]
        j = min(i + pos + len(data) - lo, len(buf))
        if j > i and buf[i:j] != data[lo - pos:lo - pos + j - i]:
            f.anomalies["overlap-inconsistent"] += 1

    def _drain(self, f: Flow, d: int, s: _Stream) -> None:
        pending = s.pending
        while pending and pending[0][0] <= s.next:
            pos, _, payload, paylen, t = heappop(pending)
            s.pending_bytes -= len(payload)
            nxt = s.next
            if pos + paylen <= nxt:
                f.anomalies["retransmission"] += 1
                self._compare(f, d, s, pos, payload)
                continue
            if pos < nxt:
                f.anomalies["retransmission"] += 1
                cut = nxt - pos
                self._compare(f, d, s, pos, payload[:cut])
                payload, paylen = payload[cut:], paylen - cut
            self._deliver(f, d, s, payload, paylen, t)

    def _skip_hole(self, f: Flow, d: int, s: _Stream) -> None:
        """Give up on the hole before the first buffered segment and deliver what follows it."""
        missing = s.pending[0][0] - s.next
        if missing > 0:
            self._gap(f, d, s, missing)
        self._drain(f, d, s)

    def _acked_past_hole(self, f: Flow, d: int, s: _Stream, ack: int) -> None:
        """The receiver acknowledged bytes the tap never saw: those holes will not be filled."""
        nxt = s.next
        acked = nxt + ((((ack - s.base - nxt) & _M) ^ _HALF) - _HALF)
        while s.pending and s.next < acked and s.pending[0][0] <= acked:
            self._skip_hole(f, d, s)

    # -- UDP -------------------------------------------------------------------------------------------------

    @staticmethod
    def _datagram(f: Flow, d: int, p: Packet) -> None:
        payload = p.payload
        n = len(payload)
        _append(f, d, p.time, payload)
        if p.paylen > n:
            f.anomalies["gap"] += 1
            f.anomalies["missed-bytes"] += p.paylen - n
            f.truncated[d] = True


def build_flows(packets: Iterable[Packet], table: FlowTable | None = None) -> Iterator[Flow]:
    """Yield flows as they finish (and the rest at the end of input), from packets in capture order."""
    table = table if table is not None else FlowTable()
    finished = table.finished
    add = table.add
    for p in packets:
        add(p)
        if finished:
            done = finished[:]
            finished.clear()
            yield from done
    table.close()
    done = finished[:]
    finished.clear()
    yield from done
