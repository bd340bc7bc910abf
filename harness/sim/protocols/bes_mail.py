"""BES e-mail end to end: the device and the enterprise server each seal and open mail payloads.

Compress, then encrypt with a fresh per-message key (AES-256-CBC, or two-key Triple DES CBC on old
installations); the message key travels wrapped with the device's transport key (set at
activation), and, with the escrow back door, also wrapped with the state's escrow key. The relay in
between cannot open anything: only the device and its BES hold the transport key.
"""
from __future__ import annotations

from harness.blackberry.formats import MAIL_3DES_CBC, MAIL_AES_CBC
from harness.blackberry.payloads import (
    mail_key_from_transport,
    open_mail_with_key,
    parse_bes_mail,
    seal_bes_mail,
)

KEY_BYTES = {MAIL_AES_CBC: 32, MAIL_3DES_CBC: 16}
IV_BYTES = {MAIL_AES_CBC: 16, MAIL_3DES_CBC: 8}


def open_mail(body: bytes, transport_key: bytes) -> bytes:
    parts = parse_bes_mail(body)
    if parts is None:
        raise ValueError("not a BES mail payload")
    return open_mail_with_key(parts, mail_key_from_transport(parts, transport_key))


class BesMailDevice:
    """A handset: seals what its user sends, opens what it receives (one transport key)."""

    def __init__(self, transport_key: bytes, cipher: int = MAIL_AES_CBC, escrow_key: bytes | None = None) -> None:
        self.transport_key, self.cipher, self.escrow_key = transport_key, cipher, escrow_key
        self.events: list = []

    def seal(self, message: bytes, message_key: bytes, iv: bytes) -> bytes:
        return seal_bes_mail(message, cipher=self.cipher, message_key=message_key, iv=iv,
                             transport_key=self.transport_key, escrow_key=self.escrow_key)

    def open(self, body: bytes) -> bytes:
        message = open_mail(body, self.transport_key)
        self.events.append(("mail", message))
        return message


class BesServer:
    """The enterprise server: holds every activated device's transport key, re-seals mail for the recipient."""

    def __init__(self, transport_keys: dict[int, bytes], cipher: int = MAIL_AES_CBC,
                 escrow_key: bytes | None = None) -> None:
        self.transport_keys, self.cipher, self.escrow_key = transport_keys, cipher, escrow_key
        self.events: list = []

    def receive(self, from_pin: int, body: bytes) -> bytes:
        message = open_mail(body, self.transport_keys[from_pin])
        self.events.append(("mail", from_pin, message))
        return message

    def deliver(self, to_pin: int, message: bytes, message_key: bytes, iv: bytes) -> bytes:
        return seal_bes_mail(message, cipher=self.cipher, message_key=message_key, iv=iv,
                             transport_key=self.transport_keys[to_pin], escrow_key=self.escrow_key)
