"""Keys, AEAD and certificates, all from the `cryptography` package; deterministic from the scenario seed.

No cipher is implemented here: this module only chooses keys and nonces and calls `cryptography`.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.x509.oid import NameOID

from harness.sim.rng import derive_bytes


def device_key(seed: int, device: str) -> bytes:
    """The 256-bit end-to-end key a device shares with its enterprise server."""
    return derive_bytes(seed, 32, "device-key", device)


class NonceSequence:
    """96-bit GCM nonces: a random 32-bit prefix per key and a 64-bit counter (never repeats per key)."""

    def __init__(self, seed: int, name: str) -> None:
        self.prefix = derive_bytes(seed, 4, "nonce-prefix", name)
        self.counter = 0

    def next(self) -> bytes:
        self.counter += 1
        return self.prefix + self.counter.to_bytes(8, "big")


def aead_seal(key: bytes, nonce: bytes, plaintext: bytes, aad: bytes = b"") -> bytes:
    """AES-256-GCM: returns nonce || ciphertext || tag."""
    return nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def aead_open(key: bytes, sealed: bytes, aad: bytes = b"") -> bytes:
    """Inverse of aead_seal; raises cryptography's InvalidTag on a wrong key or tampering."""
    return AESGCM(key).decrypt(sealed[:12], sealed[12:], aad)


@dataclass(frozen=True)
class ServerIdentity:
    """A PEM certificate chain and key for one TLS server."""

    cert_pem: bytes
    key_pem: bytes
    ca_pem: bytes


def server_identity(seed: int, hostname: str) -> ServerIdentity:
    """A CA and a server certificate for `hostname`, Ed25519 (deterministic signatures, so same bytes per seed)."""
    ca_key = ed25519.Ed25519PrivateKey.from_private_bytes(derive_bytes(seed, 32, "ca-key"))
    key = ed25519.Ed25519PrivateKey.from_private_bytes(derive_bytes(seed, 32, "server-key", hostname))
    not_before = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    not_after = dt.datetime(2036, 1, 1, tzinfo=dt.timezone.utc)
    ca_name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Harness Test CA"),
                         x509.NameAttribute(NameOID.COMMON_NAME, "Harness Test Root")])
    ca_cert = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
               .public_key(ca_key.public_key())
               .serial_number(int.from_bytes(derive_bytes(seed, 8, "ca-serial"), "big") >> 1)
               .not_valid_before(not_before).not_valid_after(not_after)
               .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
               .sign(ca_key, None))
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(int.from_bytes(derive_bytes(seed, 8, "serial", hostname), "big") >> 1)
            .not_valid_before(not_before).not_valid_after(not_after)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
            .sign(ca_key, None))
    pem = serialization.Encoding.PEM
    return ServerIdentity(
        cert_pem=cert.public_bytes(pem),
        key_pem=key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
        ca_pem=ca_cert.public_bytes(pem),
    )
