"""The end-to-end path: scenario -> capture + truth -> passive analysis -> scored report.

The adversary's half (`harness.adversary`: `analyze_captures`, `analyze_to_file`) takes only capture
files and a keys file; the truth is read afterwards, by the scorer alone.
"""
from __future__ import annotations

import json
from pathlib import Path

from harness.adversary import analyze_captures, analyze_to_file, default_jobs  # noqa: F401 - re-exported
from harness.findings_file import document_text
from harness.reporting.atomic import write_atomic
from harness.scenario.load import load_scenario


def run_scenario(scenario, captures_dir: str | Path = "captures", reports_dir: str | Path = "reports") -> dict:
    """Simulate, analyze as the adversary, score; writes captures/NAME.* and reports/NAME.json."""
    from harness.scoring import score
    from harness.sim.simulate import simulate, write_outputs

    sim = simulate(scenario)
    paths = write_outputs(sim, captures_dir, scenario.name)
    findings = analyze_captures([str(paths["pcap"])], str(paths["keys"]))
    write_atomic(Path(captures_dir) / f"{scenario.name}.findings.json", document_text(findings))
    report = score(sim.truth, findings, scenario.policy)
    report["description"] = scenario.description
    if sim.costs:
        report["costs"] = sim.costs  # what the scenario's [defences] cost (harness/sim/defences.py)
    report["capture"] = {"pcap": str(paths["pcap"]), "truth": str(paths["truth"]),
                         "packets": len(sim.frames), "messages": len(sim.truth.messages),
                         "flows": len(findings["flows"]), "findings": len(findings["findings"]),
                         "skipped": findings.get("skipped", {}), "analyzer_errors": findings.get("errors", [])}
    write_atomic(Path(reports_dir) / f"{scenario.name}.json", json.dumps(report, indent=1, sort_keys=True) + "\n")
    return report


def load_all(paths: list[str | Path]) -> list:
    """Load (and so validate) every scenario before anything is written."""
    return [load_scenario(p) for p in paths]
