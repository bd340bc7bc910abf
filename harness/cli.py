"""Command-line interface: list, simulate, analyze, attack, gate, score. Input errors: one line on stderr, exit 2."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from harness.errors import HarnessError

SCENARIO_DIR = Path("scenarios")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2
        raise HarnessError(f"{self.prog}: {message} (try --help)")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return value


def _scenario_paths(names: list[str]) -> list[Path]:
    from harness.scenario.load import find_scenarios

    if not names:
        found = find_scenarios(SCENARIO_DIR)
        if not found:
            raise HarnessError(f"no scenarios found in {SCENARIO_DIR}/")
        return found
    out = []
    for n in names:
        p = Path(n)
        if p.suffix != ".toml":
            p = SCENARIO_DIR / f"{n}.toml"
        if not p.exists():
            raise HarnessError("no such scenario", path=str(p))
        out.append(p)
    return out


def cmd_list(args) -> int:
    from harness.scenario.load import load_scenario

    for p in _scenario_paths([]):
        sc = load_scenario(p)
        print(f"{sc.name:24} {sc.description}")
    return 0


def cmd_simulate(args) -> int:
    from harness.pipeline import load_all
    from harness.sim.simulate import simulate, write_outputs

    scenarios = load_all(_scenario_paths(args.names))
    for sc in scenarios:
        res = simulate(sc)
        paths = write_outputs(res, args.output, sc.name)
        print(f"{sc.name}: {len(res.frames)} packets, {len(res.truth.messages)} messages -> {paths['pcap']}")
    return 0


def cmd_analyze(args) -> int:
    import tempfile

    from harness.observe.progress import terminal_progress
    from harness.adversary import analyze_to_file, default_jobs

    keep = bool(args.json)
    out_path = Path(args.json) if keep else Path(tempfile.mkdtemp(prefix="harness-")) / "findings.json"
    try:
        jobs = args.jobs if args.jobs is not None else default_jobs(args.captures)
        doc, counts = analyze_to_file(args.captures, args.keys, out_path, progress=terminal_progress(args.captures),
                                      jobs=jobs)
        print(f"{len(doc['flows'])} flows, {sum(counts.values())} findings, skipped: "
              + (", ".join(f"{k}={v}" for k, v in sorted(doc["skipped"].items())) or "none"))
        if doc.get("anomalies"):
            print("anomalies: " + ", ".join(f"{k}={v}" for k, v in doc["anomalies"].items()))
        for note in doc.get("notes", []):
            print(f"note: {note}")
        for obs, n in sorted(counts.items()):
            print(f"  {obs:10} {n} findings")
        if getattr(args, "explain", None) or args.print_json:
            text = out_path.read_text()
            if getattr(args, "explain", None):
                from harness.explain import explain_flow

                print(explain_flow(json.loads(text), args.explain))
            if args.print_json:
                sys.stdout.write(text)
    finally:
        if not keep:
            out_path.unlink(missing_ok=True)
            out_path.parent.rmdir()
    return 0


def cmd_attack(args) -> int:
    from harness.pipeline import load_all, run_scenario
    from harness.reporting import reporters
    from harness.reporting.atomic import write_atomic

    started = time.perf_counter()
    scenarios = load_all(_scenario_paths(args.names))
    reports = []
    for sc in scenarios:
        t0 = time.perf_counter()
        reports.append(run_scenario(sc, args.captures, args.reports))
        print(f"{sc.name}: {reports[-1]['capture']['packets']} packets, {reports[-1]['capture']['messages']} "
              f"messages, {reports[-1]['capture']['findings']} findings ({time.perf_counter() - t0:.1f} s)",
              file=sys.stderr)
    render = reporters()
    write_atomic(Path(args.reports) / "summary.md", render["markdown"](reports))
    print(render["table"](reports))
    breaks = [b | {"scenario": r["scenario"]} for r in reports for b in r.get("policy", {}).get("breaks", [])]
    broken = [f"{b['scenario']} {b['observable']} ({b['rule']}: {b['verdict']})" for b in breaks if not b.get("known")]
    if broken:
        print(f"policy broken ({len(broken)}): " + "; ".join(broken))
    known = sum(1 for b in breaks if b.get("known"))
    if known:
        print(f"known policy breaks ({known}, declared in the scenarios' [policy] known_breaks): "
              + "; ".join(f"{b['scenario']} {b['observable']}" for b in breaks if b.get("known")))
    print(f"reports in {args.reports}/ (summary.md, NAME.json); captures in {args.captures}/; "
          f"{time.perf_counter() - started:.1f} s", file=sys.stderr)
    return 0


def cmd_gate(args) -> int:
    from harness.gate_io import run_gate

    return run_gate(args)


def cmd_score(args) -> int:
    from harness.gate_io import run_score

    return run_score(args)


def cmd_tradeoff(args) -> int:
    from harness.tradeoff import run_tradeoff_command

    return run_tradeoff_command(args, _scenario_paths([args.scenario])[0])


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="harness", description="What can a state that taps the links learn about a messaging system?")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    s = sub.add_parser("list", help="list the scenarios")
    s.set_defaults(func=cmd_list)
    s = sub.add_parser("simulate", help="write captures/NAME.pcap and NAME.truth.json for scenarios")
    s.add_argument("names", nargs="*", help="scenario names or .toml paths (default: all)")
    s.add_argument("-o", "--output", default="captures", help="output folder (default: captures)")
    s.set_defaults(func=cmd_simulate)
    s = sub.add_parser("analyze", help="analyze captures as the passive adversary (no truth needed)")
    s.add_argument("captures", nargs="+", help="pcap or pcapng files (several are merged in time order)")
    s.add_argument("--keys", help="keys the adversary holds (harness.keys/1 JSON)")
    s.add_argument("--json", help="write the harness.findings/1 document here")
    s.add_argument("--print-json", action="store_true", help="print the findings document to stdout")
    s.add_argument("--explain", metavar="FLOW", help="print every finding about one flow (its id, or part of it) "
                   "with its evidence")
    s.add_argument("-j", "--jobs", type=_positive_int, metavar="N",
                   help="processes to split the analyzers over (default: 1 below 16 MB of capture, else one per "
                        "core up to 4, fewer where the estimated peak memory would pass 1 GB, from the "
                        "capture's size and the flows at its start, the busiest among them: a 2 GB capture of "
                        "mixed traffic gets 2 at most, a port scan or one large transfer 1); the findings "
                        "document is the same for any N")
    s.set_defaults(func=cmd_analyze)
    s = sub.add_parser("attack", help="simulate, analyze and score scenarios; print the verdict table")
    s.add_argument("names", nargs="*", help="scenario names or .toml paths (default: all)")
    s.add_argument("--captures", default="captures")
    s.add_argument("--reports", default="reports")
    s.set_defaults(func=cmd_attack)
    s = sub.add_parser("gate", help="compare reports with the baseline and policies; exit 1 on a regression",
                       description="Exit 0: nothing leaks more than the baseline and every policy holds; "
                                   "1: a regression or policy break (table on stdout); 2: usage or input error.")
    s.add_argument("--baseline", default="reports/baseline.json", help="baseline file (default: %(default)s)")
    s.add_argument("--reports", default="reports", help="folder of NAME.json reports (default: %(default)s)")
    s.add_argument("--update", action="store_true", help="rewrite the baseline from the reports, say what changed")
    s.add_argument("--strict", action="store_true", help="fail when a baseline scenario has no current report")
    s.add_argument("--junit", metavar="FILE", help="write JUnit XML (one test case per scenario x observable)")
    s.add_argument("--markdown", metavar="FILE", help="write a Markdown summary for a pull-request comment")
    s.add_argument("--json", metavar="FILE", help="write the gate result as JSON (harness.gate/1)")
    s.set_defaults(func=cmd_gate)
    s = sub.add_parser("score", help="score your own capture against a truth file you wrote")
    s.add_argument("captures", nargs="+", help="pcap or pcapng files")
    s.add_argument("--truth", required=True, help="what was really sent (harness.truth/1 JSON, docs/report-schema.md)")
    s.add_argument("--keys", help="keys the adversary holds (harness.keys/1 JSON)")
    s.add_argument("--scenario", help="a scenario file whose [policy] applies")
    s.add_argument("--reports", default="reports", help="write NAME.json here (default: %(default)s)")
    s.set_defaults(func=cmd_score)
    s = sub.add_parser("tradeoff", help="leak versus cost: a relayed scenario under each defence; reports/tradeoff.md")
    s.add_argument("scenario", nargs="?", default="bes-relay", help="base scenario (default: %(default)s)")
    s.add_argument("--captures", default="captures/tradeoff")
    s.add_argument("--reports", default="reports")
    s.add_argument("--metadata-only", action="store_true",
                   help="run only the metadata.* analyzers (faster; payload analyzers could find more)")
    s.add_argument("--only", nargs="+", metavar="VARIANT", help="run only these variants")
    s.set_defaults(func=cmd_tradeoff)
    return p


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return args.func(args)
    except HarnessError as exc:
        print(f"harness: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("harness: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
