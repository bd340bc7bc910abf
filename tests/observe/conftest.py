"""Builders for the observe tests: frames (scapy), pcap and pcapng files (struct), packets and TCP talks.

Tests get them through the `build` fixture (a conftest is not reliably importable by name).
"""
from __future__ import annotations

import struct
from pathlib import Path
from types import SimpleNamespace
from typing import Iterable, Sequence

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6

from harness.observe.decode import ACK, FIN, PSH, RST, SYN, Packet

CORPUS = Path(__file__).resolve().parents[2] / ".." / "shared" / "corpus" / "real"


# -- frames ----------------------------------------------------------------------------------------------------

def ip_tcp(src: str = "10.0.0.1", dst: str = "10.0.0.2", sport: int = 40000, dport: int = 80, seq: int = 1000,
           ack: int = 0, flags: str = "PA", payload: bytes = b"") -> bytes:
    """IP (v4 or v6, by the address) + TCP bytes."""
    ip = IPv6(src=src, dst=dst) if ":" in src else IP(src=src, dst=dst)
    return bytes(ip / TCP(sport=sport, dport=dport, seq=seq, ack=ack, flags=flags) / payload)


def ip_udp(src: str = "10.0.0.1", dst: str = "10.0.0.2", sport: int = 5353, dport: int = 53,
           payload: bytes = b"query") -> bytes:
    ip = IPv6(src=src, dst=dst) if ":" in src else IP(src=src, dst=dst)
    return bytes(ip / UDP(sport=sport, dport=dport) / payload)


def eth(ip_bytes: bytes, ethertype: int | None = None) -> bytes:
    """Ethernet header + `ip_bytes`; the ethertype follows the IP version unless given."""
    if ethertype is None:
        ethertype = 0x86DD if ip_bytes[0] >> 4 == 6 else 0x0800
    return b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01" + struct.pack("!H", ethertype) + ip_bytes


def eth_tcp(**kw) -> bytes:
    return eth(ip_tcp(**kw))


# -- capture files ---------------------------------------------------------------------------------------------

Rec = tuple  # (time, data) or (time, data, orig_len)


def pcap_bytes(records: Iterable[Rec], linktype: int = 1, endian: str = "<", nano: bool = False,
               network: int | None = None) -> bytes:
    """A classic pcap file; `network` overrides the link-type field (to set FCS bits)."""
    magic = 0xA1B23C4D if nano else 0xA1B2C3D4
    out = [struct.pack(endian + "IHHiIII", magic, 2, 4, 0, 0, 262144, linktype if network is None else network)]
    scale = 1_000_000_000 if nano else 1_000_000
    for rec in records:
        t, data = rec[0], rec[1]
        orig = rec[2] if len(rec) > 2 else len(data)
        sec = int(t)
        frac = round((t - sec) * scale)
        out.append(struct.pack(endian + "IIII", sec, frac, len(data), orig) + data)
    return b"".join(out)


def write_pcap(path: Path, records: Iterable[Rec], **kw) -> Path:
    path.write_bytes(pcap_bytes(records, **kw))
    return path


def _pad(b: bytes) -> bytes:
    return b + b"\0" * (-len(b) % 4)


def ng_block(btype: int, body: bytes, endian: str = "<") -> bytes:
    body = _pad(body)
    n = 12 + len(body)
    return struct.pack(endian + "II", btype, n) + body + struct.pack(endian + "I", n)


def ng_option(code: int, value: bytes, endian: str = "<") -> bytes:
    return struct.pack(endian + "HH", code, len(value)) + _pad(value)


def ng_shb(endian: str = "<") -> bytes:
    body = struct.pack(endian + "IHHq", 0x1A2B3C4D, 1, 0, -1)
    return ng_block(0x0A0D0D0A, body, endian)


def ng_idb(linktype: int, tsresol: int | None = None, tsoffset: int | None = None, snaplen: int = 0,
           endian: str = "<") -> bytes:
    body = struct.pack(endian + "HHI", linktype, 0, snaplen)
    if tsresol is not None:
        body += ng_option(9, bytes([tsresol]), endian)
    if tsoffset is not None:
        body += ng_option(14, struct.pack(endian + "q", tsoffset), endian)
    body += ng_option(2, b"eth0", endian)  # if_name, to have an option to skip
    if tsresol is not None or tsoffset is not None:
        body += struct.pack(endian + "HH", 0, 0)
    return ng_block(1, body, endian)


def ng_epb(iface: int, ticks: int, data: bytes, orig: int | None = None, endian: str = "<") -> bytes:
    body = struct.pack(endian + "IIIII", iface, ticks >> 32, ticks & 0xFFFFFFFF, len(data),
                       len(data) if orig is None else orig) + data
    return ng_block(6, body, endian)


def ng_spb(data: bytes, orig: int | None = None, endian: str = "<") -> bytes:
    return ng_block(3, struct.pack(endian + "I", len(data) if orig is None else orig) + data, endian)


def ng_pb(iface: int, ticks: int, data: bytes, endian: str = "<") -> bytes:
    body = struct.pack(endian + "HHIIII", iface, 0, ticks >> 32, ticks & 0xFFFFFFFF, len(data), len(data)) + data
    return ng_block(2, body, endian)


# -- decoded packets for the flow table ------------------------------------------------------------------------

def packet(t: float, src: str, sport: int, dst: str, dport: int, *, proto: int = 6, seq: int = 0, ack: int = 0,
           flags: int = 0, payload: bytes = b"", paylen: int | None = None, wire: int | None = None,
           frames: int = 1, anomalies: tuple[str, ...] = ()) -> Packet:
    paylen = len(payload) if paylen is None else paylen
    return Packet(t, 6 if ":" in src else 4, src, dst, proto, sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF,
                  flags, payload, paylen, 40 + paylen, 54 + paylen if wire is None else wire, frames, anomalies)


class Talk:
    """A scripted TCP connection: each call returns the next `Packet` and keeps both sides' sequence numbers.

    Direction 0 is the client (`cli`), 1 the server. Times advance by `step` per packet.
    """

    def __init__(self, cli: tuple[str, int] = ("10.0.0.1", 40000), srv: tuple[str, int] = ("10.0.0.2", 80),
                 isn: Sequence[int] = (1000, 5000), t0: float = 100.0, step: float = 0.01) -> None:
        self.ends = (cli, srv)
        self.next = [isn[0], isn[1]]
        self.t = t0
        self.step = step

    def _pkt(self, d: int, flags: int, payload: bytes = b"", seq: int | None = None, **kw) -> Packet:
        self.t += self.step
        (sip, sport), (dip, dport) = self.ends[d], self.ends[1 - d]
        return packet(self.t, sip, sport, dip, dport, seq=self.next[d] if seq is None else seq,
                      ack=self.next[1 - d], flags=flags, payload=payload, **kw)

    def handshake(self) -> list[Packet]:
        out = [self._pkt(0, SYN)]
        self.next[0] += 1
        out.append(self._pkt(1, SYN | ACK))
        self.next[1] += 1
        out.append(self._pkt(0, ACK))
        return out

    def send(self, d: int, data: bytes, seq: int | None = None, advance: bool = True, **kw) -> Packet:
        """Data from side `d` at `seq` (default: next); `advance` moves that side's next sequence number."""
        p = self._pkt(d, PSH | ACK, data, seq=seq, **kw)
        if advance:
            self.next[d] = (p.seq + p.paylen) & 0xFFFFFFFF
        return p

    def skip(self, d: int, n: int) -> int:
        """Move side `d`'s next sequence number on by `n` without sending (a segment the tap missed)."""
        seq = self.next[d]
        self.next[d] = (seq + n) & 0xFFFFFFFF
        return seq

    def ack(self, d: int) -> Packet:
        return self._pkt(d, ACK)

    def close(self) -> list[Packet]:
        out = [self._pkt(0, FIN | ACK)]
        self.next[0] += 1
        out.append(self._pkt(1, FIN | ACK))
        self.next[1] += 1
        out.append(self._pkt(0, ACK))
        return out

    def rst(self, d: int) -> Packet:
        return self._pkt(d, RST | ACK)


def all_flows(packets: Iterable[Packet], **kw) -> list:
    """Run packets through a fresh flow table and return every flow, in the order they finished."""
    from harness.observe.flows import FlowTable, build_flows
    return list(build_flows(packets, FlowTable(**kw)))


@pytest.fixture(scope="session")
def build() -> SimpleNamespace:
    """The builders of this conftest."""
    return SimpleNamespace(
        CORPUS=CORPUS, ip_tcp=ip_tcp, ip_udp=ip_udp, eth=eth, eth_tcp=eth_tcp, pcap_bytes=pcap_bytes,
        write_pcap=write_pcap, ng_block=ng_block, ng_option=ng_option, ng_shb=ng_shb, ng_idb=ng_idb, ng_epb=ng_epb,
        ng_spb=ng_spb, ng_pb=ng_pb, packet=packet, Talk=Talk, all_flows=all_flows)


# -- tshark on the real corpus: one run per file, shared by the agreement tests ---------------------------------

TSHARK_FIELDS = ["ip.src", "ipv6.src", "tcp.srcport", "udp.srcport", "ip.dst", "ipv6.dst", "tcp.dstport",
                 "udp.dstport", "smtp.req.command", "smtp.req.parameter", "imap.request", "pop.request.command",
                 "pop.request.parameter", "http.host", "dns.flags.response", "dns.qry.name"]
AGGREGATOR = "\x1e"  # between several values of one field in one packet (record separator: in no field's text)


def _tshark_corpus_file(path: Path) -> str:
    import subprocess
    cmd = ["tshark", "-n", "-r", str(path), "-z", "conv,tcp", "-z", "conv,udp", "-T", "fields",
           "-E", f"aggregator={AGGREGATOR}"] + [a for f in TSHARK_FIELDS for a in ("-e", f)]
    return subprocess.run(cmd, capture_output=True, text=True, errors="replace", timeout=120).stdout


@pytest.fixture(scope="session")
def tshark_corpus() -> dict[str, tuple[str, list[dict[str, list[str]]]]]:
    """name -> (tshark's conversation tables, per-packet fields as {field: [values]}), for every corpus file.

    One tshark run per file gives both: the field lines come first, the `-z conv` tables after them.
    """
    import os
    import shutil
    from concurrent.futures import ThreadPoolExecutor
    if not shutil.which("tshark"):
        pytest.skip("tshark not on PATH")
    names = sorted(p.name for p in CORPUS.glob("*") if p.is_file() and p.suffix in (".pcap", ".pcapng"))
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        outputs = dict(zip(names, pool.map(lambda n: _tshark_corpus_file(CORPUS / n), names)))
    out = {}
    for name, text in outputs.items():
        fields_part, sep, tables = text.partition("\n=====")
        rows = []
        for line in fields_part.splitlines():
            cells = line.split("\t")
            if len(cells) != len(TSHARK_FIELDS):
                continue
            rows.append({f: [v for v in c.split(AGGREGATOR) if v] for f, c in zip(TSHARK_FIELDS, cells)})
        out[name] = (sep + tables, rows)
    return out
