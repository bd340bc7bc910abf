"""Write frames to a classic pcap with scapy's writer: little-endian, microseconds, Ethernet, atomically."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from scapy.utils import PcapWriter

LINKTYPE_ETHERNET = 1


def write_pcap(path: str | Path, frames: Iterable[tuple[float, bytes]]) -> int:
    """Write (time, frame bytes) records to `path` via a temp file + rename; returns the record count."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    n = 0
    try:
        writer = PcapWriter(str(tmp), linktype=LINKTYPE_ETHERNET, endianness="<", sync=False, nano=False)
        writer.write_header(None)
        for t, frame in frames:
            sec = int(t)
            usec = int(round((t - sec) * 1e6))
            if usec >= 1_000_000:
                sec, usec = sec + 1, usec - 1_000_000
            writer.write_packet(frame, sec=sec, usec=usec, caplen=len(frame), wirelen=len(frame))
            n += 1
        writer.close()
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return n
