"""censor.gfw-fet: the GFW's fully-encrypted-traffic rules (Wu et al., USENIX Security 2023).

Vectors: lines of `artifacts/test-protocol-fingerprints/protocol-fingerprints-prediction.txt` from the
paper's artifact (github.com/gfw-report/usenixsecurity23-artifact, MIT licence), the predictions its
`utils/detect.py` published: payload hex; printable prefix; longest printable run; popcount per byte;
printable fraction; matched fingerprint; exempted. The artifact builds its probes as 3/4/5-byte
protocol-like prefixes before one fixed random 50-byte payload; all 1072 are regenerated here.
"""
from __future__ import annotations

import random

import pytest

from harness.analyzers.censor_fet import fet_features, would_block

from .conftest import C, S, make_flow, pick, run

RANDOM_TAIL = bytes.fromhex("dadd034913c52da75fd9f05dc76803917134808efed97ef8884f2151b712f60fed634f609f132033a15b77ed3c"
                            "caa2d20f5b")

PUBLISHED = """\
150300dadd034913c52da75fd9f05dc76803917134808efed97ef8884f2151b712f60fed634f609f132033a15b77ed3ccaa2d20f5b;0;3;3.9622641509433962;0.37735849056603776;;False
15030fdadd034913c52da75fd9f05dc76803917134808efed97ef8884f2151b712f60fed634f609f132033a15b77ed3ccaa2d20f5b;0;3;4.037735849056604;0.37735849056603776;;False
160300dadd034913c52da75fd9f05dc76803917134808efed97ef8884f2151b712f60fed634f609f132033a15b77ed3ccaa2d20f5b;0;3;3.9622641509433962;0.37735849056603776;b'\\x16\\x03\\x00';True
16030fdadd034913c52da75fd9f05dc76803917134808efed97ef8884f2151b712f60fed634f609f132033a15b77ed3ccaa2d20f5b;0;3;4.037735849056604;0.37735849056603776;b'\\x16\\x03\\x0f';True
17030fdadd034913c52da75fd9f05dc76803917134808efed97ef8884f2151b712f60fed634f609f132033a15b77ed3ccaa2d20f5b;0;3;4.056603773584905;0.37735849056603776;b'\\x17\\x03\\x0f';True
4745541fdadd034913c52da75fd9f05dc76803917134808efed97ef8884f2151b712f60fed634f609f132033a15b77ed3ccaa2d20f5b;3;3;4.074074074074074;0.42592592592592593;;False
47455420dadd034913c52da75fd9f05dc76803917134808efed97ef8884f2151b712f60fed634f609f132033a15b77ed3ccaa2d20f5b;4;4;4.0;0.4444444444444444;GET ;True
47455421dadd034913c52da75fd9f05dc76803917134808efed97ef8884f2151b712f60fed634f609f132033a15b77ed3ccaa2d20f5b;4;4;4.018518518518518;0.4444444444444444;;False
48454144c4dadd034913c52da75fd9f05dc76803917134808efed97ef8884f2151b712f60fed634f609f132033a15b77ed3ccaa2d20f5b;4;4;3.9454545454545453;0.43636363636363634;;False
48454144ffdadd034913c52da75fd9f05dc76803917134808efed97ef8884f2151b712f60fed634f609f132033a15b77ed3ccaa2d20f5b;4;4;4.036363636363636;0.43636363636363634;;False
"""


@pytest.mark.parametrize("line", PUBLISHED.splitlines())
def test_published_predictions_of_the_artifact(line):
    hexed, prefix, run_, popcount, fraction, fingerprint, exempted = line.split(";")
    f = fet_features(bytes.fromhex(hexed))
    assert f["printable_prefix"] == int(prefix) and f["longest_printable_run"] == int(run_)
    assert f["popcount_per_byte"] == pytest.approx(float(popcount), abs=1e-4)
    assert f["printable_fraction"] == pytest.approx(float(fraction), abs=1e-4)
    assert bool(f["fingerprint"]) == bool(fingerprint)
    assert f["blocked"] is (exempted == "False")


def test_every_probe_of_the_protocol_fingerprint_experiment():
    """The artifact's generator: [15-17] 03 [00-0f], and GET/PUT/POST/HEAD + any byte, before the tail."""
    for first in (0x15, 0x16, 0x17):
        for third in range(16):
            assert would_block(bytes([first, 3, third]) + RANDOM_TAIL) is (first == 0x15)
    for verb in (b"GET", b"PUT", b"POST", b"HEAD"):
        for nxt in range(256):
            pkt = verb + bytes([nxt]) + RANDOM_TAIL
            # Exempt only with the space (fingerprint) - or when the next byte makes a printable prefix of 6
            # and more (never here: the tail starts with 0xda).
            assert would_block(pkt) is (nxt != 0x20), (verb, nxt)


def test_each_exemption_on_vectors_derived_from_the_rules():
    rnd = bytes.fromhex("8f3a5c91e26b4d07b8c5f1a9d3e67c2a" * 4)  # popcount ~4/byte, few printable
    assert fet_features(rnd)["blocked"]
    assert "ex1-popcount" in fet_features(b"\x00\x01\x02\x04" * 16)["exemptions"]  # few set bits
    assert "ex1-popcount" in fet_features(b"\xff\xfe\xfd\xfb" * 16)["exemptions"]  # many set bits
    assert "ex2-printable-prefix" in fet_features(b"abcdef" + rnd)["exemptions"]
    assert "ex2-printable-prefix" not in fet_features(b"abcde" + rnd)["exemptions"]
    assert "ex4-printable-run" in fet_features(rnd[:8] + b"x" * 21 + rnd)["exemptions"]
    assert "ex4-printable-run" not in fet_features(rnd[:8] + b"x" * 20 + rnd)["exemptions"]
    half = bytes(b if i % 2 else 0x41 for i, b in enumerate(rnd))
    assert fet_features(half)["printable_fraction"] >= 0.5


def test_flows_a_censor_would_block(tls_session):
    rng = random.Random(7)
    blocked = make_flow([(1.0, C, rng.randbytes(200)), (1.1, S, rng.randbytes(90))], dst=("10.9.0.9", 8388))
    (f,) = pick(run("censor.gfw-fet", blocked), "service", "censor-would-block")
    assert f.value["censor"] == "gfw-fully-encrypted-2023" and 0 < f.value["block_probability"] < 1
    assert f.evidence["offset"] == 0 and f.evidence["length"] == 200 and f.evidence["packet"] == 1
    tls = make_flow(tls_session([(11.0, C, b"hello")]), dst=("10.9.0.9", 443))
    plain = make_flow([(1.0, C, b"EHLO client.example\r\n")])
    assert run("censor.gfw-fet", tls) == [] and run("censor.gfw-fet", plain) == []
