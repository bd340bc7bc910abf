"""Writes one large transfer: a single TCP flow of many full segments, the capture that costs most per flow.

    python -m bench.transfer_capture SEGMENTS [PATH]

A backup, a download or a video stream on a gateway is one flow of hundreds of thousands of packets. Its
payload is capped (STREAM_CAP), but the time and offset of every packet are kept for timing analysis (up to
MAX_CHUNKS), in every `--jobs` process, so it decides memory the way a scan's flows do. The client sends
SEGMENTS segments of 1,460 bytes, 0.1 ms apart; the server acknowledges every second one. 1,000,000 segments
are 1.5 GB. Deterministic; frames built with `struct`.
"""
from __future__ import annotations

import os
import sys
from typing import Iterator

from bench.mixed_capture import _tcp, cached_capture, command_line, write_frames

SEGMENT = 1460  # bytes of payload in each data segment
INTERVAL = 1e-4  # seconds between segments
_CLIENT, _SERVER = bytes((10, 0, 0, 1)), bytes((10, 9, 0, 1))
_SYN, _SYN_ACK, _PSH_ACK, _ACK = 0x02, 0x12, 0x18, 0x10


def write_transfer(path: str, segments: int) -> int:
    """A handshake, then `segments` data segments from 10.0.0.1:40000 to 10.9.0.1:443, an ACK for every second
    one; returns the number of frames written."""
    return write_frames(path, _transfer(segments))


def _transfer(segments: int) -> Iterator[tuple[float, bytes]]:
    data = bytes(range(256)) * (SEGMENT // 256 + 1)
    t = 1_700_000_000.0
    yield t, _tcp(_CLIENT, _SERVER, 40000, 443, 1000, 0, _SYN, b"")
    yield t + 0.001, _tcp(_SERVER, _CLIENT, 443, 40000, 5000, 1001, _SYN_ACK, b"")
    for j in range(segments):
        t += INTERVAL
        seq = 1001 + j * SEGMENT
        yield t, _tcp(_CLIENT, _SERVER, 40000, 443, seq, 5001, _PSH_ACK, data[:SEGMENT])
        if j % 2:
            yield t + INTERVAL / 2, _tcp(_SERVER, _CLIENT, 443, 40000, 5001, seq + SEGMENT, _ACK, b"")


def frames(segments: int) -> int:
    """Frames in the capture of `segments` segments: the handshake, each segment, an ACK for every second."""
    return 2 + segments + segments // 2


def cached(segments: int, folder: str = os.path.join("bench", "out")) -> str:
    """The path of the transfer capture with `segments` segments under `folder`, written first if missing."""
    return cached_capture("transfer", segments, write_transfer, folder)


if __name__ == "__main__":
    command_line(sys.argv[1:], 1_000_000, write_transfer, cached)
