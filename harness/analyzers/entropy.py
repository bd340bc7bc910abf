"""Byte statistics of each flow's payload - Shannon entropy with the Miller-Madow small-sample
correction, chi-square against uniform bytes, printable share - and the payload class they point to
(plaintext, encoded, compressed, weak-cipher, encrypted, empty), per flow and per message burst.

Framing a tap can strip is stripped first: TLS record bodies and relay envelope bodies are measured,
not their headers. Sees only observed flows; never imports the simulator, its truth, or the scorer.
"""
from __future__ import annotations

import math
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import NamedTuple

import numpy as np

from harness.analyzers import register
from harness.analyzers.interface import Analyzer, Finding
from harness.observe import views
from harness.observe.bursts import Burst, StreamLayout
from harness.observe.byte_stats import (  # noqa: F401 (re-exported)
    ByteStats,
    chi2_upper_tail,
    histograms,
    stats_rows,
    with_columns,
)
from harness.observe.dns import parse_dns_question
from harness.observe.model import CLIENT, SERVER, Flow
from harness.observe.text import inflate
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
_ALPHABETS = (("hex", _HEX), ("base32", _BASE32), ("base64", _BASE64))
# Per byte value: 1 (size), whitespace, space, then per alphabet whether the value is outside it and
# outside whitespace (an encoded payload has none of those). Counts @ columns: exact integer sums.
_ALPHABET_COLUMNS = np.zeros((256, 3 + len(_ALPHABETS)), dtype=np.float64)
_ALPHABET_COLUMNS[:, 0] = 1
_ALPHABET_COLUMNS[list(_WHITESPACE), 1] = 1
_ALPHABET_COLUMNS[0x20, 2] = 1
for _col, (_, _alphabet) in enumerate(_ALPHABETS, start=3):
    _ALPHABET_COLUMNS[:, _col] = 1
    _ALPHABET_COLUMNS[list(_alphabet + _WHITESPACE), _col] = 0
_STATS_AND_ALPHABET_COLUMNS = with_columns(_ALPHABET_COLUMNS)


def byte_stats_of_parts(parts: list[list[bytes]]) -> tuple[list[ByteStats], list[str | None]]:
    """ByteStats and encoding alphabet of each part, a part being a list of pieces measured joined.
    One histogram matrix serves them all (`harness.observe.byte_stats.histograms`)."""
    h = histograms(parts)
    stats, sums = stats_rows(h.counts, h.longest, _STATS_AND_ALPHABET_COLUMNS)
    return stats, [alphabet_of(*row) for row in sums]


def byte_stats(data: bytes) -> ByteStats:
    """Byte statistics of `data`."""
    return byte_stats_of_parts([[data]])[0][0]


def alphabet_of(size: float, whitespace: float, spaces: float, *outside: float) -> str | None:
    """`encoding_alphabet` from a histogram's sums over `_ALPHABET_COLUMNS`: "hex", "base32" or "base64"
    when every non-whitespace byte is in that alphabet (and spaces are at most 2% of the bytes)."""
    if size > whitespace and spaces <= size * 0.02:
        for (name, _), miss in zip(_ALPHABETS, outside):
            if miss == 0:
                return name
    return None


def encoding_alphabet(data: bytes) -> str | None:
    """"hex", "base32" or "base64" when every non-whitespace byte is in that alphabet."""
    return byte_stats_of_parts([[data]])[1][0]


EXACT_EXPECTATION_MAX = 8192  # bytes: up to this size the expected entropy is summed over bin counts
_EXPECTATION_BLOCK = 256  # sizes computed together
_expected_plugin: dict[int, float] = {}  # n -> expected plug-in entropy of n random bytes, n <= 8192
_lgamma: list[np.ndarray] = []  # lgamma(k + 1) for k = 0..8192, made on first use


def _expected_plugin_block(block: int) -> None:
    """Fill `_expected_plugin` for every n in one block of _EXPECTATION_BLOCK sizes at once.

    For each n: E[H] = -256 * sum_c P(C = c) (c/n) log2(c/n) over c = 1..top, with C ~ Binomial(n, 1/256)
    a bin's count. The terms of all n of the block are made in one pass of elementwise numpy operations
    (the same operations on the same values as for one n alone), and each n's terms summed as one 1-D
    array, so every value is exactly what the computation for that n alone gives."""
    q = 1.0 / 256
    sizes = [n for n in range(block * _EXPECTATION_BLOCK, (block + 1) * _EXPECTATION_BLOCK)
             if 1 <= n <= EXACT_EXPECTATION_MAX]
    tops = [int(min(n, n * q + 12 * math.sqrt(n * q * (1 - q)) + 20)) for n in sizes]
    if not _lgamma:
        _lgamma.append(np.array([math.lgamma(k + 1.0) for k in range(EXACT_EXPECTATION_MAX + 1)]))
    lgamma = _lgamma[0]  # math.lgamma(k + 1) at k, the values a per-count loop takes
    n = np.repeat(np.array(sizes, dtype=np.int64), tops)
    ends = np.cumsum(tops)
    k = np.arange(1, len(n) + 1) - np.repeat(ends - tops, tops)  # 1..top for each n
    c = k.astype(np.float64)
    log_pmf = lgamma[n] - lgamma[k] - lgamma[n - k] + c * math.log(q) + (n - c) * math.log1p(-q)
    terms = np.exp(log_pmf) * (c / n) * np.log2(c / n)
    for size, start, stop in zip(sizes, (ends - tops).tolist(), ends.tolist()):
        _expected_plugin[size] = float(-256 * terms[start:stop].sum())


@cache
def expected_random_entropy(n: int) -> float:
    """Expected Miller-Madow entropy of n uniformly random bytes: well below 8 for small n."""
    if n <= 0:
        return 0.0
    ln2 = math.log(2)
    if n > EXACT_EXPECTATION_MAX:
        plugin = 8.0 - 255.0 / (2 * n * ln2)
    else:
        if n not in _expected_plugin:
            _expected_plugin_block(n // _EXPECTATION_BLOCK)
        plugin = _expected_plugin[n]
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


@cache
def high_entropy_threshold(n: int) -> float:
    return min(HIGH_ENTROPY, expected_random_entropy(n) - SMALL_SAMPLE_MARGIN)


def raw_deflate_inflates(data: bytes) -> bool:
    """True when `data` reads as raw deflate that ends cleanly (or runs to the end) and expands."""
    if len(data) < 64:  # shorter random bytes pass now and then (about 1 in 1000 at 32 bytes)
        return False
    # The first block's header (RFC 1951 3.2.3-4) rules out half of all random bytes without zlib, which
    # would stop there with an error: block type 3 is reserved ("invalid block type"), and a stored
    # block (type 0) must give its length LEN and then NLEN = ~LEN ("invalid stored block lengths").
    block_type = (data[0] >> 1) & 3
    if block_type == 3 or (block_type == 0 and (data[1] ^ data[3] != 0xFF or data[2] ^ data[4] != 0xFF)):
        return False
    return zlib_inflates(data)


def zlib_inflates(data: bytes) -> bool:
    """zlib's answer for `raw_deflate_inflates`: raw deflate ending cleanly (or at the end) that expands."""
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
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _ciphertext_like(blocks: np.ndarray) -> np.ndarray:
    """Per 16-byte block (a row): >= 14 distinct byte values and at most 10 printable ones."""
    distinct = 1 + np.count_nonzero(np.diff(np.sort(blocks, axis=1), axis=1), axis=1)
    return (distinct >= 14) & (_PRINTABLE_TABLE[blocks].sum(axis=1) <= 10)


def _block_repeats(segments: list[bytes], block: int = 16, limit: int | None = None) -> int:
    """Sum over the distinct ciphertext-looking aligned blocks of (distinct positions - 1), over the
    distinct segments of >= MIN_BLOCK_SAMPLE bytes; with `limit`, only the first `limit`
    ciphertext-looking blocks count.

    Equal blocks are found by a 64-bit hash of every block, sorted with numpy: a block that recurs
    has a recurring hash, so when no hash recurs (random ciphertext) the answer is 0 without looking
    further. Only blocks whose hash recurs are tested for the ciphertext look and compared exactly
    (a block recurring once contributes 0; hash collisions of unequal blocks contribute 0)."""
    distinct_segments = list(dict.fromkeys(s for s in segments if len(s) >= MIN_BLOCK_SAMPLE))
    if not distinct_segments:
        return 0
    sizes = [len(s) // block for s in distinct_segments]
    total = sum(sizes)
    blocks = np.frombuffer(b"".join(memoryview(s)[:k * block] for s, k in zip(distinct_segments, sizes)),
                           dtype=np.uint8).reshape(total, block)
    words = blocks.view("<u8")
    digest = words[:, 0] ^ (words[:, 1] * _GOLDEN)
    ranked = np.sort(digest)
    if not (ranked[1:] == ranked[:-1]).any():
        return 0
    order = np.argsort(digest, kind="stable")
    ranked = digest[order]
    same = ranked[1:] == ranked[:-1]
    candidates = np.union1d(order[1:][same], order[:-1][same])
    if limit is not None and total > limit:  # only the first `limit` ciphertext-looking blocks count
        counted = np.zeros(total, dtype=bool)
        counted[np.flatnonzero(_ciphertext_like(blocks))[:limit]] = True
        candidates = candidates[counted[candidates]]
    else:
        candidates = candidates[_ciphertext_like(blocks[candidates])]
    first_block = np.cumsum([0] + sizes[:-1])
    position = (np.arange(total) - np.repeat(first_block, sizes)) * block
    pairs, chunks = set(), set()
    for i in candidates.tolist():
        chunk = blocks[i].tobytes()
        pairs.add((chunk, int(position[i])))
        chunks.add(chunk)
    return len(pairs) - len(chunks)


def repeated_blocks(segments: list[bytes], block: int = 16, limit: int = 1 << 16) -> int:
    """Aligned 16-byte blocks that recur at different positions (ECB leaks equal plaintext blocks),
    over distinct segments of >= 64 bytes. Only blocks that look like ciphertext count (>= 14 distinct
    byte values, mostly unprintable), and a block recurring only at one position of every segment is
    a header field (a connection or session id), not ECB. At most `limit` blocks are examined. The
    answer is the number of distinct (block, position) pairs minus the number of distinct blocks."""
    return _block_repeats(segments, block, limit)


_ZLIB_GZIP_FIRST = frozenset((0x1F, 0x78))  # inflate() answers None for any other first byte


class SegmentChecks:
    """The segment-level tests `classify` runs, each done once per distinct segment of a flow:
    zlib/gzip headers, raw deflate, and the repeated-block (ECB) test.

    `union`: every segment of every part of the flow that is classified with the block check. When no
    ciphertext-looking block recurs at two positions anywhere in it (`_block_repeats(union) == 0`, no
    limit), no part can have one: a part's distinct segments are among the union's, so each block's
    positions in the part are a subset of its positions in the union (at most one), and a part's count
    (with or without its block limit, which only drops blocks) is a sum of (positions - 1) = 0. The
    flow's test is then run once instead of once per part; if the union does have a recurring block,
    each part is tested on its own."""

    def __init__(self, union: list[bytes] | None = None):
        self.union = union
        self._union_repeats: int | None = None
        self._inflates: dict[bytes, bool] = {}
        self._raw_deflate: dict[bytes, bool] = {}

    def inflating_bytes(self, segments: list[bytes]) -> int:
        """Bytes in the segments that start a zlib or gzip stream."""
        total = 0
        for s in segments:
            if len(s) >= 8 and s[0] in _ZLIB_GZIP_FIRST:
                ok = self._inflates.get(s)
                if ok is None:
                    ok = self._inflates[s] = inflate(s) is not None
                if ok:
                    total += len(s)
        return total

    def raw_deflate(self, segments: list[bytes]) -> bool:
        """One of the first 16 segments reads as raw deflate."""
        for s in segments[:16]:
            if len(s) < 64:  # raw_deflate_inflates() answers False
                continue
            ok = self._raw_deflate.get(s)
            if ok is None:
                ok = self._raw_deflate[s] = raw_deflate_inflates(s)
            if ok:
                return True
        return False

    def repeats(self, segments: list[bytes]) -> int:
        if self.union is not None:
            if self._union_repeats is None:
                self._union_repeats = _block_repeats(self.union)
            if self._union_repeats == 0:
                return 0
        return repeated_blocks(segments)


class Verdict(NamedTuple):
    cls: str
    confidence: float
    rule: str
    stats: ByteStats
    detail: dict


def classify(segments: list[bytes], block_check: bool = True) -> Verdict:
    """The payload class of the application bytes `segments` (record/envelope bodies, datagrams or
    streams). `block_check=False` skips the repeated-block (ECB) test: for bytes that are not
    application data (a TLS handshake), or whose framing is unknown (clear headers repeat too)."""
    (stats,), (alphabet,) = byte_stats_of_parts([segments])
    return verdict_of(stats, alphabet, segments, block_check, SegmentChecks())


def verdict_of(stats: ByteStats, alphabet: str | None, segments: list[bytes], block_check: bool,
               checks: SegmentChecks) -> Verdict:
    """`classify` given the segments' joined ByteStats and encoding alphabet."""
    n = stats.n
    if n == 0:
        return Verdict("empty", 1.0, "no-payload", stats, {})
    if checks.inflating_bytes(segments) * 2 >= n:
        return Verdict("compressed", 0.95, "zlib-gzip-header", stats, {})
    alphabet = alphabet if n >= 16 else None
    if alphabet and 3.5 <= stats.entropy_mm <= 6.15:
        return Verdict("encoded", min(0.95, 0.6 + n / 1024), "encoding-alphabet", stats, {"alphabet": alphabet})
    if stats.printable > 0.85:
        return Verdict("plaintext", round(stats.printable, 3), "printable", stats, {})
    if stats.entropy_mm < min(NDPI_LOW_ENTROPY, expected_random_entropy(n) - 1.0) and stats.printable >= 0.6:
        return Verdict("plaintext", 0.6, "low-entropy-printable", stats, {})
    threshold = high_entropy_threshold(n)
    repeats = checks.repeats(segments) if block_check and stats.printable < 0.7 else 0
    if repeats:
        return Verdict("weak-cipher", min(0.95, 0.6 + 0.1 * repeats), "repeated-16-byte-blocks", stats,
                       {"repeated_blocks": repeats})
    if checks.raw_deflate(segments):
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


def measured_segments(flow: Flow, layout: StreamLayout, payload: tuple[bytes, bytes] | None = None) -> Measured:
    """TLS application-data record bodies, relay envelope bodies, else the clear stream (UDP: each
    datagram). A TLS flow that never got past its handshake is measured on its handshake records.
    `payload`: the flow's two streams as bytes, if the caller has them already."""
    out = Measured(([], []))
    dns_checked = 0
    for direction in (CLIENT, SERVER):
        data = payload[direction] if payload is not None else bytes(flow.payload[direction])
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


class HeadUnits:
    """The units of a direction that `positional_stats` compares: heads (first HEAD_BYTES) against rests."""

    def __init__(self, units: list[bytes]):
        self.count = len(units)
        self.heads = [s[:HEAD_BYTES] for s in units]
        self.rests = [s[HEAD_BYTES:] for s in units]
        self.split = dict(zip(units, zip(self.heads, self.rests)))  # unit -> (head, rest)

    def fixed_head_bytes(self) -> int:
        """Head positions whose byte is the same in every unit (a fixed field)."""
        return sum(1 for column in zip(*self.heads) if column.count(column[0]) == self.count)


def head_units(segments: list[bytes]) -> HeadUnits | None:
    """The units longer than 2 * HEAD_BYTES, when there are at least two."""
    units = [s for s in segments if len(s) > 2 * HEAD_BYTES]
    return HeadUnits(units) if len(units) >= 2 else None


def position_json(units: HeadUnits, head: ByteStats, rest: ByteStats) -> dict:
    fixed = units.fixed_head_bytes()
    return {"units": units.count, "head": stats_json(head), "rest": stats_json(rest), "fixed_head_bytes": fixed,
            "clear_head": bool(looks_uniform(rest) and rest.n >= 256 and (head.printable > 0.7 or fixed >= 4))}


def positional_stats(segments: list[bytes]) -> dict | None:
    """Byte statistics of the first HEAD_BYTES of every unit against the rest: a header in clear
    inside encrypted framing shows as a low-entropy, often printable head over a random body."""
    units = head_units(segments)
    if units is None:
        return None
    (head, rest), _ = byte_stats_of_parts([units.heads, units.rests])
    return position_json(units, head, rest)


def burst_row(burst: Burst, verdict: Verdict) -> dict:
    stats = verdict.stats
    return {"time": round(burst.start_time, 6), "direction": DIRECTION_NAMES[burst.direction],
            "payload": burst.payload, "measured": stats.n, "class": verdict.cls,
            "entropy": round(stats.entropy_mm, 3), "p_uniform": round(stats.p_uniform, 4),
            "popcount": round(stats.popcount, 3), "printable": round(stats.printable, 3),
            "longest_printable_run": stats.longest_printable_run}


@register
class PayloadEntropy(Analyzer):
    """Entropy, uniformity and printable share of each flow's payload, and its payload class."""

    id = ID
    cost = 6.5  # relative CPU cost (Analyzer.cost), measured at 1M packets: balances analyze --jobs
    description = ("Measures entropy (Miller-Madow), chi-square uniformity and printable share of each flow's "
                   "payload with TLS/relay framing stripped, and classifies it: plaintext, encoded, compressed, "
                   "weak-cipher, encrypted or empty.")

    def on_flow(self, flow: Flow) -> Iterable[Finding]:
        return self.on_batch([flow])[0]

    def on_batch(self, flows: Sequence[Flow]) -> list[list[Finding]]:
        """Every flow's parts measured in one histogram matrix (`byte_stats_of_parts`: one numpy pass per
        batch, not per flow; each part's statistics are what measuring it alone gives), then each flow
        classified from its own rows."""
        prepared = [_FlowParts.of(flow) for flow in flows]
        stats, alphabet = byte_stats_of_parts([part for p in prepared for part in p.parts])
        out, at = [], 0
        for flow, p in zip(flows, prepared):
            k = len(p.parts)
            out.append([_finding(flow, p, stats[at:at + k], alphabet[at:at + k])])
            at += k
        return out


@dataclass
class _FlowParts:
    """One flow's bytes to measure, as parts: client, server, each burst, each head and rest, the flow
    (client then server). A unit compared head to rest is measured as those two pieces wherever it
    occurs, so that each distinct piece is counted once for all the parts holding it."""

    measured: Measured
    messages: list[Burst]
    bodies: list[list[bytes]]
    heads: list[HeadUnits | None]
    parts: list[list[bytes]]

    @classmethod
    def of(cls, flow: Flow) -> "_FlowParts":
        layout = views.layout(flow)
        payload = (bytes(flow.payload[CLIENT]), bytes(flow.payload[SERVER]))
        measured = measured_segments(flow, layout, payload)
        sides = measured.segments
        messages = views.messages(flow)[:MAX_BURSTS_IN_EVIDENCE]
        bodies = [burst.bodies(payload[burst.direction]) for burst in messages]
        heads = [head_units(sides[direction][:256]) for direction in (CLIENT, SERVER)]
        split = {}
        for units in heads:
            if units is not None:
                split.update(units.split)

        def pieces(part: list[bytes]) -> list[bytes]:
            return [p for s in part for p in split.get(s, (s,))] if split else part

        parts = [pieces(sides[CLIENT]), pieces(sides[SERVER]), *map(pieces, bodies)]
        for units in heads:
            if units is not None:
                parts += [units.heads, units.rests]
        parts.append(parts[CLIENT] + parts[SERVER])
        return cls(measured, messages, bodies, heads, parts)


def _finding(flow: Flow, p: _FlowParts, stats: list[ByteStats], alphabet: list[str | None]) -> Finding:
    """The flow's payload-class finding from its parts' statistics (rows in `_FlowParts.parts` order)."""
    measured, messages, bodies, heads = p.measured, p.messages, p.bodies, p.heads
    sides = measured.segments
    segments = sides[CLIENT] + sides[SERVER]
    whole = len(p.parts) - 1
    # Repeated cipher blocks mean ECB only in bodies whose framing is stripped: in a stream of
    # unknown framing, clear headers and certificates repeat too.
    block_check = measured.application and measured.framed
    checks = SegmentChecks([s for body in (segments, *bodies) for s in body] if block_check else None)
    verdict = verdict_of(stats[whole], alphabet[whole], segments, block_check, checks)
    if measured.dns and verdict.cls != "empty":  # DNSSEC keys and signatures look random; DNS is clear
        verdict = Verdict("plaintext", 0.8, "dns-message", verdict.stats, {})
    evidence: dict = {"rule": verdict.rule, "first_seen": round(flow.first_seen, 6), **stats_json(verdict.stats),
                      **verdict.detail, **measured.notes}
    if not measured.application:
        evidence["measured"] = "tls-handshake-only"
    for direction in (CLIENT, SERVER):
        if sides[direction]:
            side = verdict_of(stats[direction], alphabet[direction], sides[direction], block_check, checks)
            evidence[DIRECTION_NAMES[direction]] = {"class": side.cls, **stats_json(side.stats)}
    row = 2 + len(bodies)
    for direction, units in zip((CLIENT, SERVER), heads):
        if units is not None:
            position = position_json(units, stats[row], stats[row + 1])
            evidence.setdefault("position", {})[DIRECTION_NAMES[direction]] = position
            row += 2
    burst_rows = [burst_row(burst, verdict_of(stats[2 + i], alphabet[2 + i], body, block_check, checks))
                  for i, (burst, body) in enumerate(zip(messages, bodies))]
    if burst_rows:
        evidence["bursts"] = burst_rows
    value = {"class": verdict.cls, "entropy": round(float(verdict.stats.entropy_mm), 3)}  # a float, not numpy's
    return Finding(analyzer=ID, observable="content", kind="payload-class", flow=flow.id, value=value,
                   evidence=evidence, confidence=verdict.confidence)
