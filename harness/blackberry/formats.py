"""Byte layouts of the BlackBerry messages, each declared once as a field table.

The framing is our reconstruction from public descriptions (BES Security Technical Overview,
BlackBerry KB10498, the BBM Enterprise security note); docs/protocols.md has a table per message
type. `FieldTable` packs and unpacks a fixed header from its table; the scapy layers in
harness/wire/layers.py are built from the same tables. The device <-> relay routing envelope itself
is declared in harness/sim/protocols/relay_envelope.py (and mirrored for the tap in
harness/observe/relay_wire.py).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass


@dataclass(frozen=True)
class FieldTable:
    """A fixed-size big-endian header: (name, struct code, meaning) rows."""

    name: str
    fields: tuple[tuple[str, str, str], ...]

    @property
    def struct(self) -> struct.Struct:
        return struct.Struct(">" + "".join(code for _, code, _ in self.fields))

    @property
    def size(self) -> int:
        return self.struct.size

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(n for n, _, _ in self.fields)

    def pack(self, **values) -> bytes:
        return self.struct.pack(*(values[n] for n in self.names))

    def unpack(self, data: bytes, offset: int = 0) -> dict | None:
        """The header at `offset` as a dict, or None if `data` is too short."""
        if offset + self.size > len(data):
            return None
        return dict(zip(self.names, self.struct.unpack_from(data, offset)))


# --- SRP: the enterprise BES <-> relay link (TCP 3101) ---------------------------------------------
SRP_MAGIC = 0x5352  # "SR"
SRP_FRAME = FieldTable("srp-frame", (
    ("magic", "H", '0x5352 ("SR")'),
    ("type", "B", "1 challenge, 2 response, 3 auth-ok, 4 auth-fail, 5 data, 6 data-ack, 7 keep-alive, 8 keep-alive-ack"),
    ("flags", "B", "reserved, 0"),
    ("length", "I", "bytes of body after the header"),
    ("seq", "I", "frame sequence number per sender; data-ack echoes the data frame's"),
))
SRP_CHALLENGE, SRP_RESPONSE, SRP_AUTH_OK, SRP_AUTH_FAIL = 1, 2, 3, 4
SRP_DATA, SRP_DATA_ACK, SRP_KEEPALIVE, SRP_KEEPALIVE_ACK = 5, 6, 7, 8
SRP_TYPES = {1: "challenge", 2: "response", 3: "auth-ok", 4: "auth-fail", 5: "data", 6: "data-ack",
             7: "keep-alive", 8: "keep-alive-ack"}
SRP_NONCE_BYTES = 16  # challenge body: the relay's nonce
SRP_ID_BYTES = 10  # response body: SRP id (ASCII, space padded) || HMAC-SHA256(SRP key, nonce || SRP id)
SRP_MAC_BYTES = 32

# --- service payloads inside the envelope body ------------------------------------------------------
SERVICE_CONTROL, SERVICE_BES_MAIL, SERVICE_PIN, SERVICE_BBM, SERVICE_BBM_PROTECTED = 0, 1, 2, 3, 4
SERVICES = {0: "control", 1: "bes-mail", 2: "pin", 3: "bbm", 4: "bbm-protected"}

# BES e-mail: compress (zlib), then encrypt with a per-message key; the key travels wrapped.
BES_MAIL = FieldTable("bes-mail", (
    ("cipher", "B", "1 AES-256-CBC, 2 two-key Triple DES CBC"),
    ("flags", "B", "bit 0: body compressed (zlib) before encryption; bit 1: escrow copy present"),
    ("wrapped_len", "H", "bytes of the message key wrapped with the device transport key"),
    ("escrow_len", "H", "bytes of the message key wrapped with the escrow key (0: none)"),
    ("iv_len", "B", "bytes of IV (16 AES, 8 3DES)"),
    ("reserved", "B", "0"),
))
MAIL_AES_CBC, MAIL_3DES_CBC = 1, 2
MAIL_CIPHERS = {1: "aes-256-cbc", 2: "3des-cbc"}
MAIL_COMPRESSED, MAIL_ESCROW = 0x01, 0x02

# PIN-to-PIN and consumer BBM: the body is iv (8 bytes) || 3DES-CBC(PIN key, PIN_PLAIN || text).
PIN_IV_BYTES = 8
PIN_MAGIC = 0x504E  # "PN": first bytes of every scrambled plaintext
PIN_PLAIN = FieldTable("pin-plain", (
    ("magic", "H", '0x504E ("PN")'),
    ("kind", "B", "1 PIN message, 2 BBM chat, 3 delivered receipt, 4 read receipt, 5 presence, 6 BBM Protected"),
    ("reserved", "B", "0"),
    ("ref", "I", "for receipts: the envelope message id they acknowledge; else 0"),
))
PIN_MESSAGE, PIN_BBM_CHAT, PIN_DELIVERED, PIN_READ, PIN_PRESENCE, PIN_PROTECTED = 1, 2, 3, 4, 5, 6
PIN_KINDS = {1: "pin", 2: "bbm", 3: "delivered", 4: "read", 5: "presence", 6: "bbm-protected"}

# BBM Protected: the part of the keying material that travels in the envelope's clear extension.
BBMP_KEYING = FieldTable("bbmp-keying", (
    ("chat_id", "Q", "the chat the key belongs to"),
    ("counter", "I", "per-chat message counter (HKDF input)"),
    ("nonce", "16s", "per-message nonce (HKDF salt and CTR block)"),
    ("agreement", "B", "1 X25519, 2 ECDH P-521"),
))
AGREE_X25519, AGREE_P521 = 1, 2
AGREEMENTS = {1: "x25519", 2: "p521"}
# Inside the PIN-scrambled body of a Protected message: AES-256-CTR ciphertext || ECDSA P-521 r||s.

# BBM Protected key exchange (envelope type key-exchange): public keys, in clear.
BBMP_KEX = FieldTable("bbmp-kex", (
    ("chat_id", "Q", "the chat being keyed"),
    ("agreement", "B", "1 X25519, 2 ECDH P-521"),
    ("pub_len", "H", "bytes of the key-agreement public key that follows"),
    ("sig_pub_len", "H", "bytes of the ECDSA P-521 public key after it (133)"),
))
# followed by: agreement public key, ECDSA public key, signature (132) over everything before it.
