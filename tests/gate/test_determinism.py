"""Determinism the gate relies on: the same scenario and seed give identical verdicts, measurements and
findings (by identity key) on every run, TLS included (OpenSSL's randomness changes bytes, not what
the adversary learns)."""
import json
from pathlib import Path

import pytest

from harness.gate import baseline_document, compare, finding_identity, snapshot
from harness.pytest_plugin import attack

ROOT = Path(__file__).resolve().parents[2]


def two_runs(tmp_path, name):
    out = []
    for run in ("first", "second"):
        report = attack(ROOT / "scenarios" / f"{name}.toml", tmp_path / run)
        findings = json.loads((tmp_path / run / "captures" / f"{name}.findings.json").read_text())
        out.append((report.doc, findings))
    return out


@pytest.mark.parametrize("name", ["email-tls", "email-plaintext", "bes-relay"])
def test_same_scenario_and_seed_same_verdicts_and_findings(tmp_path, name):
    (r1, f1), (r2, f2) = two_runs(tmp_path, name)
    strip = lambda r: {k: v for k, v in r.items() if k != "capture"}  # noqa: E731 - paths differ by run
    assert strip(r1) == strip(r2)
    ids1 = sorted(finding_identity(f) for f in f1["findings"])
    ids2 = sorted(finding_identity(f) for f in f2["findings"])
    assert ids1 == ids2 and len(ids1) == len(f1["findings"])
    s1, s2 = snapshot([r1], {name: f1}), snapshot([r2], {name: f2})
    result = compare(baseline_document(s1), s2)
    assert result.passed and not result.regressions and not result.improvements
    assert all(not c.new_findings for c in result.cases)


def test_tls_bytes_differ_but_identities_do_not(tmp_path):
    """The reason finding_identity leaves measured entropy out: TLS records differ on every run."""
    (_, f1), (_, f2) = two_runs(tmp_path, "email-tls")
    raw1 = {f["id"] for f in f1["findings"]}
    raw2 = {f["id"] for f in f2["findings"]}
    assert {finding_identity(f) for f in f1["findings"]} == {finding_identity(f) for f in f2["findings"]}
    if raw1 != raw2:  # Finding.id includes the measured entropy of the ciphertext
        changed = [f for f in f1["findings"] if f["id"] not in raw2]
        assert all(isinstance(f["value"], dict) and "entropy" in f["value"] for f in changed)
