"""`harness analyze --explain FLOW`: every finding about one flow, with its evidence, as text.

Works on a findings document (harness.findings/1) only, so it explains exactly what was reported.
"""
from __future__ import annotations

import json

from harness.errors import HarnessError
from harness.series import expand

_WHERE = ("rule", "direction", "packet", "offset", "length", "decoded_offset", "time", "seen_at", "first_seen")
_SKIP = set(_WHERE) | {"excerpt", "times", "bursts", "position", "tokens", "addresses"}


def select_flow(doc: dict, wanted: str) -> dict:
    """The flow whose id is `wanted`, or the only one whose id contains it."""
    flows = doc["flows"]
    exact = [f for f in flows if f["id"] == wanted]
    if exact:
        return exact[0]
    partial = [f for f in flows if wanted in f["id"]]
    if len(partial) == 1:
        return partial[0]
    if not partial:
        raise HarnessError(f"no flow matches {wanted!r} (flows look like {flows[0]['id']!r})" if flows
                           else "the capture has no flows")
    raise HarnessError(f"{len(partial)} flows match {wanted!r}; give more of the id, e.g. {partial[0]['id']!r}")


def _short(value, limit: int = 160) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def explain_flow(doc: dict, wanted: str) -> str:
    """A readable account of one flow: its label, then each finding with where and why."""
    flow = select_flow(doc, wanted)
    lines = [f"flow {flow['id']}",
             f"  app {flow.get('app')}, payload {flow.get('payload_class')}, entropy {flow.get('entropy')}, "
             f"{flow['packets']} packets, {flow['bytes']} bytes, {flow['first_seen']} .. {flow['last_seen']}"]
    mine = [f for f in doc["findings"] if f["flow"] == flow["id"]]
    # A series finding (one per flow for every message burst's time, size, size class) reads as its items.
    findings = sorted((item for f in mine for item in expand(f)),
                      key=lambda f: (f["observable"], f["analyzer"], f["kind"], -f["confidence"],
                                     (f.get("evidence") or {}).get("time") or 0))
    lines.append(f"  {len(mine)} findings" + (f" ({len(findings)} with each series item apart)"
                                              if len(findings) != len(mine) else ""))
    for f in findings:
        ev = f.get("evidence", {})
        lines.append(f"- {f['observable']}/{f['kind']} by {f['analyzer']} (confidence {f['confidence']}): "
                     f"{_short(f['value'])}")
        where = ", ".join(f"{k} {ev[k]}" for k in _WHERE if k in ev)
        if where:
            lines.append(f"    where: {where}")
        if ev.get("times"):
            lines.append(f"    seen {len(ev['times'])} times, first {ev['times'][:5]}")
        if ev.get("tokens"):
            lines.append(f"    tokens: {', '.join(ev['tokens'][:8])}")
        if ev.get("excerpt"):
            lines.append(f"    excerpt: {ev['excerpt']}")
        rest = {k: v for k, v in ev.items() if k not in _SKIP}
        if rest:
            lines.append(f"    details: {_short(rest, 400)}")
    return "\n".join(lines)
