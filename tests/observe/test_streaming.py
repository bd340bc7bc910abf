"""The analyze path streams: flows reach the analyzers as they finish, payload is dropped after, memory stays
bounded by the flows still open; the document matches what reading everything first would give."""
from __future__ import annotations

import gc
import io
import os
import struct
import tracemalloc
import weakref
from collections import Counter
from pathlib import Path

import pytest

from harness import analysis
from harness.analysis import findings_document, run_analyzers
from harness.analyzers import Knowledge
from harness.observe import Observer, iter_flows, observe
from harness.observe.progress import TerminalProgress, terminal_progress
from harness.wire.capture_reader import CHECKPOINT_MASK
from harness.pipeline import analyze_captures

CORPUS = Path(__file__).resolve().parents[2] / ".." / "shared" / "corpus" / "real"
_ETH = b"\x02\x00\x00\x00\x00\x01\x02\x00\x00\x00\x00\x02\x08\x00"


def _frame(src: int, dst: int, sport: int, dport: int, seq: int, ack: int, flags: int, data: bytes = b"") -> bytes:
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 5 << 4, flags, 65535, 0, 0)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40 + len(data), 0, 0x4000, 64, 6, 0, struct.pack("!I", src),
                     struct.pack("!I", dst))
    return _ETH + ip + tcp + data


def write_sequential_flows(path: Path, flows: int, payload: int, segment: int = 1400, t0: float = 1000.0,
                           client: int = 0x0A000001) -> Path:
    """`flows` TCP connections one after another, each sending `payload` bytes to the server, then closing."""
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    t = t0
    chunk = bytes(range(256)) * (segment // 256 + 1)
    for n in range(flows):
        cli, srv, sport = client + n, 0x0A100001, 20000 + n
        cs, ss = 1000, 9000
        frames = [_frame(cli, srv, sport, 443, cs, 0, 0x02), _frame(srv, cli, 443, sport, ss, cs + 1, 0x12),
                  _frame(cli, srv, sport, 443, cs + 1, ss + 1, 0x10)]
        cs, ss = cs + 1, ss + 1
        for at in range(0, payload, segment):
            size = min(segment, payload - at)
            frames.append(_frame(cli, srv, sport, 443, cs, ss, 0x18, chunk[:size]))
            cs += size
        frames += [_frame(cli, srv, sport, 443, cs, ss, 0x11), _frame(srv, cli, 443, sport, ss, cs + 1, 0x11),
                   _frame(cli, srv, sport, 443, cs + 1, ss + 1, 0x10)]
        for f in frames:
            t += 0.001
            out.append(struct.pack("<IIII", int(t), int((t % 1) * 1e6), len(f), len(f)) + f)
        t += 10.0  # the close linger passes before the next connection: each flow finishes before the next opens
    path.write_bytes(b"".join(out))
    return path


@pytest.mark.parametrize("batch_bytes, most_alive", [(analysis.BATCH_BYTES, analysis.BATCH_FLOWS), (12000, 2)])
def test_run_analyzers_takes_a_lazy_iterator_and_lets_each_batch_go(tmp_path, monkeypatch, batch_bytes, most_alive):
    monkeypatch.setattr(analysis, "BATCH_BYTES", batch_bytes)
    flows = analysis.BATCH_FLOWS + 6
    path = write_sequential_flows(tmp_path / "seq.pcap", flows=flows, payload=5000)
    refs: list[weakref.ref] = []
    alive_when_yielded: list[int] = []

    def watched():
        for flow in iter_flows([str(path)], Counter(), []):
            alive_when_yielded.append(sum(1 for r in refs if r() is not None))
            refs.append(weakref.ref(flow))
            yield flow

    result = run_analyzers(watched(), Knowledge(), only=["metadata.flows"])
    # Held: the batch being gathered, never more (a batch ends at BATCH_FLOWS flows or BATCH_BYTES of payload).
    assert len(result.flows) == flows and max(alive_when_yielded) <= most_alive
    for summary in result.flows:
        assert summary.payload == (b"", b"") and not summary.chunks and not hasattr(summary, "__dict__")
        assert summary.payload_bytes == (5000, 0) and summary.total_packets == 3 + 4 + 3


def test_run_analyzers_leaves_a_list_of_flows_as_it_was(tmp_path):
    path = write_sequential_flows(tmp_path / "seq.pcap", flows=2, payload=100)
    flows = observe([str(path)]).flows
    run_analyzers(flows, Knowledge())
    assert all(len(f.payload[0]) == 100 and f.chunks for f in flows)


def test_memory_follows_open_flows_not_the_capture(tmp_path):
    """40 flows of 256 kB each, one after another: the peak holds about one batch's bytes (BATCH_BYTES, 2 MB),
    not the capture's ten megabytes."""
    assert analysis.BATCH_BYTES <= 2 << 20
    path = write_sequential_flows(tmp_path / "big.pcap", flows=40, payload=256 * 1024)
    gc.collect()
    tracemalloc.start()
    try:
        result = run_analyzers(iter_flows([str(path)], Counter(), []), Knowledge(), only=["metadata.flows"])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(result.flows) == 40 and sum(f.payload_bytes[0] for f in result.flows) == 40 * 256 * 1024
    assert peak < analysis.BATCH_BYTES + 3 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB"


def test_the_streamed_document_is_the_one_reading_everything_first_gives(tmp_path):
    paths = [str(write_sequential_flows(tmp_path / "seq.pcap", flows=5, payload=3000))]
    if (CORPUS / "zeek__smtp.pcap").is_file():
        paths.append(str(CORPUS / "zeek__smtp.pcap"))
    streamed = analyze_captures(paths)
    obs = observe(paths)
    whole = findings_document(obs, run_analyzers(obs.flows, Knowledge(), release=False))
    # Findings come in blocks per flow, in the order flows finish (streamed) or were listed (whole).
    by_id = lambda doc: sorted(doc.pop("findings"), key=lambda f: f["id"])  # noqa: E731
    assert by_id(streamed) == by_id(whole)
    assert streamed == whole


def test_the_findings_file_is_the_document_and_nothing_is_left_on_failure(tmp_path):
    import json

    import pytest

    from harness.errors import HarnessError
    from harness.pipeline import analyze_to_file

    paths = [str(write_sequential_flows(tmp_path / "seq.pcap", flows=5, payload=3000))]
    out = tmp_path / "out" / "findings.json"
    doc, counts = analyze_to_file(paths, None, out)
    written = json.loads(out.read_text())
    assert written == analyze_captures(paths)
    assert sum(counts.values()) == len(written["findings"]) > 0 and "findings" not in doc
    assert [p.name for p in out.parent.iterdir()] == ["findings.json"]  # spool and temp file are gone
    lines = out.read_text().splitlines()
    assert sum(1 for line in lines if line.startswith('{"analyzer"')) == len(written["findings"])  # one per line
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(b"not a capture at all")
    with pytest.raises(HarnessError):
        analyze_to_file([str(bad)], None, tmp_path / "out2" / "findings.json")
    assert not any((tmp_path / "out2").iterdir())


@pytest.mark.parametrize("sendfile", ["kernel", "missing", "fails-midway"])
def test_the_findings_file_is_the_text_of_the_document_however_the_spool_is_copied(tmp_path, monkeypatch, sendfile):
    """The spooled findings go into the file by os.sendfile, or through Python where it is missing or fails
    partway: the same bytes as the document built in memory."""
    from harness import findings_file
    from harness.findings_file import document_text
    from harness.pipeline import analyze_to_file

    real = os.sendfile
    if sendfile == "missing":
        monkeypatch.delattr(findings_file.os, "sendfile")
    elif sendfile == "fails-midway":
        calls = []

        def flaky(out_fd, in_fd, offset, count):
            calls.append(offset)
            if len(calls) > 1:
                raise OSError(22, "Invalid argument")
            return real(out_fd, in_fd, offset, min(count, 1000))
        monkeypatch.setattr(findings_file.os, "sendfile", flaky)
    paths = [str(write_sequential_flows(tmp_path / "seq.pcap", flows=5, payload=3000))]
    out = tmp_path / "findings.json"
    analyze_to_file(paths, None, out)
    monkeypatch.setattr(findings_file.os, "sendfile", real, raising=False)
    assert out.read_text() == document_text(analyze_captures(paths))


def test_overlaps_and_gaps_reach_the_findings_document():
    """Zeek's rexmit_inconsistency x6 and truncated_IP_len x5 on this trace (its weird.log), per flow and in all."""
    path = CORPUS / "zeek__tcp-reassembly.pcap"
    if not path.is_file():
        return
    doc = analyze_captures([str(path)])
    (flow,) = doc["flows"]
    assert flow["anomalies"]["overlap-inconsistent"] == 6 and flow["anomalies"]["truncated-ip-len"] == 5
    assert doc["anomalies"]["overlap-inconsistent"] == 6


def test_several_captures_given_at_once_are_merged_in_time_order(tmp_path):
    a = write_sequential_flows(tmp_path / "a.pcap", flows=3, payload=10, t0=1000.0, client=0x0A000001)
    b = write_sequential_flows(tmp_path / "b.pcap", flows=3, payload=10, t0=1005.0, client=0x0B000001)
    doc = analyze_captures([str(a), str(b)])
    assert doc["captures"] == [str(a), str(b)]
    firsts = [f["first_seen"] for f in doc["flows"]]
    assert firsts == sorted(firsts) and len(doc["flows"]) == 6
    assert [f["src"].split(".")[0] for f in doc["flows"]] == ["10", "11"] * 3  # a's and b's flows interleave
    assert all(f["packets"] == 3 + 1 + 3 and not f["anomalies"] for f in doc["flows"])


class _FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_only_on_a_terminal_and_only_for_long_captures(tmp_path):
    small = write_sequential_flows(tmp_path / "s.pcap", flows=1, payload=10)
    assert terminal_progress([str(small)], io.StringIO()) is None
    assert terminal_progress([str(small)], _FakeTerminal()) is None  # too short to need one
    term = _FakeTerminal()
    bar = TerminalProgress(term)
    bar(50, 100, 65536)
    bar.close()
    text = term.getvalue()
    assert "50%" in text and "65,536 packets" in text and text.endswith("\r\x1b[K")


def test_the_observer_reports_progress_at_every_checkpoint(tmp_path):
    """Every CHECKPOINT_MASK + 1 records (8,192): the bar hears how far the walk got, and no more often."""
    frame = _frame(1, 2, 3, 4, 0, 0, 0x10)
    rec = struct.pack("<IIII", 1, 0, len(frame), len(frame)) + frame
    path = tmp_path / "many.pcap"
    every = CHECKPOINT_MASK + 1
    path.write_bytes(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1) + rec * (every * 3 + 100))
    calls = []

    class Recorder:
        def __call__(self, done, total, records):
            calls.append((done, total, records))

        def close(self):
            calls.append("closed")

    obs = Observer([str(path)], progress=Recorder())
    assert sum(1 for _ in obs.flows()) == 1
    size = path.stat().st_size
    assert [c[1:] for c in calls[:-1]] == [(size, every), (size, 2 * every), (size, 3 * every)]
    assert 0 < calls[0][0] < calls[1][0] < calls[2][0] <= size and calls[-1] == "closed"

