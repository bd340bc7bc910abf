"""Leak versus cost: one relayed scenario under each defence and combination, what the adversary still
learns per metadata observable, and what each variant costs in bandwidth and latency.

Each variant is the base scenario with its `[defences]` replaced; it is simulated (the simulator also
runs it without defences to measure the bandwidth), analysed from the capture alone and scored like
any attack. Nothing here decides a verdict: the scorer does (harness/scoring).
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

from harness.analysis import findings_document, run_analyzers
from harness.analyzers import Knowledge, registry
from harness.keys import load_knowledge
from harness.observe import observe
from harness.scenario.schema import Defences
from harness.scoring import score
from harness.sim.simulate import simulate, write_outputs

METADATA_OBSERVABLES = ("contacts", "sender", "recipient", "timing", "size", "volume", "device")

# (name, [defences] fields): each defence alone, then combinations.
VARIANTS: tuple[tuple[str, dict], ...] = (
    ("none", {}),
    ("padding-bucket", {"padding": "bucket", "pad_bucket": 160}),
    ("padding-constant", {"padding": "constant", "pad_size": 1024}),
    ("jitter-2s", {"jitter_ms": 2000.0}),
    ("receipts-off", {"receipts": "off"}),
    ("receipts-delayed", {"receipts": "delayed", "receipt_delay": 30.0}),
    ("batching-threshold", {"batching": "threshold", "batch_size": 5, "batch_interval": 30.0}),
    ("batching-timed", {"batching": "timed", "batch_interval": 10.0}),
    ("cover-constant", {"cover": "constant", "cover_rate_per_min": 6.0}),
    ("cover-poisson", {"cover": "poisson", "cover_rate_per_min": 6.0}),
    ("batching+padding", {"batching": "timed", "batch_interval": 10.0, "padding": "constant", "pad_size": 1024}),
    ("cover+padding", {"cover": "constant", "cover_rate_per_min": 6.0, "padding": "constant", "pad_size": 1024}),
    ("batching+cover", {"batching": "timed", "batch_interval": 10.0, "cover": "constant",
                        "cover_rate_per_min": 6.0}),
    ("batching+cover+padding", {"batching": "timed", "batch_interval": 10.0, "cover": "constant",
                                "cover_rate_per_min": 6.0, "padding": "constant", "pad_size": 1024}),
)


@dataclass
class VariantResult:
    name: str
    defences: dict
    report: dict
    costs: dict
    analyzers: list[str]
    seconds: float
    extra: dict = field(default_factory=dict)

    def advantage(self, observable: str) -> float:
        return float(self.report["observables"][observable]["advantage"])

    def verdict(self, observable: str) -> str:
        return self.report["observables"][observable]["verdict"]


def variant(scenario, name: str, settings: dict):
    """The base scenario with `[defences]` = settings (over the defaults, not over the base's own)."""
    return dataclasses.replace(scenario, name=f"{scenario.name}--{name}", defences=Defences(**settings))


def metadata_analyzers() -> list[str]:
    return [aid for aid in registry() if aid.startswith("metadata.")]


def run_variant(scenario, name: str, settings: dict, captures_dir: str | Path,
                analyzers: list[str] | None = None) -> VariantResult:
    """Simulate, analyse (all analyzers, or those given) and score one variant."""
    started = time.perf_counter()
    sc = variant(scenario, name, settings)
    sim = simulate(sc)
    paths = write_outputs(sim, captures_dir, sc.name)
    observation = observe([str(paths["pcap"])])
    knowledge = load_knowledge(str(paths["keys"])) if sim.adversary_keys else Knowledge()
    result = run_analyzers(observation.flows, knowledge, only=analyzers)
    report = score(sim.truth, findings_document(observation, result), sc.policy)
    costs = sim.costs or {"bandwidth": {"overhead_pct": 0.0}, "latency": {"p50_s": 0.0, "p95_s": 0.0}}
    return VariantResult(name, settings, report, costs, analyzers or list(registry()),
                         time.perf_counter() - started)


def run_tradeoff(scenario, captures_dir: str | Path, analyzers: list[str] | None = None,
                 variants: tuple[tuple[str, dict], ...] = VARIANTS, progress=None) -> list[VariantResult]:
    out = []
    for name, settings in variants:
        out.append(run_variant(scenario, name, settings, captures_dir, analyzers))
        if progress:
            progress(out[-1])
    return out


def run_tradeoff_command(args, path) -> int:
    """`harness tradeoff`: run the variants, write reports/tradeoff.md and tradeoff.svg atomically."""
    import sys

    from harness.errors import HarnessError
    from harness.reporting.atomic import write_atomic
    from harness.reporting.tradeoff import render_markdown, render_svg
    from harness.scenario.load import load_scenario

    scenario = load_scenario(path)
    if scenario.service.relay == "":
        raise HarnessError("tradeoff needs a relayed scenario (service.relay)", path=str(path))
    variants = VARIANTS
    if args.only:
        known = {name for name, _ in VARIANTS}
        unknown = sorted(set(args.only) - known)
        if unknown:
            raise HarnessError(f"unknown variant(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        variants = tuple(v for v in VARIANTS if v[0] in set(args.only))
    analyzers = metadata_analyzers() if args.metadata_only else None

    def progress(r: VariantResult) -> None:
        print(f"{r.name:24} contacts {r.advantage('contacts'):.2f}  bandwidth "
              f"{r.costs.get('bandwidth', {}).get('overhead_pct', 0.0):+.1f}%  latency p95 "
              f"{r.costs.get('latency', {}).get('p95_s', 0.0):.1f} s ({r.seconds:.1f} s)", file=sys.stderr)

    results = run_tradeoff(scenario, args.captures, analyzers, variants, progress)
    reports = Path(args.reports)
    write_atomic(reports / "tradeoff.svg", render_svg(results))
    text = render_markdown(scenario.name, results)
    write_atomic(reports / "tradeoff.md", text)
    print(text)
    return 0
