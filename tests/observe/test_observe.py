"""The observe tier's public API: captures in, flows out, several files merged on time, counts and notes kept."""
from __future__ import annotations

import gzip
from collections import Counter

import pytest
from scapy.layers.inet import IP, UDP, fragment
from scapy.layers.l2 import ARP, Ether

from harness.errors import HarnessError
from harness.observe import Observer, iter_flows, observe

ETH = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")


def _session(build) -> list[tuple[float, bytes]]:
    """A TCP connection as timed frames: handshake, request, a reply in two out-of-order segments, close."""
    c, s = dict(src="10.1.1.1", dst="10.2.2.2", sport=50000, dport=25), dict(src="10.2.2.2", dst="10.1.1.1",
                                                                              sport=25, dport=50000)
    frames = [
        build.eth_tcp(**c, seq=100, flags="S"),
        build.eth_tcp(**s, seq=900, ack=101, flags="SA"),
        build.eth_tcp(**c, seq=101, ack=901, flags="A"),
        build.eth_tcp(**c, seq=101, ack=901, payload=b"EHLO x\r\n"),
        build.eth_tcp(**s, seq=908, ack=109, payload=b"there\r\n"),  # arrives before the first part
        build.eth_tcp(**s, seq=901, ack=109, payload=b"hello, "),
        build.eth_tcp(**c, seq=109, ack=915, flags="FA"),
        build.eth_tcp(**s, seq=915, ack=110, flags="FA"),
        build.eth_tcp(**c, seq=110, ack=916, flags="A"),
    ]
    return [(1000.0 + i, f) for i, f in enumerate(frames)]


def test_observe_one_capture(tmp_path, build):
    recs = _session(build) + [(1100.0, bytes(ETH / ARP()))]
    path = build.write_pcap(tmp_path / "s.pcap", recs)
    obs = observe([str(path)])
    assert obs.captures == [str(path)] and obs.packets == 10
    assert obs.skipped == Counter({"non-ip": 1}) and obs.notes == []
    (f,) = obs.flows
    assert f.id == "tcp 10.1.1.1:50000 > 10.2.2.2:25" and f.handshake
    assert bytes(f.payload[0]) == b"EHLO x\r\n" and bytes(f.payload[1]) == b"hello, there\r\n"
    assert f.bytes == [sum(len(b) for i, (_, b) in enumerate(recs[:9]) if i in (0, 2, 3, 6, 8)),
                       sum(len(b) for i, (_, b) in enumerate(recs[:9]) if i in (1, 4, 5, 7))]


def test_several_captures_merge_on_time(tmp_path, build):
    recs = _session(build)
    a = build.write_pcap(tmp_path / "a.pcap", recs[0::2], endian=">")
    b = tmp_path / "b.bin"
    b.write_bytes(gzip.compress(build.ng_shb() + build.ng_idb(1, tsresol=3)
                                + b"".join(build.ng_epb(0, int(t * 1000), f) for t, f in recs[1::2])))
    dns = build.write_pcap(tmp_path / "dns.pcap", [(500.0, build.eth(build.ip_udp()))])
    obs = observe([str(a), str(b), str(dns)])
    assert obs.packets == 10
    assert [f.proto for f in obs.flows] == ["udp", "tcp"]  # in order of first packet
    tcp = obs.flows[1]
    assert bytes(tcp.payload[1]) == b"hello, there\r\n" and tcp.packets == [5, 4]


def test_notes_name_the_file(tmp_path, build):
    blob = build.pcap_bytes(_session(build))
    path = tmp_path / "cut.pcap"
    path.write_bytes(blob[:-10])
    obs = observe([str(path)])
    assert obs.notes == [f"{path}: capture truncated after 8 records"]
    assert obs.packets == 8 and len(obs.flows) == 1


def test_iter_flows_streams_and_fills_the_counters(tmp_path, build):
    path = build.write_pcap(tmp_path / "s.pcap", _session(build) + [(2000.0, bytes(ETH / ARP()))])
    skipped, notes = Counter(), []
    flows = iter_flows([str(path)], skipped, notes)
    assert next(flows).proto == "tcp"
    assert list(flows) == []
    assert skipped == Counter({"non-ip": 1}) and notes == []


def test_a_bad_path_is_refused_before_any_work(tmp_path, build):
    good = build.write_pcap(tmp_path / "ok.pcap", _session(build))
    bad = tmp_path / "notes.txt"
    bad.write_text("hello")
    with pytest.raises(HarnessError, match="notes.txt: not a capture file"):
        iter_flows([str(good), str(bad)], Counter(), [])
    with pytest.raises(HarnessError, match="no such file"):
        observe([str(tmp_path / "missing.pcap")])


def test_fragmented_datagram_end_to_end(tmp_path, build):
    big = IP(src="10.0.0.1", dst="10.0.0.2", id=9) / UDP(sport=53, dport=40000) / (b"r" * 3000)
    frames = [bytes(ETH / f) for f in fragment(big, fragsize=1000)]
    path = build.write_pcap(tmp_path / "frag.pcap", [(1.0 + i, f) for i, f in enumerate(frames)])
    obs = observe([str(path)])
    (f,) = obs.flows
    assert f.packets == [len(frames), 0] and f.bytes == [sum(map(len, frames)), 0]
    assert bytes(f.payload[0]) == b"r" * 3000 and not obs.skipped


def test_observer_counts(tmp_path, build):
    path = build.write_pcap(tmp_path / "s.pcap", _session(build))
    obs = Observer([str(path)])
    flows = list(obs.flows())
    assert len(flows) == 1 and obs.packets == 9


def test_observe_leaves_the_garbage_collector_as_it_found_it(tmp_path, build):
    import gc
    before = gc.get_threshold()
    observe([str(build.write_pcap(tmp_path / "s.pcap", _session(build)))])
    assert gc.get_threshold() == before
