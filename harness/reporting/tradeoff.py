"""reports/tradeoff.md and tradeoff.svg: leak versus cost per defence variant (pure rendering, no I/O).

The plot is hand-written SVG: bandwidth overhead (log scale) across, the contact analyzer's advantage
up, one labelled point per variant; latency p95 sets the point's size.
"""
from __future__ import annotations

import math
from html import escape

from harness.tradeoff import METADATA_OBSERVABLES


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


GUESS_ALPHA = 0.01  # a hidden contacts verdict whose links a blind guess matches less often than this is flagged


def _cell(v):
    obs = v.report["observables"]

    def cell(o: str) -> str:
        if obs[o]["verdict"] == "n/a":
            return "n/a"
        text = f"{obs[o]['advantage']:.2f} {obs[o]['verdict']}"
        if o == "contacts" and obs[o]["verdict"] == "hidden" and flagged(v):
            text += " (but see *)"
        return text
    return cell


def flagged(v) -> bool:
    """Contacts called hidden although a blind guess would match the links this well with p < GUESS_ALPHA."""
    d = v.report["observables"]["contacts"].get("details", {})
    return v.report["observables"]["contacts"]["verdict"] == "hidden" and d.get("guess_pvalue", 1.0) < GUESS_ALPHA


def render_markdown(base: str, results: list, svg_name: str = "tradeoff.svg") -> str:
    analyzers = sorted({a for r in results for a in r.analyzers})
    out = [f"# Leak versus cost: {base}", "",
           "Each row is the base scenario with one `[defences]` setting (harness/tradeoff.py VARIANTS). "
           "Cells: the adversary's advantage over guessing and the scorer's verdict, per metadata observable "
           "(docs/scoring.md). Bandwidth: frame bytes on the tapped links against the same run without "
           "defences (from the captures). Latency: per message, delivery with minus without defences (from "
           "the schedule). \"hidden\" means these analyzers did not recover it beyond chance, nothing more.", "",
           f"Analyzers: {', '.join(analyzers)}.", "",
           _row(["variant", *METADATA_OBSERVABLES, "contacts P / R", "anonymity degree", "bandwidth",
                 "latency p50", "latency p95"]),
           _row(["---"] * (len(METADATA_OBSERVABLES) + 6))]
    for r in results:
        cell = _cell(r)
        d = r.report["observables"]["contacts"].get("details", {})
        an = d.get("sender_anonymity", {})
        bw, lat = r.costs.get("bandwidth", {}), r.costs.get("latency", {})
        out.append(_row([f"`{r.name}`", *[cell(o) for o in METADATA_OBSERVABLES],
                         f"{d.get('precision', 0):.2f} / {d.get('recall', 0):.2f}",
                         f"{an['degree_mean']:.2f}" if an else "-",
                         f"{bw.get('overhead_pct', 0.0):+.1f}%", f"{lat.get('p50_s', 0.0):.1f} s",
                         f"{lat.get('p95_s', 0.0):.1f} s"]))
    marked = [r for r in results if flagged(r)]
    if marked:
        out += ["", "\\* The contacts verdict is hidden (the F1 over so few true pairs does not clear chance by the "
                "Wilson bound), yet the links are no accident: " + "; ".join(
                    f"`{r.name}`: {_links(r)}" for r in marked) + ". Read these as a partial leak."]
    out += ["", "Settings:", ""]
    for r in results:
        out.append(f"- `{r.name}`: " + (", ".join(f"{k} = {v!r}" for k, v in r.defences.items()) or "no defences"))
    out += ["", f"![contacts advantage against bandwidth overhead]({svg_name})", ""]
    return "\n".join(out) + "\n"


def render_svg(results: list, width: int = 760, height: int = 440) -> str:
    left, right, top, bottom = 70, 190, 30, 60
    pw, ph = width - left - right, height - top - bottom
    xs = [max(float(r.costs.get("bandwidth", {}).get("overhead_pct", 0.0)), 0.0) for r in results]
    xmax = max(max(xs), 10.0)

    def x(v: float) -> float:  # log10(1 + overhead%)
        return left + pw * math.log10(1.0 + v) / math.log10(1.0 + xmax)

    def y(v: float) -> float:
        return top + ph * (1.0 - max(min(v, 1.0), 0.0))

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'font-family="sans-serif" font-size="11">',
             f'<rect width="{width}" height="{height}" fill="white"/>',
             f'<line x1="{left}" y1="{top + ph}" x2="{left + pw}" y2="{top + ph}" stroke="black"/>',
             f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + ph}" stroke="black"/>',
             f'<text x="{left + pw / 2}" y="{height - 15}" text-anchor="middle">bandwidth overhead, % '
             f'(log scale)</text>',
             f'<text x="18" y="{top + ph / 2}" text-anchor="middle" transform="rotate(-90 18 {top + ph / 2})">'
             f'contacts advantage</text>']
    for v in (0.0, 0.25, 0.5, 0.75, 1.0):
        parts.append(f'<line x1="{left - 4}" y1="{y(v):.1f}" x2="{left + pw}" y2="{y(v):.1f}" stroke="#ddd"/>')
        parts.append(f'<text x="{left - 8}" y="{y(v) + 4:.1f}" text-anchor="end">{v:.2f}</text>')
    tick = 0
    while tick <= xmax:
        parts.append(f'<text x="{x(tick):.1f}" y="{top + ph + 16}" text-anchor="middle">{tick:g}</text>')
        tick = 10 if tick == 0 else tick * 10
    for i, (r, xv) in enumerate(zip(results, xs)):
        adv = r.advantage("contacts")
        p95 = float(r.costs.get("latency", {}).get("p95_s", 0.0))
        radius = 3.0 + min(math.sqrt(p95), 10.0)
        colour = "#c0392b" if adv >= 0.8 else ("#e67e22" if r.verdict("contacts") == "partial" else "#27ae60")
        cx, cy = x(xv), y(adv)
        parts.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="{radius:.1f}" fill="{colour}" fill-opacity="0.6" '
                     f'stroke="black" stroke-width="0.5"><title>{escape(r.name)}: advantage {adv:.2f}, '
                     f'bandwidth {xv:+.1f}%, latency p95 {p95:.1f} s</title></circle>')
        ly = top + 12 + i * 14
        parts.append(f'<text x="{left + pw + 12}" y="{ly}">{i + 1}. {escape(r.name)}</text>')
        parts.append(f'<text x="{cx + radius + 2:.1f}" y="{cy - 2:.1f}" font-size="9">{i + 1}</text>')
    parts.append(f'<text x="{left}" y="{top - 10}">red: visible, orange: partial, green: hidden; '
                 f'point size: latency p95</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def _links(r) -> str:
    d = r.report["observables"]["contacts"]["details"]
    correct = round(d["precision"] * d["guessed_pairs"])
    return (f"{correct} of {d['guessed_pairs']} links right (blind-guess base rate {d.get('pair_base_rate', 0):.2f}, "
            f"p = {d['guess_pvalue']:.1g})")
