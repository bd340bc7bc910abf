"""metadata.flows: addresses, port hints, message bursts (timing, size), per-client volume, flow graph."""
from __future__ import annotations

import random

import pytest

from .conftest import (
    MESSAGE,
    STUFFED,
    T_DATA_BODY,
    C,
    S,
    encrypt_chunks,
    items,
    make_flow,
    pick,
    relay_chunks,
    run,
    smtp_chunks,
)

RNG = random.Random(20240601)  # fixed bytes: no flaky statistics

META = "metadata.flows"


def bursts(findings):
    """[(time, bytes)] from the size findings, and check each has its timing twin."""
    sizes = sorted((f["value"]["time"], f["value"]["bytes"]) for f in items(findings, "size", "message-burst"))
    times = sorted(f["value"]["time"] for f in items(findings, "timing", "message-burst"))
    assert times == [t for t, _ in sizes]
    return sizes


def test_flow_facts_without_a_moment(smtp_flow):
    found = run(META, smtp_flow)
    (server,) = pick(found, "endpoint", "server-address")
    (client,) = pick(found, "device", "client-address")
    (hint,) = pick(found, "service", "port-hint")
    assert (server.value, client.value, hint.value) == ("10.9.0.25:25", "10.1.0.5", "smtp")
    assert hint.confidence == 0.5 and hint.evidence["port"] == 25
    # They hold for the whole flow: a span, not a time that would tie them to one message.
    assert server.time is None and server.evidence["first_seen"] == smtp_flow.first_seen


def test_smtp_session_has_one_message_burst_the_data_body(smtp_flow):
    found = run(META, smtp_flow)
    assert bursts(found) == [(round(T_DATA_BODY, 3), len(STUFFED))]
    (size,) = items(found, "size")
    assert size["evidence"]["direction"] == "client" and size["evidence"]["packets"] == 2
    assert size["evidence"]["time"] == pytest.approx(T_DATA_BODY) and size["evidence"]["device"] == "10.1.0.5"
    assert "sender" not in size["evidence"]  # not known at this layer


def test_encryption_hides_no_timing_and_barely_changes_sizes():
    found = run(META, make_flow(encrypt_chunks(smtp_chunks())))
    assert bursts(found) == [(round(T_DATA_BODY, 3), len(STUFFED) + 2 * 16)]  # two segments, a tag each


@pytest.mark.parametrize("tickets", [0, 2])
def test_tls13_sizes_count_application_data_only(tls_session, tickets):
    message = MESSAGE * 2
    chunks = tls_session([(11.0, S, b"220 mail.corp.example ESMTP\r\n"), (11.1, C, b"EHLO laptop\r\n"),
                          (11.2, S, b"250 mail.corp.example\r\n"), (12.0, C, message),
                          (12.1, S, b"250 2.0.0 Ok: queued\r\n")], tickets=tickets)
    flow = make_flow(chunks, dst=("10.9.0.25", 465))
    found = run(META, flow)
    # The server's encrypted handshake flight (certificate: well over 200 bytes), the client's
    # Finished and the session tickets are not messages; the one message is exactly the plaintext.
    assert bursts(found) == [(12.0, len(message))]
    (size,) = items(found, "size")
    assert size["evidence"]["layer"] == "tls" and size["confidence"] == 0.8


def test_tls13_small_message_falls_back_to_the_largest_client_burst(tls_session):
    chunks = tls_session([(11.0, C, b"hello, a short note"), (11.1, S, b"ok")])
    found = run(META, make_flow(chunks, dst=("10.9.0.25", 443)))
    assert bursts(found) == [(11.0, len(b"hello, a short note"))]
    assert items(found, "size")[0]["evidence"]["rule"] == "largest-client-burst"


def test_persistent_relay_flow_has_one_burst_per_envelope_minutes_apart():
    chunks, expected = relay_chunks()
    flow = make_flow(chunks, src=("10.64.0.4", 50001), dst=("198.51.100.10", 3101))
    found = run(META, flow)
    assert bursts(found) == [(t, n) for t, n, _ in expected]
    sizes = sorted(items(found, "size"), key=lambda f: f["value"]["time"])
    assert [f["evidence"]["direction"] for f in sizes] == [d for _, _, d in expected]
    assert all(f["evidence"]["pins"] == ["pin:2b0b58a4"] and f["confidence"] == 0.9 for f in sizes)
    assert sizes[3]["evidence"]["packets"] == 4  # 5000 + 28 + 16 bytes in 1448-byte segments
    (volume,) = pick(found, "volume")
    assert volume.value == {"endpoint": "10.64.0.4", "messages": 3, "bytes": 300 + 28 + 1200 + 28 + 20 + 28}


def test_relay_inside_tls_small_messages_stand_out_from_the_control_size(tls_session):
    from .conftest import envelope, sealed
    writes, expected = [], []
    for i, n in enumerate((8, 40, 120, 25, 60)):  # chat-sized: all under 200 bytes on the wire
        t = 20.0 + 150.0 * i
        direction = C if i % 2 == 0 else S
        wire = envelope(1 if direction == C else 2, 0x2B0B58A4, i + 1, sealed(RNG.randbytes(n), i), flags=1)
        writes += [(t, direction, wire), (t + 0.1, 1 - direction, envelope(3, 0x2B0B58A4, i + 1)),
                   (t + 70.0, C, envelope(4, 0x2B0B58A4, 50 + i)), (t + 70.1, S, envelope(4, 0x2B0B58A4, 50 + i))]
        expected.append((round(t, 3), len(wire)))
    found = run(META, make_flow(tls_session(writes), src=("10.64.0.4", 50001), dst=("198.51.100.10", 3101)))
    assert bursts(found) == expected  # acks and keepalives (16 bytes inside TLS) are the control size
    assert {f["evidence"]["rule"] for f in items(found, "size")} == {"above-control-size"}
    assert [f.value["messages"] for f in pick(found, "volume")] == [3]


def test_persistent_flow_of_unknown_framing_splits_on_replies_and_pauses():
    sizes = (250, 4000, 700, 260, 1500)
    chunks = []
    for i, n in enumerate(sizes):
        t = 5.0 + 240.0 * i
        data = RNG.randbytes(n)
        for k in range(0, n, 1000):
            chunks.append((t + k / 1000 * 0.002, C, data[k:k + 1000]))
        chunks.append((t + 0.2, S, RNG.randbytes(20)))  # a small reply
    found = run(META, make_flow(chunks, dst=("10.9.0.9", 7000)))
    assert bursts(found) == [(round(5.0 + 240.0 * i, 3), n) for i, n in enumerate(sizes)]


def test_a_pause_splits_a_burst_without_a_reply():
    chunks = [(1.0, C, RNG.randbytes(300)), (1.2, C, RNG.randbytes(300)), (1.6, C, RNG.randbytes(300))]
    found = run(META, make_flow(chunks, dst=("10.9.0.9", 7000)))
    assert bursts(found) == [(1.0, 600), (1.6, 300)]  # 0.2 s < 0.3 s joins; 0.4 s splits


def test_empty_flow_has_addresses_but_no_bursts():
    found = run(META, make_flow([], start=2.0, end=2.1, dst=("10.9.0.25", 587)))
    assert bursts(found) == []
    assert [f.value for f in pick(found, "service", "port-hint")] == ["submission"]
    (volume,) = pick(found, "volume")
    assert volume.value == {"endpoint": "10.1.0.5", "messages": 0, "bytes": 0}


def test_volume_and_flow_graph_over_all_flows():
    a1 = make_flow(smtp_chunks(100.0), src=("10.1.0.5", 40001))
    a2 = make_flow(smtp_chunks(200.0), src=("10.1.0.5", 40002))
    b1 = make_flow(smtp_chunks(300.0), src=("10.1.0.6", 40003))
    dns = make_flow([(1.0, C, b"\x00" * 30)], proto="udp", src=("10.1.0.6", 5353), dst=("10.9.0.53", 53))
    found = run(META, a1, a2, b1, dns)
    volumes = sorted((f.value["endpoint"], f.value["messages"], f.value["bytes"]) for f in pick(found, "volume"))
    assert volumes == [("10.1.0.5", 2, 2 * len(STUFFED)), ("10.1.0.6", 1, len(STUFFED))]
    assert all(f.flow is None for f in pick(found, "volume"))
    graph = sorted((f.value["client"], f.value["server"], f.value["flows"], f.value["bytes"])
                   for f in pick(found, "endpoint", "flow-graph"))
    assert graph == [("10.1.0.5", "10.9.0.25:25", 2, a1.total_bytes + a2.total_bytes),
                     ("10.1.0.6", "10.9.0.25:25", 1, b1.total_bytes),
                     ("10.1.0.6", "10.9.0.53:53", 1, dns.total_bytes)]
