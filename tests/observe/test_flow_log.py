"""harness.observe.flow_log: flow summaries in columns read back exactly as the flows they summarise."""
from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from harness.observe import observe
from harness.observe.flow_log import FlowLog
from harness.observe.model import FlowSummary

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpus" / "real"
NAMES = ["zeek__tcp-reassembly.pcap", "zeek__pcapng-multi-interface.pcapng", "ndpi__http_ipv6.pcap",
         "tcpdump__tcp_rst_data-trunc.pcap", "ndpi__dns_fragmented.pcap"]


def _summary(f) -> FlowSummary:
    """What a flow's summary must hold: its fields, minus payload and chunks."""
    return FlowSummary(f.id, f.proto, f.src, f.dst, f.src_ip, f.dst_ip, f.sport, f.dport, f.first_seen,
                       f.last_seen, tuple(f.packets), tuple(f.bytes), tuple(f.payload_bytes),
                       tuple(f.truncated), f.handshake, dict(f.anomalies))


def test_a_flow_log_gives_back_each_summary_and_the_first_seen_order():
    paths = [str(CORPUS / n) for n in NAMES if (CORPUS / n).is_file()]
    if not paths:
        pytest.skip("corpus not present")
    flows = observe(paths).flows
    log = FlowLog()
    for flow in flows:
        log.append(flow)
    expected = [_summary(f) for f in flows]
    assert list(log) == expected and len(log) == len(flows) and log[-1] == expected[-1]
    assert log[1:3] == expected[1:3] and log.ids() == [f.id for f in flows]
    assert any(s.anomalies for s in log) and any(not s.handshake for s in log)  # the cases are covered
    assert any(s.proto == "udp" for s in log) and any(":" in s.src_ip for s in log)
    assert list(log.by_first_seen()) == sorted(expected, key=lambda s: s.first_seen)
    assert list(pickle.loads(pickle.dumps(log))) == expected  # a worker process hands it back
    with pytest.raises(IndexError):
        log[len(flows)]
