"""The relay envelope as a passive tap reads it: magic BB 01, type, flags, length, PIN, message id.

Part of the observe tier: it sees only observed flows, never the simulator or its truth.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

RELAY_MAGIC = b"\xbb\x01"
RELAY_HEADER = struct.Struct(">2sBBIII")
RELAY_HEADER_LEN = RELAY_HEADER.size  # 16
RELAY_TYPES = {1: "data-up", 2: "data-down", 3: "ack", 4: "keepalive"}
RELAY_DATA_TYPES = frozenset((1, 2))
RELAY_MAX_BODY = 1 << 24


@dataclass(frozen=True)
class RelayEnvelope:
    offset: int  # stream offset of the header
    type: int
    flags: int
    length: int  # declared body length
    pin: int
    msg_id: int
    complete: bool

    @property
    def body_offset(self) -> int:
        return self.offset + RELAY_HEADER_LEN

    @property
    def end(self) -> int:
        return self.offset + RELAY_HEADER_LEN + self.length

    @property
    def is_data(self) -> bool:
        return self.type in RELAY_DATA_TYPES


def _relay_header_at(data: bytes, pos: int) -> tuple | None:
    if pos + RELAY_HEADER_LEN > len(data) or data[pos:pos + 2] != RELAY_MAGIC:
        return None
    fields = RELAY_HEADER.unpack_from(data, pos)
    if fields[1] not in RELAY_TYPES or fields[3] > RELAY_MAX_BODY:
        return None
    return fields


def relay_envelopes(data: bytes, start: int = 0) -> list[RelayEnvelope]:
    """Back-to-back relay envelopes from `start` until the framing stops (or the stream ends)."""
    out: list[RelayEnvelope] = []
    pos = start
    while (fields := _relay_header_at(data, pos)) is not None:
        _, etype, flags, length, pin, msg_id = fields
        out.append(RelayEnvelope(pos, etype, flags, length, pin, msg_id,
                                 pos + RELAY_HEADER_LEN + length <= len(data)))
        pos += RELAY_HEADER_LEN + length
    return out


def find_relay_start(data: bytes, scan: int = 1 << 16) -> int | None:
    """Offset where relay framing starts: 0, or (a capture that began mid-stream) the first magic
    followed by a second envelope or the end of the stream."""
    if _relay_header_at(data, 0) is not None:
        return 0
    pos, stop = 0, min(len(data), scan)
    while (pos := data.find(RELAY_MAGIC, pos + 1, stop)) >= 0:
        envs = relay_envelopes(data, pos)
        if len(envs) >= 2 or (len(envs) == 1 and envs[0].end == len(data)):
            return pos
    return None
