"""payload.entropy's batch computations give exactly what the plain one-part-at-a-time computations give:
byte statistics of many parts from one histogram matrix, the expected entropy of random bytes summed for
many sizes at once, the raw-deflate header shortcut, and the once-per-flow repeated-block (ECB) test."""
from __future__ import annotations

import math
import random
import zlib

import numpy as np
import pytest

from harness.analyzers.entropy import (
    SegmentChecks,
    byte_stats,
    byte_stats_of_parts,
    encoding_alphabet,
    expected_random_entropy,
    raw_deflate_inflates,
    repeated_blocks,
    zlib_inflates,
)
from harness.observe.byte_stats import ByteStats, chi2_upper_tail

RNG = random.Random(20261128)
TEXT = b"The quarterly review moved to thursday; send the figures before noon.\r\n"


# The plain computations, as payload.entropy made them before the batch versions.

def reference_byte_stats(data: bytes) -> ByteStats:
    n = len(data)
    if n == 0:
        return ByteStats(0, 0, 0.0, 0.0, 0.0, 1.0, 0.0)
    a = np.frombuffer(data, dtype=np.uint8)
    counts = np.bincount(a, minlength=256).astype(np.float64)
    nonzero = counts[counts > 0]
    p = nonzero / n
    entropy = float(-(p * np.log2(p)).sum())
    distinct = int(nonzero.size)
    expected = n / 256
    chi2 = float(((counts - expected) ** 2).sum() / expected)
    popcount = float(counts @ np.array([i.bit_count() for i in range(256)], dtype=np.float64)) / n
    printable = (n - len(data.translate(None, bytes([9, 10, 13]) + bytes(range(0x20, 0x7F))))) / n
    runs = [len(r) for r in data.translate(bytes(b if 0x20 <= b < 0x7F else 0 for b in range(256))).split(b"\0")]
    return ByteStats(n, distinct, entropy, entropy + (distinct - 1) / (2 * n * math.log(2)), chi2,
                     chi2_upper_tail(chi2, 255), printable, popcount, max(runs))


def reference_expected_random_entropy(n: int) -> float:
    ln2 = math.log(2)
    if n > 8192:
        plugin = 8.0 - 255.0 / (2 * n * ln2)
    else:
        q = 1.0 / 256
        mean, sd = n * q, math.sqrt(n * q * (1 - q))
        top = int(min(n, mean + 12 * sd + 20))
        c = np.arange(1, top + 1, dtype=np.float64)
        log_pmf = (math.lgamma(n + 1) - np.array([math.lgamma(k + 1) for k in c])
                   - np.array([math.lgamma(n - k + 1) for k in c]) + c * math.log(q) + (n - c) * math.log1p(-q))
        plugin = float(-256 * (np.exp(log_pmf) * (c / n) * np.log2(c / n)).sum())
    distinct = 256 * (1 - (255 / 256) ** n)
    return plugin + (distinct - 1) / (2 * n * ln2)


def reference_repeated_blocks(segments: list[bytes], block: int = 16, limit: int = 1 << 16) -> int:
    positions: dict[bytes, set[int]] = {}
    examined = 0
    for seg in dict.fromkeys(s for s in segments if len(s) >= 64):
        for i in range(0, len(seg) - block + 1, block):
            chunk = seg[i:i + block]
            if len(set(chunk)) >= 14 and sum(0x20 <= b < 0x7F for b in chunk) <= 10:
                if examined == limit:
                    break
                examined += 1
                positions.setdefault(chunk, set()).add(i)
    return sum(len(p) - 1 for p in positions.values())


def sample(n: int) -> bytes:
    kind = RNG.randrange(5)
    if kind == 0:
        return RNG.randbytes(n)
    if kind == 1:
        return (TEXT * (n // len(TEXT) + 1))[:n]
    if kind == 2:
        return bytes(RNG.choice(b"0123456789abcdef \n") for _ in range(n))
    if kind == 3:
        return bytes(RNG.randrange(RNG.randrange(1, 256)) for _ in range(n))
    return bytes(RNG.choice((RNG.randrange(0x20, 0x7F), RNG.randrange(256))) for _ in range(n))


def test_batch_byte_stats_equal_one_part_at_a_time():
    for _ in range(60):
        pool = [sample(RNG.choice((0, 1, 7, 16, 40, 300, 2000))) for _ in range(RNG.randrange(1, 12))]
        parts = [[RNG.choice(pool) for _ in range(RNG.randrange(0, 6))] for _ in range(RNG.randrange(1, 10))]
        stats, alphabets = byte_stats_of_parts(parts)
        for part, got, alphabet in zip(parts, stats, alphabets):
            joined = b"".join(part)
            assert got == reference_byte_stats(joined) == byte_stats(joined)
            assert alphabet == encoding_alphabet(joined)


def test_encoding_alphabet():
    assert encoding_alphabet(b"deadbeef\r\n0123") == "hex"
    assert encoding_alphabet(b"MFRGGZDFMZTWQ2LK====") == "base32"
    assert encoding_alphabet(b"aGVsbG8gd29ybGQ=\n") == "base64"
    assert encoding_alphabet(b"hello world, plain") is None
    assert encoding_alphabet(b" \r\n") is None and encoding_alphabet(b"") is None


def test_expected_random_entropy_equals_the_per_size_sum():
    for n in list(range(1, 8300, 7)) + [255, 256, 257, 8191, 8192, 8193, 100_000]:
        assert expected_random_entropy(n) == reference_expected_random_entropy(n), n


def test_raw_deflate_header_shortcut_changes_no_answer():
    for i in range(20000):
        data = RNG.randbytes(RNG.choice((64, 100, 1500)))
        if i % 3 == 0:  # a stored block with valid lengths
            length = RNG.randrange(1 << 16)
            data = (bytes([RNG.randrange(256) & ~6, length & 255, length >> 8, ~length & 255, (~length >> 8) & 255])
                    + data[5:])
        assert raw_deflate_inflates(data) == zlib_inflates(data)
    d = zlib.compressobj(9, zlib.DEFLATED, -15)
    raw = d.compress(TEXT * 40) + d.flush()
    assert raw_deflate_inflates(raw) == zlib_inflates(raw)


def ecb_segments(repeat: bool) -> list[bytes]:
    blocks = [RNG.randbytes(16) for _ in range(6)]
    segments = []
    for _ in range(RNG.randrange(1, 8)):
        n = RNG.randrange(3, 40)
        body = b"".join(RNG.choice(blocks) if repeat and RNG.random() < 0.3 else RNG.randbytes(16) for _ in range(n))
        segments.append(body + RNG.randbytes(RNG.randrange(16)))
    if RNG.random() < 0.3:
        segments.append(segments[0])  # a duplicate segment counts once
    if RNG.random() < 0.3:
        segments.append(TEXT * 4)  # printable blocks never count
    return segments


@pytest.mark.parametrize("repeat", [False, True])
def test_repeated_blocks_and_the_once_per_flow_shortcut(repeat):
    found = 0
    for _ in range(40):
        parts = [ecb_segments(repeat) for _ in range(4)]
        union = [s for part in parts for s in part]
        checks = SegmentChecks(union)
        for part in parts:
            expected = reference_repeated_blocks(part)
            assert repeated_blocks(part) == expected
            assert checks.repeats(part) == expected
            found += expected > 0
    assert (found > 20) if repeat else found == 0
    segments = [RNG.randbytes(16) * 8, RNG.randbytes(160)]
    assert repeated_blocks(segments, limit=3) == reference_repeated_blocks(segments, limit=3) == 2
