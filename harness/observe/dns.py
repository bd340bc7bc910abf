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


def _read_name(msg: bytes, pos: int, depth: int = 0) -> tuple[str, int] | None:
    """(name, position after it) of a possibly compressed domain name at `pos`, or None."""
    labels: list[bytes] = []
    end = None
    hops = 0
    while True:
        if pos >= len(msg):
            return None
        n = msg[pos]
        if n == 0:
            pos += 1
            break
        if n & 0xC0 == 0xC0:  # compression pointer
            if pos + 1 >= len(msg) or hops > 16:
                return None
            end = pos + 2 if end is None else end
            pos = ((n & 0x3F) << 8) | msg[pos + 1]
            hops += 1
            continue
        if n > 63 or pos + 1 + n > len(msg):
            return None
        labels.append(msg[pos + 1:pos + 1 + n])
        pos += 1 + n
        if sum(len(x) + 1 for x in labels) > 255:
            return None
    try:
        name = ".".join(x.decode("ascii") for x in labels).lower() or "."
    except UnicodeDecodeError:
        return None
    return name, (end if end is not None else pos)


def dns_message_names(dgram: bytes) -> list[str] | None:
    """Every question and answer-record owner name of a plausible DNS (or mDNS) message, or None when
    the bytes do not parse as one. Unlike `parse_dns_question`, answers without questions count."""
    if len(dgram) < 12:
        return None
    _, flags, qd, an, ns, ar = struct.unpack_from(">HHHHHH", dgram)
    if (flags >> 11) & 0xF not in (0, 1, 2, 4, 5) or qd > 16 or max(an, ns, ar) > 256 or qd + an == 0:
        return None
    names, pos = [], 12
    for _ in range(qd):
        got = _read_name(dgram, pos)
        if got is None or got[1] + 4 > len(dgram):
            return None
        names.append(got[0])
        pos = got[1] + 4
    for _ in range(min(an, 32)):
        got = _read_name(dgram, pos)
        if got is None or got[1] + 10 > len(dgram):
            return None
        rdlength = struct.unpack_from(">H", dgram, got[1] + 8)[0]
        if got[1] + 10 + rdlength > len(dgram):
            return None
        names.append(got[0])
        pos = got[1] + 10 + rdlength
    return names


def is_netbios_name(name: str) -> bool:
    """A NetBIOS name in first-level encoding (RFC 1001): 32 letters A-P, as the name service sends."""
    first = name.split(".", 1)[0]
    return len(first) == 32 and all("a" <= ch <= "p" for ch in first)
