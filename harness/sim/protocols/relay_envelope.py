"""The device <-> relay routing envelope: a 16-byte clear header, then the body.

The field table below is the single declaration of the format: `encode`/`decode` here and the scapy
layer in harness/wire/layers.py are both built from it. docs/protocols.md describes it for readers.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

MAGIC = 0xBB01
# (field name, struct code, meaning)
HEADER_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("magic", "H", "0xBB01"),
    ("type", "B", "1 data up, 2 data down, 3 ack, 4 keep-alive"),
    ("flags", "B", "bit 0: body encrypted"),
    ("length", "I", "bytes of body after the header"),
    ("pin", "I", "the device's PIN, in clear: the relay routes by it"),
    ("msg_id", "I", "message id, echoed by the ack"),
)
HEADER = struct.Struct(">" + "".join(code for _, code, _ in HEADER_FIELDS))
HEADER_LEN = HEADER.size  # 16

DATA_UP, DATA_DOWN, ACK, KEEPALIVE = 1, 2, 3, 4
FLAG_ENCRYPTED = 0x01


@dataclass(frozen=True)
class Envelope:
    type: int
    pin: int
    msg_id: int
    body: bytes = b""
    flags: int = 0

    def encode(self) -> bytes:
        return HEADER.pack(MAGIC, self.type, self.flags, len(self.body), self.pin, self.msg_id) + self.body


class EnvelopeDecoder:
    """Incremental decoder: feed stream bytes, take whole envelopes."""

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, data: bytes) -> list[Envelope]:
        self._buf += data
        out = []
        while len(self._buf) >= HEADER_LEN:
            magic, type_, flags, length, pin, msg_id = HEADER.unpack_from(self._buf)
            if magic != MAGIC:
                raise ValueError("bad relay envelope magic")
            if len(self._buf) < HEADER_LEN + length:
                break
            out.append(Envelope(type_, pin, msg_id, self._buf[HEADER_LEN:HEADER_LEN + length], flags))
            self._buf = self._buf[HEADER_LEN + length:]
        return out
