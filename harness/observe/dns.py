"""DNS question names from a datagram, parsed defensively.

Part of the observe tier: it sees only observed flows, never the simulator or its truth.
"""
from __future__ import annotations

import struct


def parse_dns_question(dgram: bytes) -> str | None:
    """The first question name of a plausible DNS message, or None."""
    if len(dgram) < 17:
        return None
    _, flags, qd, an, ns, ar = struct.unpack_from(">HHHHHH", dgram)
    if (flags >> 11) & 0xF not in (0, 1, 2, 4, 5) or not 1 <= qd <= 4 or max(an, ns, ar) > 256:
        return None
    labels, pos = [], 12
    while True:
        if pos >= len(dgram):
            return None
        n = dgram[pos]
        if n == 0:
            pos += 1
            break
        if n > 63 or pos + 1 + n > len(dgram):
            return None
        labels.append(dgram[pos + 1:pos + 1 + n])
        pos += 1 + n
        if sum(len(x) + 1 for x in labels) > 255:
            return None
    if pos + 4 > len(dgram):
        return None
    qclass = struct.unpack_from(">H", dgram, pos + 2)[0] & 0x7FFF
    if qclass not in (1, 3, 4, 255):
        return None
    try:
        return ".".join(x.decode("ascii") for x in labels).lower() or "."
    except UnicodeDecodeError:
        return None
