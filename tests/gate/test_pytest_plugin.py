"""The pytest plugin as a team uses it: fixtures from the `pytest11` entry point, readable failures."""
import textwrap
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from harness.pytest_plugin import Advantage, Report

ROOT = Path(__file__).resolve().parents[2]


def test_the_plugin_is_registered_by_entry_point():
    assert "harness.pytest_plugin" in {ep.value for ep in entry_points(group="pytest11")}


def test_fixture_runs_a_scenario_and_report_answers(harness_attack):
    report = harness_attack(ROOT / "scenarios" / "email-tls.toml")
    assert report.hidden("content") and report.hidden("recipient")
    assert report.visible("endpoint")
    assert report.advantage("contacts") < 0.1
    assert isinstance(report.advantage("timing"), Advantage)
    report.assert_hidden("content", "subject")
    report.assert_policy_holds()
    with pytest.raises(AssertionError, match=r"(?s)expected hidden.*email-tls: endpoint advantage 1.000 \(visible"):
        report.assert_hidden("content", "endpoint")
    assert "endpoint visible 1.00" in repr(report)


def test_overrides_make_a_variant_without_a_file(harness_attack):
    report = harness_attack("email-tls", protection__transport="none")
    assert report.visible("content")
    assert [b["observable"] for b in report.policy_breaks] == ["content", "subject", "sender", "recipient",
                                                               "contacts"]
    with pytest.raises(AssertionError, match="policy broken: content"):
        report.assert_policy_holds()


def test_a_team_suite_gets_readable_assertion_messages(pytester):
    """A team's own pytest run (the plugin loaded by its `pytest11` entry point, not imported by the
    test file) fails with the scenario, observable, measurement and evidence in the message."""
    pytester.mkdir("scenarios")
    (pytester.path / "scenarios" / "mail.toml").write_text((ROOT / "scenarios" / "email-plaintext.toml").read_text())
    pytester.makepyfile(test_team=textwrap.dedent("""
        def test_contacts(harness_attack):
            report = harness_attack("mail")
            assert report.advantage("contacts") < 0.1

        def test_content(harness_attack):
            report = harness_attack("scenarios/mail.toml")
            assert report.hidden("content")
    """))
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=2)
    out = result.stdout.str()
    assert "mail: contacts advantage 1.000 (visible; accuracy" in out
    assert "first evidence:" in out
    assert "Report(mail: content visible 1.00" in out  # `where False = <bound method Report.hidden of ...>`


def test_report_loads_a_written_report(tmp_path):
    doc = {"schema": "harness.report/1", "scenario": "x", "seed": 1, "policy": {"breaks": []},
           "observables": {"content": {"verdict": "partial", "advantage": 0.2, "accuracy": 0.2, "chance": 0.0,
                                       "accuracy_ci95": [0.1, 0.3], "n": 50, "evidence": []}}}
    p = tmp_path / "x.json"
    import json

    p.write_text(json.dumps(doc))
    r = Report.load(p)
    assert r.leaks("content") and not r.hidden("content")
    with pytest.raises(AssertionError, match="expected advantage < 0.1: x: content advantage 0.200"):
        r.assert_advantage_below("content", 0.1)
    with pytest.raises(KeyError, match="no observable 'contents'"):
        r.verdict("contents")
