"""Scapy layers for the BlackBerry wire formats, built from the same field tables the simulator packs.

`RelayEnvelopeV1`/`RelayEnvelopeV2` (device <-> relay, harness/sim/protocols/relay_envelope.py),
`SrpFrame` (BES <-> relay, harness/blackberry/formats.py), `BesMailPayload` and `BbmpKeying` (inside
envelopes). `bind_blackberry(port)` binds them to TCP so that `Ether(frame)` dissects a segment that
starts on an envelope or frame boundary field by field; other segments stay Raw.

    from scapy.layers.l2 import Ether
    from harness.wire.layers import bind_blackberry, RelayEnvelopeV2
    bind_blackberry()
    Ether(frame)[RelayEnvelopeV2].pin
"""
from __future__ import annotations

from scapy.fields import (
    ByteField,
    IntField,
    LongField,
    PacketLenField,
    ShortField,
    StrFixedLenField,
    StrField,
    StrLenField,
    XByteField,
    XIntField,
    XShortField,
)
from scapy.packet import Packet, Raw, bind_layers

from harness.blackberry.formats import BBMP_KEYING, BES_MAIL, SRP_FRAME, FieldTable
from harness.sim.protocols.relay_envelope import HEADER_FIELDS, HEADER_FIELDS_V2

DEFAULT_PORT = 3101
_HEX = {"magic", "pin", "peer_pin", "flags"}


def _fields(rows) -> list:
    """Scapy fields for (name, struct code, meaning) rows: the one declaration, turned into a layer."""
    out = []
    for name, code, _ in rows:
        if code == "B":
            out.append(XByteField(name, 0) if name in _HEX else ByteField(name, 0))
        elif code == "H":
            out.append(XShortField(name, 0) if name in _HEX else ShortField(name, 0))
        elif code == "I":
            out.append(XIntField(name, 0) if name in _HEX else IntField(name, 0))
        elif code == "Q":
            out.append(LongField(name, 0))
        elif code.endswith("s"):
            out.append(StrFixedLenField(name, b"", int(code[:-1])))
        else:
            raise ValueError(f"no scapy field for struct code {code!r}")
    return out


def _rows(table: FieldTable):
    return table.fields


def _next_layer(payload: bytes):
    """The layer a byte string starts with: an envelope (either version), an SRP frame, or Raw."""
    head = payload[:2]
    if head == b"\xbb\x01":
        return RelayEnvelopeV1
    if head == b"\xbb\x02":
        return RelayEnvelopeV2
    if head == b"SR":
        return SrpFrame
    return Raw


class BbmpKeying(Packet):
    """BBM Protected keying material carried in clear in the envelope extension."""

    name = "BBM Protected keying"
    fields_desc = _fields(_rows(BBMP_KEYING))

    def extract_padding(self, s):
        return b"", s


class BesMailPayload(Packet):
    """A BES mail body: cipher, flags, the wrapped message key (and escrow copy), IV, ciphertext."""

    name = "BES mail payload"
    fields_desc = _fields(_rows(BES_MAIL)) + [
        StrLenField("wrapped", b"", length_from=lambda p: p.wrapped_len),
        StrLenField("escrow", b"", length_from=lambda p: p.escrow_len),
        StrLenField("iv", b"", length_from=lambda p: p.iv_len),
        StrField("ciphertext", b""),
    ]


class RelayEnvelopeV1(Packet):
    name = "Relay envelope v1"
    fields_desc = _fields(HEADER_FIELDS)

    def extract_padding(self, s):
        return s[:self.length], s[self.length:]

    def guess_payload_class(self, payload):
        return Raw


class RelayEnvelopeV2(Packet):
    """Header (field table HEADER_FIELDS_V2), clear extension, body; the body is the layer's payload."""

    name = "Relay envelope v2"
    fields_desc = _fields(HEADER_FIELDS_V2) + [
        PacketLenField("ext", None, BbmpKeying, length_from=lambda p: p.ext_len),
    ]

    def extract_padding(self, s):
        body = max(self.length - self.ext_len, 0)
        return s[:body], s[body:]

    def guess_payload_class(self, payload):
        if self.service == 1 and self.type in (1, 2):
            return BesMailPayload
        return Raw


class SrpFrame(Packet):
    """An SRP frame (field table SRP_FRAME); a data frame's body is the device envelope it carries."""

    name = "SRP frame"
    fields_desc = _fields(_rows(SRP_FRAME))

    def extract_padding(self, s):
        return s[:self.length], s[self.length:]

    def guess_payload_class(self, payload):
        return _next_layer(payload) if self.type == 5 else Raw


class BlackBerryStream(Packet):
    """Dispatcher bound to the relay port: picks the layer by the first two bytes."""

    name = "BlackBerry"
    fields_desc = []

    @classmethod
    def dispatch_hook(cls, _pkt=None, *args, **kargs):
        return _next_layer(bytes(_pkt or b""))


def bind_blackberry(port: int = DEFAULT_PORT) -> None:
    from scapy.layers.inet import TCP

    bind_layers(TCP, BlackBerryStream, dport=port)
    bind_layers(TCP, BlackBerryStream, sport=port)
