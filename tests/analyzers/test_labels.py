"""The flow labels: the most confident app / payload-class finding wins, ties to the first in document order."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from harness.analysis import FlowLabels, _Labels

offers = st.lists(st.tuples(st.sampled_from(["f1", "f2", "f3"]), st.sampled_from(["app", "payload-class"]),
                            st.sampled_from([0.5, 0.9, 1.0]), st.integers(0, 1), st.sampled_from(["a.x", "b.y"]),
                            st.sampled_from(["00", "0f", "ff"]), st.sampled_from(["smtp", "tls", "dns"])),
                  max_size=30)


def _reference(items):
    """The rule, spelled out: per (flow, kind) the max of (confidence, then the earliest order)."""
    best = {}
    for flow, kind, conf, block, analyzer, fid, value in items:
        key, order = (flow, kind), (block, analyzer, kind, fid)
        if key not in best or conf > best[key][0] or (conf == best[key][0] and order < best[key][1]):
            best[key] = (conf, order, value)
    rows = {}
    for flow, kind, *_ in items:
        rows[flow] = {"app": "unknown", "payload_class": None, "entropy": None}
    for (flow, kind), (_, _, value) in best.items():
        if kind == "app":
            rows[flow]["app"] = value
        else:
            rows[flow]["payload_class"], rows[flow]["entropy"] = value, len(value)
    return rows


def _offer(labels, items):
    for flow, kind, conf, block, analyzer, fid, value in items:
        labels.flow(flow)
        labels.offer((flow, kind), (conf, (block, analyzer, kind, fid),
                                    value if kind == "app" else {"class": value, "entropy": len(value)}))


@settings(max_examples=300, deadline=None)
@given(offers, st.integers(0, 30))
def test_labels_follow_the_rule_in_one_process_and_merged_from_two(items, cut):
    one = _Labels(FlowLabels())
    _offer(one, items)
    assert dict(one.labels) == _reference(items)
    first, second = _Labels(FlowLabels()), _Labels(FlowLabels())
    _offer(first, items[:cut])
    _offer(second, items[cut:])
    first.merge(second.labels)
    assert dict(first.labels) == _reference(items)
