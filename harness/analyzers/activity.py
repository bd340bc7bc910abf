"""Who is online when, how much each device receives, what kind of message each burst is, and whether a
known document went by: metadata a tap reads from packet sizes and times alone.

* online periods: a device's flows and packets, split where it was silent longer than ONLINE_GAP
  (two and a half keep-alive periods of a relay client): it was off, or out of coverage.
* size classes from the burst's payload and its packet sequence (MSS-sized segments): receipt or
  control (<= RECEIPT_MAX bytes), chat (one segment), e-mail (up to EMAIL_MAX), attachment (larger).
* a known-document fingerprint: a message whose payload is what a catalogued document's size becomes
  as a MIME attachment (base64, 76-character lines, plus up to HEADER_SLACK bytes of headers and
  sealing) or sent raw. The catalogue is KNOWN_DOCUMENTS plus any grant of kind "document-size"
  (name = document name, material = its size in ASCII digits).

Findings: `timing` "online-period" (no message time: the scorer does not count it as a message's
time), `volume` "received-volume", `size` "size-class" (one series finding per flow, an item per burst:
harness/series.py) and "known-document" (no byte count, so the size measure is unaffected).
Sees only observed flows; never the simulator, its truth, or the scorer.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Iterable, Iterator, Sequence

from harness.analyzers import register
from harness.analyzers.interface import Analyzer, Finding
from harness.observe import views
from harness.observe.model import CLIENT, Flow, chunk_columns
from harness.series import SERIES

ID = "metadata.activity"
ONLINE_GAP = 300.0  # seconds of silence that end an online period
MERGE_AT = 64  # a device's kept periods are merged once they number this many (and doubled since)
RECEIPT_MAX = 64  # bytes: receipts, acks and presence pings
ONE_SEGMENT = 1400  # bytes: a chat line fits one segment
EMAIL_MAX = 20000  # bytes: above this, an attachment rides along
HEADER_SLACK = 3000  # bytes of MIME headers, envelope and sealing around an attached document
KNOWN_DOCUMENTS: dict[str, int] = {}  # name -> size in bytes; extend, or grant "document-size" keys


def size_class(payload: int, packets: int) -> str:
    if payload <= RECEIPT_MAX:
        return "receipt"
    if payload <= ONE_SEGMENT and packets <= 1:
        return "chat"
    if payload <= EMAIL_MAX:
        return "email"
    return "attachment"


def base64_size(n: int) -> int:
    """Bytes of `n` bytes as MIME base64 with CRLF after every 76 characters."""
    chars = 4 * ((n + 2) // 3)
    return chars + 2 * ((chars + 75) // 76)


def document_matches(payload: int, catalogue: dict[str, int]) -> list[str]:
    """Catalogued documents whose attached (base64) or raw size explains `payload`."""
    out = []
    for name, size in catalogue.items():
        for wire in (base64_size(size), size):
            if 0 <= payload - wire <= HEADER_SLACK:
                out.append(name)
                break
    return sorted(out)


def online_periods(times: list[float]) -> list[tuple[float, float]]:
    """(first, last) of each run of `times` (any order) whose sorted neighbours are <= ONLINE_GAP apart."""
    times = sorted(times)
    periods, start, prev = [], times[0], times[0]
    for t in times[1:]:
        if t - prev > ONLINE_GAP:
            periods.append((start, prev))
            start = t
        prev = t
    periods.append((start, prev))
    return periods


def merge_periods(periods: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The online periods of the union of the times behind `periods` (each from `online_periods` of one
    flow): the same as `online_periods` of all the times at once. A gap over ONLINE_GAP between two
    consecutive times lies inside no flow's period (that flow would have been split there), so merging
    periods that overlap or lie <= ONLINE_GAP apart rebuilds exactly the runs; only the periods are kept
    per flow, not every packet time, so memory follows flows, not packets."""
    out: list[tuple[float, float]] = []
    for a, b in sorted(periods):
        if out and a - out[-1][1] <= ONLINE_GAP:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


@register
class Activity(Analyzer):
    """Online periods, received volume, size classes and known-document fingerprints per device."""

    id = ID
    cost = 3.2  # relative CPU cost (Analyzer.cost), measured at 1M packets: balances analyze --jobs
    finish_reads_flows = False  # finish works from what on_flow kept
    description = ("Reports when each device was online (its packets, keep-alives included), how many "
                   "messages it received, each message's size class (receipt, chat, e-mail, attachment) "
                   "and messages whose size matches a known document.")

    def __init__(self, knowledge) -> None:
        super().__init__(knowledge)
        self.catalogue = dict(KNOWN_DOCUMENTS)
        for grant in knowledge.of_kind("document-size"):
            try:
                self.catalogue[grant.name] = int(grant.material.decode())
            except ValueError:
                continue
        self._seen: dict[str, list[tuple[float, float]]] = defaultdict(list)  # device -> per-flow periods
        self._received: dict[str, int] = defaultdict(int)
        self._merged: dict[str, int] = {}  # device -> periods its list held after the last merge

    def on_flow(self, flow: Flow) -> Iterable[Finding]:
        seen = self._seen[flow.src_ip]
        seen += online_periods([flow.first_seen, flow.last_seen, *chunk_columns(flow.chunks)[0]])
        if len(seen) >= MERGE_AT and len(seen) >= 2 * self._merged.get(flow.src_ip, 0):
            # Merged output is itself the online periods of the times so far, so merging again later
            # gives what one merge at the end would (merge_periods): memory follows periods, not flows.
            seen[:] = merge_periods(seen)
            self._merged[flow.src_ip] = len(seen)
        out = []
        clock = views.clock(flow)
        bursts = views.messages(flow)
        if not bursts:
            return out
        packets = [clock.packets(b.direction, b.offset, b.end) for b in bursts]
        times = [round(b.start_time, 3) for b in bursts]
        directions = ["client" if b.direction == CLIENT else "server" for b in bursts]
        self._received[flow.src_ip] += directions.count("server")
        # One series finding (harness/series.py) for every burst's size class: item i is what a finding
        # per burst would say, {"time", "class"}, with that burst's bytes, packets and direction.
        classes = [size_class(b.payload, n) for b, n in zip(bursts, packets)]
        out.append(Finding(ID, "size", "size-class", flow.id, {SERIES: {"time": times, "class": classes}},
                           {"rule": "payload-and-packets", "device": flow.src_ip,
                            SERIES: {"time": [round(b.start_time, 6) for b in bursts],
                                     "bytes": [b.payload for b in bursts], "packets": packets,
                                     "direction": directions}}, confidence=0.6))
        if self.catalogue:
            for burst, n, t, direction in zip(bursts, packets, times, directions):
                docs = document_matches(burst.payload, self.catalogue)
                if docs:
                    ev = {"rule": "document-size-fingerprint", "time": round(burst.start_time, 6),
                          "bytes": burst.payload, "packets": n, "direction": direction, "device": flow.src_ip}
                    out.append(Finding(ID, "size", "known-document", flow.id, {"time": t, "documents": docs},
                                       ev, confidence=1.0 / len(docs)))
        return out

    def finish(self, flows: Sequence[Flow]) -> Iterator[Finding]:
        """Yielded one by one: the runner encodes each as it comes (a device per flow: as many as flows)."""
        for device in sorted(self._seen):
            for a, b in merge_periods(self._seen[device]):
                yield Finding(ID, "timing", "online-period", None,
                              {"device": device, "start": round(a, 3), "end": round(b, 3)},
                              {"rule": f"silence>{ONLINE_GAP:g}s", "first_seen": round(a, 6),
                               "last_seen": round(b, 6)}, confidence=0.9)
            if self._received.get(device):
                yield Finding(ID, "volume", "received-volume", None,
                              {"device": device, "received": self._received[device]},
                              {"rule": "server-message-bursts"}, confidence=0.7)
