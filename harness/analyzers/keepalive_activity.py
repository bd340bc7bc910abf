"""Keep-alives that betray activity: a device's relay keep-alives off their steady period.

A device that keeps its relay connection open pings on a period (about two minutes, with jitter): that
says only that the device is on. A keep-alive that comes early, off that period, was sent for another
reason, typically because the user just did something, so it marks a moment of activity whatever
padding, batching or cover traffic do to the message itself (defences leave keep-alives alone).

Per flow with relay framing: the keep-alive envelopes the client sends (type 4, header in clear), their
period P learned as the most common gap between consecutive ones (the gap with the most others within
+-12% of it), then the device's schedule as the longest chain of keep-alives spaced 0.85 P..1.15 P
apart: every keep-alive off that chain is off-period. Each off-period keep-alive is reported as a `timing` finding (value: its time) tied to the
next data envelope the client sends on the flow (evidence `times`): "the message seen then was sent
by its user now". Sees only observed flows; never the simulator, its truth, or the scorer.
"""
from __future__ import annotations

from bisect import bisect_left
from typing import Iterable

from harness.analyzers import register
from harness.analyzers.interface import Analyzer, Finding
from harness.observe import views
from harness.observe.model import CLIENT, Flow

ID = "metadata.keepalive-activity"
KEEPALIVE = 4  # relay envelope type (harness.observe.relay_wire.RELAY_TYPES)
MIN_KEEPALIVES = 5  # fewer and no period can be learned
PERIOD_SPREAD = 0.12  # gaps within +-12% of each other count as one period
EARLY = 0.85  # the schedule: consecutive keep-alives 0.85 P..1.15 P apart
LINK_WINDOW = 120.0  # seconds: how far ahead the data envelope an activity ping announces may lie


def learn_period(times: list[float]) -> float | None:
    """The most common gap between consecutive keep-alives (ties: the longer one)."""
    gaps = sorted(b - a for a, b in zip(times, times[1:]) if b > a)
    if len(gaps) < MIN_KEEPALIVES - 1:
        return None
    best, best_count = None, 0
    for g in gaps:
        lo, hi = bisect_left(gaps, g * (1 - PERIOD_SPREAD)), bisect_left(gaps, g * (1 + PERIOD_SPREAD))
        if hi - lo >= best_count:
            best, best_count = g, hi - lo
    return best if best_count >= 3 else None


def off_period(times: list[float], period: float) -> list[float]:
    """Keep-alives off the period: all but the longest chain whose consecutive gaps are within
    +-(1 - EARLY) of the period (the device's own schedule; dynamic programming, O(k^2) for k pings)."""
    lo, hi = EARLY * period, (2 - EARLY) * period
    best = [1] * len(times)
    prev = [-1] * len(times)
    for i, t in enumerate(times):
        for j in range(i - 1, -1, -1):
            gap = t - times[j]
            if gap > hi:
                break
            if gap >= lo and best[j] + 1 > best[i]:
                best[i], prev[i] = best[j] + 1, j
    on, i = set(), max(range(len(times)), key=lambda k: (best[k], -k)) if times else -1
    while i >= 0:
        on.add(i)
        i = prev[i]
    return [t for k, t in enumerate(times) if k not in on]


@register
class KeepaliveActivity(Analyzer):
    """Relay keep-alives off the device's period: moments its user was active."""

    id = ID
    cost = 0.05  # relative CPU cost (Analyzer.cost), measured at 1M packets: balances analyze --jobs
    description = ("Learns each relay device's keep-alive period from the clear envelope headers and reports "
                   "every keep-alive off that period as a moment of user activity, tied to the next data "
                   "envelope the device sends (timing).")

    def on_flow(self, flow: Flow) -> Iterable[Finding]:
        clock = views.clock(flow)
        layout = views.layout(flow)
        d = layout.directions[CLIENT]
        if d.layer != "relay":
            return []
        pings = sorted(clock.time(CLIENT, env.offset) for env in d.envelopes if env.type == KEEPALIVE)
        period = learn_period(pings)
        if period is None:
            return []
        data = sorted(clock.time(CLIENT, env.offset) for env in d.envelopes if env.is_data)
        out = []
        for t in off_period(pings, period):
            i = bisect_left(data, t)
            evidence = {"rule": "off-period-keepalive", "time": round(t, 6), "period": round(period, 3),
                        "device": flow.src_ip, "direction": "client"}
            if i < len(data) and data[i] - t <= LINK_WINDOW:
                evidence["times"] = [round(data[i], 6)]
                evidence["announces"] = round(data[i], 6)
            out.append(Finding(analyzer=ID, observable="timing", kind="activity-keepalive", flow=flow.id,
                               value={"time": round(t, 3)}, evidence=evidence, confidence=0.6))
        return out
