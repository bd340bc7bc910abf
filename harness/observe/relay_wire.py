"""The relay envelope as a passive tap reads it: magic BB 01, type, flags, length, PIN, message id.

Version 2 (magic BB 02, the BlackBerry services) adds the peer PIN, the service id and a clear
extension; the SRP link between an enterprise BES and the relay carries version-2 envelopes inside
SRP frames (magic "SR"). The layouts mirror harness/sim/protocols/relay_envelope.py and
harness/blackberry/formats.py (tests/blackberry check that they agree).

Part of the observe tier: it sees only observed flows, never the simulator or its truth.
"""
from __future__ import annotations

import re
import struct
from dataclasses import dataclass

RELAY_MAGIC = b"\xbb\x01"
RELAY_HEADER = struct.Struct(">2sBBIII")
RELAY_HEADER_LEN = RELAY_HEADER.size  # 16
RELAY_TYPES = {1: "data-up", 2: "data-down", 3: "ack", 4: "keepalive"}
RELAY_DATA_TYPES = frozenset((1, 2))
RELAY_MAX_BODY = 1 << 24
RELAY_MAGIC_V2 = b"\xbb\x02"
RELAY_HEADER_V2 = struct.Struct(">2sBBIIIIBBH")
RELAY_HEADER_V2_LEN = RELAY_HEADER_V2.size  # 24
RELAY_TYPES_V2 = {**RELAY_TYPES, 5: "receipt", 6: "presence", 7: "key-exchange"}
RELAY_SERVICES = {0: "control", 1: "bes-mail", 2: "pin", 3: "bbm", 4: "bbm-protected"}
SRP_MAGIC = b"SR"
SRP_HEADER = struct.Struct(">2sBBII")
SRP_HEADER_LEN = SRP_HEADER.size  # 12
SRP_TYPES = {1: "challenge", 2: "response", 3: "auth-ok", 4: "auth-fail", 5: "data", 6: "data-ack",
             7: "keep-alive", 8: "keep-alive-ack"}
SRP_DATA = 5


@dataclass(frozen=True)
class RelayEnvelope:
    offset: int  # stream offset of the header
    type: int
    flags: int
    length: int  # declared body length
    pin: int
    msg_id: int
    complete: bool
    version: int = 1
    peer_pin: int = 0  # version 2: the other device's PIN (PIN-to-PIN, BBM)
    service: int = 0  # version 2: RELAY_SERVICES
    ext_len: int = 0  # version 2: clear extension bytes between header and body
    header_len: int = RELAY_HEADER_LEN  # bytes before the body (SRP frame header, envelope header, extension)
    inner_offset: int | None = None  # inside an SRP frame: stream offset of the envelope header
    srp_type: int | None = None  # carried in an SRP frame of this type

    @property
    def envelope_offset(self) -> int:
        return self.offset if self.inner_offset is None else self.inner_offset

    @property
    def ext_offset(self) -> int:
        return self.envelope_offset + (RELAY_HEADER_V2_LEN if self.version == 2 else RELAY_HEADER_LEN)

    @property
    def body_offset(self) -> int:
        return self.offset + self.header_len

    @property
    def end(self) -> int:
        return self.offset + self.header_len + self.length

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


def relay_envelope_at(data: bytes, pos: int) -> RelayEnvelope | None:
    """The version-1 or version-2 envelope whose header starts at `pos`, or None."""
    if data[pos:pos + 2] == RELAY_MAGIC_V2:
        if pos + RELAY_HEADER_V2_LEN > len(data):
            return None
        _, etype, flags, length, pin, peer, msg_id, service, ext_len, reserved = RELAY_HEADER_V2.unpack_from(data, pos)
        if etype not in RELAY_TYPES_V2 or length > RELAY_MAX_BODY or ext_len > length or reserved:
            return None
        return RelayEnvelope(pos, etype, flags, length - ext_len, pin, msg_id,
                             pos + RELAY_HEADER_V2_LEN + length <= len(data), 2, peer, service, ext_len,
                             RELAY_HEADER_V2_LEN + ext_len)
    fields = _relay_header_at(data, pos)
    if fields is None:
        return None
    _, etype, flags, length, pin, msg_id = fields
    return RelayEnvelope(pos, etype, flags, length, pin, msg_id, pos + RELAY_HEADER_LEN + length <= len(data))


def relay_envelopes(data: bytes, start: int = 0) -> list[RelayEnvelope]:
    """Back-to-back relay envelopes from `start` until the framing stops (or the stream ends)."""
    out: list[RelayEnvelope] = []
    pos = start
    while (env := relay_envelope_at(data, pos)) is not None:
        out.append(env)
        pos = env.end
    return out


# Both magics in one pass of a regex that starts with a literal (the engine seeks it at C speed,
# faster than bytes.find with a two-byte needle); two matches never overlap (no magic holds 0xBB twice).
_RELAY_MAGICS = re.compile(rb"\xbb[\x01\x02]")  # RELAY_MAGIC, RELAY_MAGIC_V2
_SRP_MAGIC = re.compile(rb"SR")


def find_relay_start(data: bytes, scan: int = 1 << 16) -> int | None:
    """Offset where relay framing starts: 0, or (a capture that began mid-stream) the first magic
    followed by a second envelope or the end of the stream (version-1 magics tried first)."""
    if relay_envelope_at(data, 0) is not None:
        return 0
    found = [(m.group(), m.start()) for m in _RELAY_MAGICS.finditer(data, 1, min(len(data), scan))]
    for magic in (RELAY_MAGIC, RELAY_MAGIC_V2):
        for at, pos in found:
            if at != magic:
                continue
            envs = relay_envelopes(data, pos)
            if len(envs) >= 2 or (len(envs) == 1 and envs[0].end == len(data)):
                return pos
    return None


# --- the SRP link (enterprise BES <-> relay) ---------------------------------------------------
@dataclass(frozen=True)
class SrpFrame:
    offset: int
    type: int
    length: int
    seq: int
    complete: bool

    @property
    def body_offset(self) -> int:
        return self.offset + SRP_HEADER_LEN

    @property
    def end(self) -> int:
        return self.offset + SRP_HEADER_LEN + self.length


def srp_frame_at(data: bytes, pos: int) -> SrpFrame | None:
    if pos + SRP_HEADER_LEN > len(data) or data[pos:pos + 2] != SRP_MAGIC:
        return None
    _, ftype, flags, length, seq = SRP_HEADER.unpack_from(data, pos)
    if ftype not in SRP_TYPES or flags or length > RELAY_MAX_BODY:
        return None
    return SrpFrame(pos, ftype, length, seq, pos + SRP_HEADER_LEN + length <= len(data))


def srp_frames(data: bytes, start: int = 0) -> list[SrpFrame]:
    out: list[SrpFrame] = []
    pos = start
    while (frame := srp_frame_at(data, pos)) is not None:
        out.append(frame)
        pos = frame.end
    return out


def find_srp_start(data: bytes, scan: int = 1 << 16) -> int | None:
    """Offset where SRP framing starts: 0, or the first "SR" followed by a second frame or the stream's end."""
    if srp_frame_at(data, 0) is not None:
        return 0
    for m in _SRP_MAGIC.finditer(data, 1, min(len(data), scan)):  # "SR" never overlaps itself
        pos = m.start()
        frames = srp_frames(data, pos)
        if len(frames) >= 2 or (len(frames) == 1 and frames[0].end == len(data)):
            return pos
    return None


def srp_envelopes(data: bytes, start: int = 0) -> list[RelayEnvelope]:
    """The SRP frames from `start` as envelopes: a data frame is the device envelope it carries
    (offset and header_len cover the frame header); other frames are control (type 0, 3 or 4)."""
    out: list[RelayEnvelope] = []
    for f in srp_frames(data, start):
        inner = relay_envelope_at(data, f.body_offset) if f.type == SRP_DATA else None
        if inner is not None and inner.end == f.end:
            out.append(RelayEnvelope(f.offset, inner.type, inner.flags, inner.length, inner.pin, inner.msg_id,
                                     f.complete, inner.version, inner.peer_pin, inner.service, inner.ext_len,
                                     SRP_HEADER_LEN + inner.header_len, f.body_offset, f.type))
        else:
            ctype = {6: 3, 7: 4, 8: 4}.get(f.type, 0)
            out.append(RelayEnvelope(f.offset, ctype, 0, f.length, 0, f.seq, f.complete, 2,
                                     header_len=SRP_HEADER_LEN, srp_type=f.type))
    return out
