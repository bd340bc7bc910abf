"""Traffic-analysis defences a relayed service can switch on: stages over its transmission schedule.

`apply_defences(ctx, path, transmissions)` runs the stages the scenario's `[defences]` section enables,
in path order, and records what they cost in `path.costs` and `ctx.costs`. With none enabled the
schedule passes through untouched. A stage is registered with `@defence(name, when=...)`, where
`when(defences)` says whether the scenario enables it. The stages, in the order a message meets them:

* padding   - every body (not keep-alives) padded inside the seal (the plaintext handed to `seal` gets
              0x80 then zeros): to a multiple of pad_bucket, or to exactly pad_size, longer messages
              split into pad_size fragments that travel as separate envelopes (Loopix-style cells).
* receipts  - transmissions of kind "receipt" dropped ("off") or held 0..receipt_delay s ("delayed").
* jitter    - the device holds each message a uniform 0..jitter_ms before sending it.
* cover-uplink   - each device sends only in its own slots (fixed period or Poisson, cover_rate_per_min);
              a real message waits for the next free slot, an idle slot carries a cover envelope
              (kind "cover": random bytes of a size drawn from the real ones, sealed like them).
* batching  - the relay holds what it sends on (to the enterprise, down to devices) and flushes in
              random order: a threshold mix when batch_size wait (or batch_interval after the first),
              a timed mix every batch_interval.
* relay-jitter   - the relay holds each message it sends on a uniform 0..jitter_ms.
* cover-downlink - the relay sends to each device only in that device's slots, cover in idle ones.
* fresh-ids - a mixing or shaping relay numbers what it sends per connection from a random start (and,
              with cover, so does each device): an id forwarded from inbound to outbound would link
              them, and counters starting together would advance in lockstep with the slots.

A delay at one hop moves every later hop of the same message (its chain: same kind, envelope id and
message), so causality holds. Costs: `latency` is, per message, its delivery (last hand-over in the
schedule) with the defences minus without; bandwidth is measured by the simulator on the capture
(harness/sim/simulate.py). Never touches keep-alives; no wall clock, no I/O.
"""
from __future__ import annotations

import math
from dataclasses import replace
from typing import Callable

import numpy as np

from harness.sim.rng import substream
from harness.sim.services.relay_path import (
    DOWNLINK,
    FROM_ENTERPRISE,
    RELAY_PROCESSING,
    TO_ENTERPRISE,
    UPLINK,
    Transmission,
    clear,
)

Defence = Callable[[object, object, list], list]
_DEFENCES: dict[str, tuple[Defence, Callable[[object], bool]]] = {}

HOP_ORDER = {UPLINK: 0, TO_ENTERPRISE: 1, FROM_ENTERPRISE: 2, DOWNLINK: 3}
PAD_MARK = b"\x80"
FRAGMENT_BITS = 6  # fragment k of envelope id n travels as id (n << 6) | k
FLUSH_SPACING = 0.0005  # seconds between envelopes of one flushed batch
END_MARGIN = 1.0  # no cover is scheduled in the run's last second


def defence(name: str, when: Callable[[object], bool] | None = None):
    """Register a stage; `when(defences)` says whether a scenario enables it (default: its field is truthy)."""
    def deco(fn: Defence) -> Defence:
        _DEFENCES[name] = (fn, when or (lambda d: bool(getattr(d, name, None))))
        return fn
    return deco


def _config(ctx):
    return getattr(ctx.scenario, "defences", None)


def enabled(ctx) -> list[str]:
    """Names of the stages the scenario's [defences] section switches on, in the order they run."""
    cfg = _config(ctx)
    if cfg is None:
        return []
    return [name for name, (_, when) in _DEFENCES.items() if when(cfg)]


def _chained(t) -> bool:
    return t.kind != "keepalive"


def _chains(ts: list) -> dict:
    chains: dict = {}
    for t in ts:
        if _chained(t):
            chains.setdefault((t.kind, t.msg_no, t.message_id), []).append(t)
    return chains


def _shift(chains: dict, t, delta: float) -> None:
    """Delay `t` and every later hop of its message by `delta` seconds."""
    if delta == 0:
        return
    order = HOP_ORDER.get(t.hop, 0)
    for u in chains.get((t.kind, t.msg_no, t.message_id), [t]):
        if HOP_ORDER.get(u.hop, 0) >= order:
            u.time += delta


def pad(plaintext: bytes, size: int) -> bytes:
    """`plaintext`, 0x80, then zeros up to `size` bytes (ISO/IEC 7816-4 padding; removable unambiguously)."""
    return plaintext + PAD_MARK + bytes(size - len(plaintext) - 1)


def bucket_size(n: int, bucket: int) -> int:
    return bucket * math.ceil((n + 1) / bucket)


# --- stages, in path order ---------------------------------------------------------------------
@defence("padding", when=lambda d: d.padding != "none")
def padding(ctx, path, ts: list) -> list:
    cfg = _config(ctx)
    out = []
    for t in ts:
        if not _chained(t):
            out.append(t)
        elif cfg.padding == "bucket":
            out.append(replace(t, plaintext=pad(t.plaintext, bucket_size(len(t.plaintext), cfg.pad_bucket))))
        else:
            cap = cfg.pad_size - 1
            pieces = [t.plaintext[i:i + cap] for i in range(0, max(len(t.plaintext), 1), cap)]
            if len(pieces) == 1:
                out.append(replace(t, plaintext=pad(t.plaintext, cfg.pad_size)))
            else:
                for k, piece in enumerate(pieces):
                    no = ((t.msg_no << FRAGMENT_BITS) | k) & 0xFFFFFFFF
                    out.append(replace(t, plaintext=pad(piece, cfg.pad_size), msg_no=no))
    return out


@defence("receipts", when=lambda d: d.receipts != "on")
def receipts(ctx, path, ts: list) -> list:
    cfg = _config(ctx)
    if cfg.receipts == "off":
        return [t for t in ts if t.kind != "receipt"]
    chains = _chains(ts)
    rng = substream(ctx.seed, "defence", "receipts")
    for key in sorted((k for k in chains if k[0] == "receipt"), key=lambda k: (k[1], str(k[2]))):
        first = min(chains[key], key=lambda t: HOP_ORDER.get(t.hop, 0))
        _shift(chains, first, float(rng.uniform(0.0, cfg.receipt_delay)))
    return ts


def _jitter(ctx, ts: list, hops: tuple[str, ...], stream: str) -> list:
    cfg = _config(ctx)
    chains = _chains(ts)
    rng = substream(ctx.seed, "defence", stream)
    for t in sorted((t for t in ts if _chained(t) and t.hop in hops), key=lambda t: (t.time, t.hop, t.user, t.msg_no)):
        _shift(chains, t, float(rng.uniform(0.0, cfg.jitter_ms / 1000.0)))
    return ts


@defence("jitter", when=lambda d: d.jitter_ms > 0)
def jitter(ctx, path, ts: list) -> list:
    return _jitter(ctx, ts, (UPLINK,), "jitter-device")


def _slots(rng, kind: str, period: float, start: float):
    """Slot times from `start` on: a fixed period with a random phase, or Poisson."""
    t = start + (float(rng.uniform(0.0, period)) if kind == "constant" else float(rng.exponential(period)))
    while True:
        yield t
        t += period if kind == "constant" else float(rng.exponential(period))


def _shape(ctx, ts: list, hop: str) -> list:
    """Each device's traffic on `hop` moved into its slots; idle slots before the run ends carry cover."""
    cfg = _config(ctx)
    period = 60.0 / cfg.cover_rate_per_min
    end = ctx.scenario.duration - END_MARGIN
    chains = _chains(ts)
    real = [t for t in ts if _chained(t) and t.hop == hop]
    sizes = sorted(len(t.plaintext) for t in real) or [64]
    size_rng = substream(ctx.seed, "defence", "cover-size", hop)
    cover = []
    for u in ctx.users:
        mine = sorted((t for t in real if t.user == u.name), key=lambda t: (t.time, t.msg_no))
        template = mine[0] if mine else (real[0] if real else None)
        rng = substream(ctx.seed, "defence", "cover-slots", hop, u.name)
        i = 0
        for slot in _slots(rng, cfg.cover, period, 0.0):
            if i < len(mine) and mine[i].time <= slot:
                _shift(chains, mine[i], slot - mine[i].time)
                i += 1
            elif slot < end:
                body = size_rng.bytes(int(sizes[int(size_rng.integers(0, len(sizes)))]))
                base = template or Transmission(slot, hop, u.name, "cover", seal=clear)
                cover.append(replace(base, time=slot, hop=hop, user=u.name, kind="cover", plaintext=body,
                                     message_id=None, msg_no=0, pin=int(u.pin, 16)))
            elif i >= len(mine):
                break
    return ts + cover


@defence("cover-uplink", when=lambda d: d.cover != "none")
def cover_uplink(ctx, path, ts: list) -> list:
    return _shape(ctx, ts, UPLINK)


@defence("batching", when=lambda d: d.batching != "none")
def batching(ctx, path, ts: list) -> list:
    cfg = _config(ctx)
    chains = _chains(ts)
    for hop in (TO_ENTERPRISE, DOWNLINK):
        rng = substream(ctx.seed, "defence", "batching", hop)
        pool = sorted((t for t in ts if _chained(t) and t.hop == hop), key=lambda t: (t.time, t.user, t.msg_no))
        batches: list[tuple[float, list]] = []
        if cfg.batching == "threshold":
            i = 0
            while i < len(pool):
                deadline = pool[i].time + cfg.batch_interval
                j = i
                while j < len(pool) and j - i < cfg.batch_size and pool[j].time <= deadline:
                    j += 1
                members = pool[i:j]
                flush = members[-1].time if len(members) == cfg.batch_size else deadline
                batches.append((flush, members))
                i = j
        else:
            phase = float(rng.uniform(0.0, cfg.batch_interval))
            groups: dict[int, list] = {}
            for t in pool:
                groups.setdefault(math.ceil((t.time - phase) / cfg.batch_interval), []).append(t)
            batches = [(phase + k * cfg.batch_interval, members) for k, members in sorted(groups.items())]
        for flush, members in batches:
            order = rng.permutation(len(members))
            for t, slot in zip(members, order.tolist()):
                _shift(chains, t, flush + RELAY_PROCESSING + slot * FLUSH_SPACING - t.time)
    return ts


@defence("relay-jitter", when=lambda d: d.jitter_ms > 0)
def relay_jitter(ctx, path, ts: list) -> list:
    return _jitter(ctx, ts, (TO_ENTERPRISE, DOWNLINK), "jitter-relay")


@defence("cover-downlink", when=lambda d: d.cover != "none")
def cover_downlink(ctx, path, ts: list) -> list:
    return _shape(ctx, ts, DOWNLINK)


@defence("fresh-ids", when=lambda d: d.batching != "none" or d.cover != "none")
def fresh_ids(ctx, path, ts: list) -> list:
    cfg = _config(ctx)
    hops = (TO_ENTERPRISE, DOWNLINK) + ((UPLINK,) if cfg.cover != "none" else ())
    out = [replace(t) if _chained(t) and t.hop in hops else t for t in ts]
    counters: dict[tuple[str, str], int] = {}
    for t in sorted((t for t in out if _chained(t) and t.hop in hops), key=lambda t: (t.time, t.hop, t.user)):
        key = (t.hop, "" if t.hop == TO_ENTERPRISE else t.user)
        if key not in counters:  # a random start per connection: counters in lockstep would line slots up
            counters[key] = int(substream(ctx.seed, "defence", "fresh-ids", *key).integers(1, 1 << 31))
        counters[key] += 1
        t.msg_no = counters[key] & 0xFFFFFFFF
    return out


# --- running and costing -----------------------------------------------------------------------
def _delivery(ts: list) -> dict[str, float]:
    """Per truth message: when its last hop is handed over."""
    out: dict[str, float] = {}
    for t in ts:
        if t.message_id is not None and t.kind != "cover":
            out[t.message_id] = max(out.get(t.message_id, t.time), t.time)
    return out


def latency_summary(added: list[float]) -> dict:
    if not added:
        return {"messages": 0, "p50_s": 0.0, "p95_s": 0.0, "mean_s": 0.0, "max_s": 0.0}
    a = np.asarray(added)
    return {"messages": len(added), "p50_s": round(float(np.percentile(a, 50)), 4),
            "p95_s": round(float(np.percentile(a, 95)), 4), "mean_s": round(float(a.mean()), 4),
            "max_s": round(float(a.max()), 4)}


def apply_defences(ctx, path, transmissions: list) -> list:
    names = enabled(ctx)
    if not names:
        return transmissions
    before = _delivery(transmissions)
    ts = [replace(t) for t in transmissions]  # stages move times in place: never the caller's objects
    for name in names:
        ts = _DEFENCES[name][0](ctx, path, ts)
    after = _delivery(ts)
    added = [after[m] - before[m] for m in sorted(before) if m in after]
    end = ctx.scenario.duration
    costs = {
        "defences": names,
        "latency": {**latency_summary(added), "source": "schedule: last hand-over with minus without defences",
                    "after_run_end": sum(1 for m in after if after[m] >= end - 0.5)},
        "transmissions": {"before": sum(1 for t in transmissions if _chained(t)),
                          "after": sum(1 for t in ts if _chained(t)),
                          "cover": sum(1 for t in ts if t.kind == "cover"),
                          "receipts_dropped": sum(1 for t in transmissions if t.kind == "receipt")
                          - sum(1 for t in ts if t.kind == "receipt")},
    }
    path.costs.update(costs)
    if hasattr(ctx, "costs"):
        ctx.costs.update(costs)
    return ts
