"""Each analyzer once through a real capture: chunks -> scapy packets -> pcap -> harness.observe -> findings."""
from __future__ import annotations

import pytest

try:
    from harness.observe import observe
except ImportError:  # the capture reader is written in parallel with the analyzers
    observe = None

from harness.analysis import findings_document, run_analyzers

from .conftest import (
    items,
    STUFFED,
    SUBJECT,
    T_DATA_BODY,
    T_MAIL,
    TOKEN,
    C,
    S,
    encrypt_chunks,
    pick,
    relay_chunks,
    smtp_chunks,
)

pytestmark = pytest.mark.skipif(observe is None, reason="harness.observe.observe is not importable yet")

MSS = 1448


def write_pcap(path, chunks, *, src=("10.1.0.5", 40001), dst=("10.9.0.25", 25)) -> str:
    """A TCP connection carrying `chunks` (handshake, data segments with their ACKs, FIN/FIN)."""
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether
    from scapy.packet import Raw
    from scapy.utils import wrpcap

    ends = {C: (src, dst), S: (dst, src)}
    seq = {C: 1000, S: 90000}
    packets = []

    def send(t, side, flags, data=b""):
        (sip, sport), (dip, dport) = ends[side]
        pkt = Ether() / IP(src=sip, dst=dip) / TCP(sport=sport, dport=dport, flags=flags, seq=seq[side],
                                                  ack=seq[1 - side] if "A" in flags else 0, window=65535)
        if data:
            pkt = pkt / Raw(data)
        pkt.time = t
        packets.append(pkt)
        seq[side] += len(data) + (1 if ("S" in flags or "F" in flags) else 0)

    t0 = chunks[0][0] - 0.03
    send(t0, C, "S")
    send(t0 + 0.01, S, "SA")
    send(t0 + 0.02, C, "A")
    for t, side, data in chunks:
        for k in range(0, len(data), MSS):
            send(t + k / MSS * 1e-4, side, "PA", data[k:k + MSS])
        send(t + 0.002, 1 - side, "A")
    t_end = chunks[-1][0] + 0.1
    send(t_end, C, "FA")
    send(t_end + 0.01, S, "FA")
    send(t_end + 0.02, C, "A")
    wrpcap(str(path), packets)
    return str(path)


def analyse(path, knowledge, only=None):
    obs = observe([path])
    (flow,) = obs.flows
    return obs, flow, run_analyzers(obs.flows, knowledge, only=only)


def test_dpi_through_a_pcap(tmp_path, knowledge):
    _, flow, result = analyse(write_pcap(tmp_path / "smtp.pcap", smtp_chunks()), knowledge, ["payload.dpi"])
    assert not result.errors
    found = result.findings
    assert result.flow_labels[flow.id]["app"] == "smtp"
    (mail_from,) = pick(found, "sender", "smtp-mail-from")
    assert mail_from.value == "alice@corp.example" and mail_from.time == pytest.approx(T_MAIL, abs=1e-6)
    assert [f.value for f in pick(found, "subject")] == [SUBJECT]
    assert any(TOKEN in f.value and f.time == pytest.approx(T_DATA_BODY, abs=1e-6) for f in pick(found, "content"))
    assert {tuple(f.value.values()) for f in pick(found, "contacts", "smtp-envelope")} == {
        ("alice@corp.example", "bob@corp.example")}


def test_entropy_through_a_pcap(tmp_path, knowledge):
    _, flow, clear = analyse(write_pcap(tmp_path / "clear.pcap", smtp_chunks()), knowledge, ["payload.entropy"])
    assert clear.flow_labels[flow.id]["payload_class"] == "plaintext"
    _, flow, sealed = analyse(write_pcap(tmp_path / "gcm.pcap", encrypt_chunks(smtp_chunks())), knowledge,
                              ["payload.entropy"])
    assert sealed.flow_labels[flow.id]["payload_class"] == "encrypted"
    assert sealed.flow_labels[flow.id]["entropy"] > 7.5


def test_metadata_through_a_pcap(tmp_path, knowledge):
    chunks, expected = relay_chunks()
    path = write_pcap(tmp_path / "relay.pcap", chunks, src=("10.64.0.4", 50001), dst=("198.51.100.10", 3101))
    obs, flow, result = analyse(path, knowledge)
    assert not result.errors
    found = [f for f in result.findings if f.analyzer == "metadata.flows"]
    sizes = sorted((f["value"]["time"], f["value"]["bytes"]) for f in items(found, "size"))
    assert sizes == [(t, n) for t, n, _ in expected]
    assert len(items(found, "timing")) == len(expected)
    assert [f.value for f in pick(found, "endpoint", "server-address")] == ["198.51.100.10:3101"]
    assert [f.value["messages"] for f in pick(found, "volume")] == [3]
    doc = findings_document(obs, result)
    (row,) = doc["flows"]
    assert (row["app"], row["payload_class"]) == ("bes-relay", "encrypted")
    assert row["packets"] == flow.total_packets and row["bytes"] == flow.total_bytes


def test_smtp_size_through_a_pcap(tmp_path, knowledge):
    _, _, result = analyse(write_pcap(tmp_path / "smtp.pcap", smtp_chunks()), knowledge, ["metadata.flows"])
    assert [(f["value"]["time"], f["value"]["bytes"]) for f in items(result.findings, "size")] == [
        (round(T_DATA_BODY, 3), len(STUFFED))]
