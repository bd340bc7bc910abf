"""Sender anonymity per message and how many messages a link takes, from the adversary's own candidate
distributions (findings of kind "sender-candidates" and "relay-link"), measured against the truth.

Anonymity follows Diaz et al. and Serjantov & Danezis: for each message that reached its recipient over
a tapped link, the adversary's distribution over who sent it has entropy H (bits); the effective
anonymity set is 2^H and the degree of anonymity H / log2 N (N users; 1 = the adversary learned nothing,
0 = it is certain). Mass the adversary leaves unattributed, and every message it says nothing about,
is spread uniformly over all N users: what a guesser knows.
"""
from __future__ import annotations

import math
from statistics import median

from harness.scoring.association import AFTER, BEFORE, Index, finding_time, norm
from harness.sim.truth import Truth

CANDIDATE_KINDS = frozenset({"sender-candidates"})  # per-message distributions, not contact claims


def _distribution(f: dict | None, owner: dict[str, str], users: list[str]) -> dict[str, float]:
    n = len(users)
    dist = {u: 0.0 for u in users}
    rest = 1.0
    if f is not None:
        v = f["value"] if isinstance(f["value"], dict) else {}
        for ident, p in (v.get("candidates") or {}).items():
            p = max(float(p), 0.0)
            who = owner.get(norm(ident), f"?{ident}")
            dist[who] = dist.get(who, 0.0) + p
            rest -= p
    rest = max(rest, 0.0)
    for u in users:
        dist[u] += rest / n
    total = sum(dist.values()) or 1.0
    return {k: v / total for k, v in dist.items()}


def _entropy(dist: dict[str, float]) -> float:
    return -sum(p * math.log2(p) for p in dist.values() if p > 0)


def sender_anonymity(truth: Truth, idx: Index, owner: dict[str, str]) -> dict:
    """Per message with a leg at its recipient's device: the adversary's sender distribution's entropy."""
    users = [u.name for u in truth.users]
    ip_of = {u.name: u.device_ip for u in truth.users}
    n_users = len(users)
    if n_users < 2:
        return {}
    by_flow: dict[str, list[tuple[float, dict]]] = {}
    for f in idx.of("contacts"):
        if f["kind"] in CANDIDATE_KINDS and f.get("flow") and finding_time(f) is not None:
            by_flow.setdefault(f["flow"], []).append((finding_time(f), f))
    hs, ps, top = [], [], 0
    for m in truth.messages:
        if m.sender == m.recipient:
            continue
        legs = [leg for leg in m.legs if leg.device == ip_of.get(m.recipient) and leg.direction == "server"]
        if not legs:
            continue
        leg = legs[0]
        near = [(abs(t - leg.tap_time), f) for t, f in by_flow.get(leg.flow, ())
                if leg.tap_time - BEFORE <= t <= leg.tap_time + AFTER]
        f = min(near, key=lambda x: x[0])[1] if near else None
        dist = _distribution(f, owner, users)
        hs.append(_entropy(dist))
        ps.append(dist.get(m.sender, 0.0))
        top += max(dist, key=lambda k: dist[k]) == m.sender and dist[m.sender] > 1.0 / n_users + 1e-9
    if not hs:
        return {}
    hmax = math.log2(n_users)
    return {
        "messages": len(hs),
        "users": n_users,
        "effective_set_median": round(median(2 ** h for h in hs), 3),
        "effective_set_mean": round(sum(2 ** h for h in hs) / len(hs), 3),
        "degree_mean": round(sum(h / hmax for h in hs) / len(hs), 4),
        "leakage_bits_mean": round(max(hmax - sum(hs) / len(hs), 0.0), 4),
        "true_sender_probability_mean": round(sum(ps) / len(ps), 4),
        "top_candidate_correct": round(top / len(hs), 4),
    }


def messages_to_link(truth: Truth, idx: Index, owner: dict[str, str], true_pairs: set) -> dict:
    """For each correctly linked pair whose finding says when it first passed the analyzer's threshold
    (evidence.linked_at): how many of the pair's messages had been sent by then."""
    sent: dict[tuple[str, str], list[float]] = {}
    for m in truth.messages:
        if m.legs and m.sender != m.recipient:
            sent.setdefault((m.sender, m.recipient), []).append(m.send_time)
    needed = []
    for f in idx.of("contacts"):
        at = (f.get("evidence") or {}).get("linked_at")
        v = f["value"] if isinstance(f["value"], dict) else {}
        pair = (owner.get(norm(v.get("sender", ""))), owner.get(norm(v.get("recipient", ""))))
        if at is None or pair not in true_pairs:
            continue
        needed.append(sum(1 for t in sent.get(pair, ()) if t <= float(at) + 1e-6))
    if not needed:
        return {}
    needed.sort()
    return {"linked_pairs": len(needed), "median": median(needed), "max": needed[-1],
            "p90": needed[min(len(needed) - 1, int(0.9 * len(needed)))],
            "threshold": "the analyzer's own (relay-link: Benjamini-Hochberg FDR 5%)"}


def guess_pvalue(pairs: int, true: int, claimed: int, correct: int) -> float:
    """P(a blind guesser naming `claimed` of `pairs` ordered pairs, `true` of them real, gets at least
    `correct` right): the hypergeometric upper tail. Small: the claims carry information, whatever the
    F1 verdict says about a small sample."""
    if correct <= 0 or claimed <= 0:
        return 1.0
    claimed = min(claimed, pairs)

    def log_comb(n: int, k: int) -> float:
        return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)

    total = log_comb(pairs, claimed)
    terms = [log_comb(true, x) + log_comb(pairs - true, claimed - x) - total
             for x in range(correct, min(claimed, true) + 1) if claimed - x <= pairs - true]
    if not terms:
        return 0.0
    top = max(terms)
    return min(1.0, math.exp(top) * sum(math.exp(t - top) for t in terms))
