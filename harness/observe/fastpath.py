"""The observe tier's fast path: one loop walks a mapped classic pcap, decodes the common frame inline and adds an
in-order TCP segment of an open flow to it inline; every other frame goes the general way.

The common frame is Ethernet, IPv4 without options or fragmentation, then TCP or UDP, with nothing cut short and
no length out of line. For it, every check of `Decoder.decode` is known to pass, so the `Packet` is built here
directly; a TCP segment without SYN, FIN or RST that continues an open flow's stream in order (and has nothing
buffered behind it) is then accounted exactly as `FlowTable.add` would, without building the `Packet` at all.
Anything else is handed to `Decoder.decode` and `FlowTable.add` unchanged, so the flows, counts, anomalies and
notes are the general path's. Why: per packet, the general path costs three generators, two tuples of 16
fields and a dozen calls; this loop costs two `unpack_from`s, a slice, a dict look-up and the appends.
"""
from __future__ import annotations

import struct
from typing import Iterator

from harness.observe.decode import ACK, SYN, TCP, UDP, Decoder, Packet
from harness.observe.flows import MAX_CHUNKS, FlowTable
from harness.observe.model import STREAM_CAP, Chunk, Flow
from harness.observe.progress import Progress
from harness.wire.capture_reader import MAX_RECORD, CaptureReader, MappedPcap, Record

# From the start of an Ethernet frame: the Ethernet type; IPv4 version/header length, total length,
# flags/fragment offset, protocol; then the first 14 bytes of the transport header: ports, sequence and
# acknowledgement numbers, data offset, flags (for UDP, "seq" holds its length and checksum).
_FRAME = struct.Struct("!12xHBxH2xHxB10xHHIIBB")
_M = 0xFFFFFFFF
_HALF = 0x80000000
_FIN_SYN_RST = 0x07


def fast_flows(reader: CaptureReader, mapped: MappedPcap, decoder: Decoder, table: FlowTable,
               progress: Progress | None, total: int) -> Iterator[Flow]:
    """Yield flows as they finish, the rest at the end, like `build_flows` over the reader's decoded records.

    The reader's count, offset and notes end as `CaptureReader.records()` would leave them; the caller
    collects them (and calls `decoder.flush()` and `table.close()`) after the walk, see `Observer.flows`.
    """
    win, buf, pos, record, scale, hlen, linktype = mapped
    unpack, frame = record.unpack_from, _FRAME.unpack_from
    end = len(buf)
    decode, add, ipv4 = decoder.decode, table.add, decoder.ipv4_text
    by_wire_key, finished, closing = table.by_wire_key, table.finished, table._closing
    linger, idle = table.close_linger, table.idle_timeout
    new = tuple.__new__
    ether = linktype == 1
    now = table.now
    n = 0
    try:
        while True:
            if pos + hlen > end:
                if pos != end:
                    reader.stopped_short(win, n)
                return
            sec, frac, incl, orig = unpack(buf, pos)
            start = pos + hlen
            if incl > MAX_RECORD:
                reader.oversized(n, incl)
                return
            pos = start + incl
            if pos > end:
                reader.stopped_short(win, n)
                return
            n += 1
            if not n & 0xFFFF:
                reader.walked(n, pos)
                win.release(start - hlen)
                if progress is not None:
                    progress(pos, total, n)
            t = sec + frac * scale
            if ether and incl >= 48:
                etype, vihl, iplen, frag, proto, sport, dport, seq, ack, doff, flags = frame(buf, start)
                # The decoder's checks that would skip the frame or note an anomaly, all known to pass:
                # IPv4 (0x0800), no options (0x45), not a fragment, total length at least a header and all of it captured.
                if etype == 0x0800 and vihl == 0x45 and not frag & 0x3FFF and 20 <= iplen <= incl - 14:
                    if proto == TCP and iplen >= 40:
                        doff = (doff >> 4) * 4
                        if 20 <= doff <= iplen - 20:
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
                                # What FlowTable.add does with a packet of an open flow that is neither idle
                                # nor a SYN starting a new connection on the same ports (those go to `add`).
                                if t - last <= idle and not (flags & SYN and table._reused(conn, d, flags, seq)):
                                    packets[d] += 1
                                    nbytes[d] += orig
                                    if t > last:
                                        f.last_seen = t
                                    elif t < f.first_seen:
                                        f.first_seen = t
                                    if flags & _FIN_SYN_RST:
                                        at = start + 34 + doff
                                        table._tcp_control(conn, d, s, t, flags, seq, ack, buf[at:at + paylen], paylen)
                                    else:
                                        if paylen:
                                            base = s.base
                                            if base is None:  # flow seen from mid-stream: the stream starts here
                                                base = s.base = seq
                                            nxt = s.next
                                            at = start + 34 + doff
                                            if not (seq - base - nxt) & _M and not s.pending:  # in order: inline
                                                off = payload_bytes[d]
                                                if len(chunks) < MAX_CHUNKS:
                                                    chunks.append(Chunk(t, d, off, paylen))
                                                else:
                                                    f.anomalies["chunks-dropped"] += 1
                                                payload_bytes[d] = off + paylen
                                                if len(stream) + paylen <= STREAM_CAP:
                                                    stream += buf[at:at + paylen]
                                                else:
                                                    room = STREAM_CAP - len(stream)
                                                    if room > 0:
                                                        stream += buf[at:at + room]
                                                    f.truncated[d] = True
                                                s.next = nxt + paylen
                                            else:
                                                stream_pos = nxt + ((((seq - base - nxt) & _M) ^ _HALF) - _HALF)
                                                table._segment(f, d, s, stream_pos, buf[at:at + paylen], paylen, t)
                                        if flags & ACK and (o.fin_end is not None or o.pending):
                                            table._ack(conn, 1 - d, o, ack)
                                    if finished:
                                        done = finished[:]
                                        finished.clear()
                                        yield from done
                                    continue
                            at = start + 34 + doff
                            src, dst = ipv4(buf[start + 26:start + 30]), ipv4(buf[start + 30:start + 34])
                            add(new(Packet, (t, 4, src, dst, TCP, sport, dport, seq, ack, flags, buf[at:at + paylen],
                                             paylen, iplen, orig, 1, ())))
                            now = table.now
                            if wire_key not in by_wire_key:
                                table.remember_wire_key(wire_key, (TCP, src, sport, dst, dport))
                            if finished:
                                done = finished[:]
                                finished.clear()
                                yield from done
                            continue
                    elif proto == UDP and iplen >= 28:
                        ulen = seq >> 16
                        if 8 <= ulen <= iplen - 20:  # else the decoder skips it or notes udp-length-exceeds-ip
                            src, dst = ipv4(buf[start + 26:start + 30]), ipv4(buf[start + 30:start + 34])
                            add(new(Packet, (t, 4, src, dst, UDP, sport, dport, 0, 0, 0,
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
