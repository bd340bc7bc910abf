"""pytest plugin (entry point `pytest11`): run a scenario in a test and assert what stays hidden.

    def test_relay_hides_bodies(harness_attack):
        report = harness_attack("scenarios/bes-relay.toml")
        assert report.hidden("content")
        assert report.advantage("contacts") < 0.1
        report.assert_hidden("recipient", "subject")     # one AssertionError naming every leak

`report.advantage(obs)` is a float that remembers where it came from, so a failed comparison explains
itself (verdict, accuracy interval, n, first evidence). Importing this module is cheap: the harness is
loaded only when a fixture runs.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

LEAKING = ("partial", "visible")


class Advantage(float):
    """An observable's advantage over guessing, carrying the measurement behind it for messages."""

    def __new__(cls, value: float, scenario: str, observable: str, measure: dict):
        self = super().__new__(cls, value)
        self.scenario, self.observable, self.measure = scenario, observable, measure
        return self

    def explain(self) -> str:
        m = self.measure
        low, high = (m.get("accuracy_ci95") or [None, None])[:2]
        text = (f"{self.scenario}: {self.observable} advantage {float(self):.3f} ({m.get('verdict')}; accuracy "
                f"{m.get('accuracy')} in [{low}, {high}] over n={m.get('n')}, chance {m.get('chance')})")
        if m.get("evidence"):
            text += f"; first evidence: {json.dumps(m['evidence'][0], sort_keys=True)[:300]}"
        return text


class Report:
    """A `harness.report/1` document with questions a test can ask of it."""

    def __init__(self, doc: dict, path: str | Path | None = None) -> None:
        self.doc = doc
        self.path = Path(path) if path else None
        self.scenario: str = doc["scenario"]

    @classmethod
    def load(cls, path: str | Path) -> "Report":
        return cls(json.loads(Path(path).read_text()), path)

    def _obs(self, observable: str) -> dict:
        try:
            return self.doc["observables"][observable]
        except KeyError:
            known = ", ".join(self.doc["observables"])
            raise KeyError(f"{self.scenario} has no observable {observable!r} (known: {known})") from None

    def verdict(self, observable: str) -> str:
        return self._obs(observable)["verdict"]

    def hidden(self, observable: str) -> bool:
        """True when the adversary does no better than guessing (or there is nothing to measure)."""
        return self.verdict(observable) in ("hidden", "n/a")

    def visible(self, observable: str) -> bool:
        return self.verdict(observable) == "visible"

    def leaks(self, observable: str) -> bool:
        """Partial or visible."""
        return self.verdict(observable) in LEAKING

    def advantage(self, observable: str) -> Advantage:
        m = self._obs(observable)
        return Advantage(float(m["advantage"]), self.scenario, observable, m)

    @property
    def policy_breaks(self) -> list[dict]:
        return list(self.doc.get("policy", {}).get("breaks", []))

    def evidence(self, observable: str) -> list[dict]:
        return list(self._obs(observable).get("evidence", []))

    def assert_hidden(self, *observables: str) -> None:
        """Raise one AssertionError naming every observable given that leaks, with its evidence."""
        leaks = [self.advantage(o).explain() for o in observables if not self.hidden(o)]
        if leaks:
            raise AssertionError("expected hidden, but the adversary learns:\n  " + "\n  ".join(leaks))

    def assert_advantage_below(self, observable: str, limit: float) -> None:
        adv = self.advantage(observable)
        if not adv < limit:
            raise AssertionError(f"expected advantage < {limit}: {adv.explain()}")

    def assert_policy_holds(self) -> None:
        if self.policy_breaks:
            lines = [f"{b['observable']} ({b['rule']}: {b['verdict']}, advantage {b['advantage']})"
                     for b in self.policy_breaks]
            raise AssertionError(f"{self.scenario}: policy broken: " + "; ".join(lines))

    def summary(self) -> str:
        cells = []
        for o, m in self.doc["observables"].items():
            v = m["verdict"]
            cells.append(f"{o} {v}" + (f" {m['advantage']:.2f}" if v in LEAKING else ""))
        return f"{self.scenario}: " + ", ".join(cells)

    def __repr__(self) -> str:
        return f"Report({self.summary()})"


def attack(scenario: str | Path, workdir: str | Path, **overrides) -> Report:
    """Simulate, analyze and score one scenario file into `workdir` (captures/ and reports/ inside).

    `overrides` make a variant without copying the file: `seed=5` replaces a top-level key,
    `defences={"padding": "none"}` merges into a table (other keys of the table stay), and
    `protection__payload="none"` sets one key of a table.
    """
    from harness.pipeline import run_scenario
    from harness.scenario.load import load_scenario, scenario_from_document

    path = Path(scenario)
    if not overrides:
        sc = load_scenario(path)
    else:
        import tomllib

        doc = tomllib.loads(path.read_text())
        for key, value in overrides.items():
            table, _, sub = key.partition("__")
            if sub:
                doc.setdefault(table, {})[sub] = value
            elif isinstance(value, dict) and isinstance(doc.get(table), dict):
                doc[table] = {**doc[table], **value}  # a table: merged, keys given replace the file's
            else:
                doc[table] = value
        sc = scenario_from_document(doc, path)
    workdir = Path(workdir)
    doc = run_scenario(sc, workdir / "captures", workdir / "reports")
    return Report(doc, workdir / "reports" / f"{sc.name}.json")


@pytest.fixture
def harness_attack(tmp_path, request):
    """`harness_attack("scenarios/x.toml" or "x", **overrides) -> Report`, run in a temporary folder.

    A bare name is looked up in `scenarios/` under the pytest root directory.
    """
    root = Path(str(request.config.rootpath))

    def run(scenario: str | Path, **overrides) -> Report:
        p = Path(scenario)
        if p.suffix != ".toml":
            p = Path("scenarios") / f"{scenario}.toml"
        if not p.is_absolute() and not p.exists():
            p = root / p
        return attack(p, tmp_path / f"harness-{p.stem}", **overrides)

    return run


@pytest.fixture
def harness_report():
    """`harness_report("reports/x.json") -> Report`: assert on a report `harness attack` already wrote."""
    return Report.load


def pytest_assertrepr_compare(config, op, left, right):
    """Explain failed comparisons of an advantage: which scenario, the measure and the evidence."""
    for side in (left, right):
        if isinstance(side, Advantage):
            other = right if side is left else left
            return [f"{float(left):.4g} {op} {float(right) if isinstance(right, float) else right!r} is false",
                    side.explain() if not isinstance(other, Advantage) else f"left: {left.explain()}",
                    *([f"right: {right.explain()}"] if isinstance(other, Advantage) else [])]
    return None
