"""The Great Firewall's fully-encrypted-traffic rules (Wu et al., USENIX Security 2023), applied to
the first data packet each TCP client sends: a `censor-would-block` finding on every flow such a
censor would block.

The rules, as published (the paper's Algorithm 1, and `artifacts/utils/detect.py` in the paper's
artifact, github.com/gfw-report/usenixsecurity23-artifact, whose published predictions the tests
replay). Printable means 0x20..0x7e. A connection is exempt, and never blocked, when its client's
first data packet `pkt` satisfies any of

    Ex1  popcount(pkt) / len(pkt) <= 3.4  or  >= 4.6      (set bits per byte far from random's 4)
    Ex2  the first 6 bytes are printable
    Ex3  more than 50% of the bytes are printable
    Ex4  more than 20 contiguous printable bytes
    Ex5  it starts like TLS, [\\x16-\\x17]\\x03[\\x00-\\x0f], or HTTP, "GET ", "PUT ", "POST ", "HEAD "

Otherwise the censor blocks. The TLS fingerprint's third byte: Algorithm 1's text gives \\x00-\\x09;
the artifact's detector and its measured predictions use 0x00-0x0f, which is what is applied here.

The censor did not block every such connection: the paper measured probabilistic blocking, about one
connection in four (BLOCK_PROBABILITY; recalled from the paper, not from a stored copy). The finding's
value carries that probability; its confidence is the certainty that the rules say "block".
"""
from __future__ import annotations

from typing import Iterable

import numpy as np

from harness.analyzers import register
from harness.analyzers.interface import Analyzer, Finding
from harness.observe import views
from harness.observe.model import CLIENT, Flow, chunk_columns

ID = "censor.gfw-fet"
CENSOR = "gfw-fully-encrypted-2023"
BLOCK_PROBABILITY = 0.263
POPCOUNT_LOW, POPCOUNT_HIGH = 3.4, 4.6
_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)
_PRINTABLE = np.zeros(256, dtype=bool)
_PRINTABLE[0x20:0x7F] = True
_HTTP_PREFIXES = (b"GET ", b"PUT ", b"POST ", b"HEAD ")


def fet_features(pkt: bytes) -> dict:
    """The five exemption tests on one packet payload, with the numbers behind them."""
    a = np.frombuffer(pkt, dtype=np.uint8)
    n = a.size
    printable = _PRINTABLE[a]
    popcount = float(_POPCOUNT[a].sum()) / n if n else 0.0
    if n and printable.all():
        leading = longest = n
    elif n:
        breaks = np.flatnonzero(~printable)
        leading = int(breaks[0])
        edges = np.concatenate(([-1], breaks, [n]))
        longest = int((np.diff(edges) - 1).max())
    else:
        leading = longest = 0
    fraction = float(printable.sum()) / n if n else 0.0
    fingerprint = ""
    if n >= 3 and pkt[0] in (0x16, 0x17) and pkt[1] == 0x03 and pkt[2] <= 0x0F:
        fingerprint = "tls"
    elif pkt.startswith(_HTTP_PREFIXES):
        fingerprint = "http"
    exemptions = []
    if popcount <= POPCOUNT_LOW or popcount >= POPCOUNT_HIGH:
        exemptions.append("ex1-popcount")
    if leading >= 6:
        exemptions.append("ex2-printable-prefix")
    if fraction > 0.5:
        exemptions.append("ex3-printable-fraction")
    if longest > 20:
        exemptions.append("ex4-printable-run")
    if fingerprint:
        exemptions.append(f"ex5-{fingerprint}-fingerprint")
    return {"popcount_per_byte": round(popcount, 4), "printable_prefix": leading, "printable_fraction": round(fraction, 4),
            "longest_printable_run": longest, "fingerprint": fingerprint, "exemptions": exemptions,
            "blocked": n > 0 and not exemptions}


def would_block(pkt: bytes) -> bool:
    return fet_features(pkt)["blocked"]


@register
class CensorFullyEncrypted(Analyzer):
    """The GFW's 2021-2023 rules for fully encrypted traffic, on the client's first data packet."""

    id = ID
    cost = 1.0  # relative CPU cost (Analyzer.cost), measured at 1M packets: balances analyze --jobs
    description = ("Applies the Great Firewall's fully-encrypted-traffic exemptions (Wu et al., USENIX Security 2023: "
                   "popcount/byte, printable prefix, fraction and run, TLS/HTTP prefix) to each TCP client's first "
                   "data packet and reports the flows such a censor would block.")

    def on_flow(self, flow: Flow) -> Iterable[Finding]:
        if flow.proto != "tcp":
            return []
        spans = views.clock(flow).chunk_spans(CLIENT, 1)
        if not spans:
            return []
        off, length, t = spans[0]
        pkt = bytes(flow.payload[CLIENT][off:off + length])
        if not pkt:
            return []
        features = fet_features(pkt)
        if not features["blocked"]:
            return []
        packet_index = 1 + sum(1 for time in chunk_columns(flow.chunks)[0] if time < t)  # packets before it, +1
        evidence = {"rule": "gfw-fet-algorithm-1", "direction": "client", "offset": off, "length": length,
                    "time": round(t, 6), "packet": packet_index, **features}
        return [Finding(analyzer=ID, observable="service", kind="censor-would-block", flow=flow.id,
                        value={"censor": CENSOR, "block_probability": BLOCK_PROBABILITY}, evidence=evidence,
                        confidence=0.9 if flow.handshake else 0.6)]
