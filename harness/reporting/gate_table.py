"""The gate's terminal output: first the failures, regressions before policy breaks (scenario,
observable, from -> to, why, evidence), then improvements and notes. Pure: `render(result, baseline_path) -> str`."""
from __future__ import annotations

import json

from harness.gate import GateResult, describe

EVIDENCE_WIDTH = 110


def evidence_text(ev: dict | None, width: int = EVIDENCE_WIDTH) -> str:
    """One piece of evidence as one line: what was recovered, by which analyzer and rule, where."""
    if not ev:
        return ""
    parts = []
    if "recovered" in ev:
        rec = ev["recovered"]
        parts.append(f"recovered {json.dumps(rec) if not isinstance(rec, (int, float)) else rec}")
    who = "/".join(str(ev[k]) for k in ("analyzer", "rule") if ev.get(k))
    if who:
        parts.append(f"by {who}")
    if ev.get("message"):
        parts.append(f"msg {ev['message']} {ev.get('sender', '?')}->{ev.get('recipient', '?')}")
    elif ev.get("sender") and ev.get("recipient"):
        parts.append(f"pair {ev['sender']}->{ev['recipient']}")
    if ev.get("flow"):
        parts.append(f"flow {ev['flow']}")
    if ev.get("time") is not None:
        parts.append(f"t={float(ev['time']):.3f}")
    text = "; ".join(parts)
    return text if len(text) <= width else text[: width - 3] + "..."


def case_evidence(case, width: int = EVIDENCE_WIDTH) -> str:
    text = evidence_text(case.evidence[0] if case.evidence else None, width)
    if case.new_findings:
        extra = f"{len(case.new_findings)} new finding ids"
        text = f"{text} (+{extra})" if text else extra
    return text or "(no evidence: the verdict rests on the measure alone)"


def render(result: GateResult, baseline: str = "baseline") -> str:
    out = [result.headline() + (f" against {baseline}" if result.has_baseline else " (no baseline: policy only)"),
           ""]
    failures = result.regressions + [c for c in result.failures if not c.regressions]  # regressions first
    if len(failures) > 3:  # the whole list on one screen before the details
        out.append("failing: " + ", ".join(f"{c.scenario}/{c.observable}"
                                           + (f" ({c.before.get('verdict')}->{c.after.get('verdict')})"
                                              if c.regressions and c.before and c.after else " (policy)")
                                           for c in failures))
        out.append("")
    for c in failures:
        label = "REGRESSION" if c.regressions else "POLICY"
        out.append(f"{label:11}{c.scenario} / {c.observable}: {describe(c.before)} -> {describe(c.after)}")
        for why in c.regressions + c.policy:
            out.append(f"{'':11}why: {why}")
        out.append(f"{'':11}evidence: {case_evidence(c)}")
    if result.failures:
        out.append("")
    if result.missing_fails:
        out.append("missing from the current reports (--strict): " + ", ".join(result.missing_scenarios))
        out.append("")
    if result.improvements:
        out.append("improvements (pass):")
        for c in result.improvements:
            out.append(f"  {c.scenario} {c.observable}: {describe(c.before)} -> {describe(c.after)}")
        out.append("")
    if result.notes:
        out.append("notes:")
        out += [f"  {n}" for n in result.notes]
        out.append("")
    if result.passed:
        known = sum("known policy break" in n for n in result.notes)
        out.append("exit 0: no observable leaks more than the baseline and every policy holds"
                    + (f" ({known} known breaks noted)" if known else ""))
    else:
        out.append("exit 1: fix the change, or if the new leak is accepted, `harness gate --update` "
                   "(a policy break cannot be accepted: change the scenario's [policy])")
    return "\n".join(out) + "\n"
