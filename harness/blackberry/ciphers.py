"""The cipher constructions of the BlackBerry systems, every primitive from `cryptography`.

Triple DES (two-key, CBC) for PIN scrambling and legacy BES mail, AES-256-CBC for modern BES mail,
RFC 3394 AES key wrap for message keys (and the escrow copy), HKDF-SHA256 and AES-256-CTR for BBM
Protected, X25519 or ECDH P-521 for its chat keys, ECDSA P-521 signatures encoded as fixed-size r||s,
HMAC-SHA256 for the SRP challenge. No cipher is implemented here; no key is chosen here.
"""
from __future__ import annotations

import hmac as _hmac
import hashlib

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives import hashes, keywrap
from cryptography.hazmat.primitives import hmac as crypto_hmac
from cryptography.hazmat.primitives.asymmetric import ec, x25519
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

P521_BYTES = 66  # one coordinate or one signature half
P521_PUBLIC_BYTES = 1 + 2 * P521_BYTES  # uncompressed point: 04 || x || y
P521_SIGNATURE_BYTES = 2 * P521_BYTES  # r || s
X25519_BYTES = 32
P521_ORDER = 0x1FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFA51868783BF2F966B7FCC0148F709A5D03BB5C9B8899C47AEBB6FB71E91386409


class PaddingError(ValueError):
    """PKCS#7 padding did not check out: the wrong key, or not a ciphertext of this kind."""


def pkcs7_pad(data: bytes, block: int) -> bytes:
    n = block - len(data) % block
    return data + bytes([n]) * n


def pkcs7_unpad(data: bytes, block: int) -> bytes:
    if not data or len(data) % block:
        raise PaddingError("length is not a whole number of blocks")
    n = data[-1]
    if not 1 <= n <= block or data[-n:] != bytes([n]) * n:
        raise PaddingError("bad padding")
    return data[:-n]


def _run(cipher: Cipher, data: bytes, encrypt: bool) -> bytes:
    ctx = cipher.encryptor() if encrypt else cipher.decryptor()
    return ctx.update(data) + ctx.finalize()


# --- Triple DES ------------------------------------------------------------------------------
def _tdes(key: bytes) -> TripleDES:
    """Two-key Triple DES (16 bytes, K1 K2) is keying option 2 of SP 800-67: K1 K2 K1 (24 bytes)."""
    return TripleDES(key + key[:8] if len(key) == 16 else key)


def tdes_cbc_encrypt(key: bytes, iv: bytes, plaintext: bytes) -> bytes:
    """Triple DES in CBC mode with PKCS#7 padding; a 16-byte key is two-key 3DES (K1 K2 K1)."""
    return _run(Cipher(_tdes(key), modes.CBC(iv)), pkcs7_pad(plaintext, 8), True)


def tdes_cbc_decrypt(key: bytes, iv: bytes, ciphertext: bytes) -> bytes:
    """Inverse of tdes_cbc_encrypt; PaddingError when the key is wrong (or the data is not ours)."""
    if not ciphertext or len(ciphertext) % 8:
        raise PaddingError("length is not a whole number of blocks")
    return pkcs7_unpad(_run(Cipher(_tdes(key), modes.CBC(iv)), ciphertext, False), 8)


def tdes_ecb(key: bytes, data: bytes, encrypt: bool = True) -> bytes:
    """Raw Triple DES in ECB mode over whole blocks (the legacy wrapping of a message key)."""
    return _run(Cipher(_tdes(key), modes.ECB()), data, encrypt)


# --- AES -------------------------------------------------------------------------------------
def aes_cbc_encrypt(key: bytes, iv: bytes, plaintext: bytes) -> bytes:
    return _run(Cipher(algorithms.AES(key), modes.CBC(iv)), pkcs7_pad(plaintext, 16), True)


def aes_cbc_decrypt(key: bytes, iv: bytes, ciphertext: bytes) -> bytes:
    if not ciphertext or len(ciphertext) % 16:
        raise PaddingError("length is not a whole number of blocks")
    return pkcs7_unpad(_run(Cipher(algorithms.AES(key), modes.CBC(iv)), ciphertext, False), 16)


def aes_ctr(key: bytes, counter_block: bytes, data: bytes) -> bytes:
    """AES in CTR mode (encryption and decryption are the same operation)."""
    return _run(Cipher(algorithms.AES(key), modes.CTR(counter_block)), data, True)


def key_wrap(kek: bytes, key: bytes) -> bytes:
    """RFC 3394 AES key wrap (integrity-checked: unwrapping with the wrong KEK fails)."""
    return keywrap.aes_key_wrap(kek, key)


def key_unwrap(kek: bytes, wrapped: bytes) -> bytes:
    """Inverse of key_wrap; raises cryptography's InvalidUnwrap on a wrong KEK."""
    return keywrap.aes_key_unwrap(kek, wrapped)


# --- key derivation, MAC -----------------------------------------------------------------------
def hkdf_sha256(ikm: bytes, salt: bytes | None, info: bytes, length: int) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)


def hmac_sha256(key: bytes, data: bytes) -> bytes:
    h = crypto_hmac.HMAC(key, hashes.SHA256())
    h.update(data)
    return h.finalize()


def hmac_equal(a: bytes, b: bytes) -> bool:
    return _hmac.compare_digest(a, b)


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


# --- key agreement ----------------------------------------------------------------------------
def x25519_public(private: bytes) -> bytes:
    key = x25519.X25519PrivateKey.from_private_bytes(private)
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def x25519_shared(private: bytes, peer_public: bytes) -> bytes:
    key = x25519.X25519PrivateKey.from_private_bytes(private)
    return key.exchange(x25519.X25519PublicKey.from_public_bytes(peer_public))


def p521_private(scalar_bytes: bytes) -> ec.EllipticCurvePrivateKey:
    """A P-521 private key from bytes (reduced into [1, n-1])."""
    n = P521_ORDER
    return ec.derive_private_key(int.from_bytes(scalar_bytes, "big") % (n - 1) + 1, ec.SECP521R1())


def p521_public_bytes(key: ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) -> bytes:
    pub = key.public_key() if isinstance(key, ec.EllipticCurvePrivateKey) else key
    return pub.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)


def p521_shared(private: ec.EllipticCurvePrivateKey, peer_public: bytes) -> bytes:
    peer = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP521R1(), peer_public)
    return private.exchange(ec.ECDH(), peer)


def p521_sign(private: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    """ECDSA P-521 with SHA-512, deterministic (RFC 6979), encoded as fixed-size r || s (132 bytes)."""
    der = private.sign(data, ec.ECDSA(hashes.SHA512(), deterministic_signing=True))
    r, s = decode_dss_signature(der)
    return r.to_bytes(P521_BYTES, "big") + s.to_bytes(P521_BYTES, "big")


def p521_verify(public: bytes, data: bytes, signature: bytes) -> bool:
    if len(signature) != P521_SIGNATURE_BYTES:
        return False
    r = int.from_bytes(signature[:P521_BYTES], "big")
    s = int.from_bytes(signature[P521_BYTES:], "big")
    try:
        key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP521R1(), public)
        key.verify(encode_dss_signature(r, s), data, ec.ECDSA(hashes.SHA512()))
    except (InvalidSignature, ValueError):
        return False
    return True
