"""The payload adversary as a whole: registry ids, JA4 on a real ClientHello, the entropy suite's new
measures, `analyze --explain`, and the leak zoo's done-when bar on a small zoo."""
from __future__ import annotations

import random

import pytest

from harness.analyzers import registry
from harness.analyzers.entropy import byte_stats, positional_stats
from harness.cli import main
from harness.observe.tls_wire import handshake_messages, is_grease, ja4, parse_client_hello, tls_records

from .conftest import SNI, client_hello

PAYLOAD_IDS = ["payload.dpi", "payload.entropy", "payload.crypto-weakness", "censor.gfw-fet"]


def test_payload_analyzers_are_registered_under_stable_ids():
    assert set(PAYLOAD_IDS) <= set(registry())


def test_ja4_of_a_real_client_hello():
    data = client_hello(alpn=["h2", "http/1.1"])
    (_, _, body), *_ = handshake_messages(data, tls_records(data))
    hello = parse_client_hello(body)
    fingerprint, raw = ja4(hello)
    a, b, c = fingerprint.split("_")
    ciphers = [x for x in hello.cipher_suites if not is_grease(x)]
    assert a == f"t13d{len(ciphers):02d}{len([e for e in hello.extensions if not is_grease(e)]):02d}h2"
    assert len(b) == len(c) == 12 and int(b, 16) >= 0 and int(c, 16) >= 0
    assert raw.split("_")[1] == ",".join(f"{x:04x}" for x in sorted(ciphers))
    assert "0000" not in raw.split("_")[2].split(",") and hello.sni == SNI  # SNI and ALPN left out of c


def test_popcount_and_longest_printable_run():
    s = byte_stats(b"\x00" * 10 + b"hello world" + b"\xff" * 10)
    assert s.longest_printable_run == 11
    assert s.popcount == pytest.approx((sum(bin(b).count("1") for b in b"hello world") + 80) / 31)
    rnd = random.Random(1).randbytes(1 << 14)
    assert 3.9 < byte_stats(rnd).popcount < 4.1


def test_a_clear_header_over_an_encrypted_body_shows_by_position():
    rng = random.Random(2)
    units = [b"HDR1 user=alice " + rng.randbytes(400) for _ in range(8)]
    pos = positional_stats(units)
    assert pos["clear_head"] and pos["fixed_head_bytes"] == 16 and pos["head"]["printable"] == 1.0
    assert not positional_stats([rng.randbytes(416) for _ in range(8)])["clear_head"]


def test_analyze_explain_prints_one_flows_evidence(tmp_path, capsys):
    from bench.leakzoo import write_zoo

    pcap, _ = write_zoo(tmp_path, per_class=1)
    assert main(["analyze", str(pcap), "--explain", "10.20.11.10"]) == 0  # class 11: repeating-key XOR
    out = capsys.readouterr().out
    assert "content/weak-cipher by payload.crypto-weakness" in out and "key_hex" in out
    assert "where: rule repeating-key-xor, direction client" in out
    assert main(["analyze", str(pcap), "--explain", "no-such-flow"]) == 2


def test_explain_shows_a_series_finding_item_by_item():
    """A series finding (every message burst's size on a flow) is explained burst by burst, with where."""
    from harness.explain import explain_flow

    flow = {"id": "f", "packets": 4, "bytes": 900, "first_seen": 1.0, "last_seen": 9.0}
    series = {"id": "abc", "analyzer": "metadata.flows", "observable": "size", "kind": "message-burst", "flow": "f",
              "value": {"series": {"time": [1.5, 8.25], "bytes": [300, 512]}}, "confidence": 0.8,
              "evidence": {"device": "10.0.0.1", "series": {"direction": ["client", "server"], "time": [1.5, 8.25],
                                                            "offset": [0, 40], "length": [310, 522]}}}
    text = explain_flow({"flows": [flow], "findings": [series]}, "f")
    assert "1 findings (2 with each series item apart)" in text
    assert '{"bytes": 300, "time": 1.5}' in text and '{"bytes": 512, "time": 8.25}' in text
    assert "where: direction server, offset 40, length 522, time 8.25" in text


def test_leak_zoo_meets_the_bar():
    """Recall >= 0.95 for every leak class; every sound-crypto control called encrypted, nothing read."""
    from bench.leakzoo import run_zoo

    table, _ = run_zoo(per_class=2)
    for cls, row in table.items():
        assert row["recall"] >= 0.95, (cls, row)
        if row["kind"] == "control":
            assert row["recall"] == 1.0 and row["precision"] == 1.0, (cls, row)
