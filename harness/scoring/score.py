"""Assemble a report: every observable measured, decided, and checked against the scenario's policy."""
from __future__ import annotations

from harness.observables import OBSERVABLES
from harness.scoring.association import Index
from harness.scoring.measures import MEASURES
from harness.scoring.verdict import advantage, decide, wilson_interval
from harness.sim.truth import Truth

REPORT_SCHEMA = "harness.report/1"


def score(truth: Truth, findings_doc: dict, policy=None) -> dict:
    """The `harness.report/1` document for one scenario run (without the `scenario` metadata fields
    the caller adds)."""
    idx = Index.build(findings_doc.get("findings", []))
    observables = {}
    for name in OBSERVABLES:
        m = MEASURES[name](truth, idx)
        low, high = wilson_interval(m.accuracy, m.n)
        observables[name] = {
            "verdict": decide(m),
            "advantage": round(advantage(m.accuracy, m.chance), 4) if m.n else 0.0,
            "accuracy": round(m.accuracy, 4),
            "accuracy_ci95": [round(low, 4), round(high, 4)],
            "chance": round(m.chance, 4),
            "n": m.n,
            "evidence": m.evidence,
            **({"details": m.details} if m.details else {}),
        }
    return {"schema": REPORT_SCHEMA, "scenario": truth.scenario, "seed": truth.seed,
            "observables": observables, "policy": policy_breaks(observables, policy)}


def policy_breaks(observables: dict, policy) -> dict:
    """What the scenario's policy demands and which observables break it."""
    if policy is None:
        return {"hidden": [], "max_advantage": {}, "breaks": []}
    breaks = []
    for name in policy.hidden:
        v = observables[name]["verdict"]
        if v in ("partial", "visible"):
            breaks.append({"observable": name, "rule": "hidden", "verdict": v,
                           "advantage": observables[name]["advantage"]})
    for name, limit in dict(policy.max_advantage).items():
        adv = observables[name]["advantage"]
        if observables[name]["verdict"] != "n/a" and adv > limit:
            breaks.append({"observable": name, "rule": f"max_advantage {limit}", "verdict":
                           observables[name]["verdict"], "advantage": adv})
    known = list(getattr(policy, "known_breaks", ()))
    for b in breaks:
        b["known"] = b["observable"] in known
    return {"hidden": list(policy.hidden), "max_advantage": dict(policy.max_advantage), "breaks": breaks,
            "known_breaks": known}
