"""reports/summary.md: the verdict table and, per scenario, the evidence behind each verdict."""
from __future__ import annotations

import json

from harness.observables import OBSERVABLES
from harness.reporting import reporter

ICON = {"visible": "**visible**", "partial": "partial", "hidden": "hidden", "n/a": "n/a"}


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


@reporter("markdown")
def render(reports: list[dict]) -> str:
    out = ["# What a passive adversary on the tapped links learns", "",
           "Verdict per observable, with the adversary's advantage over guessing "
           "((accuracy - chance) / (1 - chance)). How each is measured: docs/scoring.md.", "",
           _row(["scenario", *OBSERVABLES]), _row(["---"] * (len(OBSERVABLES) + 1))]
    for r in reports:
        broken = {b["observable"] for b in r.get("policy", {}).get("breaks", [])}
        cells = []
        for o in OBSERVABLES:
            obs = r["observables"][o]
            c = ICON[obs["verdict"]]
            if obs["verdict"] in ("visible", "partial"):
                c += f" {obs['advantage']:.2f}"
            cells.append(c + (" (policy broken)" if o in broken else ""))
        out.append(_row([r["scenario"], *cells]))
    for r in reports:
        out += ["", f"## {r['scenario']} (seed {r['seed']})", ""]
        if r.get("description"):
            out += [r["description"], ""]
        out += _metadata_lines(r)
        breaks = r.get("policy", {}).get("breaks", [])
        if breaks:
            out.append("Policy broken: " + "; ".join(f"{b['observable']} ({b['rule']}: {b['verdict']}, "
                                                   f"advantage {b['advantage']:.2f})" for b in breaks))
            out.append("")
        out += [_row(["observable", "verdict", "advantage", "accuracy", "chance", "n", "first evidence"]),
                _row(["---"] * 7)]
        for o in OBSERVABLES:
            obs = r["observables"][o]
            ev = obs["evidence"][0] if obs["evidence"] else None
            ev_text = json.dumps(ev, sort_keys=True)[:160].replace("|", "\\|") if ev else ""
            out.append(_row([o, obs["verdict"], f"{obs['advantage']:.3f}", f"{obs['accuracy']:.3f}",
                             f"{obs['chance']:.3f}", str(obs["n"]), f"`{ev_text}`" if ev_text else ""]))
    return "\n".join(out) + "\n"


def _metadata_lines(r: dict) -> list[str]:
    """Who-talks-to-whom figures and, with [defences] on, what they cost (docs/scoring.md)."""
    out = []
    contacts = r["observables"].get("contacts", {})
    d = contacts.get("details") or {}
    if "precision" in d:
        text = (f"Contacts: precision {d['precision']:.2f}, recall {d['recall']:.2f} "
                f"({d['guessed_pairs']} pairs claimed, {d['true_pairs']} true), advantage {contacts['advantage']:.2f}")
        an = d.get("sender_anonymity")
        if an:
            text += (f"; sender anonymity per message: effective set {an['effective_set_median']:.1f} of "
                     f"{an['users']} (median), degree {an['degree_mean']:.2f}, {an['leakage_bits_mean']:.2f} bits leaked")
        if contacts.get("verdict") == "hidden" and d.get("guess_pvalue", 1.0) < 0.01:
            text += (f"; yet a blind guess matches these links only with p = {d['guess_pvalue']:.1g}: "
                     "a partial leak the sample is too small to call")
        need = d.get("messages_to_link")
        if need:
            text += f"; messages before a link: median {need['median']}, max {need['max']}"
        out += [text + ".", ""]
    costs = r.get("costs")
    if costs:
        bw, lat = costs.get("bandwidth", {}), costs.get("latency", {})
        out += [f"Defences ({', '.join(costs.get('defences', []))}) cost: bandwidth "
                f"{bw.get('overhead_pct', 0.0):+.1f}% on the tapped links, added latency p50 "
                f"{lat.get('p50_s', 0.0):.1f} s, p95 {lat.get('p95_s', 0.0):.1f} s.", ""]
    return out
