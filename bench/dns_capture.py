"""Writes a gateway's DNS: answered queries, each from a new source port, the capture that keeps UDP flows open.

    python -m bench.dns_capture QUERIES [PATH]

A resolver's or gateway's capture is mostly small UDP exchanges: a client picks a fresh source port for every
query (RFC 5452), so each query and its answer is a flow of its own that nothing closes; only an idle timeout
ends it. How long the flow table keeps them decides memory on a long capture. Queries are `INTERVAL` seconds
apart (200 a second: 120,000 are ten minutes) from 4,999 clients to one resolver, each answered 10 ms later.
Deterministic for a given query count; frames built with `struct`.
"""
from __future__ import annotations

import os
import struct
import sys
from typing import Iterator

from bench.mixed_capture import _dns_query, _udp, cached_capture, command_line, write_frames

INTERVAL = 0.005  # seconds between queries
CLIENTS = 4999  # prime to the port cycle, so a (client, port) pair does not come back within the capture
_RESOLVER = bytes((10, 1, 0, 53))
_NAMES = (b"www.example.com", b"mail.example.org", b"api.example.net", b"cdn.example.com")


def write_dns(path: str, queries: int) -> int:
    """`queries` A queries from 10.2.0.0/16 to 10.1.0.53, each answered with one address; returns frames."""
    return write_frames(path, _exchanges(queries))


def _exchanges(queries: int) -> Iterator[tuple[float, bytes]]:
    for i in range(queries):
        client = struct.pack("!I", (10 << 24) | (2 << 16) | (i % CLIENTS))
        sport = 1024 + (i * 7919) % 60000
        query = _dns_query(i & 0xFFFF, _NAMES[i % len(_NAMES)])
        answer = (query[:2] + b"\x81\x80\x00\x01\x00\x01\x00\x00\x00\x00" + query[12:]
                  + b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x0e\x10\x00\x04" + bytes((93, 184, 216, i & 0xFF)))
        t = 1_700_000_000 + i * INTERVAL
        yield t, _udp(client, _RESOLVER, sport, 53, query)
        yield t + 0.01, _udp(_RESOLVER, client, 53, sport, answer)


def frames(queries: int) -> int:
    """Frames in the capture of `queries` queries: each query and its answer."""
    return 2 * queries


def cached(queries: int, folder: str = os.path.join("bench", "out")) -> str:
    """The path of the DNS capture with `queries` queries under `folder`, written first if missing."""
    return cached_capture("dns", queries, write_dns, folder)


if __name__ == "__main__":
    command_line(sys.argv[1:], 120_000, write_dns, cached)
