"""The BlackBerry scenarios, each simulated, analyzed by every registered analyzer and scored once per session."""
from dataclasses import dataclass

import pytest

from harness.pipeline import analyze_captures
from harness.scenario.load import load_scenario
from harness.scoring import score
from harness.sim.simulate import simulate, write_outputs
from tests.conftest import scenario_path

BLACKBERRY = ["bes-email", "bes-email-legacy-3des", "bes-escrow", "bes-seized-device", "bes-in-country",
              "pin-global-key", "pin-org-key", "bbm-consumer", "bbm-protected"]


@dataclass
class Run:
    scenario: object
    sim: object
    paths: dict
    findings: dict
    report: dict

    def verdict(self, observable: str) -> str:
        return self.report["observables"][observable]["verdict"]

    def of(self, observable: str, analyzer: str = "payload.blackberry") -> list[dict]:
        return [f for f in self.findings["findings"] if f["observable"] == observable and f["analyzer"] == analyzer]

    def summaries(self) -> list[dict]:
        return [f for f in self.of("content") if f["kind"] == "key-summary"]


@pytest.fixture(scope="session")
def bb_runs(tmp_path_factory):
    cache: dict[str, Run] = {}
    out = tmp_path_factory.mktemp("blackberry")

    def get(name: str) -> Run:
        if name not in cache:
            sc = load_scenario(scenario_path(name))
            sim = simulate(sc)
            paths = write_outputs(sim, out, name)
            findings = analyze_captures([str(paths["pcap"])], str(paths["keys"]))
            cache[name] = Run(sc, sim, paths, findings, score(sim.truth, findings, sc.policy))
        return cache[name]

    return get
