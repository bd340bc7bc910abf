"""Series findings read, by the scorer and the gate, exactly as the findings they stand for, one per item."""
from __future__ import annotations

from hypothesis import given, strategies as st

from harness.gate import finding_identity, snapshot
from harness.scoring.association import Index
from harness.series import SERIES, expand
from harness.sim.truth import Leg

ITEM = st.fixed_dictionaries({"time": st.floats(0, 100, allow_nan=False).map(lambda t: round(t, 3)),
                              "bytes": st.integers(0, 10**6)})
EVIDENCE = st.fixed_dictionaries({"direction": st.sampled_from(["client", "server"]),
                                  "pins": st.none() | st.lists(st.text("0123456789abcdef", min_size=8, max_size=8),
                                                               min_size=1, max_size=2),
                                  "confidence": st.sampled_from([0.5, 0.7, 0.9])})


def one_by_one(items: list[dict], evidence: list[dict]) -> list[dict]:
    """What an analyzer writing one finding per item would write (no id: the documents differ there)."""
    out = []
    for value, ev in zip(items, evidence):
        ev = {k: v for k, v in ev.items() if v is not None}
        confidence = ev.pop("confidence")
        out.append({"analyzer": "a", "observable": "size", "kind": "k", "flow": "f", "value": value,
                    "evidence": {"device": "10.0.0.1", **ev}, "confidence": confidence})
    return out


def as_series(items: list[dict], evidence: list[dict]) -> dict:
    columns = {k: [i[k] for i in items] for k in ("time", "bytes")}
    per_item = {k: [e[k] for e in evidence] for k in ("direction", "pins", "confidence")}
    return {"id": "0123456789abcdef", "analyzer": "a", "observable": "size", "kind": "k", "flow": "f",
            "value": {SERIES: columns}, "evidence": {"device": "10.0.0.1", SERIES: per_item}, "confidence": 0.9}


@given(st.lists(st.tuples(ITEM, EVIDENCE), min_size=1, max_size=8))
def test_a_series_expands_to_the_findings_it_stands_for(rows):
    items, evidence = [r[0] for r in rows], [r[1] for r in rows]
    expanded = list(expand(as_series(items, evidence)))
    assert [e.pop("id") for e in expanded] == [f"0123456789abcdef.{i}" for i in range(len(items))]
    assert expanded == one_by_one(items, evidence)


def test_a_plain_finding_is_its_own_expansion():
    f = {"id": "x", "observable": "size", "flow": "f", "value": {"time": 1.0, "bytes": 3}, "evidence": {}}
    assert list(expand(f)) == [f]


def test_columns_of_unequal_length_give_the_shorter_count():
    f = {"id": "x", "value": {SERIES: {"time": [1.0, 2.0], "bytes": [5]}}, "evidence": {SERIES: {"a": [1, 2, 3]}}}
    assert [i["value"] for i in expand(f)] == [{"time": 1.0, "bytes": 5}]


def test_the_scorer_and_the_gate_read_items():
    items = [{"time": 10.0, "bytes": 100}, {"time": 50.0, "bytes": 900}]
    evidence = [{"direction": "client", "pins": None, "confidence": 0.7}] * 2
    series = as_series(items, evidence)
    idx = Index.build([series])
    leg = Leg(flow="f", tap_time=50.2, direction="client", device="d")
    assert [f["value"] for f in idx.near("size", leg)] == [{"time": 50.0, "bytes": 900}]
    report = {"scenario": "s", "seed": 1, "observables": {"size": {"verdict": "visible"}}}
    (entry,) = snapshot([report], {"s": {"findings": [series]}})["scenarios"].values()
    assert entry["observables"]["size"]["findings"] == sorted(finding_identity(f)
                                                              for f in one_by_one(items, evidence))
