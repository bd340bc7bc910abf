"""Measures the observe tier's speed on a synthetic capture: reading, decoding and flow building, in records/s.

Run: `.venv/bin/python bench/bench_reader.py [records]` (default 1,000,000). The capture is built with `struct`
in a temporary directory: many interleaved TCP connections (handshake, data both ways, FIN) and some DNS.
"""
from __future__ import annotations

import os
import struct
import sys
import tempfile
import time
from collections import Counter

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from harness.observe import Observer, observe  # noqa: E402
from harness.observe.decode import Decoder  # noqa: E402
from harness.wire.capture_reader import CaptureReader  # noqa: E402

_ETH = b"\x02\x00\x00\x00\x00\x01\x02\x00\x00\x00\x00\x02\x08\x00"
_IP = struct.Struct("!BBHHHBBH4s4s")
_TCP = struct.Struct("!HHIIBBHHH")
_UDP = struct.Struct("!HHHH")
_REC = struct.Struct("<IIII")


def _frame(src: bytes, dst: bytes, sport: int, dport: int, seq: int, ack: int, flags: int, data: bytes) -> bytes:
    tcp = _TCP.pack(sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 5 << 4, flags, 65535, 0, 0)
    ip = _IP.pack(0x45, 0, 20 + len(tcp) + len(data), 0, 0x4000, 64, 6, 0, src, dst)
    return _ETH + ip + tcp + data


def _dns(src: bytes, dst: bytes, sport: int, dport: int, data: bytes) -> bytes:
    udp = _UDP.pack(sport, dport, 8 + len(data), 0)
    ip = _IP.pack(0x45, 0, 20 + len(udp) + len(data), 0, 0, 64, 17, 0, src, dst)
    return _ETH + ip + udp + data


def write_synthetic(path: str, records: int, concurrent: int = 200, segments: int = 20) -> int:
    """Write about `records` frames: `concurrent` TCP connections at a time, `segments` data segments each."""
    n = 0
    t = 1_700_000_000.0
    blob = bytes(range(256)) * 6
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        conn = 0
        while n < records:
            batch = []
            for c in range(concurrent):
                conn += 1
                cli = struct.pack("!I", 0x0A000000 + (conn % 60000) + 1)
                srv = struct.pack("!I", 0xC0A80000 + (c % 250) + 1)
                sport = 1024 + conn % 60000
                cs, ss = (conn * 7919) & 0xFFFFFFFF, (conn * 104729) & 0xFFFFFFFF
                pk = [_frame(cli, srv, sport, 443, cs, 0, 0x02, b""),
                      _frame(srv, cli, 443, sport, ss, cs + 1, 0x12, b""),
                      _frame(cli, srv, sport, 443, cs + 1, ss + 1, 0x10, b"")]
                cs, ss = cs + 1, ss + 1
                for i in range(segments):
                    size = 100 + (i * 97 + conn) % 1300
                    if i % 2:
                        pk.append(_frame(srv, cli, 443, sport, ss, cs, 0x18, blob[:size]))
                        ss += size
                    else:
                        pk.append(_frame(cli, srv, sport, 443, cs, ss, 0x18, blob[:size]))
                        cs += size
                pk += [_frame(cli, srv, sport, 443, cs, ss, 0x11, b""),
                       _frame(srv, cli, 443, sport, ss, cs + 1, 0x11, b""),
                       _frame(cli, srv, sport, 443, cs + 1, ss + 1, 0x10, b""),
                       _dns(cli, srv, sport, 53, b"q" * 40), _dns(srv, cli, 53, sport, b"r" * 120)]
                batch.append(pk)
            for i in range(max(len(p) for p in batch)):  # interleave the connections
                for pk in batch:
                    if i < len(pk) and n < records:
                        t += 0.0001
                        sec = int(t)
                        frame = pk[i]
                        f.write(_REC.pack(sec, int((t - sec) * 1e6), len(frame), len(frame)))
                        f.write(frame)
                        n += 1
    return n


def _best(fn, repeat: int = 3) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> None:
    records = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "synthetic.pcap")
        n = write_synthetic(path, records)
        size = os.path.getsize(path)
        print(f"synthetic capture: {n} records, {size / 1e6:.1f} MB")

        secs, count = _best(lambda: sum(1 for _ in CaptureReader(path).records()))
        print(f"read:                  {secs:6.2f} s  {count / secs:10,.0f} records/s")

        def decode_all() -> int:
            dec = Decoder(Counter())
            return sum(1 for r in CaptureReader(path).records() if dec.decode(r) is not None)

        secs, count = _best(decode_all)
        print(f"read+decode:           {secs:6.2f} s  {n / secs:10,.0f} records/s  ({count} TCP/UDP packets)")

        def flows_all() -> int:
            return sum(1 for _ in Observer([path]).flows())

        secs, count = _best(flows_all, repeat=2)
        print(f"read+decode+flows:     {secs:6.2f} s  {n / secs:10,.0f} records/s  ({count} flows, streamed)")

        secs, obs = _best(lambda: observe([path]), repeat=2)
        print(f"observe():             {secs:6.2f} s  {n / secs:10,.0f} records/s  ({len(obs.flows)} flows kept)")


if __name__ == "__main__":
    main()
