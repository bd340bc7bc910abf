"""The gate's decision rules on hand-made measurements: regressions, noise, improvements, policy, scenarios."""
from harness.gate import (
    advantage_interval,
    baseline_document,
    changes_for_update,
    compare,
    finding_identity,
    merge_for_update,
    snapshot,
)
from harness.scoring.verdict import advantage, decide, Measurement, wilson_interval


def obs(accuracy, n, chance=0.0, verdict=None, evidence=()):
    low, high = wilson_interval(accuracy, n)
    m = Measurement(accuracy, chance, n)
    return {"verdict": verdict or decide(m), "advantage": round(advantage(accuracy, chance), 4),
            "accuracy": accuracy, "accuracy_ci95": [round(low, 4), round(high, 4)], "chance": chance, "n": n,
            "evidence": list(evidence)}


def report(name, breaks=(), seed=1, **observables):
    return {"schema": "harness.report/1", "scenario": name, "seed": seed, "observables": observables,
            "policy": {"hidden": [], "max_advantage": {}, "breaks": list(breaks)}}


def gate(before, after, **kw):
    return compare(baseline_document(snapshot(before)), snapshot(after), **kw)


def test_identical_reports_pass_with_no_change():
    r = [report("a", content=obs(0.0, 50), timing=obs(0.6, 50, 0.01))]
    result = gate(r, r)
    assert result.passed and result.exit_code == 0
    assert not result.regressions and not result.improvements and not result.notes


def test_verdict_moving_toward_visible_is_a_regression():
    result = gate([report("a", recipient=obs(0.0, 60, 0.1))], [report("a", recipient=obs(0.95, 60, 0.1))])
    assert not result.passed and result.exit_code == 1
    (case,) = result.regressions
    assert case.scenario == "a" and case.observable == "recipient"
    assert "verdict hidden -> visible" in case.regressions


def test_an_advantage_rise_within_noise_passes_and_beyond_noise_fails():
    base = [report("a", timing=obs(0.50, 40, 0.01, verdict="partial"))]
    small = [report("a", timing=obs(0.60, 40, 0.01, verdict="partial"))]  # intervals overlap: noise
    big = [report("a", timing=obs(0.85, 40, 0.01, verdict="partial"))]  # 95% low above baseline's high
    assert gate(base, small).passed
    assert advantage_interval(snapshot(big)["scenarios"]["a"]["observables"]["timing"])[0] > \
        advantage_interval(snapshot(base)["scenarios"]["a"]["observables"]["timing"])[1]
    (case,) = gate(base, big).regressions
    assert "advantage 0.49 -> 0.85" in case.regressions[0]


def test_the_tolerance_shrinks_as_n_grows():
    """The same rise of 0.1 is noise over 40 trials and a regression over 2000."""
    assert gate([report("a", size=obs(0.5, 40, verdict="partial"))],
                [report("a", size=obs(0.6, 40, verdict="partial"))]).passed
    assert not gate([report("a", size=obs(0.5, 2000, verdict="partial"))],
                    [report("a", size=obs(0.6, 2000, verdict="partial"))]).passed


def test_improvements_are_listed_and_pass():
    result = gate([report("a", content=obs(1.0, 30))], [report("a", content=obs(0.0, 30))])
    assert result.passed
    (case,) = result.improvements
    assert case.observable == "content" and case.status == "improvement"


def test_a_policy_break_fails_baseline_or_not():
    brk = {"observable": "content", "rule": "hidden", "verdict": "partial", "advantage": 0.05}
    r = [report("a", breaks=[brk], content=obs(0.05, 100, verdict="partial"))]
    result = gate(r, r)  # the same leak in baseline and now: still fails
    assert not result.passed and [c.observable for c in result.policy_breaks] == ["content"]
    assert not compare(None, snapshot(r)).passed


def test_new_scenario_is_a_note_and_a_missing_one_fails_only_when_strict():
    a, b = report("a", content=obs(0.0, 10)), report("b", content=obs(0.0, 10))
    result = gate([a], [a, b])
    assert result.passed and result.new_scenarios == ("b",)
    assert any("b: new scenario (not in baseline)" in n for n in result.notes)
    assert gate([a, b], [a]).passed
    strict = gate([a, b], [a], strict=True)
    assert not strict.passed and strict.missing_scenarios == ("b",)


def test_na_to_leaking_is_a_regression_and_to_hidden_is_not():
    na = {"verdict": "n/a", "advantage": 0.0, "accuracy": 0.0, "accuracy_ci95": [0.0, 1.0], "chance": 0.0, "n": 0}
    assert not gate([report("a", subject=na)], [report("a", subject=obs(0.5, 20))]).passed
    assert gate([report("a", subject=na)], [report("a", subject=obs(0.0, 20))]).passed


def test_new_findings_in_a_leaking_observable_are_a_set_difference():
    f1 = {"analyzer": "x", "observable": "recipient", "kind": "k", "flow": "f", "value": "bob",
          "evidence": {"time": 1.0}}
    f2 = dict(f1, value="carol")
    r = [report("a", recipient=obs(0.9, 30, 0.1))]
    base = baseline_document(snapshot(r, {"a": {"findings": [f1]}}))
    result = compare(base, snapshot(r, {"a": {"findings": [f1, f2]}}))
    assert result.passed  # the measure did not move: new identities are evidence, not a failure
    (case,) = result.cases
    assert case.new_findings == (finding_identity(f2),)


def test_finding_identity_leaves_out_evidence_and_measured_entropy():
    f = {"analyzer": "payload.entropy", "observable": "content", "kind": "payload-class", "flow": "f",
         "value": {"class": "encrypted", "entropy": 7.998}, "evidence": {"time": 3.0, "offset": 10}}
    g = dict(f, value={"class": "encrypted", "entropy": 8.003}, evidence={"time": 9.0})
    assert finding_identity(f) == finding_identity(g)
    assert finding_identity(f) != finding_identity(dict(f, value={"class": "plaintext", "entropy": 7.998}))


def test_update_says_what_changed_and_keeps_absent_scenarios():
    old = baseline_document(snapshot([report("a", content=obs(0.0, 10)), report("b", content=obs(0.0, 10))]))
    new = merge_for_update(old, baseline_document(snapshot([report("a", content=obs(1.0, 10))])))
    assert set(new["scenarios"]) == {"a", "b"}
    lines = changes_for_update(old, new)
    assert any(line.startswith("~ a content: hidden") and "visible" in line for line in lines)
    assert changes_for_update(new, new) == []


def test_known_breaks_are_notes_and_a_stale_one_is_named():
    brk = {"observable": "content", "rule": "hidden", "verdict": "visible", "advantage": 1.0, "known": True}
    r = report("weak", breaks=[brk], content=obs(1.0, 30), subject=obs(0.0, 30))
    r["policy"].update(hidden=["content", "subject"], known_breaks=["content", "subject"])
    result = compare(None, snapshot([r]))
    assert result.passed and not result.policy_breaks
    assert any("weak content: known policy break (hidden: visible" in n for n in result.notes)
    assert any("weak subject: listed in [policy] known_breaks but no longer breaks" in n for n in result.notes)
    r["policy"]["known_breaks"] = ["subject"]
    assert not compare(None, snapshot([r])).passed  # a break not declared known still fails


def test_worse_than_guessing_to_guessing_is_not_a_regression():
    """Contacts: an adversary whose F1 is far below the guess-every-pair chance, then at chance level:
    advantage 0 both times (guessing is always open), so nothing was lost."""
    assert gate([report("a", contacts=obs(0.0, 40, 0.4))], [report("a", contacts=obs(0.4, 40, 0.4))]).passed


def test_baseline_without_findings_does_not_call_every_finding_new():
    f1 = {"analyzer": "x", "observable": "size", "kind": "k", "flow": "f", "value": 1}
    r = [report("a", size=obs(0.9, 30))]
    result = compare(baseline_document(snapshot(r)), snapshot(r, {"a": {"findings": [f1]}}))
    assert result.passed and result.cases[0].new_findings == ()
