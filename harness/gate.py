"""Release gate: the current reports against a committed baseline and the scenarios' policies.

Pure functions, no file I/O: `snapshot(reports, findings)` reduces `harness.report/1` documents (and,
where available, their `harness.findings/1` documents) to the comparable state of each scenario;
`baseline_document(snapshot)` is what `harness gate --update` commits; `compare(baseline, current)`
decides, observable by observable and scenario by scenario, and returns a `GateResult`. The rules
are in docs/gate.md:

* a **regression** is a verdict that moves toward visible (hidden -> partial -> visible), or an
  advantage that rises beyond its sampling noise: the new advantage's 95% lower bound (the Wilson
  interval on the accuracy, mapped through (a - chance) / (1 - chance), clamped at 0) lies above the
  baseline's 95% upper bound, so the two intervals do not overlap;
* a **policy break** (the scenario's `[policy]`) fails whatever the baseline says, unless the scenario
  lists the observable in `[policy] known_breaks` (a weak design on display): then it is a note;
* an **improvement** is the mirror image of a regression; it is listed and passes;
* a scenario that is new (not in the baseline) is a note; one missing from the current reports is a
  note, or a failure with `strict=True`.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from harness.scoring.verdict import wilson_interval
from harness.series import expand

BASELINE_SCHEMA = "harness.baseline/1"
REPORT_SCHEMA = "harness.report/1"
RANK = {"n/a": -1, "hidden": 0, "partial": 1, "visible": 2}
LEAKING = ("partial", "visible")
# Keys of a finding's value that measure bytes rather than name what was recovered: the entropy of a
# TLS record differs on every run (OpenSSL's randomness), so it is left out of a finding's identity.
VOLATILE_VALUE_KEYS = frozenset({"entropy", "p_uniform", "chi2"})
MEASURE_FIELDS = ("verdict", "advantage", "accuracy", "accuracy_ci95", "chance", "n")
EVIDENCE_KEPT = 3  # evidence entries carried per observable into the gate's result


def finding_identity(f: dict) -> str:
    """A finding's identity for comparison across runs: what was learned and where (analyzer,
    observable, kind, flow, value), never when or at which byte; volatile measurements left out."""
    value = f.get("value")
    if isinstance(value, dict):
        value = {k: v for k, v in value.items() if k not in VOLATILE_VALUE_KEYS}
    ident = json.dumps([f.get("analyzer"), f.get("observable"), f.get("kind"), f.get("flow"), value],
                       sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(ident.encode()).hexdigest()[:16]


def snapshot(reports: list[dict], findings: dict[str, dict] | None = None) -> dict:
    """The comparable state of each scenario: per observable its measurement, first evidence and (with
    the scenario's findings document) the identities of its findings when it leaks."""
    findings = findings or {}
    scenarios = {}
    for r in reports:
        name = r["scenario"]
        doc = findings.get(name)
        ids_by_obs: dict[str, set[str]] = {}
        if doc is not None:
            for f in doc.get("findings", []):
                for item in expand(f):  # a series finding: one identity per item, as if written one by one
                    ids_by_obs.setdefault(item.get("observable"), set()).add(finding_identity(item))
        observables = {}
        for obs, m in r["observables"].items():
            entry = {k: m[k] for k in MEASURE_FIELDS if k in m}
            entry["evidence"] = list(m.get("evidence", []))[:EVIDENCE_KEPT]
            if doc is not None and m.get("verdict") in LEAKING:
                entry["findings"] = sorted(ids_by_obs.get(obs, ()))
            observables[obs] = entry
        policy = r.get("policy") or {}
        scenarios[name] = {"seed": r.get("seed"), "observables": observables,
                           "policy": {"hidden": list(policy.get("hidden", [])),
                                      "max_advantage": dict(policy.get("max_advantage", {})),
                                      "known_breaks": list(policy.get("known_breaks", [])),
                                      "breaks": list(policy.get("breaks", []))}}
    return {"schema": BASELINE_SCHEMA, "scenarios": scenarios}


def baseline_document(current: dict) -> dict:
    """What `--update` commits: the snapshot without evidence (which names messages and moments, and
    would churn) and without policy breaks (a break is never accepted into a baseline)."""
    scenarios = {}
    for name, sc in sorted(current["scenarios"].items()):
        observables = {obs: {k: v for k, v in m.items() if k != "evidence"}
                       for obs, m in sc["observables"].items()}
        policy = {k: v for k, v in sc.get("policy", {}).items() if k != "breaks"}
        scenarios[name] = {"seed": sc.get("seed"), "observables": observables, "policy": policy}
    return {"schema": BASELINE_SCHEMA, "scenarios": scenarios}


def advantage_interval(m: dict) -> tuple[float, float]:
    """The 95% interval on the advantage: the Wilson interval on the accuracy (as the report gives it,
    else computed from accuracy and n) mapped through (a - chance) / (1 - chance)."""
    n = int(m.get("n") or 0)
    ci = m.get("accuracy_ci95")
    low, high = ci if ci and len(ci) == 2 else wilson_interval(float(m.get("accuracy", 0.0)), n)
    chance = float(m.get("chance", 0.0))
    if chance >= 1.0:
        return 0.0, 0.0
    return (low - chance) / (1 - chance), (high - chance) / (1 - chance)


@dataclass(frozen=True)
class Case:
    """One scenario x observable: what the baseline said, what the reports say, and the decision."""

    scenario: str
    observable: str
    before: dict | None  # baseline measurement (None: not in the baseline)
    after: dict | None  # current measurement (None: missing from the current reports)
    regressions: tuple[str, ...] = ()  # why this is a regression (empty: it is not)
    policy: tuple[str, ...] = ()  # policy rules broken
    improvements: tuple[str, ...] = ()
    new_findings: tuple[str, ...] = ()  # identities in a leaking observable that the baseline lacked

    @property
    def failed(self) -> bool:
        return bool(self.regressions or self.policy)

    @property
    def status(self) -> str:
        if self.regressions:
            return "regression"
        if self.policy:
            return "policy"
        if self.improvements:
            return "improvement"
        if self.before is None and self.after is not None:
            return "new"
        if self.after is None:
            return "missing"
        return "pass"

    @property
    def evidence(self) -> list[dict]:
        return list((self.after or {}).get("evidence", []))


@dataclass(frozen=True)
class GateResult:
    """Every case, the scenario-level changes and notes; `exit_code` is 0 (pass) or 1 (fail)."""

    cases: tuple[Case, ...]
    new_scenarios: tuple[str, ...] = ()
    missing_scenarios: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    strict: bool = False
    has_baseline: bool = True

    @property
    def regressions(self) -> list[Case]:
        return [c for c in self.cases if c.regressions]

    @property
    def policy_breaks(self) -> list[Case]:
        return [c for c in self.cases if c.policy]

    @property
    def improvements(self) -> list[Case]:
        return [c for c in self.cases if c.improvements and not c.failed]

    @property
    def failures(self) -> list[Case]:
        return [c for c in self.cases if c.failed]

    @property
    def missing_fails(self) -> bool:
        return self.strict and bool(self.missing_scenarios)

    @property
    def passed(self) -> bool:
        return not self.failures and not self.missing_fails

    @property
    def exit_code(self) -> int:
        return 0 if self.passed else 1

    @property
    def scenarios(self) -> list[str]:
        return sorted({c.scenario for c in self.cases})

    def headline(self) -> str:
        parts = []
        if self.regressions:
            parts.append(_plural(len(self.regressions), "regression"))
        if self.policy_breaks:
            parts.append(_plural(len(self.policy_breaks), "policy break"))
        if self.missing_fails:
            parts.append(_plural(len(self.missing_scenarios), "missing scenario"))
        if self.improvements:
            parts.append(_plural(len(self.improvements), "improvement"))
        if self.new_scenarios:
            parts.append(_plural(len(self.new_scenarios), "new scenario"))
        counted = f"{_plural(len(self.scenarios), 'scenario')}, {_plural(len(self.cases), 'observable')}"
        state = "passed" if self.passed else "FAILED"
        return f"gate {state}: " + (", ".join(parts) if parts else "no change") + f" ({counted})"


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def describe(m: dict | None) -> str:
    """`partial 0.42 [0.30, 0.55] n=68` for a measurement."""
    if m is None:
        return "-"
    v = m.get("verdict", "?")
    if v == "n/a":
        return "n/a"
    low, high = advantage_interval(m)
    return f"{v} {float(m.get('advantage', 0.0)):.2f} [{max(low, 0.0):.2f}, {max(high, 0.0):.2f}] n={m.get('n', 0)}"


def compare_observable(scenario: str, observable: str, before: dict | None, after: dict | None) -> Case:
    """Decide one scenario x observable (policy breaks are added by `compare`)."""
    if before is None or after is None:
        return Case(scenario, observable, before, after)
    regressions, improvements = [], []
    vb, va = before.get("verdict", "n/a"), after.get("verdict", "n/a")
    rb, ra = RANK.get(vb, -1), RANK.get(va, -1)
    if ra > rb and va in LEAKING:
        regressions.append(f"verdict {vb} -> {va}")
    elif ra < rb and vb in LEAKING and va != "n/a":
        improvements.append(f"verdict {vb} -> {va}")
    if va != "n/a" and vb != "n/a":
        # Clamped at 0 like the advantage itself: doing worse than a guesser is no protection to lose.
        b_low, b_high = (max(x, 0.0) for x in advantage_interval(before))
        a_low, a_high = (max(x, 0.0) for x in advantage_interval(after))
        if a_low > b_high:
            regressions.append(f"advantage {before.get('advantage', 0):.2f} -> {after.get('advantage', 0):.2f} "
                               f"(new 95% low {a_low:.2f} > baseline high {b_high:.2f})")
        elif a_high < b_low:
            improvements.append(f"advantage {before.get('advantage', 0):.2f} -> {after.get('advantage', 0):.2f} "
                                f"(new 95% high {a_high:.2f} < baseline low {b_low:.2f})")
    new_findings: tuple[str, ...] = ()
    if "findings" in after and va in LEAKING and ("findings" in before or vb not in LEAKING):
        known = set(before.get("findings", ()))
        new_findings = tuple(sorted(set(after["findings"]) - known))
    return Case(scenario, observable, before, after, tuple(regressions), (), tuple(improvements), new_findings)


def compare(baseline: dict | None, current: dict, strict: bool = False) -> GateResult:
    """The gate's decision. `baseline` and `current` are `snapshot`/`baseline_document` shaped; a None
    baseline checks policies only (every scenario is new)."""
    base_scenarios = (baseline or {}).get("scenarios", {})
    cur_scenarios = current.get("scenarios", {})
    cases: list[Case] = []
    notes: list[str] = []
    new = sorted(set(cur_scenarios) - set(base_scenarios))
    missing = sorted(set(base_scenarios) - set(cur_scenarios))
    for name in sorted(cur_scenarios):
        cur = cur_scenarios[name]
        base = base_scenarios.get(name)
        if base is not None and base.get("seed") != cur.get("seed"):
            notes.append(f"{name}: seed changed {base.get('seed')} -> {cur.get('seed')}: "
                         "the comparison is between different workloads")
        broken: dict[str, list[str]] = {}
        policy = cur.get("policy", {})
        known = set(policy.get("known_breaks", []))
        for b in policy.get("breaks", []):
            text = f"policy {b['rule']}: {b['verdict']}, advantage {float(b['advantage']):.2f}"
            if b["observable"] in known:
                notes.append(f"{name} {b['observable']}: known policy break ({text[7:]}), declared in "
                             "[policy] known_breaks")
            else:
                broken.setdefault(b["observable"], []).append(text)
        for obs in sorted(known - {b["observable"] for b in policy.get("breaks", [])}):
            notes.append(f"{name} {obs}: listed in [policy] known_breaks but no longer breaks the policy; "
                         "remove it from known_breaks")
        base_obs = (base or {}).get("observables", {})
        for obs, m in cur["observables"].items():
            case = compare_observable(name, obs, base_obs.get(obs) if base is not None else None, m)
            if obs in broken:
                case = Case(case.scenario, case.observable, case.before, case.after, case.regressions,
                            tuple(broken[obs]), case.improvements, case.new_findings)
            cases.append(case)
        if base is not None:
            for obs in sorted(set(base_obs) - set(cur["observables"])):
                notes.append(f"{name}: observable {obs} is in the baseline but not in the report")
    for name in new:
        notes.append(f"{name}: new scenario (not in baseline); run `harness gate --update` to adopt it")
    for name in missing:
        notes.append(f"{name}: in the baseline but not in the current reports"
                     + (" (a failure with --strict)" if strict else " (pass --strict to fail on this)"))
    return GateResult(tuple(cases), tuple(new), tuple(missing), tuple(notes), strict, baseline is not None)


def changes_for_update(old: dict | None, new: dict) -> list[str]:
    """What `--update` changes in the baseline, one line per difference (empty: nothing)."""
    if old is None:
        return [f"new baseline with {len(new['scenarios'])} scenarios"]
    lines = []
    old_sc, new_sc = old.get("scenarios", {}), new.get("scenarios", {})
    for name in sorted(set(new_sc) - set(old_sc)):
        lines.append(f"+ {name}: added")
    for name in sorted(set(old_sc) - set(new_sc)):
        lines.append(f"- {name}: kept (not in the current reports; remove it by hand if it is gone)")
    for name in sorted(set(old_sc) & set(new_sc)):
        o, n = old_sc[name], new_sc[name]
        if o.get("seed") != n.get("seed"):
            lines.append(f"~ {name}: seed {o.get('seed')} -> {n.get('seed')}")
        for obs in sorted(set(o["observables"]) | set(n["observables"])):
            mo, mn = o["observables"].get(obs), n["observables"].get(obs)
            if mo is None or mn is None:
                lines.append(f"~ {name} {obs}: {describe(mo)} -> {describe(mn)}")
                continue
            if any(mo.get(k) != mn.get(k) for k in MEASURE_FIELDS):
                lines.append(f"~ {name} {obs}: {describe(mo)} -> {describe(mn)}")
            elif mo.get("findings") != mn.get("findings"):
                added = len(set(mn.get("findings", ())) - set(mo.get("findings", ())))
                gone = len(set(mo.get("findings", ())) - set(mn.get("findings", ())))
                lines.append(f"~ {name} {obs}: findings +{added} -{gone}")
        if o.get("policy") != n.get("policy"):
            lines.append(f"~ {name}: policy {o.get('policy')} -> {n.get('policy')}")
    return lines


def merge_for_update(old: dict | None, new: dict) -> dict:
    """The new baseline: the current scenarios, plus old ones absent from the current reports (a partial
    run, `harness attack NAME`, must not drop the rest of the baseline)."""
    merged = dict((old or {}).get("scenarios", {}))
    merged.update(new["scenarios"])
    return {"schema": BASELINE_SCHEMA, "scenarios": dict(sorted(merged.items()))}


def check_baseline(doc) -> str | None:
    """None if `doc` is a baseline document, else what is wrong with it."""
    if not isinstance(doc, dict) or doc.get("schema") != BASELINE_SCHEMA:
        return f'not a baseline (expected {{"schema": "{BASELINE_SCHEMA}", "scenarios": {{...}}}})'
    if not isinstance(doc.get("scenarios"), dict):
        return "not a baseline: \"scenarios\" must be an object"
    for name, sc in doc["scenarios"].items():
        if not isinstance(sc, dict) or not isinstance(sc.get("observables"), dict):
            return f"scenarios.{name}: needs \"observables\""
    return None


GATE_SCHEMA = "harness.gate/1"


def result_document(result: GateResult) -> dict:
    """The gate's decision as JSON (`harness gate --json`, schema harness.gate/1)."""
    return {
        "schema": GATE_SCHEMA, "passed": result.passed, "exit_code": result.exit_code,
        "headline": result.headline(), "has_baseline": result.has_baseline, "strict": result.strict,
        "new_scenarios": list(result.new_scenarios), "missing_scenarios": list(result.missing_scenarios),
        "notes": list(result.notes),
        "cases": [{"scenario": c.scenario, "observable": c.observable, "status": c.status,
                   "before": {k: c.before[k] for k in MEASURE_FIELDS if k in c.before} if c.before else None,
                   "after": {k: c.after[k] for k in MEASURE_FIELDS if k in c.after} if c.after else None,
                   "regressions": list(c.regressions), "policy": list(c.policy),
                   "improvements": list(c.improvements), "new_findings": list(c.new_findings),
                   "evidence": c.evidence} for c in result.cases],
    }
