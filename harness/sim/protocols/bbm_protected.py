"""BBM Protected: per-chat keys from a key exchange, per-message AES-256-CTR keys, ECDSA P-521 signatures.

Each party publishes its key-agreement public key (X25519 or P-521) and its ECDSA P-521 signing key
in a signed key-exchange message; both derive the chat key with HKDF from the agreed secret. Each
message gets its own key, HKDF(chat key, nonce, counter); the chat id, counter and nonce travel in
clear in the envelope extension, the ciphertext and signature inside the usual PIN scrambling.
"""
from __future__ import annotations

from harness.blackberry.payloads import (
    agree,
    agreement_public,
    chat_id_for,
    chat_key,
    kex_payload,
    open_protected,
    parse_kex,
    seal_protected,
)


class BbmProtectedParty:
    """One device's BBM Protected state: its keys, and the chats it has keyed."""

    def __init__(self, pin: int, agreement: int, agreement_private: bytes, sign_key) -> None:
        self.pin, self.agreement, self.private, self.sign_key = pin, agreement, agreement_private, sign_key
        self.public = agreement_public(agreement, agreement_private)
        self.chats: dict[int, bytes] = {}  # chat id -> chat key
        self.peer_sign: dict[int, bytes] = {}  # chat id -> the peer's ECDSA public key
        self.events: list = []

    def key_exchange(self, peer_pin: int) -> bytes:
        return kex_payload(chat_id_for(self.pin, peer_pin), self.agreement, self.public, self.sign_key)

    def learn(self, payload: bytes) -> int:
        """Take the peer's key exchange; returns the chat id now keyed."""
        kex = parse_kex(payload)
        if kex is None or not kex["valid"] or kex["agreement"] != self.agreement:
            raise ValueError("bad key exchange")
        self.chats[kex["chat_id"]] = chat_key(agree(self.agreement, self.private, kex["public"]), kex["chat_id"])
        self.peer_sign[kex["chat_id"]] = kex["sig_public"]
        return kex["chat_id"]

    def seal(self, peer_pin: int, counter: int, nonce: bytes, plaintext: bytes) -> tuple[bytes, bytes]:
        cid = chat_id_for(self.pin, peer_pin)
        return seal_protected(self.chats[cid], cid, counter, nonce, self.agreement, plaintext, self.sign_key)

    def open(self, ext: bytes, inner: bytes) -> bytes:
        cid = int.from_bytes(ext[:8], "big")
        plain = open_protected(self.chats[cid], ext, inner, self.peer_sign.get(cid))
        self.events.append(("bbm-protected", plain))
        return plain
