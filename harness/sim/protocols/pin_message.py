"""PIN-to-PIN messages and consumer BBM: "scrambled, but not encrypted" with a shared Triple DES PIN key.

Every device carries the same global PIN key unless its organisation set its own; a PIN message goes
device -> relay -> device (no BES), routed by the destination PIN, which travels in clear. The same
scrambling carries BBM chats, their delivered/read receipts and presence updates.
"""
from __future__ import annotations

from harness.blackberry.formats import PIN_BBM_CHAT, PIN_MESSAGE
from harness.blackberry.payloads import scramble, unscramble


def pin_text(sender: str, recipient: str, body: str, subject: str | None = None) -> bytes:
    """The scrambled plaintext of a PIN message or BBM chat: From/To(/Subject) lines, a blank line, the body."""
    head = [f"From: {sender}", f"To: {recipient}"] + ([f"Subject: {subject}"] if subject is not None else [])
    return ("\r\n".join(head) + "\r\n\r\n" + body).encode()


class PinEndpoint:
    """A device's PIN messaging: scramble outgoing bodies, unscramble incoming ones."""

    def __init__(self, pin: int, pin_key: bytes) -> None:
        self.pin, self.pin_key = pin, pin_key
        self.events: list = []

    def send(self, kind: int, text: bytes, iv: bytes, ref: int = 0) -> bytes:
        return scramble(self.pin_key, iv, kind, text, ref)

    def receive(self, body: bytes) -> tuple[int, int, bytes]:
        kind, ref, text = unscramble(self.pin_key, body)
        self.events.append(("pin" if kind == PIN_MESSAGE else "bbm" if kind == PIN_BBM_CHAT else kind, ref, text))
        return kind, ref, text
