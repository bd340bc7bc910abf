"""JUnit XML for CI: one test case per scenario x observable; a regression or policy break is a
failure carrying the evidence. `render_gate(result)` for the gate; the registered `junit` reporter
renders plain reports (policy only, no baseline)."""
from __future__ import annotations

import xml.etree.ElementTree as ET

from harness.gate import GateResult, compare, describe, snapshot
from harness.reporting import reporter
from harness.reporting.gate_table import case_evidence, evidence_text


def render_gate(result: GateResult) -> str:
    suites = ET.Element("testsuites", name="harness gate", tests=str(len(result.cases)),
                        failures=str(len(result.failures)))
    by_scenario: dict[str, list] = {}
    for c in result.cases:
        by_scenario.setdefault(c.scenario, []).append(c)
    for name in sorted(set(by_scenario) | set(result.missing_scenarios)):
        cases = by_scenario.get(name, [])
        missing = name in result.missing_scenarios
        failures = sum(c.failed for c in cases) + (1 if missing and result.strict else 0)
        suite = ET.SubElement(suites, "testsuite", name=name, tests=str(len(cases) + (1 if missing else 0)),
                              failures=str(failures), skipped=str(1 if missing and not result.strict else 0))
        for c in cases:
            tc = ET.SubElement(suite, "testcase", classname=f"harness.gate.{name}", name=c.observable)
            if c.failed:
                why = "; ".join(c.regressions + c.policy)
                fail = ET.SubElement(tc, "failure", message=f"{name} {c.observable}: {why}",
                                     type="regression" if c.regressions else "policy")
                lines = [f"baseline: {describe(c.before)}", f"now:      {describe(c.after)}", f"why:      {why}"]
                lines += [f"evidence: {evidence_text(ev, 400)}" for ev in c.evidence]
                if c.new_findings:
                    lines.append(f"new finding ids: {', '.join(c.new_findings[:20])}"
                                 + (" ..." if len(c.new_findings) > 20 else ""))
                fail.text = "\n".join(lines)
            else:
                out = ET.SubElement(tc, "system-out")
                out.text = f"{c.status}: {describe(c.before)} -> {describe(c.after)}"
                if c.status == "improvement":
                    out.text += " (" + "; ".join(c.improvements) + ")"
                elif c.after and c.after.get("verdict") in ("partial", "visible"):
                    out.text += f"\nevidence: {case_evidence(c, 400)}"
        if missing:
            tc = ET.SubElement(suite, "testcase", classname=f"harness.gate.{name}", name="present")
            if result.strict:
                ET.SubElement(tc, "failure", message=f"{name}: in the baseline but not in the current reports",
                              type="missing")
            else:
                ET.SubElement(tc, "skipped", message="in the baseline but not in the current reports")
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"


@reporter("junit")
def render(reports: list[dict]) -> str:
    """Plain reports as JUnit: every scenario x observable, failing where the scenario's policy breaks."""
    return render_gate(compare(None, snapshot(reports)))
