"""The real-capture corpus: observing never fails, and our flows agree with tshark's conversations (or say why not)."""
from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.observe import observe
from harness.observe.model import Flow

CORPUS = Path(__file__).resolve().parents[2] / ".." / "shared" / "corpus" / "real"
FILES = sorted(p.name for p in CORPUS.glob("*") if p.is_file() and p.suffix in (".pcap", ".pcapng")) \
    if CORPUS.is_dir() else []

_FRAGMENTS = ("tshark puts a fragmented datagram in the UDP conversation once, with the frame that completes "
              "it; we count every fragment frame the tap saw, in packets and bytes")
_IDLE = ("over 300 s of silence inside the conversation: we finish the flow when idle and number the next one "
         "#2; tshark keeps one conversation")
_UDP_IDLE = ("over 60 s of silence inside a UDP conversation: we finish the flow after 60 s idle, as Zeek does "
             "(udp_inactivity_timeout), and the next one (#2) has whoever sent first as its client; tshark keeps "
             "one conversation")

# (file, kind of difference, conversation) -> why we differ from tshark on purpose.
ALLOWED: dict[tuple[str, str, str], str] = {
    **{("ndpi__dns_fragmented.pcap", "counts", conv): _FRAGMENTS for conv in [
        "udp 2001:470:1f0b:16b0:20c:29ff:fe7c:a4cb:55729 <-> 2001:470:765b::a25:53:53",
        "udp 172.217.40.76:56680 <-> 193.24.227.238:53",
        "udp 2a00:1450:4013:c03::10a:46433 <-> 2001:470:765b::a25:53:53",
        "udp 2a00:1450:4013:c06::105:63369 <-> 2001:470:765b::a25:53:53",
        "udp 173.194.169.104:59464 <-> 193.24.227.238:53",
        "udp 74.125.47.136:59330 <-> 193.24.227.238:53",
        "udp 194.247.5.6:51791 <-> 193.24.227.238:53",
    ]},
    ("zeek__ipv4-fragmented-1.pcap", "counts", "udp 164.1.123.163:123 <-> 164.1.123.61:137"): _FRAGMENTS,
    ("ndpi__tor.pcap", "split", "udp 192.168.1.1:17500 <-> 192.168.1.255:17500"):
        _IDLE + " (Dropbox LAN-sync broadcasts, 360 s apart)",
    ("ndpi__wireguard.pcap", "split", "udp 10.9.0.1:43462 <-> 10.9.0.2:51820"):
        _UDP_IDLE + " (a WireGuard tunnel without keepalives, silent for 128 s)",
    ("tcpdump__timestamp_invalid_micro.pcap", "split", "tcp 131.155.215.69:46656 <-> 137.116.81.94:80"):
        "record 3's microsecond field is 2147483648 (invalid); time = sec + usec/1e6 puts it 2147 s later, "
        "past the idle timeout, so it starts #2; tshark keeps one conversation",
}

_SIZE = r"(\d+)\s+([\d,]+)\s+(bytes|kB|MB|GB)"
_CONV = re.compile(rf"^(\S+)\s+<->\s+(\S+)\s+{_SIZE}\s+{_SIZE}\s")
_UNIT = {"bytes": 1, "kB": 10 ** 3, "MB": 10 ** 6, "GB": 10 ** 9}

needs_corpus = pytest.mark.skipif(not FILES, reason=f"corpus not found at {CORPUS}")


@needs_corpus
@pytest.mark.parametrize("name", FILES)
def test_observing_the_corpus_never_fails(name):
    path = str(CORPUS / name)
    try:
        obs = observe([path])
    except HarnessError:  # only for a file that is not a capture; the corpus has none
        pytest.fail(f"{name} was refused")
    assert sum(obs.skipped.values()) + sum(f.total_packets for f in obs.flows) == obs.packets
    for f in obs.flows:
        assert f.first_seen <= f.last_seen and f.total_packets > 0


@needs_corpus
def test_corpus_facts_we_know():
    """Zeek's and the manifest's own numbers for the reassembly traces."""
    (f,) = observe([str(CORPUS / "zeek__tcp-retransmit-fast009.pcap")]).flows
    assert f.anomalies["missed-bytes"] == 24257 and f.packets == [17, 22]  # Zeek: missed_bytes=24257
    (f,) = observe([str(CORPUS / "zeek__tcp-reassembly.pcap")]).flows
    assert f.anomalies["overlap-inconsistent"] == 6 and f.anomalies["truncated-ip-len"] == 5  # 6x rexmit_inconsistency
    obs = observe([str(CORPUS / "ndpi__fuzz-2021-10-13.pcap")])
    assert obs.packets == 0 and "capture corrupt" in obs.notes[0]
    obs = observe([str(CORPUS / "tcpdump__802.1ad_QinQ.pcap")])
    assert obs.skipped == Counter({"non-ip": 2})
    (f,) = observe([str(CORPUS / "zeek__http-get.pcap")]).flows
    assert b"GET /download/CHANGES.bro-aux.txt" in f.payload[0] and f.handshake
    assert f.payload_bytes == [136, 5007]  # Zeek conn.log: orig_bytes=136 resp_bytes=5007


@pytest.fixture(scope="module")
def tshark_output(tshark_corpus) -> dict[str, str]:
    """tshark's `-z conv,tcp -z conv,udp` tables per corpus file (from the shared run in conftest.py)."""
    return {name: tables for name, (tables, _) in tshark_corpus.items()}


def parse_conversations(text: str) -> list[tuple[str, str, str, int, int, int, int, str, str]]:
    """tshark `-z conv,tcp/udp` rows: (proto, a, b, frames a->b, bytes a->b, frames b->a, bytes b->a, units)."""
    rows, proto = [], ""
    for line in text.splitlines():
        if line.startswith(("TCP Conversations", "UDP Conversations")):
            proto = line[:3].lower()
        m = _CONV.match(line)
        if m and proto:
            ba_frames, ba_bytes, ba_unit, ab_frames, ab_bytes, ab_unit = m.groups()[2:]
            rows.append((proto, m[1], m[2], int(ab_frames), int(ab_bytes.replace(",", "")), int(ba_frames),
                         int(ba_bytes.replace(",", "")), ab_unit, ba_unit))
    return rows


def _same_size(ours: int, shown: int, unit: str) -> bool:
    """tshark prints 10,000 bytes and more in kB (or MB): accept its rounding either way."""
    k = _UNIT[unit]
    return ours == shown if k == 1 else ours // k == shown or round(ours / k) == shown


def differences(flows: list[Flow], convs: list) -> list[tuple[str, str]]:
    """(kind, conversation) pairs where our flows and tshark's conversations disagree."""
    ours: dict[tuple[str, frozenset], list[Flow]] = {}
    for f in flows:
        ours.setdefault((f.proto, frozenset((f"{f.src_ip}:{f.sport}", f"{f.dst_ip}:{f.dport}"))), []).append(f)
    out = []
    for proto, a, b, ab_n, ab_b, ba_n, ba_b, ab_u, ba_u in convs:
        name = f"{proto} {a} <-> {b}"
        group = ours.pop((proto, frozenset((a, b))), None)
        if not group:
            out.append(("missing", name))
            continue
        if len(group) > 1:
            out.append(("split", name))
        packets, sizes = Counter(), Counter()
        for f in group:
            src, dst = f"{f.src_ip}:{f.sport}", f"{f.dst_ip}:{f.dport}"
            packets[src] += f.packets[0]
            sizes[src] += f.bytes[0]
            packets[dst] += f.packets[1]
            sizes[dst] += f.bytes[1]
        if a == b:  # identical endpoints: both directions are one
            ok = packets[a] == ab_n + ba_n
        else:
            ok = (packets[a], packets[b]) == (ab_n, ba_n) and _same_size(sizes[a], ab_b, ab_u) \
                and _same_size(sizes[b], ba_b, ba_u)
        if not ok:
            out.append(("counts", name))
    for (proto, ends), group in ours.items():
        out.append(("extra", f"{proto} {' <-> '.join(sorted(ends))}"))
    return out


@needs_corpus
@pytest.mark.tshark
@pytest.mark.parametrize("name", FILES)
def test_flows_agree_with_tshark_conversations(name, tshark_output):
    flows = observe([str(CORPUS / name)]).flows
    found = differences(flows, parse_conversations(tshark_output[name]))
    unexplained = [(kind, conv) for kind, conv in found if (name, kind, conv) not in ALLOWED]
    assert not unexplained, f"{name}: differences from tshark not in ALLOWED: {unexplained}"
    stale = [key for key in ALLOWED if key[0] == name and key[1:] not in found]
    assert not stale, f"ALLOWED entries no longer needed: {stale}"


def test_the_conversation_parser():
    text = """================================================================================
TCP Conversations
Filter:<No Filter>
                                               |       <-      | |       ->      | |     Total     |
10.0.0.1:1000   <-> 10.0.0.2:80     7 5477 bytes       7 610 bytes      14 6087 bytes     0.000000000         0.2116
2a00::1:443    <-> 2a00::2:5000    170 206 kB        95 9293 bytes     265 216 kB       21.283409000         0.4800
"""
    assert parse_conversations(text) == [
        ("tcp", "10.0.0.1:1000", "10.0.0.2:80", 7, 610, 7, 5477, "bytes", "bytes"),
        ("tcp", "2a00::1:443", "2a00::2:5000", 95, 9293, 170, 206, "bytes", "kB")]
    assert _same_size(206_400, 206, "kB") and not _same_size(207_600, 206, "kB")
