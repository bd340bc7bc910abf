"""The gate against real mutations of a protected scenario (scenarios/relay-protected.toml).

Each mutation is a scenario option, never a special case in the gate: padding switched off
([defences] padding), a plaintext header naming the recipient ([protection] debug_header), the AES-GCM
nonce reused ([protection] nonce), relay batching switched off ([defences] batching) and keep-alives
that betray when users are active ([service] keepalive). The gate must fail on each with the regressed
observable named, and pass the unmutated scenario run again. Batching is mutated on the protected
scenario without its cover traffic: constant-rate cover in both directions already hides who talks to
whom from this adversary, so only there does the mixing relay carry the protection.
"""
import json
from pathlib import Path

import pytest

from harness.gate import baseline_document, compare, snapshot
from harness.pytest_plugin import attack
from harness.reporting import gate_table

ROOT = Path(__file__).resolve().parents[2]
PROTECTED = ROOT / "scenarios" / "relay-protected.toml"


def run(tmp, name, **overrides):
    report = attack(PROTECTED, tmp / name, **overrides)
    findings = json.loads((tmp / name / "captures" / f"{report.scenario}.findings.json").read_text())
    return snapshot([report.doc], {report.scenario: findings})


def table_of(section, **changes):
    import tomllib

    return {**tomllib.loads(PROTECTED.read_text())[section], **changes}


@pytest.fixture(scope="module")
def protected(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("protected")
    return tmp, baseline_document(run(tmp, "baseline"))


@pytest.fixture(scope="module")
def protected_without_cover(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("nocover")
    return tmp, baseline_document(run(tmp, "baseline", **NO_COVER))


def test_the_unmutated_scenario_passes_and_keeps_its_promises(protected):
    tmp, baseline = protected
    again = run(tmp, "again")
    result = compare(baseline, again)
    assert result.passed, gate_table.render(result)
    assert not result.regressions and not result.improvements and not result.notes
    assert again["scenarios"]["relay-protected"]["policy"]["breaks"] == []


# Without cover, when each device sends is plain to see, and a mixing relay with padding still lets the
# correlation analyzer link some pairs (contacts partial: a real, narrow leak): the policy promises no
# more than that, and batching switched off must still show as contacts getting worse.
NO_COVER = dict(defences=table_of("defences", cover="none"),
                policy={"hidden": [o for o in table_of("policy")["hidden"] if o not in ("timing", "contacts")]})

MUTATIONS = [  # (overrides: section -> table, the observable that must regress)
    pytest.param(dict(defences=table_of("defences", padding="none")), "size", id="padding switched off"),
    pytest.param(dict(protection=table_of("protection", debug_header=True)), "recipient",
                 id="plaintext header names the recipient"),
    pytest.param(dict(protection=table_of("protection", nonce="reused")), "content", id="AEAD nonce reused"),
    pytest.param(dict(service=table_of("service", keepalive="on-activity")), "timing",
                 id="keep-alives reveal activity"),
]


@pytest.mark.parametrize(("overrides", "observable"), MUTATIONS)
def test_the_gate_fails_each_mutation(protected, request, overrides, observable):
    tmp, baseline = protected
    current = run(tmp, request.node.callspec.id.replace(" ", "-"), **overrides)
    result = compare(baseline, current)
    assert not result.passed and result.exit_code == 1
    regressed = {c.observable: c for c in result.regressions}
    assert observable in regressed, gate_table.render(result)
    case = regressed[observable]
    assert case.before["verdict"] == "hidden" and case.after["verdict"] in ("partial", "visible")
    assert case.evidence, "a regression carries the evidence behind it"
    # First screen: scenario, observable, from -> to, why, evidence.
    screen = gate_table.render(result, "baseline.json").splitlines()[:25]
    line = next(i for i, s in enumerate(screen) if s.startswith("REGRESSION") and f"/ {observable}:" in s)
    assert "relay-protected" in screen[line] and "hidden" in screen[line] and " -> " in screen[line]
    assert any("evidence: recovered" in s for s in screen[line + 1:line + 6])


def test_the_gate_fails_when_relay_batching_is_switched_off(protected_without_cover):
    tmp, baseline = protected_without_cover
    again = run(tmp, "again", **NO_COVER)
    assert compare(baseline, again).passed
    current = run(tmp, "batching-off", **{**NO_COVER, "defences": table_of("defences", cover="none", batching="none")})
    result = compare(baseline, current)
    assert not result.passed
    (case,) = [c for c in result.regressions if c.observable == "contacts"]
    assert case.after["verdict"] in ("partial", "visible") and case.evidence
