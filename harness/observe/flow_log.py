"""Every flow's summary, kept in typed columns until `finish` and the findings document read them.

A large capture has hundreds of thousands of flows; as objects, their summaries were a large share of
`harness analyze`'s peak memory (and, as small long-lived objects spread over the heap, they kept freed
memory from going back). Here a flow costs about 300 bytes: numbers in arrays, its id and client endpoint
as strings, the addresses and servers it shares with other flows as codes into one table. Reading an
item builds a `FlowSummary` (Flow's field names), so `finish` code is the same for a list of flows.
"""
from __future__ import annotations

from array import array
from collections import Counter
from typing import Iterator, Sequence

import numpy as np

from harness.observe.model import _NO_ANOMALIES, Flow, FlowSummary
from harness.observe.name_codes import NameCodes

_NUMBERS = ("sport", "dport", "packets0", "packets1", "bytes0", "bytes1", "payload0", "payload1", "flags",
            "proto", "dst", "src_ip", "dst_ip")
_TRUNCATED0, _TRUNCATED1, _HANDSHAKE = 1, 2, 4


class FlowLog(Sequence[FlowSummary]):
    """Append flows as they finish; read them back (by index or in order) as FlowSummary objects."""

    def __init__(self) -> None:
        self._first = array("d")
        self._last = array("d")
        self._n = {name: array("q") for name in _NUMBERS}
        self._ids: list[str] = []
        self._srcs: list[str] = []
        self._table = NameCodes()
        self._names = self._table.names
        self._anomalies: dict[int, Counter] = {}

    def append(self, flow: Flow) -> None:
        n, code = self._n, self._table.code
        if flow.anomalies:
            self._anomalies[len(self._ids)] = Counter(flow.anomalies)
        self._ids.append(flow.id)
        self._srcs.append(flow.src)
        self._first.append(flow.first_seen)
        self._last.append(flow.last_seen)
        for name, value in (("sport", flow.sport), ("dport", flow.dport),
                            ("packets0", flow.packets[0]), ("packets1", flow.packets[1]),
                            ("bytes0", flow.bytes[0]), ("bytes1", flow.bytes[1]),
                            ("payload0", flow.payload_bytes[0]), ("payload1", flow.payload_bytes[1]),
                            ("flags", _TRUNCATED0 * bool(flow.truncated[0]) + _TRUNCATED1 * bool(flow.truncated[1])
                             + _HANDSHAKE * bool(flow.handshake)),
                            ("proto", code(flow.proto)), ("dst", code(flow.dst)),
                            ("src_ip", code(flow.src_ip)), ("dst_ip", code(flow.dst_ip))):
            n[name].append(value)

    def __len__(self) -> int:
        return len(self._ids)

    def ids(self) -> list[str]:
        """Every flow's id, in the order they came."""
        return list(self._ids)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        n, names = self._n, self._names
        flags = n["flags"][i]
        return FlowSummary(self._ids[i], names[n["proto"][i]], self._srcs[i], names[n["dst"][i]],
                           names[n["src_ip"][i]], names[n["dst_ip"][i]], n["sport"][i], n["dport"][i],
                           self._first[i], self._last[i], (n["packets0"][i], n["packets1"][i]),
                           (n["bytes0"][i], n["bytes1"][i]), (n["payload0"][i], n["payload1"][i]),
                           (bool(flags & _TRUNCATED0), bool(flags & _TRUNCATED1)), bool(flags & _HANDSHAKE),
                           self._anomalies.get(i, _NO_ANOMALIES))

    def __iter__(self) -> Iterator[FlowSummary]:
        return (self[i] for i in range(len(self)))

    def by_first_seen(self) -> Sequence[FlowSummary]:
        """The flows in order of first packet (ties in the order they came): `sorted(log, key=first_seen)`
        without building every summary."""
        first = np.frombuffer(self._first, dtype=np.float64) if len(self) else np.zeros(0)
        return _Reordered(self, np.argsort(first, kind="stable").tolist())


class _Reordered(Sequence[FlowSummary]):
    def __init__(self, log: FlowLog, order: list[int]) -> None:
        self._log, self._order = log, order

    def __len__(self) -> int:
        return len(self._order)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self._log[k] for k in self._order[i]]
        return self._log[self._order[i]]
