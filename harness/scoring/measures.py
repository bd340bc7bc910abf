"""How each observable is measured: one function per observable, registered by name.

Every measure returns the adversary's accuracy over n trials and the chance level of a guesser who
knows only public priors (the scenario's user count, duration and size distribution). docs/scoring.md
states the same rules for readers.
"""
from __future__ import annotations

from collections import Counter
from typing import Callable

from harness.scoring.association import (
    Index,
    credit,
    device_identities,
    device_owner,
    finding_time,
    finding_times,
    host_of,
    identity_owner,
    message_excerpt,
    norm,
    user_identities,
)
from harness.scoring.anonymity import CANDIDATE_KINDS, guess_pvalue, messages_to_link, sender_anonymity
from harness.scoring.verdict import Measurement
from harness.sim.truth import Truth

Measure = Callable[[Truth, Index], Measurement]
MEASURES: dict[str, Measure] = {}

TIMING_TOLERANCE = 1.0  # seconds around the true send time
SERVICE_ALIASES = {
    "smtp": {"smtp", "smtps", "submission"},
    "bes-relay": {"bes-relay", "bes", "blackberry", "srp"},
}
TRANSPORT_LABELS = {"tls", "tcp", "quic", "unknown"}
APP_LABEL_COUNT = 10  # labels a guesser picks from: smtp imap pop3 http dns tls ssh quic bes-relay unknown


def measure(name: str):
    def deco(fn: Measure) -> Measure:
        MEASURES[name] = fn
        return fn
    return deco


def _evidence(f: dict, **extra) -> dict:
    ev = f.get("evidence") or {}
    out = {"finding": f["id"], "analyzer": f["analyzer"], "kind": f["kind"], "flow": f.get("flow")}
    for k in ("direction", "offset", "length", "time", "rule"):
        if k in ev:
            out[k] = ev[k]
    out.update(extra)
    return out


def _text_recovery(truth: Truth, idx: Index, wanted, observables: tuple[str, ...]) -> Measurement:
    texts = [(f, str(f["value"])) for o in observables for f in idx.of(o) if isinstance(f["value"], str)]
    hits, evidence, n = 0, [], 0
    for m in truth.messages:
        needle = wanted(m)
        if not needle:
            continue
        n += 1
        for f, text in texts:
            if needle in text:
                hits += 1
                if len(evidence) < 5:
                    evidence.append(_evidence(f, **message_excerpt(m), recovered=needle))
                break
    return Measurement(hits / n if n else 0.0, 0.0, n, evidence, {"recovered": hits})


@measure("content")
def content(truth: Truth, idx: Index) -> Measurement:
    """A message's content counts as read when its unique canary appears in a finding's recovered text."""
    return _text_recovery(truth, idx, lambda m: m.canary, ("content",))


@measure("subject")
def subject(truth: Truth, idx: Index) -> Measurement:
    """A subject counts as read when the exact subject line appears in a recovered subject or text."""
    return _text_recovery(truth, idx, lambda m: m.subject, ("subject", "content"))


def _identity_measure(truth: Truth, idx: Index, observable: str, who: str) -> Measurement:
    idents = user_identities(truth)
    owner = identity_owner(truth)
    users = len(truth.users)
    total, n, evidence, claims = 0.0, 0, [], 0
    for m in truth.messages:
        if not m.legs:
            continue
        n += 1
        target = idents[getattr(m, who)]
        best, best_f, claimed = 0.0, None, False
        for leg in m.legs:
            near = idx.near(observable, leg)
            claimed = claimed or bool(near)
            c = credit([f["value"] for f in near], target, owner)
            if c > best:
                best = c
                best_f = next(f for f in near if norm(f["value"]) in target)
        total += best
        claims += claimed
        if best_f and len(evidence) < 5:
            evidence.append(_evidence(best_f, **message_excerpt(m), recovered=best_f["value"]))
    return Measurement(total / n if n else 0.0, 1.0 / max(users, 1), n, evidence,
                       claims=claims, claims_correct=total)


@measure("sender")
def sender(truth: Truth, idx: Index) -> Measurement:
    """Per message on a tapped link: did the adversary name the sending user (address or user name)
    on a flow that carried it, at its time? k distinct guesses earn 1/k. Chance: 1/users."""
    return _identity_measure(truth, idx, "sender", "sender")


@measure("recipient")
def recipient(truth: Truth, idx: Index) -> Measurement:
    """As sender, for the receiving user."""
    return _identity_measure(truth, idx, "recipient", "recipient")


@measure("contacts")
def contacts(truth: Truth, idx: Index) -> Measurement:
    """Who talks to whom: the F1 score of the adversary's (sender, recipient) user pairs against the true
    pairs of messages that crossed a tapped link. Chance: the F1 of guessing every ordered pair."""
    owner = identity_owner(truth)
    true_pairs = {(m.sender, m.recipient) for m in truth.messages if m.legs and m.sender != m.recipient}
    guessed, by_pair = set(), {}
    for f in idx.of("contacts"):
        if f["kind"] in CANDIDATE_KINDS:
            continue  # a per-message sender distribution, not a contact claim (see anonymity.py)
        v = f["value"] if isinstance(f["value"], dict) else {}
        s, r = owner.get(norm(v.get("sender", ""))), owner.get(norm(v.get("recipient", "")))
        pair = (s or f"?{v.get('sender')}", r or f"?{v.get('recipient')}")
        guessed.add(pair)
        by_pair.setdefault(pair, f)
    if not true_pairs:
        return Measurement(0.0, 0.0, 0)
    tp = len(guessed & true_pairs)
    precision = tp / len(guessed) if guessed else 0.0
    recall = tp / len(true_pairs)
    f1 = 2 * precision * recall / (precision + recall) if tp else 0.0
    u = len(truth.users)
    p = len(true_pairs) / max(u * (u - 1), 1)
    evidence = [_evidence(by_pair[pair], sender=pair[0], recipient=pair[1])
                for pair in sorted(guessed & true_pairs)[:5]]
    return Measurement(f1, 2 * p / (1 + p), len(true_pairs), evidence,
                       {"precision": round(precision, 4), "recall": round(recall, 4),
                        "true_pairs": len(true_pairs), "guessed_pairs": len(guessed), "pair_base_rate": round(p, 4),
                        **_contact_extras(truth, idx, owner, true_pairs, guessed)},
                       claims=len(guessed), claims_correct=float(tp), claims_chance=p)


def _contact_extras(truth: Truth, idx: Index, owner: dict, true_pairs: set, guessed: set | None = None) -> dict:
    """Anonymity per message, messages needed per link, and how unlikely a blind guess does as well
    (harness/scoring/anonymity.py)."""
    out = {}
    if guessed:
        u = len(truth.users)
        out["guess_pvalue"] = guess_pvalue(u * (u - 1), len(true_pairs), len(guessed), len(guessed & true_pairs))
    anonymity = sender_anonymity(truth, idx, owner)
    if anonymity:
        out["sender_anonymity"] = anonymity
    needed = messages_to_link(truth, idx, owner, true_pairs)
    if needed:
        out["messages_to_link"] = needed
    return out


@measure("timing")
def timing(truth: Truth, idx: Index) -> Measurement:
    """Per message: did a timing finding on one of its legs put it within +-1 s of its send time?
    Chance: the share of the run a 2 s window covers."""
    total, n, evidence, claims = 0.0, 0, [], 0
    for m in truth.messages:
        if not m.legs:
            continue
        n += 1
        best, claimed = 0.0, False
        for leg in m.legs:
            near = idx.near("timing", leg)
            times = {round(finding_time(f), 3) for f in near if finding_time(f) is not None}
            claimed = claimed or bool(times)
            ok = [t for t in times if abs(t - m.send_time) <= TIMING_TOLERANCE]
            if ok:
                best = max(best, 1.0 if len(times) == 1 else len(ok) / len(times))
                if len(evidence) < 5 and best:
                    f = next(f for f in near if finding_time(f) is not None and round(finding_time(f), 3) in ok)
                    evidence.append(_evidence(f, **message_excerpt(m), recovered=finding_time(f)))
        total += best
        claims += claimed
    chance = min(1.0, 2 * TIMING_TOLERANCE / max(truth.duration, 1e-9))
    return Measurement(total / n if n else 0.0, chance, n, evidence, claims=claims, claims_correct=total)


def size_tolerance(size: int) -> float:
    return 0.10 * size + 64


@measure("size")
def size(truth: Truth, idx: Index) -> Measurement:
    """Per message: did a size finding at one of its legs come within 10% + 64 bytes of its true size?
    Chance: how often a size drawn from this run's own size distribution lands that close."""
    sizes = [m.size for m in truth.messages if m.legs]
    total, n, evidence, claims = 0.0, 0, [], 0
    for m in truth.messages:
        if not m.legs:
            continue
        n += 1
        best, claimed = 0.0, False
        for leg in m.legs:
            near = [f for f in idx.near("size", leg) if isinstance(f["value"], dict) and "bytes" in f["value"]]
            claimed = claimed or bool(near)
            # 1/k per analyzer: one analyzer's k candidates are its guesses; another analyzer's
            # (framing-level) size does not dilute an analyzer that decrypted or estimated the message.
            by_analyzer: dict[str, set] = {}
            for f in near:
                by_analyzer.setdefault(f.get("analyzer", ""), set()).add(int(f["value"]["bytes"]))
            hit = False
            for values in by_analyzer.values():
                if any(abs(v - m.size) <= size_tolerance(m.size) for v in values):
                    best, hit = max(best, 1.0 / len(values)), True
            if hit and len(evidence) < 5:
                f = min(near, key=lambda f: abs(int(f["value"]["bytes"]) - m.size))
                evidence.append(_evidence(f, **message_excerpt(m), size=m.size, recovered=f["value"]["bytes"]))
        total += best
        claims += claimed
    chance = 0.0
    if sizes:
        chance = sum(sum(1 for s2 in sizes if abs(s2 - s) <= size_tolerance(s)) for s in sizes) / len(sizes) ** 2
    return Measurement(total / n if n else 0.0, chance, n, evidence, claims=claims, claims_correct=total)


@measure("volume")
def volume(truth: Truth, idx: Index) -> Measurement:
    """Per user: did the adversary count the messages the user sent (exactly below 10, within 10% from
    10 on)? Volume findings name a device address, mapped to its user; a user of whom the adversary
    reports nothing is taken as estimated at 0. Chance: a count drawn from the run's own distribution
    of per-user counts matches (sum of squared frequencies)."""
    owner = identity_owner(truth)
    sent = Counter(m.sender for m in truth.messages if m.legs)
    users = [u.name for u in truth.users]
    if not sent:
        return Measurement(0.0, 0.0, 0)
    estimates: dict[str, set] = {}
    first: dict[str, dict] = {}
    for f in idx.of("volume"):
        v = f["value"] if isinstance(f["value"], dict) else {}
        user = owner.get(norm(v.get("endpoint", "")))
        if user is not None and "messages" in v:
            estimates.setdefault(user, set()).add(int(v["messages"]))
            first.setdefault(user, f)

    def close(est: int, true: int) -> bool:
        return est == true if true < 10 else abs(est - true) <= 0.1 * true

    hits, evidence = 0.0, []
    for u in users:
        ests = estimates.get(u, {0})
        if any(close(e, sent[u]) for e in ests):
            hits += 1.0 / len(ests)
            if u in first and len(evidence) < 5:
                evidence.append(_evidence(first[u], user=u, sent=sent[u], recovered=sorted(ests)))
    freq = Counter(sent[u] for u in users)
    chance = sum(c * c for c in freq.values()) / len(users) ** 2
    return Measurement(hits / len(users), chance, len(users), evidence)


@measure("service")
def service(truth: Truth, idx: Index) -> Measurement:
    """Per flow: did the adversary name the application it carries (1), only its transport, e.g. "tls"
    (0.5), or neither (0)? k distinct application labels earn 1/k. Chance: one label in ten."""
    by_flow = idx.by_obs_flow.get("service", {})
    total, evidence = 0.0, []
    for tf in truth.flows:
        labels = {norm(f["value"]) for f in by_flow.get(tf.flow, []) if isinstance(f["value"], str)}
        apps = labels - TRANSPORT_LABELS
        aliases = SERVICE_ALIASES.get(tf.app, {tf.app})
        if apps & aliases:
            s = 1.0 / len(apps)
        elif tf.transport in labels:
            s = 0.5
        else:
            s = 0.0
        total += s
        if s and len(evidence) < 5:
            f = next(f for f in by_flow[tf.flow] if norm(f["value"]) in (aliases | {tf.transport}))
            evidence.append(_evidence(f, app=tf.app, recovered=f["value"]))
    n = len(truth.flows)
    return Measurement(total / n if n else 0.0, 1.0 / APP_LABEL_COUNT, n, evidence)


@measure("endpoint")
def endpoint(truth: Truth, idx: Index) -> Measurement:
    """Per message: did the adversary name its final destination server (address or host name) on a
    flow that carried it? A relay in between is not the destination. Chance: 0 (any server on earth)."""
    flows = {tf.flow: tf for tf in truth.flows}
    total, n, evidence = 0.0, 0, []
    for m in truth.messages:
        if not m.legs:
            continue
        n += 1
        for leg in m.legs:
            tf = flows.get(leg.flow)
            if tf is None:
                continue
            targets = {tf.server_ip.lower(), tf.server_hostname.lower()} - {""}
            hit = next((f for f in idx.near("endpoint", leg) if host_of(_endpoint_value(f)) in targets), None)
            if hit:
                total += 1
                if len(evidence) < 5:
                    evidence.append(_evidence(hit, **message_excerpt(m), recovered=_endpoint_value(hit)))
                break
    return Measurement(total / n if n else 0.0, 0.0, n, evidence)


def _endpoint_value(f: dict) -> str:
    v = f["value"]
    if isinstance(v, dict):
        return str(v.get("server") or v.get("host") or v.get("ip") or "")
    return str(v)


def _closest_in_time(findings: list[dict], t: float) -> list[dict]:
    """Untimed findings, plus of the timed ones those seen closest to t: on a link that carries many
    devices' envelopes (the enterprise <-> relay link) each envelope names its own device."""
    untimed = [f for f in findings if not finding_times(f)]
    timed = [(min(abs(x - t) for x in finding_times(f)), f) for f in findings if finding_times(f)]
    if not timed:
        return untimed
    best = min(d for d, _ in timed)
    return untimed + [f for d, f in timed if d <= best + 1e-3]


@measure("device")
def device(truth: Truth, idx: Index) -> Measurement:
    """Per message leg at a user's device: did the adversary name that device (address, PIN) on the
    leg's flow? Averaged per message. Chance: 1/users."""
    idents = device_identities(truth)
    owner = device_owner(truth)
    total, n, evidence, claims = 0.0, 0, [], 0
    for m in truth.messages:
        legs = [leg for leg in m.legs if leg.device in idents]
        if not legs:
            continue
        n += 1
        got, claimed = 0.0, False
        for leg in legs:
            near = _closest_in_time(idx.near("device", leg), leg.tap_time)
            claimed = claimed or bool(near)
            c = credit([host_of(f["value"]) if not str(f["value"]).startswith("pin:") else f["value"]
                        for f in near], idents[leg.device], owner)
            got += c
            if c and len(evidence) < 5:
                f = next((f for f in near if norm(f["value"]) in idents[leg.device]
                          or host_of(f["value"]) in idents[leg.device]), near[0])
                evidence.append(_evidence(f, **message_excerpt(m), recovered=f["value"]))
        total += got / len(legs)
        claims += claimed
    return Measurement(total / n if n else 0.0, 1.0 / max(len(truth.users), 1), n, evidence,
                       claims=claims, claims_correct=total)
