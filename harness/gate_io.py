"""The file side of `harness gate` and `harness score`: read reports, findings and the baseline, write
the baseline and the CI outputs atomically. The decisions themselves are in harness/gate.py."""
from __future__ import annotations

import json
from pathlib import Path

from harness.errors import HarnessError
from harness.gate import (
    REPORT_SCHEMA,
    baseline_document,
    changes_for_update,
    check_baseline,
    compare,
    merge_for_update,
    result_document,
    snapshot,
)
from harness.reporting.atomic import write_atomic


def _read_json(path: Path, what: str):
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise HarnessError("no such file", path=str(path)) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HarnessError(f"not a {what} ({exc.__class__.__name__}: {exc})", path=str(path)) from None


def load_reports(folder: str | Path, skip: Path | None = None) -> list[dict]:
    """Every `harness.report/1` document in `folder` (other JSON files, e.g. the baseline, are skipped)."""
    root = Path(folder)
    if not root.is_dir():
        raise HarnessError("no such directory (run `harness attack` first)", path=str(folder))
    reports = []
    for p in sorted(root.glob("*.json")):
        if skip is not None and p.resolve() == skip.resolve():
            continue
        doc = _read_json(p, "report")
        if isinstance(doc, dict) and doc.get("schema") == REPORT_SCHEMA:
            if not isinstance(doc.get("observables"), dict) or "scenario" not in doc:
                raise HarnessError("not a harness.report/1 document (no scenario/observables)", path=str(p))
            reports.append(doc)
    if not reports:
        raise HarnessError("no harness.report/1 reports here (run `harness attack` first)", path=str(folder))
    return reports


def load_findings(reports: list[dict]) -> dict[str, dict]:
    """The findings document next to each report's capture (captures/NAME.findings.json), where present."""
    out = {}
    for r in reports:
        pcap = (r.get("capture") or {}).get("pcap")
        if not pcap:
            continue
        p = Path(pcap).with_suffix(".findings.json")
        if p.is_file():
            doc = _read_json(p, "findings document")
            if isinstance(doc, dict) and isinstance(doc.get("findings"), list):
                out[r["scenario"]] = doc
    return out


def load_baseline(path: str | Path) -> dict | None:
    p = Path(path)
    if not p.exists():
        return None
    doc = _read_json(p, "baseline")
    problem = check_baseline(doc)
    if problem:
        raise HarnessError(problem, path=str(p))
    return doc


def baseline_text(doc, indent: int = 0) -> str:
    """JSON with sorted keys, one key per line, and lists of plain values on one line: a baseline
    whose diff shows which scenario and observable changed, one line each."""
    pad = " " * (indent + 1)
    if isinstance(doc, dict):
        if not doc:
            return "{}"
        items = [f"{pad}{json.dumps(k)}: {baseline_text(doc[k], indent + 1)}" for k in sorted(doc)]
        return "{\n" + ",\n".join(items) + "\n" + " " * indent + "}"
    if isinstance(doc, list) and any(isinstance(x, (dict, list)) for x in doc):
        return "[\n" + ",\n".join(pad + baseline_text(x, indent + 1) for x in doc) + "\n" + " " * indent + "]"
    return json.dumps(doc)


def run_gate(args) -> int:
    """`harness gate`: 0 pass, 1 regression or policy break, 2 (HarnessError) bad input."""
    from harness.reporting import gate_markdown, gate_table, junit

    baseline_path = Path(args.baseline)
    reports = load_reports(args.reports, skip=baseline_path)
    current = snapshot(reports, load_findings(reports))
    baseline = load_baseline(baseline_path)
    if args.update:
        new = merge_for_update(baseline, baseline_document(current))
        lines = changes_for_update(baseline, new)
        write_atomic(baseline_path, baseline_text(new) + "\n")
        print(f"baseline {baseline_path} " + ("updated:" if lines else "unchanged"))
        for line in lines:
            print(f"  {line}")
        breaks = [f"{name} {b['observable']} ({b['rule']})" for name, sc in current["scenarios"].items()
                  for b in sc["policy"]["breaks"] if b["observable"] not in sc["policy"].get("known_breaks", [])]
        if breaks:
            print("warning: policy broken (the gate will still fail on these): " + "; ".join(breaks))
        return 0
    if baseline is None:
        raise HarnessError("no such baseline (create it with `harness gate --update`)", path=str(baseline_path))
    result = compare(baseline, current, strict=args.strict)
    print(gate_table.render(result, str(baseline_path)), end="")
    if args.junit:
        write_atomic(args.junit, junit.render_gate(result))
    if args.markdown:
        write_atomic(args.markdown, gate_markdown.render(result))
    if getattr(args, "json", None):
        write_atomic(args.json, json.dumps(result_document(result), indent=1, sort_keys=True) + "\n")
    return result.exit_code


def run_score(args) -> int:
    """`harness score CAPTURE --truth T`: the adversary on your capture, scored against your truth."""
    from harness.pipeline import analyze_captures
    from harness.reporting import reporters
    from harness.scoring import score
    from harness.sim.truth import load_truth

    truth = load_truth(args.truth)
    policy, description = None, ""
    if args.scenario:
        from harness.scenario.load import load_scenario

        sc = load_scenario(args.scenario)
        policy, description = sc.policy, sc.description
    findings = analyze_captures(list(args.captures), args.keys)
    report = score(truth, findings, policy)
    report["description"] = description
    report["capture"] = {"pcap": str(args.captures[0]), "truth": str(args.truth), "packets": None,
                         "messages": len(truth.messages), "flows": len(findings["flows"]),
                         "findings": len(findings["findings"]), "skipped": findings.get("skipped", {}),
                         "analyzer_errors": findings.get("errors", [])}
    out = Path(args.reports) / f"{truth.scenario}.json"
    write_atomic(Path(args.captures[0]).with_suffix(".findings.json"),
                 json.dumps(findings, indent=1, sort_keys=True, default=str) + "\n")
    write_atomic(out, json.dumps(report, indent=1, sort_keys=True) + "\n")
    print(reporters()["table"]([report]), end="")
    print(f"report in {out}")
    return 0
