"""Decodes one captured frame's link, IP and TCP/UDP headers with `struct`; never raises on malformed input.

A frame that yields no TCP or UDP packet is counted by reason in the `skipped` Counter the decoder is handed
(`non-ip`, `truncated-ip`, `ipv4-bad-header-length`, ...) and `decode` returns None. IPv4 and IPv6 fragments
are reassembled (bounded, with a timeout) before the transport header is read. No scapy here: this runs once
per packet of captures that may be gigabytes long.
"""
from __future__ import annotations

import socket
import struct
from collections import Counter
from typing import NamedTuple

FIN, SYN, RST, PSH, ACK, URG = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
TCP, UDP = 6, 17

FRAGMENT_TIMEOUT = 30.0  # seconds of capture time an incomplete datagram waits for its other fragments
MAX_PENDING_DATAGRAMS = 1024  # fragmented datagrams being reassembled at once
MAX_FRAGMENTS = 128  # fragments per datagram
MAX_VLAN_TAGS = 8
MAX_IPV6_EXT_HEADERS = 16
_ADDR_CACHE_MAX = 1 << 16

# Reasons that are not damage: the frame is fine, it just carries no TCP or UDP.
BENIGN_REASONS = frozenset({"non-ip", "ipv6-no-next-header"})


def is_malformed(reason: str) -> bool:
    """Whether a skip reason means damage (as opposed to traffic that is simply not TCP or UDP)."""
    return not (reason in BENIGN_REASONS or reason.startswith(("ip-proto-", "unsupported-linktype-")))


class Packet(NamedTuple):
    """One decoded TCP segment or UDP datagram (a reassembled one, for fragments)."""

    time: float
    version: int  # IP version: 4 or 6
    src: str  # source IP address, text form
    dst: str
    proto: int  # 6 TCP or 17 UDP
    sport: int
    dport: int
    seq: int  # TCP sequence number (0 for UDP)
    ack: int  # TCP acknowledgement number (0 for UDP)
    flags: int  # TCP flags (FIN 0x01 SYN 0x02 RST 0x04 PSH 0x08 ACK 0x10 ...); 0 for UDP
    payload: bytes  # transport payload as captured
    paylen: int  # payload length on the wire: more than len(payload) when the capture cut the frame short
    ip_len: int  # IP datagram length the header claims (of the reassembled datagram, for fragments)
    wire_len: int  # frame length on the wire (orig_len); summed over all frames of a fragmented datagram
    frames: int  # 1, or the number of fragments the datagram arrived in
    anomalies: tuple[str, ...]  # e.g. ("truncated-ip-len",), ("fragment-overlap-inconsistent",)


_U16 = struct.Struct("!H").unpack_from
_U32_LE = struct.Struct("<I").unpack_from
_U32_BE = struct.Struct("!I").unpack_from
_IPV4 = struct.Struct("!BBHHHBB2x4s4s").unpack_from  # ver/ihl, tos, length, id, flags/offset, ttl, proto, src, dst
_IPV6 = struct.Struct("!IHBB16s16s").unpack_from  # ver/class/label, payload length, next header, hop limit, src, dst
_IPV6_FRAG = struct.Struct("!BxHI").unpack_from  # next header, offset/flags, id
_TCP = struct.Struct("!HHIIBB").unpack_from  # ports, seq, ack, data offset, flags
_UDP = struct.Struct("!HHH").unpack_from  # ports, length

_ETH_IPV4, _ETH_IPV6 = 0x0800, 0x86DD
_ETH_VLAN = frozenset({0x8100, 0x88A8, 0x9100, 0x9200})
_ETH_PPPOE, _ETH_MPLS, _ETH_MPLS_MC = 0x8864, 0x8847, 0x8848
_RAW_LINKTYPES = frozenset({101, 12, 14, 228, 229})  # LINKTYPE_RAW and the old/BSD/IPv4/IPv6 raw numbers
_NULL_AF = {2: _ETH_IPV4, 24: _ETH_IPV6, 28: _ETH_IPV6, 30: _ETH_IPV6}  # BSD AF_INET, the BSDs' AF_INET6 values
_IPV6_EXT = frozenset({0, 43, 60})  # hop-by-hop, routing, destination options: length in 8-octet units
_PROTO_NAMES = {1: "icmp", 2: "igmp", 4: "ipip", 41: "ipv6-in-ip", 47: "gre", 50: "esp", 58: "icmpv6", 89: "ospf",
                103: "pim", 112: "vrrp", 132: "sctp"}
_NO_ANOMALIES: tuple[str, ...] = ()
_new = tuple.__new__  # builds a Packet without the NamedTuple constructor's Python-level call


class _Datagram:
    """A fragmented datagram being put back together."""

    __slots__ = ("first", "parts", "total", "proto", "frames", "wire", "anomalies", "size")

    def __init__(self, first: float) -> None:
        self.first = first
        self.parts: list[tuple[int, bytes]] = []  # (offset, bytes) in arrival order
        self.total: int | None = None  # datagram payload length, known once the last fragment arrived
        self.proto = -1  # transport protocol (IPv6: next header of the offset-0 fragment)
        self.frames = 0
        self.wire = 0
        self.anomalies: list[str] = []
        self.size = 0


class Decoder:
    """Turns records into `Packet`s, counting every frame it cannot use in `skipped` by reason.

    Holds the fragment reassembly state, so use one decoder per stream of records (several merged files are fine).
    """

    def __init__(self, skipped: Counter, fragment_timeout: float = FRAGMENT_TIMEOUT,
                 max_pending: int = MAX_PENDING_DATAGRAMS) -> None:
        self.skipped = skipped
        self.fragment_timeout = fragment_timeout
        self.max_pending = max_pending
        self._pending: dict[tuple, _Datagram] = {}  # insertion order = age order
        self._addr4: dict[bytes, str] = {}
        self._addr6: dict[bytes, str] = {}

    # -- link layer ------------------------------------------------------------------------------------------

    def decode(self, record: tuple) -> Packet | None:
        """Decode one record `(time, linktype, data, orig_len)`; None (and a counted reason) if it has no TCP/UDP."""
        t, linktype, data, orig_len = record
        if type(data) is not bytes:
            data = bytes(data)
        n = len(data)
        if linktype == 1:  # Ethernet
            if n < 14:
                return self._skip("truncated-link")
            etype, off = _U16(data, 12)[0], 14
        elif linktype == 113:  # Linux cooked v1: protocol at 14
            if n < 16:
                return self._skip("truncated-link")
            etype, off = _U16(data, 14)[0], 16
        elif linktype == 276:  # Linux cooked v2: protocol at 0
            if n < 20:
                return self._skip("truncated-link")
            etype, off = _U16(data, 0)[0], 20
        elif linktype in _RAW_LINKTYPES:
            if n < 1:
                return self._skip("truncated-ip")
            version = data[0] >> 4
            etype = _ETH_IPV4 if version == 4 else _ETH_IPV6 if version == 6 else -1
            if etype < 0:
                return self._skip("ip-bad-version")
            off = 0
        elif linktype == 0 or linktype == 108:  # BSD loopback: address family in either byte order
            if n < 4:
                return self._skip("truncated-link")
            af = _U32_LE(data, 0)[0]
            if af > 0xFFFF:
                af = _U32_BE(data, 0)[0]
            etype, off = _NULL_AF.get(af, -1), 4
            if etype < 0:
                return self._skip("non-ip")
        else:
            return self._skip(f"unsupported-linktype-{linktype}")

        tags = 0
        while etype in _ETH_VLAN:
            if off + 4 > n:
                return self._skip("truncated-link")
            tags += 1
            if tags > MAX_VLAN_TAGS:
                return self._skip("too-many-vlan-tags")
            etype = _U16(data, off + 2)[0]
            off += 4
        if etype == _ETH_IPV4:
            return self._ipv4(t, data, off, orig_len)
        if etype == _ETH_IPV6:
            return self._ipv6(t, data, off, orig_len)
        if etype == _ETH_PPPOE:  # PPPoE session: 6-byte header, then the PPP protocol number
            if off + 8 > n:
                return self._skip("truncated-link")
            ppp = _U16(data, off + 6)[0]
            if ppp == 0x0021:
                return self._ipv4(t, data, off + 8, orig_len)
            if ppp == 0x0057:
                return self._ipv6(t, data, off + 8, orig_len)
            return self._skip("non-ip")
        if etype == _ETH_MPLS or etype == _ETH_MPLS_MC:
            for _ in range(MAX_VLAN_TAGS):
                if off + 4 > n:
                    return self._skip("truncated-link")
                bottom = data[off + 2] & 1
                off += 4
                if bottom:
                    break
            else:
                return self._skip("too-many-mpls-labels")
            version = data[off] >> 4 if off < n else 0
            if version == 4:
                return self._ipv4(t, data, off, orig_len)
            if version == 6:
                return self._ipv6(t, data, off, orig_len)
            return self._skip("non-ip")
        return self._skip("non-ip")

    def _skip(self, reason: str) -> None:
        self.skipped[reason] += 1
        return None

    # -- IP --------------------------------------------------------------------------------------------------

    def _ipv4(self, t: float, data: bytes, off: int, orig_len: int) -> Packet | None:
        n = len(data)
        if off + 20 > n:
            return self._skip("truncated-ip")
        vihl, _, total, ident, frag, _, proto, src, dst = _IPV4(data, off)
        if vihl >> 4 != 4:
            return self._skip("ipv4-bad-version")
        hlen = (vihl & 15) * 4
        if hlen < 20:
            return self._skip("ipv4-bad-header-length")
        if off + hlen > n:
            return self._skip("truncated-ip")
        anomalies = _NO_ANOMALIES
        if total < hlen:
            if total:
                return self._skip("ipv4-bad-total-length")
            total = n - off  # 0: a segmentation-offload frame captured on the sending host; use what is there
            anomalies = ("ip-length-zero",)
        end = off + total
        missing = 0
        if end > n:  # the capture holds less than the header claims: use what is there
            anomalies += ("truncated-ip-len",)
            missing = min(end - n, max(orig_len - n, 0))
            end = n
        s = self._addr4.get(src)
        if s is None:
            s = self._addr(self._addr4, socket.AF_INET, src)
        d = self._addr4.get(dst)
        if d is None:
            d = self._addr(self._addr4, socket.AF_INET, dst)
        if frag & 0x3FFF:  # more-fragments flag or a nonzero offset
            if missing:
                return self._skip("truncated-fragment")
            done = self._fragment((4, src, dst, ident, proto), t, (frag & 0x1FFF) * 8, frag & 0x2000,
                                  data[off + hlen:end], orig_len, proto)
            if done is None:
                return None
            dgram, proto, frames, wire, extra = done
            return self._transport(t, 4, s, d, proto, dgram, 0, len(dgram), 0, hlen + len(dgram), wire, frames,
                                   anomalies + extra)
        return self._transport(t, 4, s, d, proto, data, off + hlen, end, missing, total, orig_len, 1, anomalies)

    def _ipv6(self, t: float, data: bytes, off: int, orig_len: int) -> Packet | None:
        n = len(data)
        if off + 40 > n:
            return self._skip("truncated-ip")
        vcl, plen, nxt, _, src, dst = _IPV6(data, off)
        if vcl >> 28 != 6:
            return self._skip("ipv6-bad-version")
        anomalies = _NO_ANOMALIES
        if plen == 0 and nxt != 0 and n > off + 40:  # segmentation offload (or a jumbogram without its option)
            plen = n - off - 40
            anomalies = ("ip-length-zero",)
        end = off + 40 + plen
        missing = 0
        if end > n:
            anomalies += ("truncated-ip-len",)
            missing = min(end - n, max(orig_len - n, 0))
            end = n
        s = self._addr6.get(src)
        if s is None:
            s = self._addr(self._addr6, socket.AF_INET6, src)
        d = self._addr6.get(dst)
        if d is None:
            d = self._addr(self._addr6, socket.AF_INET6, dst)
        p = off + 40
        walked = self._ext6(data, p, end, nxt)
        if walked is None:
            return None
        nxt, p = walked
        if nxt == 44:  # fragment header
            if p + 8 > end:
                return self._skip("truncated-ip")
            inner, offm, ident = _IPV6_FRAG(data, p)
            p += 8
            if offm & 0xFFF9 == 0:  # atomic fragment: offset 0, no more fragments
                walked = self._ext6(data, p, end, inner)
                if walked is None:
                    return None
                nxt, p = walked
                if nxt == 44:
                    return self._skip("ipv6-bad-fragment")
            else:
                if missing:
                    return self._skip("truncated-fragment")
                done = self._fragment((6, src, dst, ident), t, offm & 0xFFF8, offm & 1, data[p:end], orig_len,
                                      inner if offm & 0xFFF8 == 0 else -1)
                if done is None:
                    return None
                dgram, inner, frames, wire, extra = done
                walked = self._ext6(dgram, 0, len(dgram), inner)
                if walked is None:
                    return None
                nxt, q = walked
                if nxt == 44:
                    return self._skip("ipv6-bad-fragment")
                ip_len = p - 8 - off + len(dgram)  # fixed header, unfragmentable headers, reassembled part
                return self._transport(t, 6, s, d, nxt, dgram, q, len(dgram), 0, ip_len, wire, frames,
                                       anomalies + extra)
        return self._transport(t, 6, s, d, nxt, data, p, end, missing, 40 + plen, orig_len, 1, anomalies)

    def _ext6(self, data: bytes, p: int, end: int, nxt: int) -> tuple[int, int] | None:
        """Walk IPv6 extension headers from `p`: (next header, offset) at the transport or a fragment header."""
        for _ in range(MAX_IPV6_EXT_HEADERS):
            if nxt in _IPV6_EXT:
                if p + 8 > end:
                    return self._skip("truncated-ip")
                nxt, p = data[p], p + (data[p + 1] + 1) * 8
            elif nxt == 51:  # authentication header: length in 4-octet units, minus 2
                if p + 8 > end:
                    return self._skip("truncated-ip")
                nxt, p = data[p], p + (data[p + 1] + 2) * 4
            elif nxt == 59:
                return self._skip("ipv6-no-next-header")
            else:
                if p > end:
                    return self._skip("truncated-ip")
                return nxt, p
        return self._skip("ipv6-too-many-ext-headers")

    def ipv4_text(self, raw: bytes) -> str:
        """The text form of a 4-byte IPv4 address, from the decoder's cache."""
        text = self._addr4.get(raw)
        return text if text is not None else self._addr(self._addr4, socket.AF_INET, raw)

    @staticmethod
    def _addr(cache: dict[bytes, str], family: int, raw: bytes) -> str:
        if len(cache) >= _ADDR_CACHE_MAX:
            cache.clear()
        text = cache[raw] = socket.inet_ntop(family, raw)
        return text

    # -- fragments -------------------------------------------------------------------------------------------

    def _fragment(self, key: tuple, t: float, offset: int, more: int, chunk: bytes, wire: int,
                  proto: int) -> tuple[bytes, int, int, int, tuple[str, ...]] | None:
        """Add one fragment; the whole datagram `(payload, proto, frames, wire bytes, anomalies)` once complete."""
        pending = self._pending
        self._expire(t)
        dg = pending.get(key)
        if dg is None:
            if len(pending) >= self.max_pending:
                old = pending.pop(next(iter(pending)))
                self.skipped["fragment-evicted"] += old.frames
            dg = pending[key] = _Datagram(t)
        dg.frames += 1
        dg.wire += wire
        if proto >= 0 and dg.proto < 0:
            dg.proto = proto
        stop = offset + len(chunk)
        if stop > 65535 or len(dg.parts) >= MAX_FRAGMENTS or (more and not chunk):
            del pending[key]
            self.skipped["fragment-bad"] += dg.frames
            return None
        for o, b in dg.parts:  # first arrival wins; differing overlaps are flagged
            lo, hi = max(o, offset), min(o + len(b), stop)
            if lo < hi and b[lo - o:hi - o] != chunk[lo - offset:hi - offset]:
                if "fragment-overlap-inconsistent" not in dg.anomalies:
                    dg.anomalies.append("fragment-overlap-inconsistent")
        if not more:
            if dg.total is not None and dg.total != stop:
                if "fragment-size-inconsistent" not in dg.anomalies:
                    dg.anomalies.append("fragment-size-inconsistent")
            else:
                dg.total = stop
        dg.parts.append((offset, chunk))
        dg.size += len(chunk)
        if dg.total is None or dg.size < dg.total:
            return None
        covered = 0
        for o, b in sorted(dg.parts):
            if o > covered:
                return None
            covered = max(covered, o + len(b))
        if covered < dg.total:
            return None
        del pending[key]
        if dg.proto < 0:
            self.skipped["fragment-bad"] += dg.frames
            return None
        whole = bytearray(dg.total)
        for o, b in reversed(dg.parts):
            whole[o:o + len(b)] = b[:max(dg.total - o, 0)]
        del whole[dg.total:]
        return bytes(whole), dg.proto, dg.frames, dg.wire, tuple(dg.anomalies)

    def _expire(self, now: float) -> None:
        pending = self._pending
        limit = now - self.fragment_timeout
        while pending:
            key = next(iter(pending))
            dg = pending[key]
            if dg.first >= limit:
                break
            del pending[key]
            self.skipped["fragment-incomplete"] += dg.frames

    def flush(self) -> None:
        """End of input: count the fragments of datagrams that never completed."""
        for dg in self._pending.values():
            self.skipped["fragment-incomplete"] += dg.frames
        self._pending.clear()

    # -- transport -------------------------------------------------------------------------------------------

    def _transport(self, t: float, version: int, src: str, dst: str, proto: int, data: bytes, off: int, end: int,
                   missing: int, ip_len: int, wire: int, frames: int, anomalies: tuple[str, ...]) -> Packet | None:
        if proto == TCP:
            if off + 20 > end:
                return self._skip("truncated-tcp")
            sport, dport, seq, ack, doff, flags = _TCP(data, off)
            doff = (doff >> 4) * 4
            if doff < 20:
                return self._skip("tcp-bad-header-length")
            if off + doff > end:
                return self._skip("truncated-tcp")
            payload = data[off + doff:end]
            return _new(Packet, (t, version, src, dst, TCP, sport, dport, seq, ack, flags, payload,
                                 len(payload) + missing, ip_len, wire, frames, anomalies))
        if proto == UDP:
            if off + 8 > end:
                return self._skip("truncated-udp")
            sport, dport, ulen = _UDP(data, off)
            if ulen < 8:
                return self._skip("udp-bad-length")
            claimed = end - off + missing  # what the IP header says the UDP datagram spans
            if ulen > claimed:
                anomalies = anomalies + ("udp-length-exceeds-ip",)
                ulen = claimed
            stop = min(end, off + ulen)
            payload = data[off + 8:stop]
            paylen = max(ulen - 8, len(payload))
            return _new(Packet, (t, version, src, dst, UDP, sport, dport, 0, 0, 0, payload, paylen, ip_len, wire,
                                 frames, anomalies))
        name = _PROTO_NAMES.get(proto)
        return self._skip(f"ip-proto-{name or proto}")
