"""harness.analysis: running every analyzer, containing failures, and the findings document."""
from __future__ import annotations

import json
from collections import Counter

import pytest

from harness.analysis import AnalysisResult, findings_document, run_analyzers
from harness.analyzers import _REGISTRY, Analyzer, Finding, register, registry
from harness.errors import HarnessError
from harness.observe.model import Observation

from .conftest import C, make_flow, smtp_chunks

OURS = ["metadata.activity", "metadata.flows", "payload.dpi", "payload.entropy"]


@pytest.fixture
def broken_analyzer():
    """An analyzer that fails on every flow, registered for one test and then removed."""

    @register
    class Broken(Analyzer):
        id = "test.broken"
        description = "fails on purpose"

        def on_flow(self, flow):
            yield Finding(analyzer=self.id, observable="content", kind="text", flow=flow.id, value="half")
            raise RuntimeError(f"boom on {flow.proto}")

    yield Broken
    _REGISTRY.pop("test.broken", None)


@pytest.fixture
def flows():
    return [make_flow(smtp_chunks(100.0), src=("10.1.0.5", 40001)),
            make_flow([(5.0, C, b"\x00" * 10)], proto="udp", src=("10.1.0.6", 999), dst=("10.9.0.9", 9999)),
            make_flow([], start=7.0, end=7.1, src=("10.1.0.7", 40002), dst=("10.9.0.25", 443))]


def test_our_analyzers_are_registered_under_stable_ids():
    assert set(OURS) <= set(registry())


def test_an_analyzer_exception_is_contained_and_recorded(broken_analyzer, flows, knowledge):
    result = run_analyzers(flows, knowledge)
    assert "test.broken" in registry()
    assert len(result.errors) == len(flows)
    assert result.errors[0].startswith("test.broken: RuntimeError: boom on tcp")
    assert not any(f.analyzer == "test.broken" for f in result.findings)  # a failed call's findings are dropped
    assert {f.analyzer for f in result.findings} == set(OURS)  # the others ran on every flow
    assert result.flow_labels[flows[0].id]["app"] == "smtp"


def test_a_failing_finish_and_a_non_finding_are_contained(knowledge, flows):
    @register
    class Sloppy(Analyzer):
        id = "test.sloppy"

        def on_flow(self, flow):
            return ["not a finding"]

        def finish(self, flows):
            raise ValueError("no")

    try:
        result = run_analyzers(flows, knowledge, only=["test.sloppy", "metadata.flows"])
    finally:
        _REGISTRY.pop("test.sloppy", None)
    assert result.errors[0].startswith("test.sloppy: TypeError: on_flow yielded str, not Finding")
    assert result.errors[-1] == "test.sloppy: ValueError: no (finish)"
    assert {f.analyzer for f in result.findings} == {"metadata.flows"}


@pytest.mark.parametrize("failure", ["raises", "short"])
def test_a_failing_batch_is_retried_flow_by_flow(knowledge, flows, failure):
    """One flow that breaks an analyzer's on_batch costs that flow's findings only: the batch is run
    again through on_flow, and the other flows keep theirs."""

    @register
    class Batched(Analyzer):
        id = "test.batched"

        def on_flow(self, flow):
            if flow.proto == "udp":
                raise ValueError("bad datagram")
            return [Finding(self.id, "service", "proto", flow.id, flow.proto)]

        def on_batch(self, batch):
            if failure == "short":
                return [self.on_flow(f) for f in batch if f.proto != "udp"]
            return [self.on_flow(f) for f in batch]

    try:
        result = run_analyzers(flows, knowledge, only=["test.batched"])
    finally:
        _REGISTRY.pop("test.batched", None)
    assert [(f.flow, f.value) for f in result.findings] == [(flows[0].id, "tcp"), (flows[2].id, "tcp")]
    assert result.errors[0].startswith("test.batched: ") and result.errors[0].endswith(
        f"(batch of 3 flows from {flows[0].id}; retried one by one)")
    assert result.errors[1] == f"test.batched: ValueError: bad datagram (flow {flows[1].id})"


def test_findings_are_deduplicated_and_in_document_order(flows, knowledge):
    twice = run_analyzers(flows + [flows[0]], knowledge)
    once = run_analyzers(flows, knowledge)
    ids = [f.id for f in twice.findings]
    assert len(ids) == len(set(ids))
    assert [f.id for f in once.findings] == ids  # the repeated flow is analysed once
    assert twice.errors == [f"harness: flow {flows[0].id} given twice: analysed once"]
    # Each flow's on_flow findings form a block, in the order the flows came, sorted within the block;
    # the findings of finish() follow, sorted with the cross-flow ones (no flow) first.
    per_flow = [f for f in once.findings if f.flow is not None and f.analyzer == "payload.entropy"]
    assert [f.flow for f in per_flow] == [fl.id for fl in flows if any(f.flow == fl.id for f in per_flow)]
    block = [f for f in once.findings if f.flow == flows[0].id]
    assert [(f.analyzer, f.kind, f.id) for f in block] == sorted((f.analyzer, f.kind, f.id) for f in block)
    final = once.findings[once.findings.index(next(f for f in once.findings if f.flow is None)):]
    keys = [(f.flow is not None, f.flow or "", f.analyzer, f.kind, f.id) for f in final]
    assert keys == sorted(keys)


def test_only_selects_analyzers_and_rejects_unknown_ids(flows, knowledge):
    result = run_analyzers(flows, knowledge, only=["payload.entropy"])
    assert {f.analyzer for f in result.findings} == {"payload.entropy"}
    (entropy,) = [f for f in result.findings if f.flow == flows[0].id]
    assert result.flow_labels[flows[0].id] == {"app": "unknown", "payload_class": "plaintext",  # no payload.dpi
                                               "entropy": entropy.value["entropy"]}
    assert 4.0 < entropy.value["entropy"] < 6.0
    with pytest.raises(HarnessError, match="no.such"):
        run_analyzers(flows, knowledge, only=["no.such"])


def test_flow_labels_fold_app_class_and_entropy(flows, knowledge):
    labels = run_analyzers(flows, knowledge).flow_labels
    assert labels[flows[0].id]["app"] == "smtp" and labels[flows[0].id]["payload_class"] == "plaintext"
    assert labels[flows[1].id]["app"] == "unknown" and labels[flows[1].id]["payload_class"] == "plaintext"
    assert labels[flows[2].id] == {"app": "unknown", "payload_class": "empty", "entropy": 0.0}


def test_findings_document_has_exactly_the_schema(flows, knowledge):
    observation = Observation(captures=["captures/x.pcap"], flows=flows, packets=42,
                              skipped=Counter({"arp": 3, "icmp": 1}), notes=["a note"])
    result = run_analyzers(flows, knowledge)
    result.errors.append("x.y: KeyError: 'z' (finish)")
    doc = findings_document(observation, result)
    assert list(doc) == ["schema", "captures", "flows", "findings", "skipped", "anomalies", "notes", "errors"]
    assert doc["schema"] == "harness.findings/1" and doc["captures"] == ["captures/x.pcap"]
    assert doc["skipped"] == {"arp": 3, "icmp": 1} and doc["notes"] == ["a note"]
    assert doc["errors"] == ["x.y: KeyError: 'z' (finish)"]
    row = doc["flows"][0]
    assert list(row) == ["id", "proto", "src", "dst", "packets", "bytes", "first_seen", "last_seen", "app",
                         "payload_class", "entropy", "anomalies"]
    f0 = flows[0]
    assert row["id"] == f0.id and row["packets"] == f0.total_packets and row["bytes"] == f0.total_bytes
    assert row["first_seen"] == round(f0.first_seen, 6) and row["app"] == "smtp"
    assert doc["findings"] == [f.to_json() for f in result.findings]
    assert json.loads(json.dumps(doc)) == doc  # plain JSON all the way down


def test_result_defaults():
    assert AnalysisResult() == AnalysisResult(findings=[], flow_labels={}, errors=[])
