"""`harness analyze --jobs N`: the analyzers split over processes give the same document, byte for byte."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness.analyzers import registry
from harness.errors import HarnessError
from harness.parallel import analyzer_groups
from harness.pipeline import analyze_to_file

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / ".." / "shared" / "corpus" / "real"


@pytest.fixture(scope="module")
def bes_relay(tmp_path_factory):
    from harness.scenario.load import load_scenario
    from harness.sim.simulate import simulate, write_outputs

    out = tmp_path_factory.mktemp("cap")
    paths = write_outputs(simulate(load_scenario(ROOT / "scenarios" / "bes-relay.toml")), out, "bes-relay")
    return [str(paths["pcap"])], str(paths["keys"])


def _document(tmp_path, paths, keys, jobs):
    out = tmp_path / f"jobs{jobs}.json"
    doc, counts = analyze_to_file(paths, keys, out, jobs=jobs)
    return out.read_bytes(), doc, counts


def test_any_number_of_jobs_writes_the_same_document(tmp_path, bes_relay):
    paths, keys = bes_relay
    one, doc1, counts1 = _document(tmp_path, paths, keys, 1)
    for jobs in (2, 3, 9):
        text, doc, counts = _document(tmp_path, paths, keys, jobs)
        assert text == one, f"jobs={jobs}"
        assert doc == doc1 and counts == counts1
    assert b'"analyzer": "metadata.relay-correlation"' in one  # cross-flow findings made it through the merge
    assert not list(tmp_path.glob(".*"))  # spools and temp files are gone


@pytest.mark.skipif(not (CORPUS / "ndpi__telegram.pcap").is_file(), reason="corpus not present")
def test_same_document_on_a_real_capture(tmp_path):
    paths = [str(CORPUS / "ndpi__telegram.pcap"), str(CORPUS / "zeek__smtp.pcap")]
    assert _document(tmp_path, paths, None, 1)[0] == _document(tmp_path, paths, None, 2)[0]


def test_groups_cover_every_analyzer_once_and_balance_cost():
    ids = set(registry())
    for jobs in (1, 2, 3, 4, 50):
        groups = analyzer_groups(jobs)
        flat = [a for g in groups for a in g]
        assert sorted(flat) == sorted(ids) and len(groups) == min(jobs, len(ids))
    cost = {a: float(cls.cost) for a, cls in registry().items()}
    loads = [sum(cost[a] for a in g) for g in analyzer_groups(2)]
    assert max(loads) - min(loads) <= max(cost.values())  # greedy: within one analyzer's cost


def test_a_file_that_is_not_a_capture_fails_before_any_process_starts(tmp_path):
    bad = tmp_path / "notes.txt"
    bad.write_text("not a capture")
    with pytest.raises(HarnessError, match="not a capture"):
        analyze_to_file([str(bad)], None, tmp_path / "out" / "f.json", jobs=2)
    assert not (tmp_path / "out" / "f.json").exists()


@pytest.mark.parametrize("megabytes, cores, jobs", [(10, 8, 1), (400, 8, 4), (400, 2, 2), (1000, 8, 4),
                                                    (2000, 8, 3), (2000, 2, 2), (2000, 1, 1), (3000, 8, 1)])
def test_the_default_number_of_processes_keeps_the_estimated_memory_under_a_gigabyte(
        tmp_path, monkeypatch, megabytes, cores, jobs):
    """One per core up to 4, fewer where `estimated_peak_mb` would pass 1 GB (the issue's bound for a 2 GB
    capture): measured on the bench's 2 GB capture, two processes peaked at 728 MB and three at 863."""
    from harness import adversary

    monkeypatch.setattr(adversary.os, "sched_getaffinity", lambda _pid: set(range(cores)), raising=False)
    capture = tmp_path / "big.pcap"
    with open(capture, "wb") as f:  # sparse: the size is all default_jobs reads
        f.write(b"\xd4\xc3\xb2\xa1")
        f.truncate(megabytes * 10**6)
    assert adversary.default_jobs([str(capture)]) == jobs
    assert adversary.estimated_peak_mb(megabytes, jobs) <= adversary.MEMORY_BUDGET_MB or jobs == 1


def test_a_gzip_capture_is_sized_by_what_it_holds(tmp_path, monkeypatch):
    import gzip

    from harness import adversary
    from harness.wire.capture_reader import capture_size

    monkeypatch.setattr(adversary.os, "sched_getaffinity", lambda _pid: {0, 1}, raising=False)
    capture = tmp_path / "big.pcap.gz"
    with gzip.open(capture, "wb") as f:
        f.write(bytes(64 * 10**6))  # 64 MB of zeros: a few dozen kB compressed
    assert capture.stat().st_size < adversary.PARALLEL_MIN_BYTES
    assert capture_size(str(capture)) == 64 * 10**6
    assert adversary.default_jobs([str(capture)]) == 2


def test_only_a_process_whose_finish_reads_the_flows_keeps_them():
    """Under --jobs the flow summaries are kept by one process that needs them for `finish` (it returns them
    for the document), not by every process: the others' analyzers keep what they need from on_flow."""
    from harness.analysis import run_analyzers
    from harness.analyzers import _REGISTRY, Analyzer, Finding, Knowledge, register
    from harness.analyzers.interface import reads_flows_in_finish
    from harness.observe.model import Flow
    from harness.parallel import flows_group, group_reads_flows

    available = registry()
    assert [a for a in available if reads_flows_in_finish(available[a])] == ["metadata.flows"]
    groups = analyzer_groups(2)
    keeper = flows_group(groups)
    assert "metadata.flows" in groups[keeper] and not any(group_reads_flows(g) for g in groups if g != groups[keeper])

    class Plugin(Analyzer):  # a finish of its own and no word on it: assumed to read the flows
        id = "test.plugin"

        def finish(self, flows):
            return [Finding(self.id, "volume", "flows", None, len(flows))]

    assert reads_flows_in_finish(Plugin) and not reads_flows_in_finish(Analyzer)
    flows = [Flow(id=f"udp 10.0.0.{i}:53 > 10.0.0.9:53", proto="udp", src=f"10.0.0.{i}:53", dst="10.0.0.9:53",
                  src_ip=f"10.0.0.{i}", dst_ip="10.0.0.9", sport=53, dport=53, first_seen=float(i),
                  last_seen=float(i)) for i in range(3)]
    light = ["metadata.activity", "payload.entropy"]
    kept = run_analyzers(flows, Knowledge(), only=light)
    none = run_analyzers(flows, Knowledge(), only=light, keep_flows=False)
    assert len(kept.flows) == 3 and not none.errors
    assert [f.to_json() for f in none.findings] == [f.to_json() for f in kept.findings] and kept.findings
    with pytest.raises(ValueError, match="metadata.flows reads the flows"):
        run_analyzers(flows, Knowledge(), only=["metadata.flows"], keep_flows=False)

    @register
    class Mistaken(Plugin):  # says it does not read the flows, and does: a reported error, not a silent nothing
        id = "test.mistaken"
        finish_reads_flows = False

    try:
        result = run_analyzers(flows, Knowledge(), only=["test.mistaken"], keep_flows=False)
    finally:
        _REGISTRY.pop("test.mistaken", None)
    assert not result.findings and result.errors == [
        "test.mistaken: RuntimeError: finish read the flows, but the analyzer says it does not "
        "(finish_reads_flows) (finish)"]


def test_flows_are_estimated_from_the_start_of_the_capture(tmp_path):
    """A port scan (a flow per probe), a gateway's DNS (a flow per query and answer) and the bench's mixed
    traffic (dozens of packets a flow): the estimate is near the flows the observe tier finds."""
    from bench.dns_capture import write_dns
    from bench.mixed_capture import write_mixed
    from bench.scan_capture import write_scan
    from harness import adversary
    from harness.observe import Observer

    for name, write, count in [("scan", write_scan, 3000), ("dns", write_dns, 3000),
                               ("mixed", write_mixed, 30_000)]:
        path = str(tmp_path / f"{name}.pcap")
        write(path, count)
        flows = sum(1 for _ in Observer([path]).flows())
        estimate = adversary.sample_capture(path, os.path.getsize(path)).flows
        assert 0.9 * flows <= estimate <= 1.5 * flows, (name, flows, estimate)
    assert adversary.sample_capture(str(tmp_path / "missing.pcap"), 10**9) == adversary.CaptureSample()


def test_the_busiest_flow_is_estimated_from_the_start_of_the_capture(tmp_path):
    """A capture of one large transfer: its segments with payload (not its ACKs) are what the estimate counts,
    scaled from the sample to the whole file."""
    from bench.transfer_capture import write_transfer
    from harness import adversary

    segments = 3 * adversary.SAMPLE_RECORDS  # the sample sees the first third (with its ACKs, less)
    path = str(tmp_path / "transfer.pcap")
    write_transfer(path, segments)
    sample = adversary.sample_capture(path, os.path.getsize(path))
    assert 0.95 * segments <= sample.largest_flow <= 1.05 * segments, sample


@pytest.mark.parametrize("largest, jobs", [(0, 4), (100_000, 4), (400_000, 3), (1_000_000, 1), (10**7, 1)])
def test_a_capture_of_one_large_transfer_gets_fewer_processes(tmp_path, monkeypatch, largest, jobs):
    """Every process holds the busiest flow's packet offsets and times while it is open and analysed: a 1.5 GB
    capture of one 1,000,000-segment transfer peaked at 1,216 MB with two processes, 640 MB with one."""
    from harness import adversary

    monkeypatch.setattr(adversary.os, "sched_getaffinity", lambda _pid: set(range(8)), raising=False)
    monkeypatch.setattr(adversary, "sample_capture", lambda _path, _size: adversary.CaptureSample(1, largest))
    capture = tmp_path / "big.pcap"
    with open(capture, "wb") as f:
        f.truncate(400 * 10**6)
    assert adversary.default_jobs([str(capture)]) == jobs
    assert adversary.estimated_peak_mb(400, jobs, 1, largest) <= adversary.MEMORY_BUDGET_MB


@pytest.mark.parametrize("flows, jobs", [(0, 4), (49_000, 4), (400_000, 1), (200_000, 3)])
def test_a_capture_of_many_tiny_flows_gets_fewer_processes(tmp_path, monkeypatch, flows, jobs):
    """Memory follows flows more than bytes: 400 MB of port scan (400,000 flows) would pass 1 GB with two
    processes (measured: 926 MB PSS for two on 31 MB of it)."""
    from harness import adversary

    monkeypatch.setattr(adversary.os, "sched_getaffinity", lambda _pid: set(range(8)), raising=False)
    monkeypatch.setattr(adversary, "sample_capture", lambda _path, _size: adversary.CaptureSample(flows))
    capture = tmp_path / "big.pcap"
    with open(capture, "wb") as f:
        f.truncate(400 * 10**6)
    assert adversary.default_jobs([str(capture)]) == jobs
    assert adversary.estimated_peak_mb(400, jobs, flows) <= adversary.MEMORY_BUDGET_MB
