"""What an analyzer is: it sees observed flows and the adversary's declared knowledge, and returns findings.

An analyzer never sees ground truth. That is kept true by this interface (nothing here carries truth)
and by tests/test_boundary.py, which fails if an analyzer or observe module imports the simulator's
truth or the scorer.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Iterable, Sequence

from harness.observables import OBSERVABLES


def json_encoder(separators: tuple[str, str]) -> Callable[[Any], str]:
    """A reusable encoder: compact or spaced, keys sorted, `default=str`, same text as `json.dumps`.

    `json.dumps` with keyword arguments builds an encoder per call and `JSONEncoder.encode` a C scanner per
    call; for a million small findings that is most of the cost, so the C encoder is made once here.
    """
    item_sep, key_sep = separators
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # no C accelerator: the pure-Python encoder, same text
        return json.JSONEncoder(sort_keys=True, default=str, separators=separators).encode
    encode = make(None, str, json.encoder.encode_basestring_ascii, None, key_sep, item_sep, True, False, True)
    return lambda obj: "".join(encode(obj, 0))


_id_json = json_encoder((",", ":"))
from harness.observe.model import Flow


@dataclass(frozen=True)
class KeyGrant:
    """One key the adversary holds: a name, what kind of key it is, and its bytes."""

    name: str  # e.g. "device-transport:alice", "pin-global"
    kind: str  # e.g. "aes-256-gcm", "3des-pin", "tls-server-private"
    material: bytes


@dataclass(frozen=True)
class Knowledge:
    """The adversary's declared knowledge: the keys it holds, nothing else."""

    keys: tuple[KeyGrant, ...] = ()

    def of_kind(self, kind: str) -> list[KeyGrant]:
        return [k for k in self.keys if k.kind == kind]


@dataclass(frozen=True)
class Finding:
    """One thing the adversary learned, with where it learned it.

    `value` holds what was recovered (text, a name, an address, {"sender","recipient"}, {"time","bytes"}),
    so a reader and the scorer can check it. `evidence` holds where: direction, byte offset and length,
    time, rule, an excerpt. Evidence is volatile and left out of `id`, so the same leak is the same
    finding across runs.
    """

    analyzer: str
    observable: str
    kind: str
    flow: str | None
    value: Any
    evidence: dict = field(default_factory=dict, compare=False, hash=False)
    confidence: float = 1.0

    def __post_init__(self) -> None:
        if self.observable not in OBSERVABLES:
            raise ValueError(f"unknown observable {self.observable!r}")

    @property
    def time(self) -> float | None:
        """When the recovered thing happened, if the finding is about one moment (evidence["time"])."""
        t = self.evidence.get("time")
        return float(t) if t is not None else None

    @property
    def id(self) -> str:
        """sha256 of the compact, key-sorted JSON of [analyzer, observable, kind, flow, value], 16 hex digits.

        Computed once and kept in the instance (not `functools.cached_property`, which on Python 3.11 takes
        a lock on every first use: a few microseconds for each of a million findings)."""
        known = self.__dict__.get("_id")
        if known is None:
            ident = _id_json([self.analyzer, self.observable, self.kind, self.flow, self.value])
            known = self.__dict__["_id"] = hashlib.sha256(ident.encode()).hexdigest()[:16]
        return known

    def to_json(self) -> dict:
        return {"id": self.id, "analyzer": self.analyzer, "observable": self.observable, "kind": self.kind,
                "flow": self.flow, "value": self.value, "evidence": self.evidence,
                "confidence": round(float(self.confidence), 4)}


class Analyzer:
    """Base class. Subclass, set `id` and `description`, and override `on_flow` and/or `finish`.

    `on_flow` is called once per finished flow, payload still attached (or `on_batch`, for a dozen or so
    flows at a time, if the analyzer overrides it); `finish` once at the end with
    every flow, for cross-flow work. The analyze path streams: by then the flows are a Sequence of
    `FlowSummary` (Flow's counters and times under Flow's names, no payload or chunks; harness/observe/
    flow_log.py), so keep from `on_flow` whatever else `finish` needs, compactly (a large capture has
    hundreds of thousands of flows). `finish` may yield its findings: they are encoded and sorted on disk
    as they come (harness/sorted_spool.py). Register the subclass with `@register`.
    """

    id: ClassVar[str] = ""
    description: ClassVar[str] = ""
    # Relative CPU cost on a large capture (1.0: a light analyzer), encoding its findings included (a
    # million small findings cost as much as an analyzer), used only to balance `harness analyze --jobs`
    # across processes (harness/parallel.py); `python -m bench.capture_throughput --per-analyzer`
    # measures the analyzer's own part.
    cost: ClassVar[float] = 1.0
    # False if `finish` never reads its `flows` argument (it keeps what it needs from `on_flow`): under
    # `--jobs`, a process whose analyzers all say so keeps no flow summaries (harness/parallel.py).
    finish_reads_flows: ClassVar[bool] = True

    def __init__(self, knowledge: Knowledge) -> None:
        self.knowledge = knowledge

    def on_flow(self, flow: Flow) -> Iterable[Finding]:
        return ()

    def on_batch(self, flows: Sequence[Flow]) -> Sequence[Iterable[Finding]]:
        """`on_flow` for several flows at once, one result per flow in order. Override it to measure a
        batch in one vectorised pass (harness/analyzers/entropy.py); it must give what `on_flow` gives
        for each flow. The runner calls it with up to BATCH_FLOWS flows (harness/analysis.py)."""
        return [self.on_flow(flow) for flow in flows]

    def finish(self, flows: Sequence[Flow]) -> Iterable[Finding]:
        return ()


def reads_flows_in_finish(cls: type[Analyzer]) -> bool:
    """Does the analyzer's `finish` need the flow summaries? Not if it keeps the base `finish`, or says so."""
    return cls.finish is not Analyzer.finish and bool(getattr(cls, "finish_reads_flows", True))
