"""Writes a large synthetic capture of mixed traffic: TLS-like encrypted flows, SMTP and HTTP in clear, DNS.

    python -m bench.mixed_capture PACKETS [PATH]

Deterministic for a given packet count (numpy Generator seeded with it). Frames are built with `struct`;
connections are interleaved 200 at a time, as on a busy gateway: handshake, data both ways with ACKs,
FIN/ACK close. Encrypted flows carry TLS records (ClientHello with an SNI, then application data of random
bytes); clear flows carry an SMTP dialogue with a message, or HTTP requests and text responses.
"""
from __future__ import annotations

import os
import struct
import sys
from typing import Iterable

import numpy as np

_ETH = b"\x02\x00\x00\x00\x00\x01\x02\x00\x00\x00\x00\x02\x08\x00"
_IP = struct.Struct("!BBHHHBBH4s4s")
_TCP = struct.Struct("!HHIIBBHHH")
_UDP = struct.Struct("!HHHH")
_REC = struct.Struct("<IIII")
CONCURRENT = 200


def _tcp(src: bytes, dst: bytes, sport: int, dport: int, seq: int, ack: int, flags: int, data: bytes) -> bytes:
    tcp = _TCP.pack(sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 5 << 4, flags, 65535, 0, 0)
    ip = _IP.pack(0x45, 0, 40 + len(data), 0, 0x4000, 64, 6, 0, src, dst)
    return _ETH + ip + tcp + data


def _udp(src: bytes, dst: bytes, sport: int, dport: int, data: bytes) -> bytes:
    ip = _IP.pack(0x45, 0, 28 + len(data), 0, 0, 64, 17, 0, src, dst)
    return _ETH + ip + _UDP.pack(sport, dport, 8 + len(data), 0) + data


def _client_hello(host: bytes) -> bytes:
    sni = struct.pack("!HHHBH", 0, len(host) + 5, len(host) + 3, 0, len(host)) + host
    body = b"\x03\x03" + bytes(32) + b"\x00" + b"\x00\x02\x13\x01" + b"\x01\x00" + struct.pack("!H", len(sni)) + sni
    hs = b"\x01" + struct.pack("!I", len(body))[1:] + body
    return b"\x16\x03\x01" + struct.pack("!H", len(hs)) + hs


def _dns_query(ident: int, name: bytes) -> bytes:
    q = b"".join(bytes([len(p)]) + p for p in name.split(b".")) + b"\x00\x00\x01\x00\x01"
    return struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0) + q


class _Conversation:
    """The application messages of one connection: [(direction, bytes)], client first."""

    def __init__(self, rng: np.random.Generator, pool: bytes, n: int) -> None:
        self.rng, self.pool, self.n = rng, pool, n

    def random(self, size: int) -> bytes:
        at = int(self.rng.integers(0, len(self.pool) - size))
        return self.pool[at:at + size]

    def tls(self) -> list[tuple[int, bytes]]:
        host = b"svc%d.example.net" % (self.n % 500)
        msgs = [(0, _client_hello(host)), (1, b"\x16\x03\x03\x00\x7a" + self.random(122) + b"\x17\x03\x03\x04\x00"
                                          + self.random(1024))]
        for i in range(int(self.rng.integers(4, 14))):
            size = int(self.rng.integers(40, 3000))
            msgs.append((i % 2, b"\x17\x03\x03" + struct.pack("!H", size) + self.random(size)))
        return msgs

    def smtp(self) -> list[tuple[int, bytes]]:
        user, peer = b"user%d" % (self.n % 997), b"peer%d" % (self.n % 991)
        body = b"".join(b"line %d of a plain message about the quarterly numbers, nothing secret\r\n" % i
                        for i in range(int(self.rng.integers(5, 60))))
        return [(1, b"220 mail.example.org ESMTP ready\r\n"), (0, b"EHLO client.example.com\r\n"),
                (1, b"250-mail.example.org\r\n250 8BITMIME\r\n"), (0, b"MAIL FROM:<%s@example.com>\r\n" % user),
                (1, b"250 OK\r\n"), (0, b"RCPT TO:<%s@example.org>\r\n" % peer), (1, b"250 OK\r\n"),
                (0, b"DATA\r\n"), (1, b"354 go ahead\r\n"),
                (0, b"Subject: numbers %d\r\nFrom: %s@example.com\r\n\r\n" % (self.n, user) + body + b".\r\n"),
                (1, b"250 queued\r\n"), (0, b"QUIT\r\n"), (1, b"221 bye\r\n")]

    def http(self) -> list[tuple[int, bytes]]:
        msgs = []
        for i in range(int(self.rng.integers(1, 4))):
            page = b"<html><body>" + b"<p>readable text, row</p>" * int(self.rng.integers(5, 80)) + b"</body></html>"
            msgs.append((0, b"GET /page%d.html HTTP/1.1\r\nHost: www%d.example.com\r\nUser-Agent: bench\r\n\r\n"
                         % (i, self.n % 300)))
            msgs.append((1, b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: %d\r\n\r\n" % len(page)
                         + page))
        return msgs


def _connection(conv: _Conversation, kind: str, cli: bytes, srv: bytes, sport: int) -> list[bytes]:
    dport = {"tls": 443, "smtp": 25, "http": 80}[kind]
    cs, ss = (conv.n * 7919) & 0xFFFFFFFF, (conv.n * 104729) & 0xFFFFFFFF
    pk = [_tcp(cli, srv, sport, dport, cs, 0, 0x02, b""), _tcp(srv, cli, dport, sport, ss, cs + 1, 0x12, b""),
          _tcp(cli, srv, sport, dport, cs + 1, ss + 1, 0x10, b"")]
    seq = [cs + 1, ss + 1]
    ends = [(cli, srv, sport, dport), (srv, cli, dport, sport)]
    for d, data in getattr(conv, kind)():
        a, b, p, q = ends[d]
        for at in range(0, len(data), 1460):
            seg = data[at:at + 1460]
            pk.append(_tcp(a, b, p, q, seq[d], seq[1 - d], 0x18, seg))
            seq[d] += len(seg)
        a, b, p, q = ends[1 - d]
        pk.append(_tcp(a, b, p, q, seq[1 - d], seq[d], 0x10, b""))  # the receiver's ACK
    pk += [_tcp(cli, srv, sport, dport, seq[0], seq[1], 0x11, b""),
           _tcp(srv, cli, dport, sport, seq[1], seq[0] + 1, 0x11, b""),
           _tcp(cli, srv, sport, dport, seq[0] + 1, seq[1] + 1, 0x10, b"")]
    return pk


def write_mixed(path: str, packets: int) -> int:
    """Write exactly `packets` frames to `path` (classic pcap, Ethernet, microseconds); returns the count."""
    rng = np.random.default_rng(packets)
    pool = rng.integers(0, 256, size=1 << 20, dtype=np.uint8).tobytes()
    kinds = ["tls"] * 6 + ["smtp"] * 2 + ["http"] * 2
    n, conn = 0, 0
    t = 1_700_000_000.0
    tmp = path + ".part"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        while n < packets:
            batch = []
            for c in range(CONCURRENT):
                conn += 1
                cli = struct.pack("!I", 0x0A000000 + (conn % 60000) + 1)
                srv = struct.pack("!I", 0xC0A80000 + (c % 250) + 1)
                sport = 1024 + conn % 60000
                conv = _Conversation(rng, pool, conn)
                pk = _connection(conv, kinds[conn % len(kinds)], cli, srv, sport)
                if conn % 5 == 0:
                    name = b"svc%d.example.net" % (conn % 500)
                    pk[1:1] = [_udp(cli, b"\x08\x08\x08\x08", sport, 53, _dns_query(conn & 0xFFFF, name)),
                               _udp(b"\x08\x08\x08\x08", cli, 53, sport,
                                    _dns_query(conn & 0xFFFF, name)[:2] + b"\x81\x80" + bytes(8) + b"\x00")]
                batch.append(pk)
            for i in range(max(len(p) for p in batch)):  # interleave the connections
                for pk in batch:
                    if i < len(pk) and n < packets:
                        t += 0.0001
                        sec = int(t)
                        frame = pk[i]
                        f.write(_REC.pack(sec, int((t - sec) * 1e6), len(frame), len(frame)))
                        f.write(frame)
                        n += 1
    os.replace(tmp, path)
    return n


def cached(packets: int, folder: str = os.path.join("bench", "out")) -> str:
    """The path of the mixed capture with `packets` frames under `folder`, written first if missing."""
    return cached_capture("mixed", packets, write_mixed, folder)


def write_frames(path: str, frames: Iterable[tuple[float, bytes]]) -> int:
    """A classic pcap (Ethernet, microseconds) of the (time, frame) pairs at `path`, written beside it and renamed
    into place when whole; returns the number of frames."""
    count = 0
    with open(path + ".part", "wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for when, frame in frames:
            sec = int(when)
            out.write(_REC.pack(sec, int(round((when - sec) * 1e6)) % 1_000_000, len(frame), len(frame)))
            out.write(frame)
            count += 1
    os.replace(path + ".part", path)
    return count


def cached_capture(kind: str, count: int, write, folder: str) -> str:
    """`folder`/`kind`-`count`.pcap, written by `write(path, count)` first if missing."""
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"{kind}-{count}.pcap")
    if not os.path.exists(path):
        write(path, count)
    return path


def command_line(argv: list[str], default: int, write, cached) -> None:
    """`python -m bench.<capture> COUNT [PATH]`: write the capture (to PATH, else the cached one), print where."""
    count = int(argv[0]) if argv else default
    out = argv[1] if len(argv) > 1 else cached(count)
    if len(argv) > 1:
        write(out, count)
    print(out, os.path.getsize(out))


if __name__ == "__main__":
    command_line(sys.argv[1:], 1_000_000, write_mixed, cached)
