"""Property tests: random or mutated input makes the reader raise only HarnessError, and decode/flows never raise.

The whole analyze path (reader, decoder, flows and every registered analyzer) is fuzzed the same way, seeded
with small captures from the real corpus. The suite runs a bounded number of examples; `make fuzz` sets
HARNESS_FUZZ_EXAMPLES for a longer run (and runs the atheris harness in fuzz/ when atheris is installed).
"""
from __future__ import annotations

import json
import os
import struct
import time
from collections import Counter
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP, UDP, fragment
from scapy.layers.inet6 import (
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    fragment6,
)
from scapy.layers.l2 import Dot1Q, Ether

from harness.errors import HarnessError
from harness.observe import observe
from harness.observe.decode import Decoder, Packet
from harness.observe.flows import FlowTable, build_flows
from harness.observe.model import STREAM_CAP
from harness.wire.capture_reader import CaptureReader, Record

EXAMPLES = int(os.environ.get("HARNESS_FUZZ_EXAMPLES", "200"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                              HealthCheck.too_slow])
WHOLE_PATH = settings(FUZZ, max_examples=max(EXAMPLES // 5, 10))
MAX_SECONDS = 20.0  # one mutated capture of at most ~30 kB through every analyzer: far less than this, or a hang
CORPUS = Path(__file__).resolve().parents[2] / ".." / "shared" / "corpus" / "real"
SEEDS = ["zeek__http-get.pcap", "ndpi__imap.pcap", "tcpdump__quic_handshake.pcap", "ndpi__dingtalk.pcap",
         "tcpdump__dns_tcp.pcap", "tcpdump__dns_udp.pcap", "zeek__pcapng-multi-interface.pcapng", "ndpi__smtp.pcap",
         "zeek__tcp-retransmit-fast009.pcap", "zeek__ipv4-fragmented-1.pcap"]
MAGICS = [b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d", b"\x34\xcd\xb2\xa1",
          b"\x0a\x0d\x0d\x0a", b"\x1f\x8b"]
ETH = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")


def _frames() -> list[bytes]:
    big4 = IP(src="10.0.0.1", dst="10.0.0.2", id=3) / UDP(sport=53, dport=99) / (b"f" * 1800)
    big6 = IPv6(src="2001:db8::1", dst="2001:db8::2") / IPv6ExtHdrFragment(id=4) / UDP() / (b"g" * 2000)
    tcp = [bytes(ETH / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=1, dport=2, seq=s, flags=f) / p)
           for s, f, p in [(0, "S", b""), (1, "PA", b"abc"), (10, "PA", b"late"), (4, "PA", b"defghi"),
                           (1, "PA", b"XYZ"), (14, "FA", b"")]]
    v6 = bytes(ETH / IPv6(src="2001:db8::1", dst="2001:db8::2") / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt()
               / TCP(sport=3, dport=4, flags="PA") / b"six")
    vlan = bytes(ETH / Dot1Q(vlan=3) / IP(src="10.0.0.3", dst="10.0.0.4") / UDP(sport=5, dport=6) / b"v")
    return tcp + [v6, vlan] + [bytes(ETH / f) for f in fragment(big4, fragsize=600)] + [
        bytes(ETH / f) for f in fragment6(big6, 1280)]


FRAMES = _frames()


def _valid_pcap() -> bytes:
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    for i, f in enumerate(FRAMES):
        out.append(struct.pack("<IIII", 100 + i, 0, len(f), len(f)) + f)
    return b"".join(out)


def _valid_pcapng() -> bytes:
    def block(btype: int, body: bytes) -> bytes:
        body += b"\0" * (-len(body) % 4)
        return struct.pack("<II", btype, 12 + len(body)) + body + struct.pack("<I", 12 + len(body))
    out = [block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1)),
           block(1, struct.pack("<HHI", 1, 0, 0) + struct.pack("<HH", 9, 1) + b"\x09\0\0\0" + b"\0\0\0\0"),
           block(1, struct.pack("<HHI", 101, 0, 0))]
    for i, f in enumerate(FRAMES):
        out.append(block(6, struct.pack("<IIIII", 0, 0, i * 1000, len(f), len(f)) + f))
    out.append(block(3, struct.pack("<I", len(FRAMES[0])) + FRAMES[0]))
    out.append(block(2, struct.pack("<HHIIII", 0, 0, 0, 5, len(FRAMES[1]), len(FRAMES[1])) + FRAMES[1]))
    return b"".join(out)


VALID = [_valid_pcap(), _valid_pcapng()]
CORPUS_SEEDS = [(CORPUS / n).read_bytes() for n in SEEDS if (CORPUS / n).is_file()]


def _read_everything(path: str) -> None:
    """Read and observe `path`; only HarnessError (not a capture) may come out, and only at the start."""
    try:
        reader = CaptureReader(path)
    except HarnessError:
        return
    records = list(reader.records())
    assert reader.count == len(records)
    obs = observe([path])
    assert obs.packets == len(records)
    assert sum(obs.skipped.values()) + sum(f.total_packets for f in obs.flows) == obs.packets
    for f in obs.flows:
        _check_flow(f)


def _check_flow(f) -> None:
    for d in (0, 1):
        assert len(f.payload[d]) <= STREAM_CAP and f.payload_bytes[d] >= len(f.payload[d])
    for c in f.chunks:
        assert 0 <= c.offset and c.offset + c.length <= f.payload_bytes[c.direction]


@FUZZ
@given(st.one_of(st.binary(max_size=3000), st.tuples(st.sampled_from(MAGICS), st.binary(max_size=3000)).map(
    lambda mb: mb[0] + mb[1])))
def test_random_files(tmp_path_factory, content):
    path = tmp_path_factory.mktemp("fuzz") / "random.bin"
    path.write_bytes(content)
    _read_everything(str(path))


@st.composite
def mutated(draw, seeds: list[bytes] = VALID) -> bytes:
    blob = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(0, 12))):
        pos = draw(st.integers(0, len(blob) - 1))
        op = draw(st.sampled_from(["set", "set", "set", "insert", "delete"]))
        if op == "set":
            blob[pos] = draw(st.integers(0, 255))
        elif op == "insert":
            blob[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        else:
            del blob[pos:pos + draw(st.integers(1, 8))]
    if draw(st.booleans()):
        blob = blob[:draw(st.integers(0, len(blob)))]
    if draw(st.integers(0, 9)) == 0:
        import gzip
        blob = bytearray(gzip.compress(bytes(blob)))
    return bytes(blob)


@FUZZ
@given(mutated())
def test_mutated_captures(tmp_path_factory, content):
    path = tmp_path_factory.mktemp("fuzz") / "mutated.bin"
    path.write_bytes(content)
    _read_everything(str(path))


@WHOLE_PATH
@given(mutated(VALID + CORPUS_SEEDS))
def test_the_whole_analyze_path_on_mutated_captures(tmp_path_factory, content):
    """Reader, decoder, flows and every registered analyzer: a document or a HarnessError, never an exception."""
    from harness.pipeline import analyze_captures

    path = tmp_path_factory.mktemp("fuzz") / "mutated.pcap"
    path.write_bytes(content)
    started = time.perf_counter()
    try:
        doc = analyze_captures([str(path)])
    except HarnessError:
        return
    assert time.perf_counter() - started < MAX_SECONDS
    assert doc["errors"] == [], doc["errors"]  # an analyzer's exception is contained, but it is still a bug
    assert json.loads(json.dumps(doc, default=str))["schema"] == "harness.findings/1"


@st.composite
def mutated_frame(draw) -> tuple[int, bytes, int]:
    frame = bytearray(draw(st.sampled_from(FRAMES)))
    for _ in range(draw(st.integers(0, 6))):
        frame[draw(st.integers(0, len(frame) - 1))] = draw(st.integers(0, 255))
    frame = frame[:draw(st.integers(0, len(frame)))]
    linktype = draw(st.sampled_from([1, 1, 1, 0, 12, 14, 101, 108, 113, 276, 228, 229, 105]))
    return linktype, bytes(frame), len(frame) + draw(st.integers(0, 100))


@FUZZ
@given(st.lists(st.one_of(mutated_frame(), st.tuples(st.sampled_from([0, 1, 101, 113, 276, 108]),
                                                     st.binary(max_size=200), st.integers(0, 70000))),
                max_size=30))
def test_mutated_frames_decode_and_flow_without_raising(frames):
    skipped = Counter()
    dec = Decoder(skipped)
    packets = []
    for i, (lt, data, orig) in enumerate(frames):
        p = dec.decode(Record(float(i), lt, data, orig))
        assert p is None or isinstance(p, Packet)
        if p is not None:
            assert p.paylen >= len(p.payload) and p.proto in (6, 17)
            packets.append(p)
    dec.flush()
    for f in build_flows(packets):
        _check_flow(f)
    # every frame is accounted for exactly once: skipped by reason, or part of a packet (fragments included)
    assert sum(skipped.values()) + sum(p.frames for p in packets) == len(frames)


seg = st.tuples(st.integers(0, 1), st.integers(0, 2 ** 32 - 1), st.sampled_from([0x02, 0x12, 0x10, 0x18, 0x11, 0x14,
                                                                                   0x04, 0x01]),
                st.binary(max_size=40), st.integers(0, 30), st.floats(0, 1000))


@FUZZ
@given(st.lists(seg, max_size=60), st.integers(0, 2 ** 32 - 1))
def test_random_tcp_segments_never_break_the_table(segments, base):
    table = FlowTable()
    ends = [("10.0.0.1", 1000), ("10.0.0.2", 80)]
    packets = []
    for d, off, flags, data, extra, t in segments:
        (sip, sp), (dip, dp) = ends[d], ends[1 - d]
        seq = (base + off % 5000) & 0xFFFFFFFF if off % 3 else off
        packets.append(Packet(t, 4, sip, dip, 6, sp, dp, seq, (base + extra) & 0xFFFFFFFF, flags, data,
                              len(data) + extra % 4, 40, 54 + len(data), 1, ()))
    for f in build_flows(sorted(packets, key=lambda p: p.time), table):
        _check_flow(f)
    assert table.active == 0
