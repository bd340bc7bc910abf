"""Sealing and opening the BlackBerry service payloads (the envelope bodies), keys passed in.

The simulator seals with the keys it chose; an analyzer opens with the keys the adversary holds;
both use these functions, so what the adversary can open is exactly what the keys allow. Every
`open_*` raises `OpenError` when the key does not fit (checked: key-wrap integrity, PKCS#7 padding,
the "PN" magic, zlib, the ECDSA signature), never returns garbage as if it were a message.
"""
from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from cryptography.hazmat.primitives.keywrap import InvalidUnwrap

from harness.blackberry import ciphers
from harness.blackberry.formats import (
    AGREE_P521,
    AGREE_X25519,
    BBMP_KEX,
    BBMP_KEYING,
    BES_MAIL,
    MAIL_3DES_CBC,
    MAIL_AES_CBC,
    MAIL_COMPRESSED,
    MAIL_ESCROW,
    PIN_IV_BYTES,
    PIN_MAGIC,
    PIN_PLAIN,
)


class OpenError(ValueError):
    """The key does not open this payload (or the payload is not of this kind)."""


# --- BES e-mail ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class MailParts:
    cipher: int
    flags: int
    wrapped: bytes
    escrow: bytes
    iv: bytes
    ciphertext: bytes


def seal_bes_mail(message: bytes, *, cipher: int, message_key: bytes, iv: bytes, transport_key: bytes,
                  escrow_key: bytes | None = None) -> bytes:
    """Compress, then encrypt under the message key; wrap the key with the device transport key (and
    with the escrow key, when the deployment has the back door)."""
    compressed = zlib.compress(message, 6)
    if cipher == MAIL_AES_CBC:
        ct = ciphers.aes_cbc_encrypt(message_key, iv, compressed)
        wrapped = ciphers.key_wrap(transport_key, message_key)
    elif cipher == MAIL_3DES_CBC:
        ct = ciphers.tdes_cbc_encrypt(message_key, iv, compressed)
        wrapped = ciphers.tdes_ecb(transport_key, message_key)  # the legacy wrap: 3DES-ECB, two blocks
    else:
        raise ValueError(f"unknown BES mail cipher {cipher}")
    escrow = ciphers.key_wrap(escrow_key, message_key) if escrow_key is not None else b""
    flags = MAIL_COMPRESSED | (MAIL_ESCROW if escrow else 0)
    header = BES_MAIL.pack(cipher=cipher, flags=flags, wrapped_len=len(wrapped), escrow_len=len(escrow),
                           iv_len=len(iv), reserved=0)
    return header + wrapped + escrow + iv + ct


def parse_bes_mail(body: bytes) -> MailParts | None:
    """The clear parts of a BES mail payload, or None if `body` is not one."""
    h = BES_MAIL.unpack(body)
    if h is None or h["cipher"] not in (MAIL_AES_CBC, MAIL_3DES_CBC) or h["reserved"] != 0:
        return None
    pos = BES_MAIL.size
    end = pos + h["wrapped_len"] + h["escrow_len"] + h["iv_len"]
    if end > len(body) or h["iv_len"] not in (8, 16):
        return None
    wrapped = body[pos:pos + h["wrapped_len"]]
    pos += h["wrapped_len"]
    escrow = body[pos:pos + h["escrow_len"]]
    pos += h["escrow_len"]
    iv = body[pos:pos + h["iv_len"]]
    return MailParts(h["cipher"], h["flags"], wrapped, escrow, iv, body[end:])


def mail_key_from_transport(parts: MailParts, transport_key: bytes) -> bytes:
    """The message key, unwrapped with a device transport key (unchecked for 3DES: see open_mail_with_key)."""
    try:
        if parts.cipher == MAIL_AES_CBC:
            return ciphers.key_unwrap(transport_key, parts.wrapped)
        if len(parts.wrapped) != 16 or len(transport_key) not in (16, 24):
            raise OpenError("not a legacy wrapped key")
        return ciphers.tdes_ecb(transport_key, parts.wrapped, encrypt=False)
    except (InvalidUnwrap, ValueError) as exc:
        raise OpenError(str(exc) or "wrong key") from None


def mail_key_from_escrow(parts: MailParts, escrow_key: bytes) -> bytes:
    if not parts.escrow:
        raise OpenError("no escrow copy of the message key")
    try:
        return ciphers.key_unwrap(escrow_key, parts.escrow)
    except (InvalidUnwrap, ValueError):
        raise OpenError("wrong escrow key") from None


def open_mail_with_key(parts: MailParts, message_key: bytes) -> bytes:
    """Decrypt and decompress; OpenError unless padding and zlib both check out."""
    try:
        if parts.cipher == MAIL_AES_CBC:
            compressed = ciphers.aes_cbc_decrypt(message_key, parts.iv, parts.ciphertext)
        else:
            compressed = ciphers.tdes_cbc_decrypt(message_key, parts.iv, parts.ciphertext)
        return zlib.decompress(compressed) if parts.flags & MAIL_COMPRESSED else compressed
    except (ValueError, zlib.error) as exc:
        raise OpenError(f"does not decrypt: {exc}") from None


# --- PIN scrambling (PIN-to-PIN, consumer BBM, and the outer layer of BBM Protected) ------------------
def scramble(pin_key: bytes, iv: bytes, kind: int, text: bytes, ref: int = 0) -> bytes:
    """iv || 3DES-CBC(PIN key, iv, PN header || text)."""
    plain = PIN_PLAIN.pack(magic=PIN_MAGIC, kind=kind, reserved=0, ref=ref) + text
    return iv + ciphers.tdes_cbc_encrypt(pin_key, iv, plain)


def unscramble(pin_key: bytes, body: bytes) -> tuple[int, int, bytes]:
    """(kind, ref, text) of a scrambled body; OpenError if the key does not fit."""
    if len(body) < PIN_IV_BYTES + 8:
        raise OpenError("too short for a scrambled body")
    try:
        plain = ciphers.tdes_cbc_decrypt(pin_key, body[:PIN_IV_BYTES], body[PIN_IV_BYTES:])
    except ValueError:
        raise OpenError("wrong PIN key") from None
    h = PIN_PLAIN.unpack(plain)
    if h is None or h["magic"] != PIN_MAGIC:
        raise OpenError("wrong PIN key (no PN header)")
    return h["kind"], h["ref"], plain[PIN_PLAIN.size:]


# --- BBM Protected ------------------------------------------------------------------------------------
def chat_id_for(pin_a: int, pin_b: int) -> int:
    lo, hi = sorted((pin_a, pin_b))
    return int.from_bytes(ciphers.sha256(struct.pack(">II", lo, hi))[:8], "big")


def chat_key(shared_secret: bytes, chat_id: int) -> bytes:
    """The per-chat key from the key-agreement secret (HKDF-SHA256)."""
    return ciphers.hkdf_sha256(shared_secret, None, b"bbm-protected chat key" + struct.pack(">Q", chat_id), 32)


def message_key(chat: bytes, counter: int, nonce: bytes) -> bytes:
    """The per-message AES-256-CTR key: HKDF(chat key, salt = nonce, info = label || counter)."""
    return ciphers.hkdf_sha256(chat, nonce, b"bbm-protected message" + struct.pack(">I", counter), 32)


def seal_protected(chat: bytes, chat_id: int, counter: int, nonce: bytes, agreement: int, plaintext: bytes,
                   sign_key) -> tuple[bytes, bytes]:
    """(clear keying extension, inner payload = AES-256-CTR ciphertext || ECDSA P-521 r||s)."""
    ext = BBMP_KEYING.pack(chat_id=chat_id, counter=counter, nonce=nonce, agreement=agreement)
    ct = ciphers.aes_ctr(message_key(chat, counter, nonce), nonce, plaintext)
    return ext, ct + ciphers.p521_sign(sign_key, ext + ct)


def open_protected(chat: bytes, ext: bytes, inner: bytes, verify_key: bytes | None = None) -> bytes:
    k = BBMP_KEYING.unpack(ext)
    if k is None or len(inner) < ciphers.P521_SIGNATURE_BYTES:
        raise OpenError("not a BBM Protected payload")
    ct, sig = inner[:-ciphers.P521_SIGNATURE_BYTES], inner[-ciphers.P521_SIGNATURE_BYTES:]
    if verify_key is not None and not ciphers.p521_verify(verify_key, ext + ct, sig):
        raise OpenError("bad signature")
    plain = ciphers.aes_ctr(message_key(chat, k["counter"], k["nonce"]), k["nonce"], ct)
    if not plain.startswith(b"From: "):
        raise OpenError("wrong chat key")
    return plain


def kex_payload(chat_id: int, agreement: int, public: bytes, sign_key) -> bytes:
    """A key-exchange message: the chat id, this party's key-agreement and ECDSA public keys, signed."""
    sig_pub = ciphers.p521_public_bytes(sign_key)
    head = BBMP_KEX.pack(chat_id=chat_id, agreement=agreement, pub_len=len(public), sig_pub_len=len(sig_pub))
    signed = head + public + sig_pub
    return signed + ciphers.p521_sign(sign_key, signed)


def parse_kex(body: bytes) -> dict | None:
    """{"chat_id", "agreement", "public", "sig_public", "valid"} of a key-exchange payload, or None."""
    h = BBMP_KEX.unpack(body)
    if h is None or h["agreement"] not in (AGREE_X25519, AGREE_P521):
        return None
    pos = BBMP_KEX.size
    end = pos + h["pub_len"] + h["sig_pub_len"]
    if end + ciphers.P521_SIGNATURE_BYTES != len(body):
        return None
    public, sig_public = body[pos:pos + h["pub_len"]], body[pos + h["pub_len"]:end]
    return {"chat_id": h["chat_id"], "agreement": h["agreement"], "public": public, "sig_public": sig_public,
            "valid": ciphers.p521_verify(sig_public, body[:end], body[end:])}


def agree(agreement: int, private: bytes, peer_public: bytes) -> bytes:
    """The key-agreement secret from one side's private key bytes and the other's public key."""
    if agreement == AGREE_X25519:
        return ciphers.x25519_shared(private, peer_public)
    return ciphers.p521_shared(ciphers.p521_private(private), peer_public)


def agreement_public(agreement: int, private: bytes) -> bytes:
    if agreement == AGREE_X25519:
        return ciphers.x25519_public(private)
    return ciphers.p521_public_bytes(ciphers.p521_private(private))
