"""Byte statistics of each flow's payload - Shannon entropy with the Miller-Madow small-sample
correction, chi-square against uniform bytes, printable share - and the payload class they point to
(plaintext, encoded, compressed, weak-cipher, encrypted, empty), per flow and per message burst.

Framing a tap can strip is stripped first: TLS record bodies and relay envelope bodies are measured,
not their headers. Sees only observed flows; never imports the simulator, its truth, or the scorer.
"""
from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Iterable

import numpy as np

from harness.analyzers import register
from harness.analyzers.interface import Analyzer, Finding
from harness.observe import views
from harness.observe.bursts import StreamLayout
from harness.observe.dns import parse_dns_question
from harness.observe.model import CLIENT, SERVER, Flow
from harness.observe.text import count_of, inflate, printable_fraction
from harness.observe.tls_wire import TLS_APPLICATION_DATA

ID = "payload.entropy"
DIRECTION_NAMES = ("client", "server")
CLASSES = ("plaintext", "encoded", "compressed", "weak-cipher", "encrypted", "empty")

NDPI_LOW_ENTROPY = 4.941  # bits/byte: nDPI's threshold below which a payload is "low entropy"
HIGH_ENTROPY = 7.0  # bits/byte: above this (corrected for sample size) a payload may be ciphertext
UNIFORM_P = 0.001  # chi-square p-value above which byte frequencies pass as uniform
SMALL_SAMPLE_MARGIN = 0.5  # bits/byte below the expected entropy of N random bytes still "random"
MIN_BLOCK_SAMPLE = 64  # bytes: shortest payload checked for repeated cipher blocks (ECB)
MAX_BURSTS_IN_EVIDENCE = 64

_HEX = b"0123456789abcdefABCDEF"
_BASE32 = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567="
_BASE64 = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=-_"
_WHITESPACE = b"\r\n\t "
_PRINTABLE_ASCII = bytes(range(0x20, 0x7F))


@dataclass(frozen=True)
class ByteStats:
    n: int
    distinct: int  # non-zero bins
    entropy: float  # plug-in Shannon entropy, bits/byte
    entropy_mm: float  # Miller-Madow corrected: H + (K - 1) / (2 N ln 2)
    chi2: float  # against uniform over 256 values
    p_uniform: float  # upper tail of chi-square(255), Wilson-Hilferty approximation
    printable: float  # share of bytes that are printable ASCII, tab, CR or LF
    popcount: float = 0.0  # set bits per byte: 4 for random bytes, ~3.4 for ASCII text
    longest_printable_run: int = 0  # longest run of bytes in 0x20..0x7e


_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.float64)
_ASCII_PRINTABLE = np.zeros(256, dtype=bool)
_ASCII_PRINTABLE[0x20:0x7F] = True


def longest_printable_run(a: np.ndarray) -> int:
    """Longest run of bytes in 0x20..0x7e (the censor's notion of printable)."""
    if a.size == 0:
        return 0
    breaks = np.flatnonzero(~_ASCII_PRINTABLE[a])
    if breaks.size == 0:
        return int(a.size)
    edges = np.concatenate(([-1], breaks, [a.size]))
    return int((np.diff(edges) - 1).max())


def byte_stats(data: bytes) -> ByteStats:
    n = len(data)
    if n == 0:
        return ByteStats(0, 0, 0.0, 0.0, 0.0, 1.0, 0.0)
    a = np.frombuffer(data, dtype=np.uint8)
    counts = np.bincount(a, minlength=256).astype(np.float64)
    nonzero = counts[counts > 0]
    p = nonzero / n
    entropy = float(-(p * np.log2(p)).sum())
    distinct = int(nonzero.size)
    entropy_mm = entropy + (distinct - 1) / (2 * n * math.log(2))
    expected = n / 256
    chi2 = float(((counts - expected) ** 2).sum() / expected)
    popcount = float(counts @ _POPCOUNT) / n
    return ByteStats(n, distinct, entropy, entropy_mm, chi2, chi2_upper_tail(chi2, 255), printable_fraction(data),
                     popcount, longest_printable_run(a))


def chi2_upper_tail(x: float, df: int) -> float:
    """P(X >= x) for X ~ chi-square(df), by the Wilson-Hilferty cube-root normal approximation."""
    if x <= 0:
        return 1.0
    v = 2.0 / (9.0 * df)
    z = ((x / df) ** (1.0 / 3.0) - (1.0 - v)) / math.sqrt(v)
    return 0.5 * math.erfc(z / math.sqrt(2.0))


@lru_cache(maxsize=4096)
def expected_random_entropy(n: int) -> float:
    """Expected Miller-Madow entropy of n uniformly random bytes: well below 8 for small n."""
    if n <= 0:
        return 0.0
    ln2 = math.log(2)
    if n > 8192:
        plugin = 8.0 - 255.0 / (2 * n * ln2)
    else:
        # E[H] = -256 * sum_c P(C = c) (c/n) log2(c/n), with C ~ Binomial(n, 1/256) a bin's count.
        q = 1.0 / 256
        mean, sd = n * q, math.sqrt(n * q * (1 - q))
        top = int(min(n, mean + 12 * sd + 20))
        c = np.arange(1, top + 1, dtype=np.float64)
        log_pmf = (math.lgamma(n + 1) - np.array([math.lgamma(k + 1) for k in c])
                   - np.array([math.lgamma(n - k + 1) for k in c]) + c * math.log(q) + (n - c) * math.log1p(-q))
        plugin = float(-256 * (np.exp(log_pmf) * (c / n) * np.log2(c / n)).sum())
    distinct = 256 * (1 - (255 / 256) ** n)
    return plugin + (distinct - 1) / (2 * n * ln2)


def distinct_bytes_bounds(n: int) -> tuple[float, float]:
    """Mean and standard deviation of the number of distinct byte values in n uniformly random bytes."""
    q1, q2 = (255 / 256) ** n, (254 / 256) ** n
    mean = 256 * (1 - q1)
    var = 256 * q1 * (1 - q1) + 256 * 255 * (q2 - q1 * q1)
    return mean, math.sqrt(max(var, 0.0))


def looks_uniform(stats: ByteStats) -> bool:
    """Byte frequencies pass as uniform: chi-square p-value above UNIFORM_P; below 256 bytes, where
    the chi-square approximation fails, the number of distinct values is checked instead."""
    if stats.n >= 256:
        return stats.p_uniform > UNIFORM_P
    mean, sd = distinct_bytes_bounds(stats.n)
    return stats.distinct >= mean - 4 * sd


def high_entropy_threshold(n: int) -> float:
    return min(HIGH_ENTROPY, expected_random_entropy(n) - SMALL_SAMPLE_MARGIN)


def encoding_alphabet(data: bytes) -> str | None:
    """"hex", "base32" or "base64" when every non-whitespace byte is in that alphabet."""
    body = data.translate(None, _WHITESPACE)
    if not body or count_of(data, b" ") > len(data) * 0.02:
        return None
    for name, alphabet in (("hex", _HEX), ("base32", _BASE32), ("base64", _BASE64)):
        if count_of(body, alphabet) == len(body):
            return name
    return None


def raw_deflate_inflates(data: bytes) -> bool:
    """True when `data` reads as raw deflate that ends cleanly (or runs to the end) and expands."""
    if len(data) < 64:  # shorter random bytes pass now and then (about 1 in 1000 at 32 bytes)
        return False
    d = zlib.decompressobj(-15)
    try:
        out = d.decompress(data[:1 << 16], 1 << 20)
    except zlib.error:
        return False
    consumed = min(len(data), 1 << 16) - len(d.unused_data) - len(d.unconsumed_tail)
    if d.eof:
        return len(d.unused_data) <= 8 and len(out) >= consumed
    return not d.unconsumed_tail and len(out) >= 1.5 * consumed


_PRINTABLE_TABLE = np.zeros(256, dtype=np.uint8)
_PRINTABLE_TABLE[0x20:0x7F] = 1


SMALL_SAMPLE = 2048  # bytes: below this the ECB check runs in plain Python


def _repeated_blocks_small(segments: list[bytes], block: int) -> int:
    positions: dict[bytes, set[int]] = {}
    for seg in segments:
        for i in range(0, len(seg) - block + 1, block):
            chunk = seg[i:i + block]
            if len(set(chunk)) >= 14 and count_of(chunk, _PRINTABLE_ASCII) <= 10:
                positions.setdefault(chunk, set()).add(i)
    return sum(len(p) - 1 for p in positions.values())


def repeated_blocks(segments: list[bytes], block: int = 16, limit: int = 1 << 16) -> int:
    """Aligned 16-byte blocks that recur at different positions (ECB leaks equal plaintext blocks),
    over distinct segments of >= 64 bytes. Only blocks that look like ciphertext count (>= 14 distinct
    byte values, mostly unprintable), and a block recurring only at one position of every segment is
    a header field (a connection or session id), not ECB.

    The ciphertext-looking test is vectorised per segment ((n, 16) array). Equal blocks are found by a
    64-bit hash per block sorted with numpy; only blocks whose hash recurs are compared exactly (random
    ciphertext, the common case, has none). The answer is the number of distinct (block, position)
    pairs minus the number of distinct blocks."""
    distinct_segments = list(dict.fromkeys(s for s in segments if len(s) >= MIN_BLOCK_SAMPLE))
    if sum(map(len, distinct_segments)) <= SMALL_SAMPLE:  # numpy's per-call cost outweighs a few blocks
        return _repeated_blocks_small(distinct_segments, block)
    kept = bytearray()
    positions: list[np.ndarray] = []
    examined = 0
    for seg in distinct_segments:
        n = len(seg) // block
        arr = np.frombuffer(seg, dtype=np.uint8, count=n * block).reshape(n, block)
        distinct = 1 + np.count_nonzero(np.diff(np.sort(arr, axis=1), axis=1), axis=1)
        printable = _PRINTABLE_TABLE[arr].sum(axis=1)
        keep = np.flatnonzero((distinct >= 14) & (printable <= 10))[: limit - examined]
        if keep.size:
            kept += arr[keep].tobytes()
            positions.append(keep * block)
            examined += keep.size
        if examined >= limit:
            break
    if not positions:
        return 0
    words = np.frombuffer(bytes(kept), dtype="<u8").reshape(-1, block // 8)
    digest = words[:, 0] ^ (words[:, 1] * np.uint64(0x9E3779B97F4A7C15))
    order = np.argsort(digest, kind="stable")
    same = digest[order][1:] == digest[order][:-1]
    if not same.any():
        return 0
    candidates = np.union1d(order[1:][same], order[:-1][same])
    pos = np.concatenate(positions)
    pairs, blocks = set(), set()
    for i in candidates.tolist():
        chunk = bytes(kept[i * block:(i + 1) * block])
        pairs.add((chunk, int(pos[i])))
        blocks.add(chunk)
    return len(pairs) - len(blocks)


@dataclass(frozen=True)
class Verdict:
    cls: str
    confidence: float
    rule: str
    stats: ByteStats
    detail: dict


def classify(segments: list[bytes], block_check: bool = True) -> Verdict:
    """The payload class of the application bytes `segments` (record/envelope bodies, datagrams or
    streams). `block_check=False` skips the repeated-block (ECB) test: for bytes that are not
    application data (a TLS handshake), or whose framing is unknown (clear headers repeat too)."""
    data = b"".join(segments)
    stats = byte_stats(data)
    n = stats.n
    if n == 0:
        return Verdict("empty", 1.0, "no-payload", stats, {})
    inflating = sum(len(s) for s in segments if inflate(s) is not None)
    if inflating * 2 >= n:
        return Verdict("compressed", 0.95, "zlib-gzip-header", stats, {})
    alphabet = encoding_alphabet(data) if n >= 16 else None
    if alphabet and 3.5 <= stats.entropy_mm <= 6.15:
        return Verdict("encoded", min(0.95, 0.6 + n / 1024), "encoding-alphabet", stats, {"alphabet": alphabet})
    if stats.printable > 0.85:
        return Verdict("plaintext", round(stats.printable, 3), "printable", stats, {})
    if stats.entropy_mm < min(NDPI_LOW_ENTROPY, expected_random_entropy(n) - 1.0) and stats.printable >= 0.6:
        return Verdict("plaintext", 0.6, "low-entropy-printable", stats, {})
    threshold = high_entropy_threshold(n)
    repeats = repeated_blocks(segments) if block_check and stats.printable < 0.7 else 0
    if repeats:
        return Verdict("weak-cipher", min(0.95, 0.6 + 0.1 * repeats), "repeated-16-byte-blocks", stats,
                       {"repeated_blocks": repeats})
    if any(raw_deflate_inflates(s) for s in segments[:16]):
        return Verdict("compressed", 0.8, "raw-deflate", stats, {})
    if stats.entropy_mm >= threshold:
        size = min(1.0, n / 1024)
        if looks_uniform(stats):
            return Verdict("encrypted", round(0.6 + 0.35 * size, 3), "uniform-high-entropy", stats,
                           {"threshold": round(threshold, 3)})
        if stats.entropy_mm >= 7.5:
            return Verdict("encrypted", 0.5, "high-entropy-nonuniform", stats, {"threshold": round(threshold, 3)})
        return Verdict("compressed", 0.4, "high-entropy-nonuniform", stats, {"threshold": round(threshold, 3)})
    return Verdict("plaintext", 0.4, "structured-binary", stats, {"threshold": round(threshold, 3)})


@dataclass
class Measured:
    """Per direction, the application bytes to measure, framing stripped; and notes on what was not."""

    segments: tuple[list[bytes], list[bytes]]
    application: bool = True  # False: only TLS handshake bytes were there to measure
    framed: bool = False  # the segments are record/envelope bodies, framing stripped
    dns: bool = False  # every datagram/message read as DNS: structured clear text, whatever its entropy
    notes: dict = field(default_factory=dict)


def measured_segments(flow: Flow, layout: StreamLayout) -> Measured:
    """TLS application-data record bodies, relay envelope bodies, else the clear stream (UDP: each
    datagram). A TLS flow that never got past its handshake is measured on its handshake records."""
    out = Measured(([], []))
    dns_checked = 0
    for direction in (CLIENT, SERVER):
        data = bytes(flow.payload[direction])
        d = layout.directions[direction]
        units = [u for u in layout.units if u.direction == direction]
        if d.layer == "empty":
            continue
        if d.layer == "clear":
            if flow.proto == "udp":
                out.segments[direction].extend(data[u.body[0]:u.body[1]] for u in units if u.body[1] > u.body[0])
                first = out.segments[direction][:8]
                if first and all(parse_dns_question(x) for x in first):
                    dns_checked += 1
            else:
                out.segments[direction].append(data)
            continue
        framed = [u for u in units if (u.layer == "relay" and u.body[1] > u.body[0]) or u.layer.endswith("-tail")
                  or (u.layer == "tls" and u.record_type == TLS_APPLICATION_DATA)]
        if not framed and d.tls_start is not None:
            framed = [u for u in units if u.layer == "tls"]
            out.application = False
        out.segments[direction].extend(data[u.body[0]:u.body[1]] for u in framed if u.body[1] > u.body[0])
        out.framed = out.framed or bool(framed)
        clear = sum(u.body[1] - u.body[0] for u in units if u.layer == "clear")
        if clear:
            out.notes[f"{DIRECTION_NAMES[direction]}_clear_prefix_bytes"] = clear
    present = sum(1 for seg in out.segments if seg)
    out.dns = present > 0 and dns_checked == present
    return out


def stats_json(stats: ByteStats) -> dict:
    return {"bytes": stats.n, "entropy": round(stats.entropy_mm, 3), "entropy_plugin": round(stats.entropy, 3),
            "chi2": round(stats.chi2, 1), "p_uniform": round(stats.p_uniform, 4),
            "printable": round(stats.printable, 3), "distinct": stats.distinct,
            "popcount": round(stats.popcount, 3), "longest_printable_run": stats.longest_printable_run}


HEAD_BYTES = 16  # "first bytes": the head of each measured unit, where a clear header would sit


def positional_stats(segments: list[bytes]) -> dict | None:
    """Byte statistics of the first HEAD_BYTES of every unit against the rest: a header in clear
    inside encrypted framing shows as a low-entropy, often printable head over a random body."""
    units = [s for s in segments if len(s) > 2 * HEAD_BYTES]
    if len(units) < 2:
        return None
    head = byte_stats(b"".join(s[:HEAD_BYTES] for s in units))
    rest = byte_stats(b"".join(s[HEAD_BYTES:] for s in units))
    # Per position across units: how many distinct values each head byte takes (1 = a fixed field).
    fixed = sum(1 for i in range(HEAD_BYTES) if len({s[i] for s in units}) == 1)
    return {"units": len(units), "head": stats_json(head), "rest": stats_json(rest), "fixed_head_bytes": fixed,
            "clear_head": bool(looks_uniform(rest) and rest.n >= 256 and (head.printable > 0.7 or fixed >= 4))}


@register
class PayloadEntropy(Analyzer):
    """Entropy, uniformity and printable share of each flow's payload, and its payload class."""

    id = ID
    description = ("Measures entropy (Miller-Madow), chi-square uniformity and printable share of each flow's "
                   "payload with TLS/relay framing stripped, and classifies it: plaintext, encoded, compressed, "
                   "weak-cipher, encrypted or empty.")

    def on_flow(self, flow: Flow) -> Iterable[Finding]:
        layout = views.layout(flow)
        measured = measured_segments(flow, layout)
        segments = measured.segments[CLIENT] + measured.segments[SERVER]
        # Repeated cipher blocks mean ECB only in bodies whose framing is stripped: in a stream of
        # unknown framing, clear headers and certificates repeat too.
        block_check = measured.application and measured.framed
        verdict = classify(segments, block_check=block_check)
        if measured.dns and verdict.cls != "empty":  # DNSSEC keys and signatures look random; DNS is clear
            verdict = Verdict("plaintext", 0.8, "dns-message", verdict.stats, {})
        evidence: dict = {"rule": verdict.rule, "first_seen": round(flow.first_seen, 6), **stats_json(verdict.stats),
                          **verdict.detail, **measured.notes}
        if not measured.application:
            evidence["measured"] = "tls-handshake-only"
        for direction in (CLIENT, SERVER):
            if measured.segments[direction]:
                side = classify(measured.segments[direction], block_check=block_check)
                evidence[DIRECTION_NAMES[direction]] = {"class": side.cls, **stats_json(side.stats)}
        for direction in (CLIENT, SERVER):
            position = positional_stats(measured.segments[direction][:256])
            if position is not None:
                evidence.setdefault("position", {})[DIRECTION_NAMES[direction]] = position
        burst_rows = []
        for burst in views.messages(flow)[:MAX_BURSTS_IN_EVIDENCE]:
            b = classify(burst.bodies(bytes(flow.payload[burst.direction])), block_check=block_check)
            burst_rows.append({"time": round(burst.start_time, 6), "direction": DIRECTION_NAMES[burst.direction],
                               "payload": burst.payload, "measured": b.stats.n, "class": b.cls,
                               "entropy": round(b.stats.entropy_mm, 3), "p_uniform": round(b.stats.p_uniform, 4),
                               "popcount": round(b.stats.popcount, 3), "printable": round(b.stats.printable, 3),
                               "longest_printable_run": b.stats.longest_printable_run})
        if burst_rows:
            evidence["bursts"] = burst_rows
        value = {"class": verdict.cls, "entropy": round(verdict.stats.entropy_mm, 3)}
        return [Finding(analyzer=ID, observable="content", kind="payload-class", flow=flow.id, value=value,
                        evidence=evidence, confidence=verdict.confidence)]
