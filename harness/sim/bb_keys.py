"""The BlackBerry systems' keys, deterministic from the scenario seed (and the one global PIN key).

Which key exists where: every device holds the global PIN key (the same on every BlackBerry in the
world) or its organisation's PIN key; each device shares a transport key with its BES (set at
activation); the BES authenticates to the relay with its SRP id and SRP key; each BBM Protected user
has a key-agreement key and an ECDSA P-521 signing key; with the escrow back door the state holds an
escrow key. Material comes from harness.sim.rng.derive_bytes; no cipher is applied here.
"""
from __future__ import annotations

from functools import lru_cache

from harness.blackberry import ciphers
from harness.blackberry.formats import AGREE_X25519, MAIL_AES_CBC
from harness.sim.rng import derive_bytes, substream

# One key shared by every device, whatever the scenario: that is what "global" means.
GLOBAL_PIN_KEY = derive_bytes(0, 16, "blackberry", "global-pin-key")


def org_pin_key(seed: int, domain: str) -> bytes:
    return derive_bytes(seed, 16, "blackberry", "org-pin-key", domain)


def transport_key(seed: int, device: str, cipher: int) -> bytes:
    """The device transport key: AES-256 (32 bytes), or two-key Triple DES (16 bytes) on legacy installs."""
    return derive_bytes(seed, 32 if cipher == MAIL_AES_CBC else 16, "blackberry", "transport-key", device)


def escrow_key(seed: int) -> bytes:
    return derive_bytes(seed, 32, "blackberry", "escrow-key")


def srp_key(seed: int, enterprise: str) -> bytes:
    return derive_bytes(seed, 32, "blackberry", "srp-key", enterprise)


def srp_id(seed: int, enterprise: str) -> str:
    return "S" + str(int(substream(seed, "blackberry", "srp-id", enterprise).integers(10**7, 10**8)))


def message_key(seed: int, cipher: int, message_id: str, holder: str) -> tuple[bytes, bytes]:
    """(message key, IV) for one BES mail sealed for one device."""
    key = derive_bytes(seed, 32 if cipher == MAIL_AES_CBC else 16, "blackberry", "mail-key", message_id, holder)
    iv = derive_bytes(seed, 16 if cipher == MAIL_AES_CBC else 8, "blackberry", "mail-iv", message_id, holder)
    return key, iv


def agreement_private(seed: int, device: str, agreement: int) -> bytes:
    """A BBM Protected key-agreement private key: X25519 (32 bytes) or a P-521 scalar (66 bytes)."""
    return derive_bytes(seed, 32 if agreement == AGREE_X25519 else 66, "blackberry", "bbm-agreement", device)


@lru_cache(maxsize=4096)
def signing_key(seed: int, device: str):
    """The device's ECDSA P-521 signing key for BBM Protected."""
    return ciphers.p521_private(derive_bytes(seed, 66, "blackberry", "bbm-signing", device))
