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


# --- version 2 (magic 0xBB02): what the BlackBerry services carry in clear ----------------------
# A 24-byte header; `length` counts what follows it: `ext_len` bytes of clear extension (BBM
# Protected keying material), then the body. Version 1 above stays as it was for `bes-relay`.
MAGIC_V2 = 0xBB02
HEADER_FIELDS_V2: tuple[tuple[str, str, str], ...] = (
    ("magic", "H", "0xBB02"),
    ("type", "B", "1 data up, 2 data down, 3 ack, 4 keep-alive, 5 receipt, 6 presence, 7 key exchange"),
    ("flags", "B", "bit 0: body encrypted; bit 1: body compressed before encryption"),
    ("length", "I", "bytes after the header: extension, then body"),
    ("pin", "I", "the PIN of the device on this connection, in clear: the relay routes by it"),
    ("peer_pin", "I", "the other device's PIN for PIN-to-PIN and BBM (in clear), 0 for BES mail"),
    ("msg_id", "I", "message id, echoed by the ack and named by receipts"),
    ("service", "B", "0 control, 1 BES e-mail, 2 PIN, 3 BBM, 4 BBM Protected"),
    ("ext_len", "B", "bytes of clear extension after the header (BBM Protected keying material)"),
    ("reserved", "H", "0"),
)
HEADER_V2 = struct.Struct(">" + "".join(code for _, code, _ in HEADER_FIELDS_V2))
HEADER_V2_LEN = HEADER_V2.size  # 24
RECEIPT, PRESENCE, KEY_EXCHANGE = 5, 6, 7
FLAG_COMPRESSED = 0x02


@dataclass(frozen=True)
class EnvelopeV2:
    type: int
    pin: int
    msg_id: int
    body: bytes = b""
    flags: int = 0
    peer_pin: int = 0
    service: int = 0
    ext: bytes = b""

    def encode(self) -> bytes:
        return HEADER_V2.pack(MAGIC_V2, self.type, self.flags, len(self.ext) + len(self.body), self.pin,
                              self.peer_pin, self.msg_id, self.service, len(self.ext), 0) + self.ext + self.body


class EnvelopeV2Decoder:
    """Incremental decoder for version-2 envelopes."""

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, data: bytes) -> list[EnvelopeV2]:
        self._buf += data
        out = []
        while len(self._buf) >= HEADER_V2_LEN:
            magic, type_, flags, length, pin, peer, msg_id, service, ext_len, _ = HEADER_V2.unpack_from(self._buf)
            if magic != MAGIC_V2 or ext_len > length:
                raise ValueError("bad relay envelope (version 2) header")
            if len(self._buf) < HEADER_V2_LEN + length:
                break
            rest = self._buf[HEADER_V2_LEN:HEADER_V2_LEN + length]
            out.append(EnvelopeV2(type_, pin, msg_id, rest[ext_len:], flags, peer, service, rest[:ext_len]))
            self._buf = self._buf[HEADER_V2_LEN + length:]
        return out
