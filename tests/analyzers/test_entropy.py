"""payload.entropy: byte statistics and the payload class of each flow."""
from __future__ import annotations

import base64
import math
import random
import zlib

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from harness.analyzers.entropy import (
    byte_stats,
    chi2_upper_tail,
    classify,
    expected_random_entropy,
)

from .conftest import (
    MESSAGE,
    TOKEN,
    C,
    S,
    encrypt_chunks,
    envelope,
    make_flow,
    run,
    sealed,
    smtp_chunks,
)

RNG = random.Random(20240601)  # fixed bytes: no flaky statistics

ENTROPY = "payload.entropy"
TEXT = (f"The quarterly budget review meeting is moved to thursday {TOKEN} please confirm attendance and "
        "send the draft figures before noon. Contract renewal with supplier needs legal sign off. ") * 8


def payload_class(flow):
    (finding,) = run(ENTROPY, flow)
    assert finding.observable == "content" and finding.kind == "payload-class" and finding.flow == flow.id
    return finding


def test_smtp_in_clear_is_plaintext(smtp_flow):
    f = payload_class(smtp_flow)
    assert f.value["class"] == "plaintext"
    assert 4.0 < f.value["entropy"] < 5.5 and f.evidence["printable"] == 1.0
    assert f.confidence >= 0.85


def test_the_same_bytes_under_aes_gcm_are_encrypted():
    f = payload_class(make_flow(encrypt_chunks(smtp_chunks())))
    assert f.value["class"] == "encrypted"
    assert f.value["entropy"] > 7.5 and f.evidence["p_uniform"] > 0.001
    assert f.value["entropy"] == round(f.value["entropy"], 3)


def test_base64_text_is_encoded():
    f = payload_class(make_flow([(1.0, C, base64.encodebytes(TEXT.encode()))], dst=("10.9.0.9", 7000)))
    assert f.value["class"] == "encoded" and f.evidence["alphabet"] == "base64"
    assert 5.0 < f.value["entropy"] < 6.15


def test_hex_is_encoded_too():
    f = payload_class(make_flow([(1.0, C, RNG.randbytes(200).hex().encode())], dst=("10.9.0.9", 7000)))
    assert f.value["class"] == "encoded" and f.evidence["alphabet"] == "hex"


def test_zlib_text_is_compressed():
    f = payload_class(make_flow([(1.0, C, zlib.compress(TEXT.encode()))], dst=("10.9.0.9", 7000)))
    assert f.value["class"] == "compressed" and f.evidence["rule"] == "zlib-gzip-header"


def test_raw_deflate_is_compressed():
    d = zlib.compressobj(9, zlib.DEFLATED, -15)
    raw = d.compress((TEXT * 4).encode()) + d.flush()
    assert classify([raw]).cls == "compressed"


def test_empty_flow_is_empty():
    f = payload_class(make_flow([], start=1.0, end=1.5))
    assert f.value == {"class": "empty", "entropy": 0.0}


def test_ecb_in_relay_bodies_is_a_weak_cipher():
    key = b"e" * 32
    ecb = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    plain = (b"From: alice@corp.example\r\nTo: bob@corp.example\r\n" * 8)[:384]  # repeats every 48 bytes
    body = ecb.update(plain) + ecb.finalize()
    flow = make_flow([(1.0, C, envelope(1, 0xABCD0001, 1, body, flags=1)), (1.1, S, envelope(3, 0xABCD0001, 1))],
                     dst=("198.51.100.10", 3101))
    f = payload_class(flow)
    assert f.value["class"] == "weak-cipher" and f.evidence["repeated_blocks"] >= 4
    # The same plaintext sealed with AES-GCM: no repeated blocks.
    flow = make_flow([(1.0, C, envelope(1, 0xABCD0001, 1, sealed(plain, 1), flags=1)),
                      (1.1, S, envelope(3, 0xABCD0001, 1))], dst=("198.51.100.10", 3101))
    assert payload_class(flow).value["class"] == "encrypted"


def test_relay_framing_is_stripped_before_measuring():
    bodies = [sealed(RNG.randbytes(n), i) for i, n in enumerate((120, 300, 64, 900))]
    chunks = []
    for i, body in enumerate(bodies):
        chunks.append((10.0 + 60 * i, C, envelope(1, 0x2B0B58A4, i, body, flags=1)))
        chunks.append((10.1 + 60 * i, S, envelope(3, 0x2B0B58A4, i)))
    f = payload_class(make_flow(chunks, dst=("198.51.100.10", 3101)))
    assert f.value["class"] == "encrypted"
    assert f.evidence["bytes"] == sum(len(b) for b in bodies)  # bodies only: no headers, no acks
    assert [b["payload"] for b in f.evidence["bursts"]] == [len(b) for b in bodies]


def test_tls_records_are_measured_without_their_headers(tls_session):
    message = (MESSAGE * 3)
    chunks = tls_session([(11.0, C, message), (11.2, S, b"250 2.0.0 Ok: queued\r\n")])
    f = payload_class(make_flow(chunks, dst=("10.9.0.25", 465)))
    assert f.value["class"] == "encrypted"
    (burst,) = f.evidence["bursts"]
    assert burst["payload"] == len(message) and burst["direction"] == "client"


@pytest.mark.parametrize("n", [16, 32, 64, 128, 256, 1024, 4096])
def test_short_random_samples_are_judged_against_random_not_against_8_bits(n):
    expected = expected_random_entropy(n)
    assert expected < 8.0 and (n > 256 or expected < 7.7)
    rng = random.Random(n)
    hits = sum(classify([rng.randbytes(n)]).cls == "encrypted" for _ in range(50))
    assert hits >= 48
    text = (TEXT.encode() * 50)[:n]
    assert classify([text]).cls == "plaintext"


def test_expected_random_entropy_matches_simulation():
    rng = random.Random(7)
    for n in (32, 200, 1000):
        mean = sum(byte_stats(rng.randbytes(n)).entropy_mm for _ in range(300)) / 300
        assert expected_random_entropy(n) == pytest.approx(mean, abs=0.05)
    assert expected_random_entropy(100_000) == pytest.approx(8.0, abs=0.01)


def test_byte_stats_and_chi_square_tail():
    stats = byte_stats(bytes(range(256)) * 4)
    assert stats.entropy == pytest.approx(8.0) and stats.distinct == 256 and stats.chi2 == 0.0
    assert stats.p_uniform == 1.0
    stats = byte_stats(b"a" * 100)
    assert stats.entropy == 0.0 and stats.entropy_mm == 0.0 and stats.p_uniform < 1e-12
    assert chi2_upper_tail(255.0, 255) == pytest.approx(0.5, abs=0.02)
    assert chi2_upper_tail(310.5, 255) == pytest.approx(0.01, abs=0.003)  # chi2(255) 99th percentile
    assert byte_stats(b"").n == 0
    h = byte_stats(b"abcd" * 8)
    assert h.entropy == pytest.approx(2.0) and h.entropy_mm == pytest.approx(2.0 + 3 / (2 * 32 * math.log(2)))
