"""harness/sim/defences.py: each defence does what it says to the schedule, costs what it reports, and
never increases what the metadata adversary learns."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from harness.scenario.schema import Defences
from harness.sim.defences import apply_defences, bucket_size, enabled, pad
from harness.sim.services.relay_path import DOWNLINK, FROM_ENTERPRISE, TO_ENTERPRISE, UPLINK, Transmission
from harness.tradeoff import METADATA_OBSERVABLES, VARIANTS

USERS = [SimpleNamespace(name=n, pin=p) for n, p in (("alice", "2aaaaaaa"), ("bob", "2bbbbbbb"), ("carol", "2ccccccc"))]


def ctx(**settings):
    return SimpleNamespace(scenario=SimpleNamespace(defences=Defences(**settings), duration=600.0), seed=5,
                           users=USERS, costs={})


def message(n, t, sender="alice", recipient="bob", size=100, kind="data"):
    text = bytes(size)
    mid = f"m{n}" if kind == "data" else None
    return [Transmission(t, UPLINK, sender, kind, text, message_id=mid, msg_no=n),
            Transmission(t + 0.07, TO_ENTERPRISE, sender, kind, text, message_id=mid, msg_no=n),
            Transmission(t + 0.2, FROM_ENTERPRISE, recipient, kind, text, message_id=mid, msg_no=n),
            Transmission(t + 0.25, DOWNLINK, recipient, kind, text, message_id=mid, msg_no=n)]


def schedule():
    out = [Transmission(50.0 * k, UPLINK, "carol", "keepalive", msg_no=k) for k in range(1, 5)]
    for n, t in enumerate((10.0, 11.0, 40.0, 41.5, 90.0, 300.0), start=1):
        out += message(n, t, size=50 + 700 * n)
    out += message(100, 12.0, sender="bob", recipient="alice", size=30, kind="receipt")
    return out


def by(ts, hop, kind=None):
    return sorted((t for t in ts if t.hop == hop and (kind is None or t.kind == kind)), key=lambda t: t.time)


def test_nothing_enabled_passes_the_schedule_through():
    ts = schedule()
    c = ctx()
    assert enabled(c) == [] and apply_defences(c, SimpleNamespace(costs={}), ts) is ts


def test_padding_goes_inside_the_seal():
    assert pad(b"abc", 8) == b"abc\x80\x00\x00\x00\x00" and bucket_size(159, 160) == 160 and bucket_size(160, 160) == 320
    out = apply_defences(ctx(padding="bucket", pad_bucket=160), SimpleNamespace(costs={}), schedule())
    assert all(len(t.plaintext) % 160 == 0 for t in out if t.kind != "keepalive")
    assert all(t.plaintext == b"" for t in out if t.kind == "keepalive")  # keep-alives untouched
    out = apply_defences(ctx(padding="constant", pad_size=1024), SimpleNamespace(costs={}), schedule())
    data = [t for t in out if t.kind == "data" and t.hop == UPLINK]
    assert {len(t.plaintext) for t in data} == {1024}
    assert len([t for t in data if t.message_id == "m6"]) == 5  # 4250 bytes -> 5 cells of 1023 + mark


def test_receipts_off_and_delayed():
    out = apply_defences(ctx(receipts="off"), SimpleNamespace(costs={}), schedule())
    assert not [t for t in out if t.kind == "receipt"]
    c = ctx(receipts="delayed", receipt_delay=30.0)
    out = apply_defences(c, SimpleNamespace(costs={}), schedule())
    before, after = by(schedule(), UPLINK, "receipt")[0], by(out, UPLINK, "receipt")[0]
    shift = after.time - before.time
    assert 0 <= shift <= 30.0
    assert by(out, DOWNLINK, "receipt")[0].time - by(schedule(), DOWNLINK, "receipt")[0].time == pytest.approx(shift)


@pytest.mark.parametrize("mode", ["threshold", "timed"])
def test_batching_flushes_in_batches_and_keeps_causality(mode):
    c = ctx(batching=mode, batch_size=3, batch_interval=10.0)
    out = apply_defences(c, SimpleNamespace(costs={}), schedule())
    down = by(out, DOWNLINK, "data")
    flushes = {round(t.time, 1) for t in down}
    assert len(flushes) < len(down)  # several messages leave together
    for mid in {t.message_id for t in out if t.message_id}:
        hops = {t.hop: t.time for t in out if t.message_id == mid}
        assert hops[UPLINK] < hops[TO_ENTERPRISE] < hops[FROM_ENTERPRISE] < hops[DOWNLINK]
    orig = {t.message_id: t.time for t in by(schedule(), DOWNLINK, "data")}
    assert all(t.time >= orig[t.message_id] - 1e-9 for t in down)
    assert c.costs["latency"]["p50_s"] > 0


@pytest.mark.parametrize("mode", ["constant", "poisson"])
def test_cover_fills_every_device_slot_both_ways(mode):
    c = ctx(cover=mode, cover_rate_per_min=6.0)
    out = apply_defences(c, SimpleNamespace(costs={}), schedule())
    for hop in (UPLINK, DOWNLINK):
        for u in USERS:
            mine = [t.time for t in out if t.hop == hop and t.user == u.name and t.kind != "keepalive"]
            assert 45 <= len(mine) <= 75  # ~600 s at one slot per 10 s
            if mode == "constant":
                gaps = {round(b - a, 6) for a, b in zip(sorted(mine), sorted(mine)[1:])}
                assert gaps == {10.0}
    assert c.costs["transmissions"]["cover"] > 0
    cover = [t for t in out if t.kind == "cover"]
    assert all(t.message_id is None for t in cover)
    # fresh ids: every connection numbers its envelopes n, n+1, ... from its own random n (real and cover alike)
    firsts = set()
    for u in USERS:
        down = sorted((t for t in out if t.hop == DOWNLINK and t.user == u.name), key=lambda t: t.time)
        assert [t.msg_no - down[0].msg_no for t in down] == list(range(len(down)))
        firsts.add(down[0].msg_no)
    assert len(firsts) == len(USERS)


def test_jitter_delays_within_its_bound():
    c = ctx(jitter_ms=500.0)
    out = apply_defences(c, SimpleNamespace(costs={}), schedule())
    assert 0 < c.costs["latency"]["max_s"] <= 1.5  # the device once, the relay twice (on and down): 0.5 s each


def test_scenario_format_rejects_unknown_defence_values():
    from harness.errors import HarnessError
    from harness.scenario.load import load_scenario_text

    text = open("scenarios/relay-defended.toml").read().replace('batching = "timed"', 'batching = "sometimes"')
    with pytest.raises(HarnessError, match=r"defences\.batching: must be one of"):
        load_scenario_text(text, "x.toml")


# --- on the bes-relay workload (seed 103): direction of effect and reported cost ---------------
@pytest.mark.parametrize("name", [name for name, _ in VARIANTS if name != "none"])
def test_no_defence_increases_what_the_adversary_learns(variants, name):
    base, r = variants["none"], variants[name]
    for o in METADATA_OBSERVABLES:
        assert r.advantage(o) <= base.advantage(o) + 0.02, (name, o, r.advantage(o), base.advantage(o))


@pytest.mark.parametrize("name, hides", [
    ("padding-bucket", "size"), ("padding-constant", "size"), ("jitter-2s", "timing"),
    ("cover-constant", "volume"), ("cover-constant", "timing"), ("batching-timed", None),
    ("batching+cover+padding", "contacts"), ("batching+cover+padding", "size"),
])
def test_each_defence_lowers_what_it_targets(variants, name, hides):
    if hides is None:  # a timed mix alone: single messages blur, the pairs still show (disclosure)
        assert variants[name].advantage("contacts") >= 0.5
        assert variants[name].report["observables"]["contacts"]["details"]["sender_anonymity"]["degree_mean"] \
            >= variants["none"].report["observables"]["contacts"]["details"]["sender_anonymity"]["degree_mean"]
        return
    assert variants[name].advantage(hides) < variants["none"].advantage(hides) - 0.3


@pytest.mark.parametrize("name", [name for name, _ in VARIANTS])
def test_each_defence_costs_what_it_reports(variants, bes_relay, name, tmp_path):
    r = variants[name]
    if name == "none":
        assert r.costs["bandwidth"]["overhead_pct"] == 0.0
        return
    bw = r.costs["bandwidth"]
    assert bw["overhead_pct"] == pytest.approx(100.0 * (bw["bytes"] - bw["baseline_bytes"]) / bw["baseline_bytes"],
                                               abs=0.01)
    # the schedule's latency agrees with what the tap saw (first byte of each message's last leg, with minus
    # without); with 1 KiB cells the schedule waits for the last cell, so the tap can only see less
    tap, sched = r.costs["tap_latency"]["p50_s"], r.costs["latency"]["p50_s"]
    if r.defences.get("padding") == "constant":
        assert tap <= sched + 0.5
    else:
        assert abs(tap - sched) <= 0.5 + 0.1 * sched
    if "cover" in name or "padding" in name:
        assert bw["overhead_pct"] > 5.0
    if "batching" in name or "cover" in name or "jitter" in name:
        assert r.costs["latency"]["p50_s"] > 0.5
    else:
        assert r.costs["latency"]["p95_s"] == 0.0
