"""Terminal table: scenarios as rows, observables as columns, verdict and advantage per cell."""
from __future__ import annotations

from tabulate import tabulate

from harness.observables import OBSERVABLES
from harness.reporting import reporter

SHORT = {"visible": "VISIBLE", "partial": "partial", "hidden": "hidden", "n/a": "n/a"}


def cell(obs: dict, broken: bool) -> str:
    v = obs["verdict"]
    text = SHORT[v] if v in ("hidden", "n/a") else f"{SHORT[v]} {obs['advantage']:.2f}"
    return text + (" !" if broken else "")


@reporter("table")
def render(reports: list[dict]) -> str:
    rows = []
    for r in reports:
        broken = {b["observable"] for b in r.get("policy", {}).get("breaks", [])}
        rows.append([r["scenario"]] + [cell(r["observables"][o], o in broken) for o in OBSERVABLES])
    legend = ("cells: verdict and the adversary's advantage over guessing; "
              "'!' = the scenario's policy says this must stay hidden (or below a limit)")
    return tabulate(rows, headers=["scenario", *OBSERVABLES], tablefmt="simple") + "\n" + legend + "\n"
