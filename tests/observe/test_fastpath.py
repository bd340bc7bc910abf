"""The fast path (harness.observe.fastpath) gives exactly what the general path gives: same flows in the same order,
field by field, same skipped counts, notes and packet count, on real captures, tricky generated ones and
mutated ones."""
from __future__ import annotations

import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.observe import Observer
from harness.observe.model import STREAM_CAP

CORPUS = Path(__file__).resolve().parents[2] / ".." / "shared" / "corpus" / "real"
_ETH = b"\x02\x00\x00\x00\x00\x01\x02\x00\x00\x00\x00\x02\x08\x00"
_VLAN = b"\x02\x00\x00\x00\x00\x01\x02\x00\x00\x00\x00\x02\x81\x00\x00\x03\x08\x00"


def _run(path: str, fast: bool):
    obs = Observer([path], fast=fast)
    flows = list(obs.flows())
    return flows, dict(obs.skipped), obs.notes, obs.packets


def assert_same(path) -> None:
    fast, general = _run(str(path), True), _run(str(path), False)
    assert fast[1:] == general[1:]
    assert [f.id for f in fast[0]] == [f.id for f in general[0]]
    assert fast[0] == general[0]  # every field of every flow: counts, times, chunks, payload, anomalies


@pytest.mark.parametrize("name", sorted(p.name for p in CORPUS.glob("*.pcap")) if CORPUS.is_dir() else [])
def test_real_captures(name):
    assert_same(CORPUS / name)


def _tcp(src: int, dst: int, sport: int, dport: int, seq: int, ack: int, flags: int, data: bytes = b"",
         ip_len: int | None = None, frag: int = 0x4000, vihl: int = 0x45, doff: int = 5, link: bytes = _ETH) -> bytes:
    opts = b"\x01" * ((doff - 5) * 4)
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, doff << 4, flags, 65535, 0, 0)
    total = 20 + len(tcp) + len(opts) + len(data) if ip_len is None else ip_len
    ip = struct.pack("!BBHHHBBH4s4s", vihl, 0, total, 0, frag, 64, 6, 0, struct.pack("!I", src), struct.pack("!I", dst))
    return link + ip + tcp + opts + data


def _udp(src: int, dst: int, sport: int, dport: int, data: bytes, ulen: int | None = None) -> bytes:
    ulen = 8 + len(data) if ulen is None else ulen
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 28 + len(data), 0, 0, 64, 17, 0, struct.pack("!I", src),
                     struct.pack("!I", dst))
    return _ETH + ip + struct.pack("!HHHH", sport, dport, ulen, 0) + data


def _pcap(path: Path, frames: list[tuple[float, bytes]], snap: int = 65535) -> Path:
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, snap, 1)]
    for t, f in frames:
        cut = f[:snap]
        out.append(struct.pack("<IIII", int(t), round((t % 1) * 1e6), len(cut), len(f)) + cut)
    path.write_bytes(b"".join(out))
    return path


def _tricky() -> list[tuple[float, bytes]]:
    """Handshakes, data both ways, out of order, re-sent and differing bytes, snaplen cuts, reuse, idle gaps,
    timed-out connection attempts, mid-stream starts, options, VLAN, bad lengths, UDP, identical endpoints,
    FIN/RST closes."""
    c, s = 0x0A000001, 0x0A000002
    frames = []
    t = 100.0

    def put(f, dt=0.01):
        nonlocal t
        t += dt
        frames.append((t, f))

    put(_tcp(c, s, 4010, 80, 1, 0, 0x18, b"long-lived"))
    put(_tcp(c, s, 4000, 80, 999, 0, 0x02))
    put(_tcp(s, c, 80, 4000, 4999, 1000, 0x12))
    put(_tcp(c, s, 4000, 80, 1000, 5000, 0x10))
    put(_tcp(c, s, 4000, 80, 1000, 5000, 0x18, b"hello "))
    put(_tcp(c, s, 4000, 80, 1012, 5000, 0x18, b"later"))  # out of order
    put(_tcp(c, s, 4000, 80, 1006, 5000, 0x18, b"world!"))  # fills the hole
    put(_tcp(c, s, 4000, 80, 1000, 5000, 0x18, b"HELLO "))  # re-sent, differs
    put(_tcp(s, c, 80, 4000, 5000, 1017, 0x18, b"reply" * 10))
    put(_tcp(s, c, 80, 4000, 5050, 1017, 0x18, b"x" * 30, doff=8))  # options
    put(_tcp(s, c, 80, 4000, 5080, 1017, 0x18, b"vlan", link=_VLAN))
    put(_tcp(s, c, 80, 4000, 5084, 1017, 0x18, b"short", ip_len=30))  # total length shorter than the headers
    put(_tcp(s, c, 80, 4000, 5084, 1017, 0x18, b"zero", ip_len=0))  # segmentation offload
    put(_tcp(s, c, 80, 4000, 5088, 1017, 0x18, b"opt", vihl=0x46))  # IP options claimed, not there
    put(_tcp(s, c, 80, 4000, 5200, 1017, 0x10))  # acknowledges nothing new
    put(_tcp(c, s, 4000, 80, 1017, 5088, 0x10))
    put(_tcp(c, s, 4000, 80, 1017, 5088, 0x11))
    put(_tcp(s, c, 80, 4000, 5088, 1018, 0x11))
    put(_tcp(c, s, 4000, 80, 1018, 5089, 0x10))
    put(_tcp(c, s, 4000, 80, 1018, 5089, 0x18, b"straggler"))
    put(_tcp(c, s, 4010, 80, 11, 0, 0x18, b"reaps the closed one"), 6.0)
    put(_tcp(c, s, 4010, 80, 31, 0, 0x18, b"earlier"), -6.5)  # time goes back
    put(_tcp(c, s, 4000, 80, 7000, 0, 0x02), 20.0)  # same 5-tuple reused after the linger
    put(_tcp(c, s, 4000, 80, 7001, 0, 0x18, b"again"))
    put(_tcp(c, s, 4000, 80, 7006, 0, 0x18, b"after idle"), 400.0)  # idle timeout: a new flow
    put(_tcp(c, s, 4001, 80, 123456, 0, 0x18, b"midstream"))
    put(_tcp(c, s, 4001, 80, 0xFFFFFFF0 + 9 + 123456 - 0xFFFFFFF0, 0, 0x18, b"more"))
    put(_tcp(c, s, 4002, 80, 0xFFFFFFFA, 0, 0x18, b"wrap-around"))
    put(_tcp(c, s, 4002, 80, (0xFFFFFFFA + 11) & 0xFFFFFFFF, 0, 0x18, b"wrapped"))
    put(_tcp(c, s, 4003, 80, 5, 0, 0x18, b"big" * 200), 0.001)  # cut by the snaplen
    put(_tcp(c, s, 4003, 80, 605, 0, 0x18, b"after"), 0.001)
    put(_tcp(c, s, 4007, 443, 50, 0, 0x02))  # a connection attempt: a SYN, never answered
    put(_tcp(c, s, 4007, 443, 50, 0, 0x02), 30.0)  # re-sent within SHORT_TIMEOUT: the same flow
    put(_tcp(c, s, 4008, 443, 60, 0, 0x10))  # a bare ACK, no payload: an attempt too
    put(_tcp(c, s, 4007, 443, 50, 0, 0x02), 70.0)  # re-sent after it: a new flow
    put(_tcp(c, s, 4008, 443, 60, 0, 0x10))  # 70 s later, through the fast path's open-flow branch: a new flow
    put(_tcp(c, c, 9, 9, 1, 0, 0x18, b"self"))  # identical endpoints
    put(_tcp(c, c, 9, 9, 5, 0, 0x18, b"self2"))
    put(_tcp(c, s, 4004, 80, 1, 0, 0x18, b"frag", frag=0x2000))  # a fragment
    put(_tcp(c, s, 4005, 80, 1, 0, 0x18, b"badoff", doff=3))
    put(_tcp(c, s, 4006, 80, 1, 0, 0x04))
    put(_tcp(c, s, 4006, 80, 1, 0, 0x18, b"after reset"))
    put(_udp(c, s, 53, 53, b"query"))
    put(_udp(s, c, 53, 53, b"answer"))
    put(_udp(s, c, 53, 53, b"long", ulen=40))  # exceeds the IP length
    put(_udp(s, c, 53, 53, b"tiny", ulen=4))
    put(_udp(s, c, 53, 53, b""))  # shorter than the fast path's header read
    put(_tcp(s, c, 80, 4000, 1, 0, 0x10)[:40])  # cut inside TCP
    put(b"\x00" * 10)
    return frames


def test_tricky_capture(tmp_path):
    assert_same(_pcap(tmp_path / "t.pcap", _tricky(), snap=400))
    assert_same(_pcap(tmp_path / "u.pcap", _tricky()))


def test_stream_cap_and_out_of_order_buffer(tmp_path):
    c, s = 0x0A000001, 0x0A000002
    frames = [(1.0, _tcp(c, s, 1, 2, 0, 0, 0x02))]
    seq, t = 1, 1.0
    for i in range(1000):  # past STREAM_CAP
        t += 0.001
        frames.append((t, _tcp(c, s, 1, 2, seq, 0, 0x18, bytes([i % 256]) * 1400)))
        seq += 1400
    assert seq > STREAM_CAP
    for i in range(80):  # more out of order segments than are buffered
        t += 0.001
        frames.append((t, _tcp(c, s, 1, 2, seq + 100 + i * 10, 0, 0x18, b"o" * 10)))
    frames.append((t + 1, _tcp(s, c, 2, 1, 0, seq + 2000, 0x10)))
    assert_same(_pcap(tmp_path / "cap.pcap", frames))


def test_truncated_file(tmp_path):
    path = _pcap(tmp_path / "t.pcap", _tricky())
    data = path.read_bytes()
    for cut in (24, 30, 100, len(data) - 7):
        path.write_bytes(data[:cut])
        assert_same(path)
    path.write_bytes(data + struct.pack("<IIII", 1, 0, 1 << 20, 1 << 20))  # a record longer than any can be
    assert_same(path)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(0, 2000), st.integers(0, 255)), max_size=12), st.randoms(use_true_random=False))
def test_mutated_captures(tmp_path, flips, rnd):
    frames = _tricky()
    rnd.shuffle(frames)
    data = bytearray(_pcap(tmp_path / "m.pcap", sorted(frames)[:30] + frames[30:]).read_bytes())
    for at, value in flips:
        if 24 <= at < len(data):
            data[at] = value
    path = tmp_path / "m.pcap"
    path.write_bytes(bytes(data))
    assert_same(path)
