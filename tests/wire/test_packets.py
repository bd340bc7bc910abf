"""The fast frame builder must equal scapy's construction byte for byte; checksums must verify."""
import ipaddress

from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.utils import rdpcap

from harness.wire.packets import (
    ACK,
    FIN,
    PSH,
    SYN,
    TcpPacket,
    build_frame,
    internet_checksum,
    scapy_frame,
)
from harness.wire.pcap_writer import write_pcap

v4 = st.integers(1, 2**32 - 2).map(lambda n: str(ipaddress.IPv4Address(n)))
v6 = st.integers(1, 2**128 - 2).map(lambda n: str(ipaddress.IPv6Address(n)))


@settings(max_examples=150, deadline=None)
@given(
    addrs=st.one_of(st.tuples(v4, v4), st.tuples(v6, v6)),
    sport=st.integers(0, 65535), dport=st.integers(0, 65535),
    seq=st.integers(0, 2**32 - 1), ack=st.integers(0, 2**32 - 1),
    flags=st.sampled_from([SYN, SYN | ACK, ACK, ACK | PSH, FIN | ACK]),
    payload=st.binary(max_size=1500), ip_id=st.integers(0, 65535), ttl=st.integers(1, 255),
    mss=st.sampled_from([0, 536, 1460]), window=st.integers(0, 65535),
)
def test_fast_path_equals_scapy(addrs, sport, dport, seq, ack, flags, payload, ip_id, ttl, mss, window):
    p = TcpPacket(0.0, addrs[0], addrs[1], sport, dport, seq, ack, flags, payload, window, ip_id, ttl, mss)
    assert build_frame(p) == bytes(scapy_frame(p))


def test_checksums_verify_in_scapy():
    p = TcpPacket(0.0, "10.0.0.1", "192.0.2.9", 40000, 25, 1, 2, ACK | PSH, b"MAIL FROM:<a@b>\r\n", ip_id=5)
    frame = Ether(build_frame(p))
    ip_sum, tcp_sum = frame[IP].chksum, frame[TCP].chksum
    del frame[IP].chksum, frame[TCP].chksum
    rebuilt = Ether(bytes(frame))
    assert (rebuilt[IP].chksum, rebuilt[TCP].chksum) == (ip_sum, tcp_sum)


def test_internet_checksum_known_answer():
    # RFC 1071 section 3 example words 0001 f203 f4f5 f6f7 -> sum ddf2, checksum 220d
    assert internet_checksum(bytes.fromhex("0001f203f4f5f6f7")) == 0x220D
    assert internet_checksum(b"") == 0xFFFF


def test_pcap_writer_roundtrip(tmp_path):
    frames = [(1.5 + i, build_frame(TcpPacket(0, "10.0.0.1", "10.0.0.2", 1, 2, i, 0, ACK, b"x" * i)))
              for i in range(5)]
    path = tmp_path / "out.pcap"
    assert write_pcap(path, frames) == 5
    pkts = rdpcap(str(path))
    assert [bytes(p) for p in pkts] == [f for _, f in frames]
    assert [float(p.time) for p in pkts] == [1.5, 2.5, 3.5, 4.5, 5.5]
    assert path.read_bytes()[:4] == bytes.fromhex("d4c3b2a1")  # little-endian, microseconds
    assert not list(tmp_path.glob(".*tmp*"))
