"""Crypto-weakness checks across messages: encryption that hides less than its entropy suggests.

A DPI engine stops at "high entropy, so encrypted". This analyzer asks whether the encryption hides
anything, with the attacks that need no key:

* repeating-key XOR: key length by index of coincidence, key by per-column frequency fit, plaintext;
* keystream reuse (a stream cipher or CTR/GCM with a repeated nonce): ciphertexts of a flow, or of
  many flows, XORed pairwise read as XORed text (bit 7 clear); the keystream is recovered by a
  per-column fit over all messages and cribs of protocol text, and with it the plaintexts;
* ECB: a ciphertext-looking 8- or 16-byte block recurring at block-aligned distinct offsets;
* fixed-IV CBC: messages sharing a block-aligned, random-looking prefix and then differing in every
  byte of the next block (a fresh IV would make first blocks differ);
* static framing: bytes at the same message offsets in every message of a direction.

Flows that a real protocol frames (TLS records with hellos, SSH, QUIC, DNS) are left alone: their
ciphers are negotiated and their records carry fresh nonces, and calling them weak would be the
second-worst defect this harness can have. Sees only observed flows; never the simulator or truth.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from harness.analyzers import register
from harness.analyzers.interface import Analyzer, Finding
from harness.observe import views
from harness.observe.bursts import StreamLayout, bursts
from harness.observe.dns import parse_dns_question
from harness.observe.model import Flow
from harness.observe.packet_index import PacketIndex
from harness.observe.transforms import compressed_at, english_score
from harness.observe.text import as_text, canary_tokens, count_of, excerpt, printable_fraction, text_spans

ID = "payload.crypto-weakness"
DIRECTION_NAMES = ("client", "server")
MAX_MESSAGES = 64  # per direction, per flow
MAX_MESSAGE = 1 << 14  # bytes of one message examined
MAX_POOL = 256  # messages kept across flows for finish()
MIN_CIPHER_MESSAGE = 24
XOR_TEXT_SHARE = 0.95  # share of bit-7-clear bytes in c1^c2 that says "two texts, one keystream"
MIN_XOR_OVERLAP = 24
MAX_XOR_KEY = 40
CONTENT_WINDOW = 4096
HELD_KEY_KINDS = ("aes-128-gcm", "aes-256-gcm", "chacha20-poly1305")  # keys tried on sealed messages
MIN_READABLE_SPAN = 40  # bytes of text a partly recovered message must show to count as read
MIN_BIGRAM_FIT = -4.2  # mean log P(byte | previous byte): English ~-2.5, e-mail headers ~-3.6, noise < -4.5
CRIB_SPAN = 192  # offsets from a message's start where protocol cribs are tried
TOP_CANDIDATES = 12  # keystream bytes per position the bigram pass re-scores

# Log-likelihood weights of bytes in text (e-mail and chat): letters by English frequency, space,
# digits, punctuation; control bytes other than CR/LF/tab are nearly impossible.
_FREQ = {" ": 15.0, "e": 10.2, "t": 7.5, "a": 6.5, "o": 6.3, "i": 5.7, "n": 5.7, "s": 5.3, "r": 5.0,
         "h": 4.9, "l": 3.3, "d": 3.4, "c": 2.3, "u": 2.3, "m": 2.0, "f": 1.8, "p": 1.6, "g": 1.6,
         "w": 1.9, "y": 1.6, "b": 1.2, "v": 0.8, "k": 0.6, "x": 0.15, "j": 0.1, "q": 0.08, "z": 0.06}
_WEIGHT = np.full(256, math.log(1e-9), dtype=np.float64)  # control bytes: next to impossible in text
for _b in range(0x20, 0x7F):
    _WEIGHT[_b] = math.log(0.05)
for _b in b"0123456789":
    _WEIGHT[_b] = math.log(0.5)
for _b in b".,:;-'\"@<>()/!?=_":
    _WEIGHT[_b] = math.log(0.4)
for _b in b"\r\n":
    _WEIGHT[_b] = math.log(0.8)
for _ch, _f in _FREQ.items():
    _WEIGHT[ord(_ch)] = math.log(_f)
    if _ch != " ":
        _WEIGHT[ord(_ch.upper())] = math.log(_f * 0.25)
# A bigram model for refining recovered keystream bytes in context, from a neutral sample of office
# English (written for this purpose); unseen pairs back off to the unigram weights above.
_SAMPLE = (
    "Hello all, thanks for the quick reply. I have attached the minutes from the meeting on Monday and "
    "the updated schedule for the project. Please review the changes before the next call and let me "
    "know if anything is missing. The team agreed to move the deadline to the end of the month, since "
    "the vendor still needs to deliver the new hardware and the testing has not started yet. We will "
    "also need a short summary of the costs for the finance department, with the numbers for each "
    "quarter and a note about the risks. If you cannot attend the meeting, send your comments by email "
    "and I will forward them to the others. Regards, and have a good weekend.\r\n"
    "Subject: Re: contract renewal\r\nFrom: office manager\r\nTo: legal team\r\n\r\n"
    "Dear colleagues, the contract with our supplier expires next week. The legal review found two "
    "issues that must be resolved before we can sign it: the payment terms and the liability clause. "
    "Could you please check the draft and confirm whether the changes are acceptable? The board would "
    "like to see the final version on Thursday. There is also a question about the office move and "
    "the migration of the mail servers, which should be planned for the second half of the year. "
    "Reference numbers are listed below, together with the dates of the previous orders and invoices "
    "2023-11-04, 2024-02-17 and 2024-06-30, order 48213 and invoice 7719-a. Best wishes and thank you.\r\n"
)


def _english_sample() -> bytes:
    """Neutral English for the bigram model: the sample above plus the prose of Python's own
    documentation topics (pydoc_data ships with every CPython), about 300 KB."""
    text = _SAMPLE.encode()
    try:
        from pydoc_data.topics import topics
    except ImportError:  # a Python without pydoc_data: the short sample alone
        return text
    prose = " ".join(topics[k] for k in sorted(topics))
    return text + prose.encode("ascii", "ignore")[:1 << 19]


_BIGRAM_CACHE: list[np.ndarray] = []


def bigram_table() -> np.ndarray:
    """log P(next byte | byte), add-k smoothed towards the unigram weights (built once, on first use)."""
    if _BIGRAM_CACHE:
        return _BIGRAM_CACHE[0]
    counts = np.zeros((256, 256), dtype=np.float64)
    sample = np.frombuffer(_english_sample(), dtype=np.uint8)
    np.add.at(counts, (sample[:-1], sample[1:]), 1.0)
    uni = np.exp(_WEIGHT)
    uni /= uni.sum()
    strength = 40.0
    table = np.log((counts + strength * uni[None, :]) / (counts.sum(axis=1, keepdims=True) + strength))
    _BIGRAM_CACHE.append(table)
    return table


_XOR_TABLE = np.bitwise_xor.outer(np.arange(256, dtype=np.uint8), np.arange(256, dtype=np.uint8))  # [k, c] = k^c

_LETTERS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_ENCODING_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=-_%\r\n"

_HEADER_CRIBS = (b"From: ", b"Subject: ", b"To: ", b"Date: ", b"Message-ID: <", b"MIME-Version: 1.0\r\n",
                 b"Content-Type: text/plain", b"MAIL FROM:<", b"RCPT TO:<", b"EHLO ", b"HELO ")
# Protocol text only: short common words (" the ") also "fit" columns where the messages share bytes,
# and there they overwrite the right keystream; the bigram pass recovers running text instead.
_XOR_WEIGHT = _WEIGHT[_XOR_TABLE].T.copy()  # [c, k] = W[k ^ c]
CRIB_SOURCES = 8  # messages a crib is dragged along (protocol text recurs in most of them)

CRIBS = _HEADER_CRIBS + (b"\r\nSubject: ", b"\r\nTo: ", b"\r\nFrom: ", b"\r\nDate: ")


@dataclass
class Message:
    """One message-sized piece of ciphertext candidate: where it lies and its bytes."""

    flow: str
    direction: int
    offset: int  # stream offset of its first byte
    time: float
    data: bytes


def _u8(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype=np.uint8)


def looks_like_ciphertext(data: bytes) -> bool:
    """Not text, not sparse binary: at least roughly half the byte values a random string would use."""
    if len(data) < MIN_CIPHER_MESSAGE or printable_fraction(data) > 0.75 or compressed_at(data):
        return False
    a = _u8(data[:4096])
    distinct = np.count_nonzero(np.bincount(a, minlength=256))
    expected = 256 * (1 - (255 / 256) ** len(a))
    high = float(np.count_nonzero(a & 0x80)) / len(a)
    return distinct >= 0.45 * expected and 0.2 <= high <= 0.8


def framed_by_real_protocol(flow: Flow, layout: StreamLayout) -> str | None:
    """The protocol whose own framing and negotiated ciphers this analyzer must not second-guess."""
    c, s = bytes(flow.payload[0][:64]), bytes(flow.payload[1][:64])
    if layout.is_tls:
        return "tls"
    if c.startswith(b"SSH-") or s.startswith(b"SSH-"):
        return "ssh"
    if flow.proto == "udp":
        for d in (c, s):
            if len(d) >= 7 and d[0] & 0xC0 == 0xC0 and d[1:5] != b"\x00\x00\x00\x00":
                return "quic-long-header"
            if parse_dns_question(d):
                return "dns"
    else:
        for d in (c, s):
            if len(d) >= 19 and parse_dns_question(d[2:]):
                return "dns"
    return None


def flow_messages(flow: Flow, layout: StreamLayout) -> list[Message]:
    """Message-sized units: relay envelope bodies, UDP datagrams, clear TCP bursts (one per turn)."""
    out: list[Message] = []
    data = (bytes(flow.payload[0]), bytes(flow.payload[1]))
    per_dir = [0, 0]
    for b in bursts(layout):
        d = b.direction
        if per_dir[d] >= MAX_MESSAGES:
            continue
        units = [u for u in b.units if u.kind == "data" and u.body[1] > u.body[0]]
        if not units:
            continue
        if flow.proto == "udp" or any(u.layer.startswith("relay") for u in units):
            for u in units:
                out.append(Message(flow.id, d, u.body[0], u.start_time, data[d][u.body[0]:u.body[1]][:MAX_MESSAGE]))
                per_dir[d] += 1
        else:
            body = b"".join(data[d][u.body[0]:u.body[1]] for u in units)
            out.append(Message(flow.id, d, units[0].body[0], units[0].start_time, body[:MAX_MESSAGE]))
            per_dir[d] += 1
    return out


# --- repeating-key XOR ------------------------------------------------------------------------

def best_key_bytes(columns: list[np.ndarray]) -> bytes:
    """Per column, the key byte under which the column reads most like text (one matrix product)."""
    if not columns:
        return b""
    counts = np.zeros((len(columns), 256), dtype=np.float64)
    for i, col in enumerate(columns):
        if col.size:
            counts[i] = np.bincount(col, minlength=256)
    return column_argmax(counts).tobytes()


def column_argmax(counts: np.ndarray) -> np.ndarray:
    """Per row i of byte counts, the k maximising sum_c counts[i, c] * W[k ^ c]: a sparse sum over the
    bytes each column holds (a dense matrix product is slower here, and BLAS threads stall under load)."""
    rows, byts = np.nonzero(counts)
    if rows.size == 0:
        return np.zeros(counts.shape[0], dtype=np.uint8)
    contrib = counts[rows, byts][:, None] * _XOR_WEIGHT[byts]  # entries x 256
    starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
    sums = np.add.reduceat(contrib, starts, axis=0)
    out = np.zeros(counts.shape[0], dtype=np.uint8)
    out[rows[starts]] = np.argmax(sums, axis=1)
    return out


def mean_column_ic(a: np.ndarray, length: int) -> float:
    """Mean index of coincidence of the `length` columns of `a` (byte i in column i % length)."""
    cols = np.arange(a.size) % length
    counts = np.bincount(cols * 256 + a, minlength=length * 256).reshape(length, 256).astype(np.float64)
    n = counts.sum(axis=1)
    ok = n >= 2
    ic = (counts * (counts - 1)).sum(axis=1)[ok] / (n[ok] * (n[ok] - 1))
    return float(ic.mean()) if ic.size else 0.0


def repeating_xor(data: bytes) -> tuple[bytes, bytes, float] | None:
    """(key, plaintext, mean IC) when `data` reads as text under a repeating XOR key of 1..40 bytes."""
    a = _u8(data[:1 << 15])
    if a.size < 48:
        return None
    ics = {length: mean_column_ic(a, length) for length in range(1, min(MAX_XOR_KEY, a.size // 12) + 1)}
    best = max(ics.values())
    if best < 0.03:  # text is ~0.06; uniform bytes 0.0039
        return None
    length = min(L for L, v in ics.items() if v >= 0.85 * best)
    key = best_key_bytes([a[i::length] for i in range(length)])
    full = _u8(data)
    plain = (full ^ np.resize(_u8(key), full.size)).tobytes()
    if printable_fraction(plain) < 0.95 or not text_spans(plain) or not reads_as_text(plain):
        return None
    return key, plain, ics[length]


def _uniform(data: bytes) -> bool:
    """Byte frequencies consistent with uniform (chi-square, 255 degrees of freedom, p > 0.001)."""
    a = _u8(data[:1 << 16])
    if a.size < 512:
        return False
    expected = a.size / 256
    chi2 = float(((np.bincount(a, minlength=256) - expected) ** 2).sum() / expected)
    return chi2 < 330.5  # the 0.999 quantile of chi-square(255)


def repeating_xor_joint(chunks: list[bytes]) -> tuple[bytes, list[bytes], float] | None:
    """(key, plaintexts, mean IC) when every chunk is text under one repeating XOR key that restarts
    at each chunk (message): key length and key bytes from columns pooled over all chunks."""
    arrays = [_u8(c[:1 << 14]) for c in chunks if len(c) >= 16]
    if len(arrays) < 2:
        return None
    both = np.concatenate(arrays)
    positions = np.concatenate([np.arange(a.size) for a in arrays])
    ics = {}
    for length in range(1, min(MAX_XOR_KEY, min(a.size for a in arrays) // 2) + 1):
        cols = positions % length
        counts = np.bincount(cols * 256 + both, minlength=length * 256).reshape(length, 256).astype(np.float64)
        n = counts.sum(axis=1)
        ok = n >= 2
        ics[length] = float(((counts * (counts - 1)).sum(axis=1)[ok] / (n[ok] * (n[ok] - 1))).mean()) if ok.any() else 0.0
    if not ics or max(ics.values()) < 0.03:
        return None
    best = max(ics.values())
    length = min(L for L, v in ics.items() if v >= 0.85 * best)
    cols = positions % length
    counts = np.bincount(cols * 256 + both, minlength=length * 256).reshape(length, 256).astype(np.float64)
    key = column_argmax(counts).tobytes()
    ks = np.resize(_u8(key), max(len(c) for c in chunks))
    plains = [(_u8(c) ^ ks[:len(c)]).tobytes() for c in chunks]
    if sum(reads_as_text(p) for p in plains) * 2 < len(plains):
        return None
    return key, plains, ics[length]


# --- keystream reuse --------------------------------------------------------------------------

XOR_WINDOW = 4096  # bytes of two messages compared for keystream reuse


def xor_text_share(a: bytes, b: bytes) -> tuple[float, int]:
    """Share of bit-7-clear bytes among the non-zero bytes of a^b past their common prefix, and how many
    were compared. Two messages that are mostly identical (a retransmission, a repeated fragment) are
    not two texts under one keystream: when over 30% of a^b is zero, nothing is compared."""
    n = min(len(a), len(b), XOR_WINDOW)
    x = _u8(a[:n]) ^ _u8(b[:n])
    nz = np.flatnonzero(x)
    if nz.size == 0:
        return 0.0, 0
    x = x[nz[0]:]
    nonzero = x[x != 0]
    if nonzero.size < 0.7 * x.size:
        return 0.0, 0
    return float(np.count_nonzero(nonzero < 0x80)) / nonzero.size, int(nonzero.size)


def readable_text_bytes(plain: bytes) -> int:
    """Bytes of `plain` in printable spans that read as text on their own: where a keystream is known
    for only part of a message (the columns few messages reach, padding), the rest stays noise."""
    return sum(e - s for s, e in text_spans(plain, min_len=MIN_READABLE_SPAN) if reads_as_text(plain[s:e]))


def reads_as_text(plain: bytes) -> bool:
    """Recovered bytes that are text, not a lucky mapping of binary (zero padding XOR 0x20 is all
    spaces): printable, mostly letters, spaces between words."""
    n = len(plain)
    if n < 16 or printable_fraction(plain) < 0.9:
        return False
    letters = count_of(plain, _LETTERS) / n
    spaces = plain.count(b" ") / n
    if not (letters >= 0.5 and 0.03 <= spaces <= 0.35):
        return False
    a = _u8(plain[:4096])
    return float(bigram_table()[a[:-1], a[1:]].mean()) >= MIN_BIGRAM_FIT


def keystream_groups(messages: list[Message]) -> list[list[int]]:
    """Groups (indices) of messages whose pairwise XOR reads as XORed text: one keystream.

    Each message is compared with every later one in one numpy pass (the same rule as
    `xor_text_share`, over the first XOR_WINDOW bytes), so n messages cost n array operations."""
    n = len(messages)
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    if n < 2:
        return []
    width = min(max(len(m.data) for m in messages), XOR_WINDOW)
    lengths = np.array([min(len(m.data), width) for m in messages])
    matrix = np.zeros((n, width), dtype=np.uint8)
    for i, m in enumerate(messages):
        matrix[i, :lengths[i]] = _u8(m.data[:width])
    cols = np.arange(width)
    for i in range(n - 1):
        x = matrix[i + 1:] ^ matrix[i]
        valid = cols < np.minimum(lengths[i + 1:], lengths[i])[:, None]
        nonzero = (x != 0) & valid
        any_nz = nonzero.any(axis=1)
        first = np.where(any_nz, nonzero.argmax(axis=1), 0)
        span = np.minimum(lengths[i + 1:], lengths[i]) - first  # bytes past the common prefix
        count = nonzero.sum(axis=1)
        low = ((x < 0x80) & nonzero).sum(axis=1)
        ok = any_nz & (count >= 0.7 * span) & (count >= MIN_XOR_OVERLAP)
        ok &= low >= XOR_TEXT_SHARE * np.maximum(count, 1)
        for j in np.flatnonzero(ok):
            parent[find(i)] = find(i + 1 + int(j))
    groups: dict[int, list[int]] = {}
    for i in range(n):
        groups.setdefault(find(i), []).append(i)
    return [g for g in groups.values() if len(g) >= 2]


def recover_keystream(ciphertexts: list[bytes]) -> bytes:
    """The keystream that makes every ciphertext read most like text: per-column fit, then cribs of
    protocol text dragged along each ciphertext where they improve the fit of all the others."""
    length = max(len(c) for c in ciphertexts)
    arrays = [_u8(c) for c in ciphertexts]
    columns = []
    for p in range(length):
        columns.append(np.array([a[p] for a in arrays if a.size > p], dtype=np.uint8))
    key = bytearray(best_key_bytes(columns))
    if len(ciphertexts) >= 2:
        locked = _drag_cribs(arrays, key)
        _refine_with_bigrams(arrays, key, locked)
    return bytes(key)


def _refine_with_bigrams(arrays: list[np.ndarray], key: bytearray, locked: np.ndarray, passes: int = 4) -> None:
    """Re-choose each keystream byte by how well the bytes it yields fit their decrypted neighbours
    (bigram model) plus the unigram weights, over every message. All positions are re-scored at once
    per pass (against the previous pass's neighbours); a few passes settle it."""
    ks = np.frombuffer(bytes(key), dtype=np.uint8).copy()
    width = ks.size
    grid = np.zeros((len(arrays), width + 2), dtype=np.uint8)  # one column of padding on each side
    valid = np.zeros((len(arrays), width + 2), dtype=bool)
    for i, a in enumerate(arrays):
        grid[i, 1:a.size + 1] = a[:width]
        valid[i, 1:a.size + 1] = True
    bigram = bigram_table().astype(np.float32)
    weight = _WEIGHT.astype(np.float32)
    body = grid[:, 1:-1]
    # Unigram fit of every candidate key byte at every position; only the best few are re-scored.
    counts = np.zeros((width, 256), dtype=np.float32)
    cols = np.broadcast_to(np.arange(width), body.shape)
    np.add.at(counts, (cols[valid[:, 1:-1]], body[valid[:, 1:-1]]), 1.0)
    rows, byts = np.nonzero(counts)
    contrib = counts[rows, byts][:, None] * weight[_XOR_TABLE].T[byts]
    starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
    unigram_all = np.zeros((width, 256), dtype=np.float32)  # [p, k] = sum_c counts[p, c] * W[k ^ c]
    unigram_all[rows[starts]] = np.add.reduceat(contrib, starts, axis=0)
    top = np.argsort(unigram_all, axis=1)[:, -TOP_CANDIDATES:].astype(np.uint8)  # width x K
    top = np.concatenate([top, ks[:, None]], axis=1)  # the current byte always competes
    unigram = np.take_along_axis(unigram_all, top.astype(np.intp), axis=1)
    chars = body[:, :, None] ^ top[None]  # messages x positions x K
    prev_ok = (valid[:, :-2] & valid[:, 1:-1])[:, :, None]
    next_ok = (valid[:, 2:] & valid[:, 1:-1])[:, :, None]
    rows = np.arange(width)
    for _ in range(passes):
        plain = grid ^ np.concatenate(([0], ks, [0])).astype(np.uint8)[None, :]
        scores = unigram + np.where(prev_ok, bigram[plain[:, :-2, None], chars], 0.0).sum(axis=0)
        scores += np.where(next_ok, bigram[chars, plain[:, 2:, None]], 0.0).sum(axis=0)
        pick = np.argmax(scores, axis=1)
        best = top[rows, pick]
        better = (best != ks) & ~locked & (scores[rows, pick] > scores[:, -1] + 1e-6)
        if not better.any():
            break
        ks[better] = best[better]
        top[:, -1] = ks
        unigram[:, -1] = unigram_all[rows, ks]
        chars[:, :, -1] = body ^ ks[None, :]
    key[:] = ks.tobytes()


def _text_grid(arrays: list[np.ndarray], width: int) -> tuple[np.ndarray, np.ndarray]:
    grid = np.zeros((len(arrays), width), dtype=np.uint8)
    valid = np.zeros((len(arrays), width), dtype=bool)
    for i, a in enumerate(arrays):
        grid[i, :min(a.size, width)] = a[:width]
        valid[i, :min(a.size, width)] = True
    return grid, valid


def _segment_score(grid: np.ndarray, valid: np.ndarray, key: np.ndarray, start: int) -> float:
    seg = grid[:, start:start + key.size] ^ key[None, :]
    return float(_WEIGHT[seg][valid[:, start:start + key.size]].sum())


_NOT_TEXT = np.ones(256, dtype=bool)
_NOT_TEXT[0x20:0x7F] = False
_NOT_TEXT[[0x09, 0x0A, 0x0D]] = False


def _drag_cribs(arrays: list[np.ndarray], key: bytearray) -> np.ndarray:
    """Slide each crib along each ciphertext; where the keystream it implies turns every ciphertext
    into text at that offset and fits better than the current guess, take it."""
    current = np.frombuffer(bytes(key), dtype=np.uint8).copy()
    locked = np.zeros(current.size, dtype=bool)  # bytes a crib fixed: the bigram pass leaves them
    grid, valid = _text_grid(arrays, current.size)
    for crib in CRIBS:
        c = np.frombuffer(crib, dtype=np.uint8)
        length = c.size
        if current.size < length:
            continue
        all_windows = np.lib.stride_tricks.sliding_window_view(grid, length, axis=1)  # M x O x L
        ok_windows = np.lib.stride_tricks.sliding_window_view(valid, length, axis=1).all(axis=2)  # M x O
        for m in range(min(len(arrays), CRIB_SOURCES)):
            usable = np.flatnonzero(ok_windows[m][:CRIB_SPAN])  # protocol text sits near a message's start
            if usable.size == 0:
                continue
            cand = all_windows[m, usable] ^ c  # O' x L: the keystream the crib implies at each offset
            bad = (_NOT_TEXT[all_windows[:, usable] ^ cand[None]].any(axis=2)) & ok_windows[:, usable]
            fits = usable[~bad.any(axis=0)]
            if fits.size == 0:
                continue
            # Fit of every message under the crib's keystream and under the current one, at each offset.
            segs = all_windows[:, fits]  # M x F x L
            mask = np.lib.stride_tricks.sliding_window_view(valid, length, axis=1)[:, fits]
            cands = segs[m] ^ c  # F x L
            here = np.lib.stride_tricks.sliding_window_view(current, length)[fits]  # F x L
            new_fit = np.where(mask, _WEIGHT[segs ^ cands[None]], 0.0).sum(axis=(0, 2))
            old_fit = np.where(mask, _WEIGHT[segs ^ here[None]], 0.0).sum(axis=(0, 2))
            for j in np.flatnonzero((new_fit > old_fit + 4) | (fits == 0))[:64]:
                off = int(fits[j])
                k = cands[j]
                if np.array_equal(k, current[off:off + length]) or locked[off:off + length].any():
                    continue
                # A crib that turns every message into text wins where the fit improves; where all
                # messages carry the same bytes (a shared header: frequencies cannot tell there) only a
                # header crib, at the start of a message, may claim them.
                degenerate = off == 0 and crib in _HEADER_CRIBS and bool(
                    (grid[valid[:, 0], :length] == grid[m, :length]).all())
                if degenerate or new_fit[j] > old_fit[j] + 4:
                    current[off:off + length] = k
                    locked[off:off + length] = True
    key[:] = current.tobytes()
    return locked


# --- ECB, fixed IV, static framing ------------------------------------------------------------

def _random_block(block: bytes) -> bool:
    return len(set(block)) >= len(block) * 0.65 and printable_fraction(block) < 0.8


def ecb_repeats(messages: list[Message], size: int) -> list[tuple[bytes, list[tuple[int, int]]]]:
    """Ciphertext-looking `size`-byte blocks that recur at block-aligned distance inside one message,
    or across messages at different message offsets: [(block, [(message index, offset)])]."""
    windows, owners, offsets = [], [], []
    budget = 1 << 16  # bytes examined
    for mi, m in enumerate(messages):
        a = _u8(m.data[:budget])
        budget -= a.size
        if a.size < size:
            continue
        w = np.lib.stride_tricks.sliding_window_view(a, size)
        windows.append(np.ascontiguousarray(w).view(f"V{size}").ravel())
        owners.append(np.full(w.shape[0], mi))
        offsets.append(np.arange(w.shape[0]))
        if budget <= 0:
            break
    if not windows:
        return []
    allw = np.concatenate(windows)
    _, inverse, counts = np.unique(allw, return_inverse=True, return_counts=True)
    repeated = np.flatnonzero(counts[inverse] >= 2)
    if repeated.size == 0:
        return []
    own, offs = np.concatenate(owners), np.concatenate(offsets)
    groups: dict[int, list[tuple[int, int]]] = {}
    for i in repeated[:4096]:
        groups.setdefault(int(inverse[i]), []).append((int(own[i]), int(offs[i])))
    out = []
    for where in groups.values():
        mi, off = where[0]
        blk = messages[mi].data[off:off + size]
        if not _random_block(blk):
            continue
        # ECB ciphertext is whole blocks from its alignment to the message end, and an equal plaintext
        # block shows as an equal run of whole blocks; a repeated id or a retransmitted fragment does not.
        where = [(m, o) for m, o in where if (len(messages[m].data) - o) % size == 0]
        aligned = sum(_aligned_run(messages, where[0], w, size) for w in where[1:])
        if len(where) < 2 or aligned * 2 < len(where) - 1:
            continue
        uniq = sorted(set(where))
        places = Counter(o for _, o in uniq)
        if len(uniq) >= 3 and places.most_common(1)[0][1] * 2 >= len(uniq):
            continue  # mostly at one message offset: a header field (a session id), not repeated plaintext
        tails = Counter(len(messages[m].data) - o for m, o in uniq)
        if len(uniq) >= 3 and tails.most_common(1)[0][1] * 2 >= len(uniq):
            continue  # mostly at one distance from the end: a trailer field
        adjacent = any(a[0] == b[0] and b[1] - a[1] == size for a, b in zip(uniq, uniq[1:]))
        same_msg = any(a[0] == b[0] and (b[1] - a[1]) % size == 0 and b[1] != a[1]
                       for a, b in zip(uniq, uniq[1:]))
        offsets_seen = {o for _, o in uniq}
        if same_msg or (len(offsets_seen) >= 2 and len({m for m, _ in uniq}) >= 3):
            out.append((blk, uniq, adjacent))
    if size < 16 and len(out) < 2 and not any(adj for _, _, adj in out):
        return []  # 8-byte blocks: one repeated value is as likely an 8-byte id; ECB shows more
    return [(blk, uniq) for blk, uniq, _ in out]


def _aligned_run(messages: list[Message], first: tuple[int, int], other: tuple[int, int], size: int) -> bool:
    """The identical run around two occurrences of a block starts and ends on block boundaries."""
    a, oa = messages[first[0]].data, first[1]
    b, ob = messages[other[0]].data, other[1]
    left = 0
    while oa - left > 0 and ob - left > 0 and a[oa - left - 1] == b[ob - left - 1] and left < 4096:
        left += 1
    right = size
    while oa + right < len(a) and ob + right < len(b) and a[oa + right] == b[ob + right] and right < 4096:
        right += 1
    if first[0] == other[0] and abs(oa - ob) < left + right:  # overlapping runs: a periodic fill
        return (ob - oa) % size == 0
    # A byte or so on either side may match by chance (1 in 256 each).
    return left % size <= 1 and right % size <= 1


def shared_prefix(a: bytes, b: bytes) -> int:
    n = min(len(a), len(b))
    x = _u8(a[:n]) ^ _u8(b[:n])
    nz = np.flatnonzero(x)
    return int(nz[0]) if nz.size else n


def fixed_iv_pairs(messages: list[Message], size: int = 16) -> list[tuple[int, int, int]]:
    """(i, j, prefix) for messages sharing a block-aligned random-looking prefix of >= one block that
    then differ in (nearly) every byte of the next block: identical first blocks under CBC."""
    out = []
    common = min((shared_prefix(messages[0].data, m.data) for m in messages[1:]), default=0)
    for i in range(len(messages)):
        for j in range(i + 1, len(messages)):
            a, b = messages[i].data, messages[j].data
            p = shared_prefix(a, b)
            if p <= common + 1:
                continue  # only what every message shares (a tag or connection id in every packet)
            if p < size or p >= min(len(a), len(b)) or not _random_block(a[:p][-size:]):
                continue
            start = p - p % size
            nxt_a, nxt_b = a[start:start + size], b[start:start + size]
            if len(nxt_a) < size or len(nxt_b) < size:
                continue
            differ = sum(x != y for x, y in zip(nxt_a, nxt_b))
            if p % size <= 1 and differ >= size - 2:  # divergence at a block boundary, avalanche after
                out.append((i, j, start))
    return out


def static_fields(messages: list[Message], scan: int = 32) -> list[tuple[int, bytes]]:
    """(offset, bytes) runs of >= 4 bytes equal at the same offset in every message (>= 4 messages)."""
    if len(messages) < 4:
        return []
    n = min(scan, min(len(m.data) for m in messages))
    if n < 4:
        return []
    first = messages[0].data[:n]
    same = [all(m.data[i] == first[i] for m in messages) for i in range(n)]
    out, i = [], 0
    while i < n:
        if same[i]:
            j = i
            while j < n and same[j]:
                j += 1
            if j - i >= 4:
                out.append((i, first[i:j]))
            i = j
        else:
            i += 1
    return out


@register
class CryptoWeakness(Analyzer):
    """Encryption that hides less than it seems: XOR keys, reused keystreams, ECB, fixed IVs."""

    id = ID
    cost = 0.6  # relative CPU cost (Analyzer.cost), measured at 1M packets: balances analyze --jobs
    finish_reads_flows = False  # finish works from what on_flow kept
    description = ("Finds weak encryption across messages without keys: repeating-key XOR (IC key length, key "
                   "recovery), keystream reuse within and across flows (XOR of ciphertexts, crib-dragging), ECB "
                   "repeated blocks, fixed-IV CBC first blocks, static framing fields; reports recovered text.")

    def __init__(self, knowledge) -> None:
        super().__init__(knowledge)
        self._pool: list[Message] = []
        self._flagged: set[str] = set()
        self._packets: dict[str, PacketIndex] = {}  # flows with findings, for evidence in finish()

    # -- emitting --------------------------------------------------------------------------------
    def _finding(self, flow_id: str, observable: str, kind: str, value, confidence: float, **evidence) -> Finding:
        index = self._packets.get(flow_id)
        if index is not None and evidence.get("offset") is not None and evidence.get("direction") in DIRECTION_NAMES:
            evidence["packet"] = index.packet(DIRECTION_NAMES.index(evidence["direction"]), evidence["offset"])
        return Finding(analyzer=ID, observable=observable, kind=kind, flow=flow_id, value=value,
                       evidence={k: v for k, v in evidence.items() if v is not None}, confidence=confidence)

    def _recovered(self, m: Message, plain: bytes, rule: str, confidence: float, **extra) -> list[Finding]:
        out = []
        for pos in range(0, max(len(plain), 1), CONTENT_WINDOW - 64):
            window = plain[pos:pos + CONTENT_WINDOW]
            if not text_spans(window, min_len=16):
                continue
            out.append(self._finding(m.flow, "content", "text", as_text(window), confidence, rule=rule,
                                     direction=DIRECTION_NAMES[m.direction], offset=m.offset, length=len(m.data),
                                     decoded_offset=pos, time=round(m.time, 6), excerpt=excerpt(window),
                                     tokens=canary_tokens(window)[:32], **extra))
            if pos + CONTENT_WINDOW >= len(plain):
                break
        return out

    def _weak(self, flow_id: str, weakness: str, recovered: bool, confidence: float, **evidence) -> list[Finding]:
        self._flagged.add(flow_id)
        return [
            self._finding(flow_id, "content", "weak-cipher", {"weakness": weakness, "recovered": recovered},
                          confidence, rule=weakness, **evidence),
            self._finding(flow_id, "content", "payload-class", {"class": "weak-cipher", "entropy": None},
                          0.97, rule=weakness, weakness=weakness, recovered=recovered),
        ]

    # -- per flow ----------------------------------------------------------------------------------
    def on_flow(self, flow: Flow) -> Iterable[Finding]:
        layout = views.layout(flow)
        if framed_by_real_protocol(flow, layout):
            return []
        every = flow_messages(flow, layout)
        if not every:
            return []
        self._packets[flow.id] = PacketIndex(flow)
        out: list[Finding] = []
        # One key and nonce used both ways: the two directions' messages pooled read better than either.
        both = [m for m in every if looks_like_ciphertext(m.data)]
        if {m.direction for m in both} == {0, 1}:
            for group in keystream_groups(both):
                if len({both[i].direction for i in group}) == 2:
                    out += self._keystream([both[i] for i in group], "keystream-reuse")
            if out:
                return out
        for direction in (0, 1):
            mine = [m for m in every if m.direction == direction]
            opened = self._held_keys(flow, mine)
            if opened:
                out.extend(opened)
                continue
            xored = self._repeating_xor(flow, mine)
            if xored:
                out.extend(xored)
                continue
            cipher = [m for m in mine if looks_like_ciphertext(m.data)]
            if cipher:
                out.extend(self._direction(flow, cipher))
        pooled = False
        if flow.id not in self._flagged and len(self._pool) < MAX_POOL:
            # Kept for finish(): the same keystream may recur across flows (a nonce reused per session).
            kept = [Message(m.flow, m.direction, m.offset, m.time, m.data[:2048])
                    for m in every[:8] if looks_like_ciphertext(m.data)]
            self._pool.extend(kept)
            pooled = bool(kept)
        if not pooled:
            self._packets.pop(flow.id, None)  # evidence is built; finish() will not need this flow
        return out

    def _held_keys(self, flow: Flow, msgs: list[Message]) -> list[Finding]:
        """Messages sealed as nonce(12) || AEAD ciphertext and tag under a key the adversary declared it
        holds (kinds aes-128-gcm, aes-256-gcm, chacha20-poly1305): opened, and read."""
        aeads = []
        for kind in HELD_KEY_KINDS:
            for grant in self.knowledge.of_kind(kind):
                try:
                    aeads.append((grant.name, ChaCha20Poly1305(grant.material) if kind.startswith("chacha")
                                  else AESGCM(grant.material)))
                except ValueError:  # wrong key length for the kind: nothing to try
                    continue
        if not aeads:
            return []
        out: list[Finding] = []
        opened = 0
        for m in msgs[:MAX_MESSAGES]:
            if len(m.data) < 12 + 16 + 1:
                continue
            for name, aead in aeads:
                try:
                    plain = aead.decrypt(m.data[:12], m.data[12:], None)
                except InvalidTag:
                    continue
                opened += 1
                out += self._recovered(m, plain, "held-key", 1.0, key=name)
                break
        if not opened:
            return []
        return out + self._weak(flow.id, "held-key", bool(out), 1.0, offset=msgs[0].offset,
                                time=round(msgs[0].time, 6), direction=DIRECTION_NAMES[msgs[0].direction],
                                messages=len(msgs), opened=opened)

    def _repeating_xor(self, flow: Flow, msgs: list[Message]) -> list[Finding]:
        """Repeating-key XOR over a direction's bytes: the key restarting per message, or running on."""
        msgs = [m for m in msgs if len(m.data) >= 48]
        if not msgs:
            return []
        joined = b"".join(m.data for m in msgs)
        head = joined[:8192]
        if printable_fraction(head) >= 0.9 and (english_score(head) >= 0.03 or count_of(head, _ENCODING_ALPHABET)
                                                 >= 0.97 * len(head)):
            return []  # already text, or an encoding (base64, base32, hex) the transforms undo
        if compressed_at(joined) or _uniform(joined):
            return []  # compressed, or bytes as even as a cipher's: no repeating key shows
        where = {"direction": DIRECTION_NAMES[msgs[0].direction], "messages": len(msgs)}
        for mode, chunks in (("per-message", [m.data for m in msgs]), ("stream", [joined])):
            if mode == "per-message" and len(chunks) > 1:
                joint = repeating_xor_joint(chunks)  # one key for all: its columns pool every message
                hits = [] if joint is None or not any(joint[0]) else [(joint[0], p, joint[2]) for p in joint[1]]
            else:
                hits = []
                for c in chunks:
                    h = repeating_xor(c)
                    if h is None or not any(h[0]):
                        break
                    hits.append(h)
            if not hits or len(hits) < len(chunks):
                continue
            if english_score(hits[0][1][:8192]) < english_score(chunks[0][:8192]) + 0.02:
                continue
            out = self._weak(flow.id, "repeating-key-xor", True, 0.95, key_hex=hits[0][0].hex(),
                             key_length=len(hits[0][0]), ic=round(hits[0][2], 4), mode=mode,
                             offset=msgs[0].offset, time=round(msgs[0].time, 6), **where)
            if mode == "per-message":
                for m, h in zip(msgs, hits):
                    out += self._recovered(m, h[1], "repeating-key-xor", 0.95, key_hex=h[0].hex())
            else:
                out += self._recovered(msgs[0], hits[0][1], "repeating-key-xor", 0.95, key_hex=hits[0][0].hex())
            return out
        return []

    def _direction(self, flow: Flow, msgs: list[Message]) -> list[Finding]:
        where = {"direction": DIRECTION_NAMES[msgs[0].direction], "messages": len(msgs)}
        # 2. keystream reuse among this direction's messages.
        out: list[Finding] = []
        for group in keystream_groups(msgs):
            out += self._keystream([msgs[i] for i in group], "keystream-reuse")
        if out:
            return out
        # 3. ECB (16-byte blocks, then 8-byte: 3DES, Blowfish).
        for size in (16, 8):
            reps = ecb_repeats(msgs, size)
            if reps:
                blk, places = reps[0]
                mi, off = places[0]
                return self._weak(flow.id, "ecb", False, min(0.95, 0.7 + 0.05 * len(reps)), block_size=size,
                                  repeated_blocks=len(reps), block_hex=blk.hex(), offset=msgs[mi].offset + off,
                                  length=size, time=round(msgs[mi].time, 6),
                                  places=[[msgs[i].offset + o, round(msgs[i].time, 6)] for i, o in places[:16]],
                                  **where)
        # 4. fixed-IV CBC.
        pairs = fixed_iv_pairs(msgs)
        if pairs:
            i, j, prefix = pairs[0]
            return self._weak(flow.id, "fixed-iv-cbc", False, 0.85, shared_prefix=prefix, pairs=len(pairs),
                              offset=msgs[i].offset, length=prefix, time=round(msgs[i].time, 6),
                              other_offset=msgs[j].offset, **where)
        # 5. static framing fields: not weak in itself, but structure the tap reads in every message.
        out = []
        for off, value in static_fields(msgs):
            out.append(self._finding(flow.id, "content", "static-framing", {"offset": off, "hex": value.hex()},
                                     0.8, rule="static-framing", offset=msgs[0].offset + off, length=len(value),
                                     **where))
        return out

    def _keystream(self, group: list[Message], rule: str) -> list[Finding]:
        key = recover_keystream([m.data for m in group])
        ks = _u8(key)
        out: list[Finding] = []
        readable = 0
        for m in group:
            a = _u8(m.data)
            plain = (a ^ ks[:a.size]).tobytes()
            if reads_as_text(plain) or readable_text_bytes(plain) >= MIN_READABLE_SPAN:
                readable += 1
                out += self._recovered(m, plain, rule, 0.9, group=len(group))
        if readable < max(2, len(group) // 4):
            # Not text under any keystream: only an overwhelming XOR statistic still says "one keystream".
            shares = [xor_text_share(group[i].data, group[j].data) for i in range(min(len(group), 6))
                      for j in range(i + 1, min(len(group), 6))]
            if len(group) < 3 or not all(share >= 0.99 and n >= 64 for share, n in shares):
                return []
            out = []
        flows = sorted({m.flow for m in group})
        for fid in flows:
            first = next(m for m in group if m.flow == fid)
            out += self._weak(fid, rule, readable >= max(2, len(group) // 4), 0.9, offset=first.offset,
                              time=round(first.time, 6), direction=DIRECTION_NAMES[first.direction],
                              messages=len(group), flows=len(flows), readable_messages=readable)
        return out

    def finish(self, flows: Sequence[Flow]) -> Iterable[Finding]:
        pool = [m for m in self._pool if m.flow not in self._flagged]
        out: list[Finding] = []
        for group in keystream_groups(pool):
            members = [pool[i] for i in group]
            if len({m.flow for m in members}) >= 2:
                out += self._keystream(members, "keystream-reuse-across-flows")
        return out
