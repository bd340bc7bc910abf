"""JSON reports: one `harness.report/1` document per scenario (reports/NAME.json)."""
from __future__ import annotations

import json

from harness.reporting import reporter


@reporter("json")
def render(reports: list[dict]) -> str:
    """A single report renders as itself; several as a JSON list."""
    doc = reports[0] if len(reports) == 1 else reports
    return json.dumps(doc, indent=1, sort_keys=True, default=str) + "\n"
