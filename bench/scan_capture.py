"""Writes a synthetic port scan: one flow per packet or two, the capture that costs a flow table most per byte.

    python -m bench.scan_capture PROBES [PATH]

A gateway's capture often holds a scan (or a worm, or backscatter): SYNs from one address to many addresses
and ports, most never answered, some refused with a RST. Each probe is a flow of its own, so memory per flow,
not per byte, decides whether such a capture can be read at all. Probes are `INTERVAL` seconds apart (500 a
second); one in ten is refused. Deterministic for a given probe count; frames built with `struct`.
"""
from __future__ import annotations

import os
import struct
import sys
from typing import Iterator

from bench.mixed_capture import _tcp, cached_capture, command_line, write_frames

INTERVAL = 0.002  # seconds between probes
PORTS = (22, 23, 80, 443, 445, 3389, 8080)
_SYN, _RST_ACK = 0x02, 0x14


def write_scan(path: str, probes: int) -> int:
    """`probes` SYNs from 10.0.0.1 to 172.16.0.0/12 (one address each, a port from PORTS), every tenth answered
    by a RST; returns the number of frames written."""
    return write_frames(path, _scan(probes))


def _scan(probes: int) -> Iterator[tuple[float, bytes]]:
    scanner = bytes((10, 0, 0, 1))
    for i in range(probes):
        target = struct.pack("!I", (172 << 24) | (16 << 16) | (i & 0xFFFFF))
        sport, dport, seq = 40000 + i % 20000, PORTS[i % len(PORTS)], (i * 2654435761) & 0xFFFFFFFF
        t = 1_700_000_000 + i * INTERVAL
        yield t, _tcp(scanner, target, sport, dport, seq, 0, _SYN, b"")
        if i % 10 == 9:
            yield t + 0.0003, _tcp(target, scanner, dport, sport, 0, seq + 1, _RST_ACK, b"")


def frames(probes: int) -> int:
    """Frames in the scan of `probes` probes: each probe, and a RST for every tenth."""
    return probes + probes // 10


def cached(probes: int, folder: str = os.path.join("bench", "out")) -> str:
    """The path of the scan capture with `probes` probes under `folder`, written first if missing."""
    return cached_capture("scan", probes, write_scan, folder)


if __name__ == "__main__":
    command_line(sys.argv[1:], 400_000, write_scan, cached)
