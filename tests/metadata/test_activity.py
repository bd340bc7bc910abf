"""metadata.activity: online periods, size classes, received volume, known-document fingerprints."""
from __future__ import annotations

from hypothesis import given, strategies as st

from harness.analyzers import KeyGrant, Knowledge
from harness.analyzers.activity import ID, base64_size, document_matches, size_class
from tests.analyzers.conftest import C, S, items, make_flow, run


def test_size_classes():
    assert [size_class(16, 1), size_class(300, 1), size_class(5000, 4), size_class(90000, 62)] == \
        ["receipt", "chat", "email", "attachment"]


def test_known_document_as_an_attachment():
    doc = 48213
    assert base64_size(3) == 6 and base64_size(57) == 78  # 76 characters + CRLF
    payload = base64_size(doc) + 1200  # MIME headers around it
    assert document_matches(payload, {"leaked-memo.pdf": doc, "other.doc": 20000}) == ["leaked-memo.pdf"]
    assert document_matches(payload + 5000, {"leaked-memo.pdf": doc}) == []


def test_flows_give_online_periods_classes_and_documents():
    doc = 30000
    body = b"x" * (base64_size(doc) + 900)
    early = make_flow([(10.0, C, b"hi" * 200), (10.5, S, b"ok"), (20.0, C, body)],
                      src=("10.1.0.7", 40000), dst=("10.9.0.25", 25))
    late = make_flow([(1000.0, C, b"again" * 100)], src=("10.1.0.7", 40001), dst=("10.9.0.25", 25))
    knowledge = Knowledge((KeyGrant("memo.pdf", "document-size", str(doc).encode()),))
    found = run(ID, early, late, knowledge=knowledge)
    periods = sorted((f.value["start"], f.value["end"]) for f in found if f.kind == "online-period")
    assert periods == [(10.0, 20.0), (1000.0, 1000.0)]  # 980 s of silence: offline in between
    classes = [f["value"]["class"] for f in items(found, "size", "size-class")]
    assert "attachment" in classes
    docs = [f for f in found if f.kind == "known-document"]
    assert docs and docs[0].value["documents"] == ["memo.pdf"]
    assert all("bytes" not in f.value for f in found if f.observable == "size")  # never dilutes the size measure


def test_direct_flows_between_peers_are_contacts_servers_are_not():
    chat = b"hello there, " * 40
    peer = make_flow([(5.0, C, chat)], src=("10.1.0.7", 40000), dst=("10.1.0.8", 5000))
    back = make_flow([(9.0, C, chat)], src=("10.1.0.8", 40001), dst=("10.1.0.9", 5000))
    server = make_flow([(7.0, C, chat)], src=("10.1.0.7", 40002), dst=("10.9.0.25", 25))
    found = run("metadata.flows", peer, back, server)
    pairs = {(f.value["sender"], f.value["recipient"]) for f in found if f.kind == "direct-flow"}
    assert pairs == {("10.1.0.7", "10.1.0.8")}  # 10.1.0.9 and the mail server never open flows


@given(st.lists(st.lists(st.floats(0, 5000, allow_nan=False), min_size=1, max_size=12), min_size=1, max_size=8))
def test_online_periods_merged_per_flow_equal_those_of_all_times(flows_times):
    """metadata.activity keeps each flow's periods, not its packet times; merging them loses nothing."""
    from harness.analyzers.activity import merge_periods, online_periods

    per_flow = [p for times in flows_times for p in online_periods(times)]
    assert merge_periods(per_flow) == online_periods([t for times in flows_times for t in times])


@given(st.lists(st.lists(st.floats(0, 5000, allow_nan=False), min_size=1, max_size=12), min_size=1, max_size=30),
       st.integers(1, 30))
def test_merging_as_flows_come_gives_what_one_merge_at_the_end_gives(flows_times, every):
    """What metadata.activity does to bound a device's periods: merge now and then, merge again at the end."""
    from harness.analyzers.activity import merge_periods, online_periods

    kept: list = []
    for n, times in enumerate(flows_times):
        kept += online_periods(times)
        if n % every == 0:
            kept = merge_periods(kept)
    assert merge_periods(kept) == online_periods([t for times in flows_times for t in times])
