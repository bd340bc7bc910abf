"""Series findings: one finding for a fact a flow shows many times (each message burst's time and size),
stored as columns, and their expansion back into one item per occurrence for whoever scores them.

A series finding's value is `{"series": {column: [one value per item], ...}}` and its evidence may hold
`{"series": {column: [...]}}` (per-item evidence; None where an item has no such field) beside fields
shared by every item. A flow with 40 message bursts is then one finding, not 40: a million findings cost
as much to hash, encode and write as a heavy analyzer, and columns are a fraction of the JSON. Item i
reads as the finding `{"id": "<id>.i", "value": {column: value[i]}, "evidence": {shared..., column:
evidence[i]}}` (a "confidence" evidence column becomes the item's confidence), which is what the scorer
associates with messages: the same as one finding per burst, by construction (`expand`).

Used by analyzers (which write series) and the scorer (which reads items); no truth here.
"""
from __future__ import annotations

from collections.abc import Iterator

SERIES = "series"


def is_series(finding: dict) -> bool:
    """A finding dict whose value holds a series of items."""
    value = finding.get("value")
    return isinstance(value, dict) and isinstance(value.get(SERIES), dict)


def series_length(columns: dict) -> int:
    """Items in a set of columns: the shortest column (a hand-edited document may disagree)."""
    lengths = [len(c) for c in columns.values() if isinstance(c, list)]
    return min(lengths) if lengths else 0


def expand(finding: dict) -> Iterator[dict]:
    """The finding itself, or, for a series finding, one finding dict per item (see the module docstring)."""
    if not is_series(finding):
        yield finding
        return
    columns = {k: c for k, c in finding["value"][SERIES].items() if isinstance(c, list)}
    evidence = finding.get("evidence") or {}
    per_item = evidence.get(SERIES) if isinstance(evidence.get(SERIES), dict) else {}
    per_item = {k: c for k, c in per_item.items() if isinstance(c, list)}
    shared = {k: v for k, v in evidence.items() if k != SERIES}
    n = min([series_length(columns)] + [len(c) for c in per_item.values()])
    for i in range(n):
        ev = dict(shared)
        for k, c in per_item.items():
            if c[i] is not None:
                ev[k] = c[i]
        confidence = ev.pop("confidence", finding.get("confidence"))
        yield {**finding, "id": f"{finding.get('id')}.{i}", "value": {k: c[i] for k, c in columns.items()},
               "evidence": ev, "confidence": confidence}
