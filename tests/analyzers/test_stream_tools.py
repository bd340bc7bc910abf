"""Stream tools of the observe tier: offset -> time, printable text, TLS and relay framing, message bursts."""
from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from harness.observe.bursts import message_bursts, stream_layout
from harness.observe.dns import parse_dns_question
from harness.observe.packet_index import PacketIndex
from harness.observe.relay_wire import find_relay_start, relay_envelopes
from harness.observe.stream_clock import StreamClock
from harness.observe.text import canary_tokens, excerpt, text_spans
from harness.observe.tls_wire import parse_client_hello, parse_server_hello, tls_records

from .conftest import TOKEN, C, S, client_hello, envelope, make_flow

RNG = random.Random(20240601)  # fixed bytes: no flaky statistics


def test_stream_clock_maps_offsets_to_the_chunk_holding_them():
    flow = make_flow([(1.0, C, b"a" * 10), (2.0, S, b"b" * 5), (3.0, C, b"c" * 10)])
    clock = StreamClock(flow)
    assert [clock.time(C, o) for o in (0, 9, 10, 19, 500)] == [1.0, 1.0, 3.0, 3.0, 3.0]
    assert clock.time(S, 4) == 2.0
    assert clock.packets(C, 5, 15) == 2 and clock.packets(C, 0, 10) == 1 and clock.packets(C, 10, 10) == 0


def test_the_clock_and_packet_numbers_do_not_depend_on_the_order_chunks_are_listed_in():
    """The flow table lists a direction's chunks in stream order; chunks made elsewhere (a plugin, a test)
    may not be, and are sorted by offset: the same times, packet counts and packet numbers."""
    flow = make_flow([(1.0, C, b"a" * 10), (2.0, S, b"b" * 5), (3.0, C, b"c" * 10), (4.0, S, b"d" * 5)])
    shuffled = make_flow([(1.0, C, b"a" * 10), (2.0, S, b"b" * 5), (3.0, C, b"c" * 10), (4.0, S, b"d" * 5)])
    shuffled.chunks.reverse()
    for f in (flow, shuffled):
        clock, index = StreamClock(f), PacketIndex(f)
        assert [clock.time(C, o) for o in (0, 9, 10, 19)] == [1.0, 1.0, 3.0, 3.0]
        assert [clock.time(S, o) for o in (0, 5, 9)] == [2.0, 4.0, 4.0]
        assert clock.packets(C, 5, 15) == 2 and clock.chunk_spans(S) == [(0, 5, 2.0), (5, 5, 4.0)]
        assert clock.chunk_spans(C, 1) == [(0, 10, 1.0)]
        assert [index.packet(C, 0), index.packet(S, 0), index.packet(C, 15), index.packet(S, 7)] == [1, 2, 3, 4]


def test_text_spans_merge_small_gaps_and_drop_noise():
    data = bytes(range(0x80, 0xA8)) + b"Hello there, this is a long\x00\x01clear text line" + b"\xff" * 8
    (span,) = text_spans(data)
    assert data[span[0]:span[1]].startswith(b"Hello there") and data[span[0]:span[1]].endswith(b"text line")
    assert text_spans(b"==========================================") == []  # no letters: no substance
    assert text_spans(b"short text") == []


def test_random_bytes_give_no_text():
    assert text_spans(RNG.randbytes(1 << 16)) == []


def test_canaries_and_excerpts():
    assert canary_tokens(f"x {TOKEN}, y CNRY-0123 {TOKEN}".encode()) == [TOKEN]
    e = excerpt(b"line one\r\nline\x00two" + b"z" * 300)
    assert len(e) <= 120 and e.isprintable() and e.startswith("line one line.two")


def test_relay_framing_found_mid_stream():
    stream = b"\x01\x02tail of an earlier envelope" + envelope(1, 7, 1, b"abc") + envelope(3, 7, 1)
    start = find_relay_start(stream)
    assert start == 29
    assert [(e.type, e.pin, e.msg_id, e.length) for e in relay_envelopes(stream, start)] == [(1, 7, 1, 3), (3, 7, 1, 0)]


def test_tls_records_and_layout_of_a_client_hello():
    hello = client_hello()
    (rec,) = tls_records(hello)
    assert (rec.type, rec.offset, rec.end) == (22, 0, len(hello))
    layout = stream_layout(make_flow([(1.0, C, hello)], dst=("10.9.0.9", 443)))
    assert layout.is_tls and layout.client_hello.sni == "mail.corp.example"
    assert [u.kind for u in layout.units] == ["handshake"]


def test_starttls_switches_the_layout():
    hello = client_hello()
    flow = make_flow([(1.0, S, b"220 mx ESMTP\r\n"), (1.1, C, b"EHLO x\r\nSTARTTLS\r\n"), (1.2, S, b"220 go\r\n"),
                      (1.3, C, hello)])
    layout = stream_layout(flow)
    assert layout.directions[C].layer == "starttls" and layout.directions[C].tls_start == len(b"EHLO x\r\nSTARTTLS\r\n")
    assert layout.client_hello.sni == "mail.corp.example"


def test_dns_question_parser():
    query = bytes.fromhex("abcd01000001000000000000") + b"\x03www\x07example\x03org\x00\x00\x01\x00\x01"
    assert parse_dns_question(query) == "www.example.org"
    assert parse_dns_question(query[:-3]) is None
    assert parse_dns_question(RNG.randbytes(5)) is None


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_parsers_never_raise_on_garbage(data):
    parse_client_hello(data)
    parse_server_hello(data)
    parse_dns_question(data)
    relay_envelopes(b"\xbb\x01" + data)
    tls_records(b"\x16\x03\x01" + data)
    text_spans(data)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 1000), st.sampled_from([C, S]), st.binary(min_size=1, max_size=300)),
                max_size=12))
def test_any_flow_lays_out(chunks):
    flow = make_flow(chunks)
    layout = stream_layout(flow)
    for direction in (C, S):
        units = [u for u in layout.units if u.direction == direction]
        assert sum(u.payload for u in units) <= flow.payload_bytes[direction]
        if layout.directions[direction].layer == "clear":  # every byte in exactly one clear unit
            assert sum(u.payload for u in units) == flow.payload_bytes[direction]
    message_bursts(layout)
