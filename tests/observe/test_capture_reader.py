"""The capture reader: pcap in both byte orders and resolutions, pcapng, gzip, damage noted, non-captures refused."""
from __future__ import annotations

import gzip
import struct
import time

import pytest
from scapy.utils import PcapNgWriter, PcapWriter

from harness.errors import HarnessError
from harness.wire.capture_reader import CaptureReader, Record, iter_records

FRAMES = [b"\x01" * 60, b"\x02" * 61, b"\x03" * 1514]


def read(path) -> tuple[list[Record], list[str]]:
    reader = CaptureReader(str(path))
    return list(reader.records()), reader.notes


@pytest.mark.parametrize("endian", ["<", ">"])
@pytest.mark.parametrize("nano", [False, True])
def test_classic_pcap_both_byte_orders_and_resolutions(tmp_path, build, endian, nano):
    times = [1_600_000_000.25, 1_600_000_001.000001, 1_600_000_002.5]
    path = build.write_pcap(tmp_path / "a.pcap", [(t, f, len(f) + 4) for t, f in zip(times, FRAMES)],
                            endian=endian, nano=nano)
    recs, notes = read(path)
    assert notes == []
    assert [r.data for r in recs] == FRAMES
    assert [r.orig_len for r in recs] == [len(f) + 4 for f in FRAMES]
    assert {r.linktype for r in recs} == {1}
    assert [r.time for r in recs] == pytest.approx(times, abs=1e-9 if nano else 1e-6)
    assert CaptureReader(str(path)).format == ("pcap-ns" if nano else "pcap")


def test_a_pcap_scapy_wrote_big_endian_nanosecond(tmp_path):
    path = tmp_path / "scapy.pcap"
    w = PcapWriter(str(path), linktype=101, endianness=">", nano=True, sync=True)
    w.write_header(None)
    w.write_packet(b"\x45" + b"\0" * 19, sec=1_700_000_000, usec=123_456_789, caplen=20, wirelen=20)
    w.close()
    (rec,), notes = read(path)
    assert (rec.linktype, rec.data[:1], rec.orig_len) == (101, b"\x45", 20)
    assert rec.time == pytest.approx(1_700_000_000.123456789, abs=1e-6)


def test_linktype_fcs_bits_are_masked(tmp_path, build):
    path = build.write_pcap(tmp_path / "fcs.pcap", [(1.0, FRAMES[0])], network=0x14000001)
    (rec,), _ = read(path)
    assert rec.linktype == 1


def test_kuznetzov_modified_pcap(tmp_path):
    hdr = struct.pack("<IHHiIII", 0xA1B2CD34, 2, 4, 0, 0, 65535, 1)
    rec = struct.pack("<IIII", 10, 5, 3, 3) + b"\0" * 8 + b"abc"
    path = tmp_path / "kuz.pcap"
    path.write_bytes(hdr + rec + rec)
    recs, notes = read(path)
    assert [r.data for r in recs] == [b"abc", b"abc"] and notes == []


def test_invalid_microseconds_still_give_a_record(tmp_path, build):
    path = tmp_path / "us.pcap"
    blob = build.pcap_bytes([(5.0, FRAMES[0])])
    blob = blob[:28] + struct.pack("<I", 2_147_483_648) + blob[32:]
    path.write_bytes(blob)
    (rec,), notes = read(path)
    assert rec.time == pytest.approx(5 + 2147.483648) and notes == []


def _two_interface_pcapng(build, endian: str) -> bytes:
    eth = build.eth_tcp()
    raw = build.ip_tcp()
    return b"".join([
        build.ng_shb(endian),
        build.ng_idb(1, endian=endian),  # Ethernet, default microseconds
        build.ng_idb(101, tsresol=9, tsoffset=100, endian=endian),  # raw IP, nanoseconds, 100 s offset
        build.ng_block(4, b"\0" * 8, endian),  # name resolution block: skipped
        build.ng_epb(0, 1_600_000_000_500_000, eth, endian=endian),
        build.ng_block(0x00000BAD, b"custom", endian),  # custom block: skipped
        build.ng_epb(1, 1_600_000_000_250_000_000, raw, orig=len(raw) + 10, endian=endian),
        build.ng_pb(0, 1_600_000_001_000_000, eth, endian=endian),  # obsolete packet block
        build.ng_spb(eth, endian=endian),  # simple packet block: no time
        build.ng_block(5, b"\0" * 20, endian),  # interface statistics: skipped
    ])


@pytest.mark.parametrize("endian", ["<", ">"])
def test_pcapng_two_interfaces_link_types_and_resolutions(tmp_path, build, endian):
    path = tmp_path / "two.pcapng"
    path.write_bytes(_two_interface_pcapng(build, endian))
    recs, notes = read(path)
    assert [r.linktype for r in recs] == [1, 101, 1, 1]
    assert [r.time for r in recs] == pytest.approx([1_600_000_000.5, 1_600_000_100.25, 1_600_000_001.0,
                                                    1_600_000_001.0])
    assert recs[1].orig_len == len(recs[1].data) + 10
    assert recs[0].data == build.eth_tcp()
    assert notes == ["simple packet blocks carry no timestamp: each was given the previous record's time"]
    assert CaptureReader(str(path)).format == "pcapng"


def test_pcapng_sections_switch_byte_order_and_reset_interfaces(tmp_path, build):
    eth = build.eth_tcp()
    blob = (build.ng_shb("<") + build.ng_idb(1, endian="<") + build.ng_epb(0, 1_000_000, eth, endian="<")
            + build.ng_shb(">") + build.ng_idb(113, tsresol=0x80 | 10, endian=">")
            + build.ng_epb(0, 3 * 1024, b"\0" * 16, endian=">")
            + build.ng_epb(1, 0, eth, endian=">"))  # interface 1 was never declared in this section
    path = tmp_path / "sections.pcapng"
    path.write_bytes(blob)
    recs, notes = read(path)
    assert [(r.linktype, r.time) for r in recs] == [(1, 1.0), (113, 3.0)]
    assert notes == ["packet blocks for an undeclared interface skipped: 1"]


def test_scapy_pcapng_writer(tmp_path, build):
    path = tmp_path / "scapy.pcapng"
    w = PcapNgWriter(str(path))
    from scapy.layers.l2 import Ether
    for i in range(3):
        p = Ether(build.eth_tcp(seq=i))
        p.time = 1_700_000_000 + i
        w.write(p)
    w.close()
    recs, notes = read(path)
    assert [r.time for r in recs] == pytest.approx([1_700_000_000, 1_700_000_001, 1_700_000_002])
    assert notes == []


@pytest.mark.parametrize("kind", ["pcap", "pcapng"])
def test_gzip_compressed_captures(tmp_path, build, kind):
    blob = (build.pcap_bytes([(1.0, f) for f in FRAMES]) if kind == "pcap"
            else _two_interface_pcapng(build, "<"))
    path = tmp_path / "capture.bin"  # the name says nothing: the magic decides
    path.write_bytes(gzip.compress(blob))
    plain = tmp_path / "plain.bin"
    plain.write_bytes(blob)
    assert [r.data for r in read(path)[0]] == [r.data for r in read(plain)[0]]
    assert CaptureReader(str(path)).format.endswith("+gzip")


def test_gzip_stream_cut_short(tmp_path, build):
    blob = gzip.compress(build.pcap_bytes([(float(i), bytes([i]) * 200) for i in range(200)]))
    path = tmp_path / "cut.pcap.gz"
    path.write_bytes(blob[:len(blob) // 2])
    recs, notes = read(path)
    assert 0 < len(recs) < 200
    assert len(notes) == 1 and notes[0].startswith(f"capture truncated after {len(recs)} records (compressed")


@pytest.mark.parametrize("cut", [1, 10, 16, 17])
def test_truncated_file_stops_cleanly_with_a_note(tmp_path, build, cut):
    blob = build.pcap_bytes([(1.0, f) for f in FRAMES])
    path = tmp_path / "trunc.pcap"
    path.write_bytes(blob[:-cut])
    recs, notes = read(path)
    assert [r.data for r in recs] == FRAMES[:2]
    assert notes == ["capture truncated after 2 records"]


def test_truncated_pcapng(tmp_path, build):
    blob = _two_interface_pcapng(build, "<")
    path = tmp_path / "trunc.pcapng"
    path.write_bytes(blob[:-30])
    recs, notes = read(path)
    assert len(recs) == 4 or "capture truncated after" in notes[-1]
    path.write_bytes(blob[:200])
    recs, notes = read(path)
    assert f"capture truncated after {len(recs)} records" in notes


def test_absurd_record_length_stops_with_a_note(tmp_path, build):
    blob = bytearray(build.pcap_bytes([(1.0, f) for f in FRAMES]))
    struct.pack_into("<I", blob, 24 + 16 + 60 + 8, 10_000_000)  # second record's incl_len
    path = tmp_path / "absurd.pcap"
    path.write_bytes(bytes(blob))
    recs, notes = read(path)
    assert len(recs) == 1
    assert notes == ["record 2 claims 10000000 captured bytes (more than 262144): capture corrupt, "
                     "stopped after 1 records"]


def test_pcapng_block_with_impossible_length(tmp_path, build):
    blob = bytearray(_two_interface_pcapng(build, "<"))
    first_epb = blob.index(struct.pack("<I", 6))
    struct.pack_into("<I", blob, first_epb + 4, 7)
    path = tmp_path / "bad.pcapng"
    path.write_bytes(bytes(blob))
    recs, notes = read(path)
    assert recs == [] and "impossible length 7" in notes[0]


@pytest.mark.parametrize("content, message", [
    (b"", "not a capture file (empty file)"),
    (b"\xd4\xc3", "not a capture file (too short for a header: 2 bytes)"),
    (b"\xd4\xc3\xb2\xa1" + b"\0" * 10, "not a capture file (too short for a pcap header: 14 bytes)"),
    (b"GIF89a" + b"\0" * 100, "not a capture file (unknown magic 0x47494638)"),
    (b"\x0a\x0d\x0d\x0a" + b"\0" * 40, "not a capture file (pcapng byte-order magic 0x00000000 is invalid)"),
    (gzip.compress(b"hello world, not a capture"), "not a capture file (unknown magic 0x68656c6c)"),
    (gzip.compress(b""), "not a capture file (empty gzip-compressed file)"),
    (b"\x1f\x8b\x08\x00garbage", "gzip-compressed, but the stream cannot be read"),
    (b"\x28\xb5\x2f\xfd" + b"\0" * 40, "zstd-compressed captures are not supported"),
])
def test_not_a_capture_raises_a_one_line_harness_error(tmp_path, content, message):
    path = tmp_path / "thing.pcap"
    path.write_bytes(content)
    with pytest.raises(HarnessError) as err:
        CaptureReader(str(path))
    text = str(err.value)
    assert text.startswith(f"{path}: ") and message in text and "\n" not in text
    assert err.value.path == str(path)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(HarnessError, match="no such file"):
        CaptureReader(str(tmp_path / "nope.pcap"))
    with pytest.raises(HarnessError, match="is a directory"):
        CaptureReader(str(tmp_path))
    with pytest.raises(HarnessError, match="no such file"):
        iter_records(str(tmp_path / "nope.pcap"))


def test_iter_records_hands_notes_back(tmp_path, build):
    path = tmp_path / "t.pcap"
    path.write_bytes(build.pcap_bytes([(1.0, f) for f in FRAMES])[:-5])
    notes: list[str] = []
    assert len(list(iter_records(str(path), notes))) == 2
    assert notes == ["capture truncated after 2 records"]


def test_records_are_records_and_memory_is_mapped_not_loaded(tmp_path, build):
    path = build.write_pcap(tmp_path / "r.pcap", [(1.0, FRAMES[0])])
    reader = CaptureReader(str(path))
    it = reader.records()
    rec = next(it)
    assert isinstance(rec, Record) and isinstance(rec.data, bytes)
    it.close()
    assert reader.count == 1


def test_reading_is_fast(tmp_path):
    n = 200_000
    frame = b"\0" * 60
    path = tmp_path / "many.pcap"
    path.write_bytes(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
                     + (struct.pack("<IIII", 1, 2, 60, 60) + frame) * n)
    start = time.perf_counter()
    count = sum(1 for _ in CaptureReader(str(path)).records())
    elapsed = time.perf_counter() - start
    assert count == n
    assert elapsed < 2.0, f"{n} records took {elapsed:.2f} s"  # about 0.15 s on a laptop


@pytest.mark.parametrize("kind", ["pcap", "pcapng"])
def test_streamed_reading_with_tiny_windows_matches_mapped_reading(tmp_path, build, monkeypatch, kind):
    from harness.wire import capture_reader
    blob = (build.pcap_bytes([(float(i), bytes([i]) * (i * 7 % 300)) for i in range(60)]) if kind == "pcap"
            else _two_interface_pcapng(build, ">"))
    plain = tmp_path / "plain"
    plain.write_bytes(blob)
    packed = tmp_path / "packed"
    packed.write_bytes(gzip.compress(blob))
    expected = read(plain)
    monkeypatch.setattr(capture_reader, "_CHUNK", 7)  # refill the window every few bytes
    assert read(packed) == expected

    def no_mmap(*args, **kwargs):
        raise ValueError("cannot mmap")
    monkeypatch.setattr(capture_reader.mmap, "mmap", no_mmap)  # e.g. a pipe: falls back to streaming
    assert read(plain) == expected
    plain.write_bytes(blob[:-3])
    recs, notes = read(plain)
    assert recs == expected[0][:len(recs)] and len(recs) >= len(expected[0]) - 1
    assert f"capture truncated after {len(recs)} records" in notes
