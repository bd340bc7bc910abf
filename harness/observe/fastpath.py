"""The observe tier's fast path: one loop walks a mapped classic pcap, decodes the common frame inline and accounts
a TCP packet of an open flow inline; every other frame goes the general way.

The common frame is Ethernet, IPv4 without options or fragmentation, then TCP or UDP, with nothing cut short and
no length out of line. For it, every check of `Decoder.decode` is known to pass, so its fields are read here
directly. A TCP packet of a flow already open (found by the frame's address and port bytes in
`FlowTable.by_wire_key`), neither idle nor a SYN reusing the ports, is accounted as `FlowTable.add` would: an
in-order segment inline, control flags and out-of-order data through the same `FlowTable` methods `add` calls.
A packet that opens a flow, and any other frame, is handed to `FlowTable.add` (through `Decoder.decode` for
frames not decoded here), so the flows, counts, anomalies and notes are the general path's
(tests/observe/test_fastpath.py compares the two). Why: per packet, the general path costs three generators,
two tuples of 16 fields and a dozen calls; this loop costs two `unpack_from`s, a slice, a dict look-up and
the appends. (Decoding blocks of records with numpy was tried: 18% fewer instructions, no less CPU time.)
"""
from __future__ import annotations

import struct
from typing import Iterator

from harness.observe.decode import Decoder, Packet
from harness.observe.flows import MAX_CHUNKS, FlowTable
from harness.observe.model import STREAM_CAP, Flow
from harness.observe.progress import Progress
from harness.wire.capture_reader import CHECKPOINT_MASK, MAX_RECORD, CaptureReader, MappedPcap, Record

# From the start of an Ethernet frame: the Ethernet type, IPv4 version/header length and TOS as one number; the
# IPv4 total length, flags/fragment offset and protocol; then, of the transport header, the sequence and
# acknowledgement numbers, data offset and flags (for UDP, "seq" holds its length and checksum). The ports
# (`_PORTS`) are read only when a packet goes to `FlowTable.add`.
_FRAME = struct.Struct("!12xIH2xHxB14xIIBB")
_PORTS = struct.Struct("!34xHH")
_FRAME_BYTES = 48
_IPV4_NO_OPTIONS = 0x080045  # Ethernet type IPv4, then version 4 with a 20-byte header


def fast_flows(reader: CaptureReader, mapped: MappedPcap, decoder: Decoder, table: FlowTable,
               progress: Progress | None, total: int) -> Iterator[Flow]:
    """Yield flows as they finish, the rest at the end, like `build_flows` over the reader's decoded records.

    The reader's count, offset and notes end as `CaptureReader.records()` would leave them; the caller
    collects them (and calls `decoder.flush()` and `table.close()`) after the walk, see `Observer.flows`.
    """
    win, buf, pos, record, scale, hlen, linktype = mapped
    unpack, frame, ports = record.unpack_from, _FRAME.unpack_from, _PORTS.unpack_from
    last_header = len(buf) - hlen  # a record header starting after this is cut short
    end, max_record, checkpoint = len(buf), MAX_RECORD, CHECKPOINT_MASK
    min_frame = _FRAME_BYTES if linktype == 1 else max_record + 1  # only Ethernet frames are decoded here
    decode, add, ipv4 = decoder.decode, table.add, decoder.ipv4_text
    by_wire_key, finished, closing = table.by_wire_key, table.finished, table._closing
    linger, soon, timed_out = table.close_linger, table.short_timeout, table.timed_out
    reused, tcp_control, segment, ack_of = table._reused, table._tcp_control, table._segment, table._ack
    new, max_chunks, cap = tuple.__new__, MAX_CHUNKS, STREAM_CAP
    now = table.now
    n = 0
    try:
        while True:
            if pos > last_header:
                if pos != end:
                    reader.stopped_short(win, n)
                return
            sec, frac, incl, orig = unpack(buf, pos)
            start = pos + hlen
            pos = start + incl
            if pos > end or incl > max_record:
                if incl > max_record:
                    reader.oversized(n, incl)
                else:
                    reader.stopped_short(win, n)
                return
            n += 1
            if not n & checkpoint:
                reader.walked(n, pos)
                win.release(start - hlen)
                if progress is not None:
                    progress(pos, total, n)
            t = sec + frac * scale
            if incl >= min_frame:
                head, iplen, frag, proto, seq, ack, doff, flags = frame(buf, start)
                # The decoder's checks that would skip the frame or note an anomaly, all known to pass here:
                # IPv4 without options, not a fragment, total length at least a header and all of it captured;
                # TCP: a whole header of a valid length; UDP: a length within the datagram.
                # (A total length under 20 fails the TCP and the UDP test below: it goes the general way.)
                if head >> 8 == _IPV4_NO_OPTIONS and not frag & 0x3FFF and iplen <= incl - 14:
                    doff = (doff >> 4) * 4
                    if proto == 6 and 20 <= doff <= iplen - 20:
                        paylen = iplen - 20 - doff
                        if t > now:  # FlowTable.add's clock, before its look-up
                            now = table.now = t
                            if closing and closing[0][0] <= t - linger:
                                table._reap(t)
                            if t >= table._next_sweep:
                                table._sweep(t)
                        wire_key = buf[start + 26:start + 38]  # source and destination address and port
                        hit = by_wire_key.get(wire_key)
                        if hit is not None:
                            conn, d, f, s, o, packets, nbytes, payload_bytes, chunks, stream = hit
                            last = f.last_seen
                            # What FlowTable.add does with a packet of an open flow that is neither idle nor a
                            # SYN starting a new connection on the same ports (those two go to `add`).
                            if ((t - last <= soon or not timed_out(conn, t))
                                    and not (flags & 0x02 and reused(conn, d, flags, seq))):
                                packets[d] += 1
                                nbytes[d] += orig
                                if t > last:
                                    f.last_seen = t
                                elif t < f.first_seen:
                                    f.first_seen = t
                                at = start + 34 + doff  # payload: after Ethernet (14), IPv4 (20) and TCP headers
                                if flags & 0x07:  # FIN, SYN or RST
                                    tcp_control(conn, d, s, t, flags, seq, ack, buf[at:at + paylen], paylen)
                                else:
                                    if paylen:
                                        base = s.base
                                        if base is None:  # flow seen from mid-stream: the stream starts here
                                            base = s.base = seq
                                        nxt = s.next
                                        if not (seq - base - nxt) & 0xFFFFFFFF and not s.pending:  # in order
                                            off = payload_bytes[d]
                                            if len(chunks) < max_chunks:
                                                chunks.add(t, d, off, paylen)
                                            else:
                                                f.anomalies["chunks-dropped"] += 1
                                            payload_bytes[d] = off + paylen
                                            if len(stream) + paylen <= cap:
                                                stream += buf[at:at + paylen]
                                            else:
                                                room = cap - len(stream)
                                                if room > 0:
                                                    stream += buf[at:at + room]
                                                f.truncated[d] = True
                                            s.next = nxt + paylen
                                        else:  # the stream position, unwrapped against the next expected byte
                                            where = nxt + ((((seq - base - nxt) & 0xFFFFFFFF) ^ 0x80000000)
                                                           - 0x80000000)
                                            segment(f, d, s, where, buf[at:at + paylen], paylen, t)
                                    if flags & 0x10 and (o.fin_end is not None or o.pending):  # ACK
                                        ack_of(conn, 1 - d, o, ack)
                                if finished:
                                    done = finished[:]
                                    finished.clear()
                                    yield from done
                                continue
                        at = start + 34 + doff
                        src, dst = ipv4(buf[start + 26:start + 30]), ipv4(buf[start + 30:start + 34])
                        sport, dport = ports(buf, start)
                        add(new(Packet, (t, 4, src, dst, 6, sport, dport, seq, ack, flags, buf[at:at + paylen],
                                         paylen, iplen, orig, 1, ())))
                        now = table.now
                        if wire_key not in by_wire_key:
                            table.remember_wire_key(wire_key, (6, src, sport, dst, dport))
                        if finished:
                            done = finished[:]
                            finished.clear()
                            yield from done
                        continue
                    if proto == 17 and iplen >= 28 and 8 <= seq >> 16 <= iplen - 20:
                        ulen = seq >> 16
                        src, dst = ipv4(buf[start + 26:start + 30]), ipv4(buf[start + 30:start + 34])
                        sport, dport = ports(buf, start)
                        add(new(Packet, (t, 4, src, dst, 17, sport, dport, 0, 0, 0,
                                         buf[start + 42:start + 34 + ulen], ulen - 8, iplen, orig, 1, ())))
                        now = table.now
                        if finished:
                            done = finished[:]
                            finished.clear()
                            yield from done
                        continue
            packet = decode(new(Record, (t, linktype, buf[start:pos], orig)))
            if packet is not None:
                add(packet)
                now = table.now
                if finished:
                    done = finished[:]
                    finished.clear()
                    yield from done
    finally:
        reader.walked(n, pos)
        win.close()
