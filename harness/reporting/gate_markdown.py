"""The gate's result as Markdown fit for a pull-request comment: status line, failures with evidence,
improvements, notes, and the whole comparison folded away. Pure: `render(result) -> str`."""
from __future__ import annotations

from harness.gate import GateResult, describe
from harness.reporting.gate_table import case_evidence


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _row(cells) -> str:
    return "| " + " | ".join(_cell(c) for c in cells) + " |"


def render(result: GateResult) -> str:
    mark = "passed" if result.passed else "**FAILED**"
    out = [f"### Leak gate {mark}", "", result.headline().replace("gate passed: ", "").replace("gate FAILED: ", ""),
           ""]
    if result.failures:
        out += [_row(["scenario", "observable", "baseline", "now", "why", "evidence"]), _row(["---"] * 6)]
        for c in result.failures:
            out.append(_row([c.scenario, f"**{c.observable}**", describe(c.before), describe(c.after),
                             "; ".join(c.regressions + c.policy), f"`{case_evidence(c, 160)}`"]))
        out.append("")
    if result.missing_fails:
        out += ["Missing from the current reports (`--strict`): " + ", ".join(result.missing_scenarios), ""]
    if result.improvements:
        out += ["Improvements:", ""]
        out += [f"- {c.scenario} {c.observable}: {describe(c.before)} -> {describe(c.after)}"
                for c in result.improvements]
        out.append("")
    if result.notes:
        out += ["Notes:", ""] + [f"- {n}" for n in result.notes] + [""]
    out += ["<details><summary>Every scenario and observable</summary>", "",
            _row(["scenario", "observable", "status", "baseline", "now"]), _row(["---"] * 5)]
    for c in result.cases:
        out.append(_row([c.scenario, c.observable, c.status, describe(c.before), describe(c.after)]))
    out += ["", "</details>", "",
            "Rules: docs/gate.md (a regression is a verdict moving toward visible, or an advantage whose 95% "
            "interval lies wholly above the baseline's)."]
    return "\n".join(out) + "\n"
