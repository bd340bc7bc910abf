"""Header decoding: every link type, VLAN stacks, IPv6 extension headers, fragments, malformed frames by reason."""
from __future__ import annotations

import struct
from collections import Counter

import pytest
from scapy.layers.inet import IP, TCP, UDP, fragment
from scapy.layers.inet6 import (
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
    fragment6,
)
from scapy.layers.ipsec import AH
from scapy.layers.l2 import ARP, CookedLinux, CookedLinuxV2, Dot1AD, Dot1Q, Ether

from harness.observe.decode import ACK, PSH, Decoder, Packet, is_malformed
from harness.wire.capture_reader import Record


def decode(data: bytes, linktype: int = 1, orig: int | None = None, t: float = 1.0,
           skipped: Counter | None = None) -> Packet | None:
    skipped = Counter() if skipped is None else skipped
    return Decoder(skipped).decode(Record(t, linktype, data, len(data) if orig is None else orig))


def reason(data: bytes, linktype: int = 1, orig: int | None = None) -> str:
    skipped = Counter()
    assert decode(data, linktype, orig, skipped=skipped) is None
    (what,) = skipped
    return what


ETH = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
QINQ = Ether(dst="ff:ff:ff:ff:ff:ff", src="02:00:00:00:00:01", type=0x88A8)
TCP4 = IP(src="192.0.2.1", dst="198.51.100.2") / TCP(sport=40000, dport=443, seq=7, ack=9, flags="PA") / b"hello"


def test_ethernet_ipv4_tcp_fields():
    p = decode(bytes(ETH / TCP4), orig=200, t=12.5)
    assert p == Packet(12.5, 4, "192.0.2.1", "198.51.100.2", 6, 40000, 443, 7, 9, PSH | ACK, b"hello", 5, 45, 200,
                       1, ())


@pytest.mark.parametrize("linktype, frame", [
    (1, bytes(ETH / TCP4)),
    (113, bytes(CookedLinux(pkttype=0, lladdrtype=1, lladdrlen=6, src=b"\x02" * 6 + b"\0\0", proto=0x0800) / TCP4)),
    (276, bytes(CookedLinuxV2(proto=0x0800, ifindex=2, lladdrtype=1, pkttype=4, lladdrlen=6,
                              src=b"\x02" * 8) / TCP4)),
    (101, bytes(TCP4)), (12, bytes(TCP4)), (14, bytes(TCP4)), (228, bytes(TCP4)),
    (0, struct.pack("<I", 2) + bytes(TCP4)),
    (0, struct.pack(">I", 2) + bytes(TCP4)),
    (108, struct.pack(">I", 2) + bytes(TCP4)),
    (108, struct.pack("<I", 2) + bytes(TCP4)),
    (1, bytes(ETH / Dot1Q(vlan=10) / TCP4)),
    (1, bytes(QINQ / Dot1AD(vlan=200, type=0x8100) / Dot1Q(vlan=2001) / TCP4)),
    (1, bytes(Ether(dst="ff:ff:ff:ff:ff:ff", src="02:00:00:00:00:01", type=0x9100) / Dot1Q(vlan=5, type=0x8100)
              / Dot1Q(vlan=6, type=0x8100) / Dot1Q(vlan=7) / TCP4)),
    (1, b"\0" * 12 + b"\x88\x64" + b"\x11\x00\x00\x01\x00\x00" + b"\x00\x21" + bytes(TCP4)),  # PPPoE
    (1, b"\0" * 12 + b"\x88\x47" + b"\x00\x01\x00\x40" + b"\x00\x02\x01\x40" + bytes(TCP4)),  # two MPLS labels
])
def test_every_link_type_reaches_the_same_segment(linktype, frame):
    p = decode(frame, linktype)
    assert p is not None and (p.src, p.dst, p.sport, p.dport, p.payload) == (
        "192.0.2.1", "198.51.100.2", 40000, 443, b"hello")


@pytest.mark.parametrize("af", [24, 28, 30])
@pytest.mark.parametrize("order", ["<", ">"])
def test_bsd_loopback_ipv6_address_families(af, order):
    ip6 = bytes(IPv6(src="::1", dst="::1") / UDP(sport=50606, dport=443) / b"quic")
    p = decode(struct.pack(order + "I", af) + ip6, 0)
    assert (p.version, p.src, p.proto, p.payload) == (6, "::1", 17, b"quic")


def test_benign_and_unsupported_reasons():
    assert reason(bytes(ETH / ARP())) == "non-ip"
    assert reason(bytes(QINQ / Dot1AD(vlan=200, type=0x8100) / Dot1Q(vlan=2001) / ARP())) == "non-ip"
    assert reason(struct.pack("<I", 7) + bytes(TCP4), 0) == "non-ip"
    assert reason(bytes(TCP4), 105) == "unsupported-linktype-105"
    assert reason(bytes(ETH / IP(src="1.1.1.1", dst="2.2.2.2", proto=1) / b"\x08\0\0\0\0\0\0\0")) == "ip-proto-icmp"
    assert reason(bytes(ETH / IP(proto=200) / b"x")) == "ip-proto-200"
    assert not is_malformed("non-ip") and not is_malformed("ip-proto-icmp")
    assert is_malformed("truncated-tcp")


def test_malformed_ipv4():
    frame = bytearray(bytes(ETH / TCP4))
    bad = bytearray(frame)
    bad[14] = 0x44  # IHL 4 words = 16 bytes
    assert reason(bytes(bad)) == "ipv4-bad-header-length"
    bad = bytearray(frame)
    bad[14] = 0x55
    assert reason(bytes(bad)) == "ipv4-bad-version"
    assert reason(bytes(frame[:30])) == "truncated-ip"
    assert reason(bytes(frame[:14 + 20 + 10])) == "truncated-tcp"
    bad = bytearray(frame)
    struct.pack_into("!H", bad, 16, 10)  # total length below the header length
    assert reason(bytes(bad)) == "ipv4-bad-total-length"
    bad = bytearray(frame)
    bad[14 + 20 + 12] = 0x40  # TCP data offset 4 words
    assert reason(bytes(bad)) == "tcp-bad-header-length"
    assert reason(bytes(frame[:10])) == "truncated-link"


def test_malformed_ipv6_and_udp():
    ip6 = bytes(ETH / IPv6(src="2001:db8::1", dst="2001:db8::2") / UDP(sport=1, dport=2) / b"data")
    bad = bytearray(ip6)
    bad[14] = 0x00
    assert reason(bytes(bad)) == "ipv6-bad-version"
    assert reason(ip6[:14 + 39]) == "truncated-ip"
    assert reason(ip6[:14 + 40 + 4]) == "truncated-udp"
    bad = bytearray(ip6)
    struct.pack_into("!H", bad, 14 + 40 + 4, 3)
    assert reason(bytes(bad)) == "udp-bad-length"
    assert reason(bytes(ETH / IPv6(nh=59) / b"")) == "ipv6-no-next-header"


def test_udp_length_larger_than_ip_is_an_anomaly_not_a_skip():
    frame = bytearray(bytes(ETH / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=1, dport=2) / b"abcd"))
    struct.pack_into("!H", frame, 14 + 20 + 4, 400)
    p = decode(bytes(frame))
    assert p.payload == b"abcd" and "udp-length-exceeds-ip" in p.anomalies


def test_ethernet_padding_is_not_payload():
    frame = bytes(ETH / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(flags="A")) + b"\0" * 6
    p = decode(frame)
    assert p.payload == b"" and p.paylen == 0


def test_capture_shorter_than_ip_length_keeps_what_is_there():
    frame = bytes(ETH / TCP4 / (b"x" * 100))
    p = decode(frame[:-60], orig=len(frame))
    assert p.payload == b"hello" + b"x" * 40 and p.paylen == 105
    assert p.anomalies == ("truncated-ip-len",)
    # the frame was whole on the wire: the IP header lies, no bytes are missing
    p = decode(frame[:-60])
    assert p.paylen == len(p.payload) == 45 and p.anomalies == ("truncated-ip-len",)


def test_ipv6_extension_headers_are_walked():
    inner = TCP(sport=1234, dport=80, flags="PA") / b"GET /"
    pkt = (IPv6(src="2001:db8::1", dst="2001:db8::2") / IPv6ExtHdrHopByHop() / IPv6ExtHdrRouting()
           / IPv6ExtHdrDestOpt() / AH(nh=6, payloadlen=4, icv=b"\0" * 12) / inner)
    p = decode(bytes(ETH / pkt))
    assert (p.proto, p.sport, p.payload) == (6, 1234, b"GET /")


def test_atomic_ipv6_fragment_is_not_reassembled():
    pkt = IPv6(src="2001:db8::1", dst="2001:db8::2") / IPv6ExtHdrFragment(offset=0, m=0, id=5) / UDP() / b"x"
    p = decode(bytes(ETH / pkt))
    assert p.payload == b"x" and p.frames == 1


def _feed(frames: list[bytes], dec: Decoder | None = None, t0: float = 1.0) -> tuple[list[Packet], Counter]:
    skipped = Counter()
    dec = dec or Decoder(skipped)
    out = [dec.decode(Record(t0 + i, 1, f, len(f))) for i, f in enumerate(frames)]
    return [p for p in out if p is not None], dec.skipped


@pytest.mark.parametrize("order", ["in-order", "reversed"])
def test_ipv4_fragments_reassemble(order):
    big = IP(src="10.0.0.1", dst="10.0.0.2", id=77) / UDP(sport=53, dport=5353) / (b"A" * 1000 + b"B" * 1000)
    frames = [bytes(ETH / f) for f in fragment(big, fragsize=600)]
    assert len(frames) == 4
    if order == "reversed":
        frames.reverse()
    (p,), skipped = _feed(frames)
    assert p.payload == b"A" * 1000 + b"B" * 1000 and p.paylen == 2000
    assert (p.frames, p.wire_len, p.sport, p.time) == (4, sum(map(len, frames)), 53, 4.0)
    assert p.anomalies == () and not skipped


def test_ipv6_fragments_reassemble():
    big = (IPv6(src="2001:db8::1", dst="2001:db8::2") / IPv6ExtHdrFragment(id=99) / UDP(sport=53, dport=9)
           / (b"C" * 3000))
    frames = [bytes(ETH / f) for f in fragment6(big, 1280)]
    assert len(frames) == 3
    (p,), skipped = _feed([frames[1], frames[0], frames[2]])
    assert (p.version, p.payload, p.frames, p.dport) == (6, b"C" * 3000, 3, 9) and not skipped


def test_inconsistent_overlapping_fragments_are_flagged_first_copy_wins():
    def frag(off: int, mf: bool, data: bytes) -> bytes:
        return bytes(ETH / IP(src="10.0.0.1", dst="10.0.0.2", id=5, proto=17, flags="MF" if mf else 0,
                              frag=off // 8) / data)
    udp = bytes(UDP(sport=1, dport=2, len=8 + 24)) + b"a" * 8
    frames = [frag(0, True, udp), frag(8, True, b"b" * 16), frag(16, False, b"X" * 16)]
    (p,), _ = _feed(frames)
    assert p.payload == b"a" * 8 + b"b" * 8 + b"X" * 8
    assert "fragment-overlap-inconsistent" in p.anomalies


def test_incomplete_fragments_time_out_and_are_counted():
    big = IP(src="10.0.0.1", dst="10.0.0.2", id=1) / UDP() / (b"x" * 2000)
    frames = [bytes(ETH / f) for f in fragment(big, fragsize=800)]
    skipped = Counter()
    dec = Decoder(skipped)
    assert dec.decode(Record(1.0, 1, frames[0], len(frames[0]))) is None
    assert dec.decode(Record(2.0, 1, frames[1], len(frames[1]))) is None
    ok = bytes(ETH / TCP4)
    assert dec.decode(Record(100.0, 1, ok, len(ok))) is not None
    dec.decode(Record(100.0, 1, frames[0], len(frames[0])))  # a new datagram; the old one is expired first
    assert skipped == Counter({"fragment-incomplete": 2})
    dec.flush()
    assert skipped == Counter({"fragment-incomplete": 3})


def test_pending_datagrams_are_bounded():
    skipped = Counter()
    dec = Decoder(skipped, max_pending=10)
    for i in range(50):
        f = bytes(ETH / IP(src="10.0.0.1", dst="10.0.0.2", id=i, flags="MF", proto=17) / (b"x" * 16))
        dec.decode(Record(1.0, 1, f, len(f)))
    assert skipped["fragment-evicted"] == 40 and len(dec._pending) == 10


def test_a_truncated_fragment_is_skipped():
    big = IP(src="10.0.0.1", dst="10.0.0.2", id=1) / UDP() / (b"x" * 2000)
    f = bytes(ETH / fragment(big, fragsize=800)[0])
    assert reason(f[:-100], orig=len(f)) == "truncated-fragment"


def test_zero_ip_length_from_segmentation_offload_uses_the_captured_bytes():
    frame = bytearray(bytes(ETH / TCP4))
    struct.pack_into("!H", frame, 16, 0)
    p = decode(bytes(frame))
    assert p.payload == b"hello" and p.anomalies == ("ip-length-zero",)
    six = bytearray(bytes(ETH / IPv6(src="2001:db8::1", dst="2001:db8::2") / TCP(flags="PA") / b"data"))
    struct.pack_into("!H", six, 14 + 4, 0)
    p = decode(bytes(six))
    assert p.payload == b"data" and p.anomalies == ("ip-length-zero",)
