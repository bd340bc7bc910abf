"""Ethernet/IP/TCP frame bytes on a fast path, and the scapy construction it must equal byte for byte.

scapy builds about 1,000 packets a second; packing with `struct` about 100,000. Captures are built
with `build_frame`; tests/wire/test_packets.py proves it identical to `scapy_frame` for the same fields.
"""
from __future__ import annotations

import ipaddress
import struct
import zlib
from dataclasses import dataclass

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10

_ETH = struct.Struct("!6s6sH")
_IP4 = struct.Struct("!BBHHHBBH4s4s")
_IP6 = struct.Struct("!IHBB16s16s")
_TCP = struct.Struct("!HHIIBBHHH")


@dataclass(slots=True)
class TcpPacket:
    """One TCP segment as the tap saw it: time and every header field the frame needs."""

    time: float
    src: str
    dst: str
    sport: int
    dport: int
    seq: int
    ack: int
    flags: int
    payload: bytes = b""
    window: int = 65535
    ip_id: int = 0
    ttl: int = 64
    mss: int = 0  # non-zero: carry an MSS option (SYN, SYN+ACK)


def mac_for(ip: str) -> bytes:
    """A stable locally administered MAC address for an IP (02:xx:...)."""
    return b"\x02" + zlib.crc32(ip.encode()).to_bytes(4, "big") + b"\x01"


def internet_checksum(data: bytes) -> int:
    """RFC 1071 checksum. The big-integer remainder mod 0xFFFF is the one's-complement sum (65536 = 1 mod 65535)."""
    if len(data) & 1:
        data += b"\x00"
    s = int.from_bytes(data, "big") % 0xFFFF
    if s == 0 and any(data):
        s = 0xFFFF
    return ~s & 0xFFFF


_addr_cache: dict[str, bytes] = {}


def _packed(ip: str) -> bytes:
    b = _addr_cache.get(ip)
    if b is None:
        b = _addr_cache[ip] = ipaddress.ip_address(ip).packed
    return b


def build_frame(p: TcpPacket) -> bytes:
    """Ethernet II / IPv4 or IPv6 / TCP / payload, checksums filled in."""
    src, dst = _packed(p.src), _packed(p.dst)
    opts = struct.pack("!BBH", 2, 4, p.mss) if p.mss else b""
    doff = (20 + len(opts)) // 4
    tcp_len = 20 + len(opts) + len(p.payload)
    hdr = _TCP.pack(p.sport, p.dport, p.seq, p.ack, doff << 4, p.flags, p.window, 0, 0) + opts
    if len(src) == 4:
        pseudo = src + dst + struct.pack("!BBH", 0, 6, tcp_len)
    else:
        pseudo = src + dst + struct.pack("!IxxxB", tcp_len, 6)
    csum = internet_checksum(pseudo + hdr + p.payload)
    tcp = hdr[:16] + struct.pack("!H", csum) + hdr[18:] + p.payload
    if len(src) == 4:
        ip = _IP4.pack(0x45, 0, 20 + tcp_len, p.ip_id, 0x4000, p.ttl, 6, 0, src, dst)
        ip = ip[:10] + struct.pack("!H", internet_checksum(ip)) + ip[12:]
        ethertype = 0x0800
    else:
        ip = _IP6.pack(6 << 28, tcp_len, 6, p.ttl, src, dst)
        ethertype = 0x86DD
    return _ETH.pack(mac_for(p.dst), mac_for(p.src), ethertype) + ip + tcp


def scapy_frame(p: TcpPacket):
    """The same frame built by scapy (slow; the reference for tests and for dissection)."""
    from scapy.layers.inet import IP, TCP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import Ether
    from scapy.packet import Raw

    def mac(ip: str) -> str:
        return ":".join(f"{b:02x}" for b in mac_for(ip))

    if ":" in p.src:
        ip = IPv6(src=p.src, dst=p.dst, hlim=p.ttl)
    else:
        ip = IP(src=p.src, dst=p.dst, id=p.ip_id, flags="DF", ttl=p.ttl)
    tcp = TCP(sport=p.sport, dport=p.dport, seq=p.seq, ack=p.ack, flags=p.flags, window=p.window,
              options=[("MSS", p.mss)] if p.mss else [])
    pkt = Ether(src=mac(p.src), dst=mac(p.dst)) / ip / tcp
    if p.payload:
        pkt = pkt / Raw(p.payload)
    return pkt
