"""Byte statistics of payload bytes (entropy, chi-square, popcount, printable share, longest printable run)
for many parts of a flow at once, from one 256-bin histogram matrix and one pass over the bytes.

Part of the observe tier: it sees only observed bytes, never the simulator or its truth.

Every value is computed exactly as a part-by-part computation would compute it: counts, distinct
values, popcount and printable counts are integers; the entropy sums each part's non-zero terms, in
bin order, with numpy's own summation of that part's 1-D array (a segmented `reduceat` would add them
in another order and may change the last bit); chi-square sums each histogram row as a 1-D sum does.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate
from typing import NamedTuple

import numpy as np

LN2 = math.log(2)


class ByteStats(NamedTuple):
    """Byte statistics of one payload (immutable; a named tuple, as hundreds are made per flow)."""

    n: int
    distinct: int  # non-zero bins
    entropy: float  # plug-in Shannon entropy, bits/byte
    entropy_mm: float  # Miller-Madow corrected: H + (K - 1) / (2 N ln 2)
    chi2: float  # against uniform over 256 values
    p_uniform: float  # upper tail of chi-square(255), Wilson-Hilferty approximation
    printable: float  # share of bytes that are printable ASCII, tab, CR or LF
    popcount: float = 0.0  # set bits per byte: 4 for random bytes, ~3.4 for ASCII text
    longest_printable_run: int = 0  # longest run of bytes in 0x20..0x7e


EMPTY = ByteStats(0, 0, 0.0, 0.0, 0.0, 1.0, 0.0)

POPCOUNT = np.array([i.bit_count() for i in range(256)], dtype=np.float64)
ASCII_PRINTABLE = np.zeros(256, dtype=bool)  # 0x20..0x7e: the censor's notion of printable
ASCII_PRINTABLE[0x20:0x7F] = True
TEXT_PRINTABLE = ASCII_PRINTABLE.copy()  # ... and tab, LF, CR: printable_fraction's notion
TEXT_PRINTABLE[[9, 10, 13]] = True
_SEPARATOR = b"\x00"  # ends every piece in the joined buffer: not printable, so no run crosses pieces


def chi2_upper_tail(x: float, df: int) -> float:
    """P(X >= x) for X ~ chi-square(df), by the Wilson-Hilferty cube-root normal approximation."""
    if x <= 0:
        return 1.0
    v = 2.0 / (9.0 * df)
    z = ((x / df) ** (1.0 / 3.0) - (1.0 - v)) / math.sqrt(v)
    return 0.5 * math.erfc(z / math.sqrt(2.0))


@dataclass
class Histograms:
    """Per part: the 256-bin byte histogram and the longest printable run."""

    counts: np.ndarray  # (parts, 256) float64 holding integers (exact below 2**53)
    longest: list[int]  # longest run of bytes in 0x20..0x7e


_BASES = np.arange(0, 256 * 1024, 256, dtype=np.int64)  # piece index * 256, for up to 1024 pieces


def _measure_pieces(pieces: list[bytes]) -> tuple[np.ndarray, list[int], list[int], list[int]]:
    """Histogram (float64), and longest, leading and trailing printable run, of each piece.

    The pieces are joined into one buffer, each followed by a separator byte (counted out of its
    histogram again); one bincount over (piece index * 256 + byte) gives every histogram, and the
    positions of the bytes outside 0x20..0x7e (separators included) give every run: the distance from
    one break to the next, less one, is the run between them, grouped by piece with `np.maximum.reduceat`."""
    count = len(pieces)
    spans = [len(p) + 1 for p in pieces]
    seps = list(accumulate(spans))  # one past each separator
    firsts = [0] + seps[:-1]
    buf = np.frombuffer(_SEPARATOR.join(pieces) + _SEPARATOR, dtype=np.uint8)
    index = np.repeat(_BASES[:count] if count <= len(_BASES) else _BASES[1] * np.arange(count), spans)
    index += buf
    counts = np.bincount(index, minlength=256 * count).reshape(count, 256).astype(np.float64)
    counts[:, 0] -= 1  # the separators
    breaks = np.flatnonzero((buf - np.uint8(0x20)) > np.uint8(0x7E - 0x20))
    distance = np.empty_like(breaks)  # from the previous break (the first from position -1)
    distance[0] = breaks[0] + 1
    np.subtract(breaks[1:], breaks[:-1], out=distance[1:])
    # Each piece's first break (at the latest its separator), then each separator.
    at = np.searchsorted(breaks, firsts + [end - 1 for end in seps])
    longest = (np.maximum.reduceat(distance, at[:count]) - 1).tolist()
    edges = (distance[at] - 1).tolist()
    return counts, longest, edges[:count], edges[count:]


def histograms(parts: Sequence[Sequence[bytes]]) -> Histograms:
    """Histograms and longest printable runs of each part, a part being the concatenation of its pieces.

    Each distinct piece is measured once (`_measure_pieces`), however many parts hold it; a part's
    histogram is the sum of its pieces' rows (integer sums, exact in float64; summed per occurrence, so a
    batch of many flows' parts costs what its pieces do), its longest run the longest of its pieces' or of
    a run carried across piece boundaries (a trailing run, whole printable pieces, a leading run)."""
    ids: dict[bytes, int] = {}
    refs = [[ids.setdefault(piece, len(ids)) for piece in part] for part in parts]
    pieces = list(ids) or [b""]
    width = len(pieces)
    counts, longest, leading, trailing = _measure_pieces(pieces)
    whole = [lead == len(piece) for lead, piece in zip(leading, pieces)]  # all printable: a run goes on
    runs = []
    for row in refs:
        best = carried = 0
        for i in row:
            if whole[i]:
                carried += leading[i]
                continue
            if carried + leading[i] > best:  # noqa: PLR1730 (a comparison: max() costs a call per piece)
                best = carried + leading[i]
            if longest[i] > best:  # noqa: PLR1730
                best = longest[i]
            carried = trailing[i]
        runs.append(max(best, carried))
    # Each part's histogram: the sum of its pieces' rows (occurrences in part order, summed per part by
    # one reduceat; integer sums, exact in float64). A part with no pieces keeps a row of zeros.
    out = np.zeros((len(refs), 256), dtype=np.float64)
    sizes = [len(row) for row in refs]
    filled = [r for r, k in enumerate(sizes) if k]
    if filled:
        occurrences = [i for row in refs for i in row]
        starts = list(accumulate([0] + sizes[:-1]))
        out[filled] = np.add.reduceat(counts[occurrences], [starts[r] for r in filled], axis=0)
    return Histograms(out, runs)


# Per byte value: 1 (size), set bits, printable (text); one matrix product gives the three sums for every
# row, exactly (integers below 2**53).
_COLUMNS = np.stack([np.ones(256), POPCOUNT, TEXT_PRINTABLE], axis=1).astype(np.float64)


def with_columns(extra: np.ndarray) -> np.ndarray:
    """Weights for `stats_rows`: its own columns (size, set bits, printable), then `extra` (256, k)."""
    return np.concatenate([_COLUMNS, extra], axis=1)


def stats_rows(hist: np.ndarray, longest: Sequence[int], weights: np.ndarray = _COLUMNS
               ) -> tuple[list[ByteStats], list[list[float]]]:
    """ByteStats of each histogram row (float64 counts, with its longest printable run), as `byte_stats`
    would give: each step is the scalar computation's own operation on the same values. `weights`: from
    `with_columns`, to have each row's sums over further per-byte-value weights given back (exact)."""
    totals = hist @ weights
    sums = totals.tolist()
    n = totals[:, 0]
    present = hist > 0
    distinct = present.sum(axis=1)
    # Each row's plug-in entropy terms p * log2(p) over its non-zero bins, in bin order, for all rows;
    # each row's terms are then summed as one 1-D array (numpy's pairwise summation), like byte_stats.
    p = hist[present] / np.repeat(n, distinct)
    terms = p * np.log2(p)
    expected = np.maximum(n, 1.0) / 256  # empty rows are answered apart: keep them from dividing by zero
    chi2 = (np.square(hist - expected[:, None]).sum(axis=1) / expected).tolist()
    add = np.add.reduce
    out = []
    start = 0
    for row, k, x2, run in zip(sums, distinct.tolist(), chi2, longest):
        if k == 0:
            out.append(EMPTY)
            continue
        entropy = float(-add(terms[start:start + k]))
        start += k
        count = int(row[0])
        out.append(ByteStats(count, k, entropy, entropy + (k - 1) / (2 * count * LN2), x2, chi2_upper_tail(x2, 255),
                             row[2] / count, row[1] / count, run))
    return out, [row[3:] for row in sums]
