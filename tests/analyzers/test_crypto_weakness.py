"""payload.crypto-weakness: weak encryption found across messages, and sound encryption left alone."""
from __future__ import annotations

import os
import random

import pytest
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from .conftest import C, S, make_flow, pick, run, sealed, envelope

ID = "payload.crypto-weakness"
RNG = random.Random(11)
WORDS = ("the budget meeting is moved to thursday please confirm attendance and send the draft figures before "
         "noon contract renewal needs legal sign off by friday the board wants a summary of risks").split()


def messages(n: int = 16) -> tuple[list[bytes], list[str]]:
    tokens = [f"CNRY-{RNG.getrandbits(64):016x}" for _ in range(n)]
    texts = [(f"From: user{i % 3}@corp.example\r\nSubject: note {i}\r\n\r\n"
              + " ".join(RNG.choice(WORDS) for _ in range(30)) + f" ref {t} "
              + " ".join(RNG.choice(WORDS) for _ in range(12)) + "\r\n").encode() for i, t in enumerate(tokens)]
    return texts, tokens


def flow_of(wires: list[bytes], **kw):
    return make_flow([(10.0 + i, C, w) for i, w in enumerate(wires)], dst=("10.9.0.9", 7000), **kw)


def weak(findings):
    return [f.value["weakness"] for f in pick(findings, "content", "weak-cipher")]


def recovered(findings):
    return "\n".join(f.value for f in pick(findings, "content", "text"))


def test_repeating_key_xor_is_broken():
    texts, tokens = messages(4)
    key = b"s3cr3t-k"
    found = run(ID, flow_of([bytes(b ^ key[i % len(key)] for i, b in enumerate(t)) for t in texts]))
    assert weak(found) == ["repeating-key-xor"]
    assert all(t in recovered(found) for t in tokens)
    (w,) = pick(found, "content", "weak-cipher")
    assert w.evidence["key_hex"] == key.hex() and w.evidence["direction"] == "client"
    (cls,) = pick(found, "content", "payload-class")
    assert cls.value["class"] == "weak-cipher" and cls.confidence > 0.95


def test_keystream_reuse_within_a_flow_is_broken():
    texts, tokens = messages(24)
    key, nonce = os.urandom(32), os.urandom(16)
    wires = [Cipher(algorithms.AES(key), modes.CTR(nonce)).encryptor().update(t) for t in texts]
    found = run(ID, flow_of(wires))
    assert set(weak(found)) == {"keystream-reuse"}
    got = recovered(found)
    assert sum(t in got for t in tokens) >= 0.95 * len(tokens)
    hit = next(f for f in pick(found, "content", "text") if tokens[0] in f.value)
    assert hit.evidence["offset"] == 0 and hit.evidence["time"] == 10.0 and hit.evidence["packet"] == 1
    later = next(f for f in pick(found, "content", "text") if tokens[5] in f.value)
    assert later.evidence["packet"] == 6 and later.evidence["rule"] == "keystream-reuse"


def test_keystream_reuse_across_flows_is_broken_in_finish():
    # One message per flow; how much is read depends on how many share the keystream: with 20, nearly all.
    texts, tokens = messages(20)
    key, nonce = os.urandom(32), os.urandom(16)
    flows = [make_flow([(5.0, C, Cipher(algorithms.AES(key), modes.CTR(nonce)).encryptor().update(t))],
                       src=("10.1.0.5", 41000 + i), dst=("10.9.0.9", 7000)) for i, t in enumerate(texts)]
    found = run(ID, *flows)
    assert "keystream-reuse-across-flows" in weak(found)
    assert sum(t in recovered(found) for t in tokens) >= 0.9 * len(tokens)


def _pad(t: bytes, block: int = 16) -> bytes:
    p = padding.PKCS7(block * 8).padder()
    return p.update(t) + p.finalize()


def test_ecb_repeated_blocks_are_structure():
    texts, _ = messages(6)
    enc = Cipher(algorithms.AES(os.urandom(16)), modes.ECB())
    found = run(ID, flow_of([enc.encryptor().update(_pad(t + b"=" * 64)) for t in texts]))
    assert weak(found) == ["ecb"] and recovered(found) == ""
    (w,) = pick(found, "content", "weak-cipher")
    assert w.value == {"weakness": "ecb", "recovered": False} and w.evidence["block_size"] == 16
    assert w.evidence["length"] == 16 and len(w.evidence["places"]) >= 2


def test_fixed_iv_cbc_identical_first_blocks():
    texts, _ = messages(6)
    key, iv = os.urandom(32), os.urandom(16)
    found = run(ID, flow_of([Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor().update(_pad(t)) for t in texts]))
    assert weak(found) == ["fixed-iv-cbc"]


@pytest.mark.parametrize("seal", [
    lambda k, t: (n := os.urandom(12)) + AESGCM(k).encrypt(n, t, None),
    lambda k, t: (n := os.urandom(12)) + ChaCha20Poly1305(k).encrypt(n, t, None),
    lambda k, t: (iv := os.urandom(16)) + Cipher(algorithms.AES(k), modes.CBC(iv)).encryptor().update(_pad(t)),
    lambda k, t: (n := os.urandom(16)) + Cipher(algorithms.AES(k), modes.CTR(n)).encryptor().update(t),
], ids=["aes-gcm", "chacha20-poly1305", "aes-cbc-random-iv", "aes-ctr-random-nonce"])
def test_sound_encryption_is_never_called_weak(seal):
    texts, _ = messages(16)
    key = os.urandom(32)
    found = run(ID, flow_of([seal(key, t) for t in texts]), flow_of([seal(key, t) for t in texts], start=0.0))
    assert weak(found) == [] and recovered(found) == ""


def test_real_tls_and_relay_envelopes_are_left_alone(tls_session):
    texts, _ = messages(8)
    tls = make_flow(tls_session([(11.0 + i, C, t) for i, t in enumerate(texts)]), dst=("10.9.0.9", 443))
    relay = make_flow([(10.0 + i, C, envelope(1, 0x2B0B58A4, i + 1, sealed(t, i))) for i, t in enumerate(texts)],
                      dst=("10.9.0.9", 3101))
    assert weak(run(ID, tls, relay)) == []


def test_static_framing_fields_are_reported_without_calling_the_flow_weak():
    texts, _ = messages(8)
    key = os.urandom(32)
    wires = [b"\x01\x00\xbe\xefSESS" + (n := os.urandom(12)) + AESGCM(key).encrypt(n, t, None) for t in texts]
    found = run(ID, flow_of(wires))
    assert weak(found) == []
    (f,) = pick(found, "content", "static-framing")
    assert f.value == {"offset": 0, "hex": "0100beef53455353"}


def test_a_held_key_opens_sealed_messages_and_only_that_key():
    from harness.analyzers import KeyGrant, Knowledge

    texts, tokens = messages(4)
    key = os.urandom(32)
    wires = [(n := os.urandom(12)) + AESGCM(key).encrypt(n, t, None) for t in texts]
    held = Knowledge((KeyGrant("state-copy", "aes-256-gcm", key),))
    found = run(ID, flow_of(wires), knowledge=held)
    assert weak(found) == ["held-key"] and all(t in recovered(found) for t in tokens)
    assert next(f for f in pick(found, "content", "text")).evidence["key"] == "state-copy"
    other = Knowledge((KeyGrant("other", "aes-256-gcm", os.urandom(32)),))
    assert weak(run(ID, flow_of(wires), knowledge=other)) == []
