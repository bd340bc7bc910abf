"""Printable text in payloads: runs, e-mail addresses, canary-shaped tokens, excerpts, inflation.

Part of the observe tier: it sees only observed flows, never the simulator or its truth.
"""
from __future__ import annotations

import re
import zlib

import numpy as np

_ALNUM = bytes(range(0x30, 0x3A)) + bytes(range(0x41, 0x5B)) + bytes(range(0x61, 0x7B))
_PRINTABLE = bytes([9, 10, 13]) + bytes(range(0x20, 0x7F))
CANARY = re.compile(rb"\bCNRY-[0-9a-f]{16}\b")
EMAIL = re.compile(rb"[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63})*\.[A-Za-z]{2,24}")

MIN_TEXT = 24  # bytes: shortest printable run reported as content
MAX_GAP = 3  # non-printable bytes bridged when merging runs
MIN_ALNUM = 8  # a run "of substance" holds at least this many letters/digits


def count_of(data: bytes, alphabet: bytes) -> int:
    """How many bytes of `data` belong to `alphabet`."""
    return len(data) - len(data.translate(None, alphabet))


def printable_fraction(data: bytes) -> float:
    return count_of(data, _PRINTABLE) / len(data) if data else 0.0


def byte_class(alphabet: bytes) -> bytes:
    """A bytes.translate table marking the bytes of `alphabet` 1 and every other byte 0 (for `long_runs`)."""
    table = bytearray(256)
    for b in alphabet:
        table[b] = 1
    return bytes(table)


def long_runs(marks: bytes, min_len: int) -> list[tuple[int, int]]:
    """[start, end) of each maximal run of 1-bytes in `marks` (`data.translate(byte_class(...))`) at
    least `min_len` long: C-speed `find`s, no regex, a Python step per long run only."""
    out: list[tuple[int, int]] = []
    if min_len <= 0:
        raise ValueError("min_len must be positive")
    needle = b"\x01" * min_len
    n = len(marks)
    pos = marks.find(needle)
    while pos >= 0:  # pos is a run's start: the search began at 0 or just past a 0-byte
        end = marks.find(b"\x00", pos + min_len)
        end = n if end < 0 else end
        out.append((pos, end))
        pos = marks.find(needle, end)
    return out


_PRINTABLE_CLASS = byte_class(_PRINTABLE)


class PrintableView:
    """One pass over a buffer's bytes, shared by `text_spans` and the transform scans of that buffer:
    `marks` has 1 for each printable byte (tab, LF, CR, space..~) and 0 for any other; `runs` holds
    [start, end) of each maximal run of >= 6 printable bytes."""

    __slots__ = ("marks", "runs")

    def __init__(self, data: bytes) -> None:
        self.marks = data.translate(_PRINTABLE_CLASS)
        self.runs = long_runs(self.marks, 6)

    def runs_of(self, min_len: int) -> list[tuple[int, int]]:
        """The maximal printable runs at least `min_len` (>= 6) long."""
        return [r for r in self.runs if r[1] - r[0] >= min_len]

    def fraction(self, end: int | None = None) -> float:
        """`printable_fraction(data[:end])` (end >= 0)."""
        size = len(self.marks) if end is None else min(len(self.marks), end)
        if size < 1024:  # small: bytes.count beats numpy's call overhead
            return self.marks.count(1, 0, size) / size if size > 0 else 0.0
        return int(np.count_nonzero(np.frombuffer(self.marks, dtype=np.bool_, count=size))) / size


def text_spans(data: bytes, min_len: int = MIN_TEXT, max_gap: int = MAX_GAP,
               view: PrintableView | None = None) -> list[tuple[int, int]]:
    """[start, end) of printable text in `data`: runs of >= 6 printable bytes merged across gaps of
    at most `max_gap` bytes, kept when >= `min_len` long and holding >= 8 letters/digits. `view`:
    `PrintableView(data)`, when the caller has it already."""
    spans: list[list[int]] = []
    # The runs a regex [\t\n\r\x20-\x7e]{6,} would match (maximal, >= 6 long), found by translate +
    # find: encrypted streams hold many short printable runs, and a regex attempt per byte cost more.
    for s, e in (view or PrintableView(data)).runs:
        if spans and s - spans[-1][1] <= max_gap:
            spans[-1][1] = e
        else:
            spans.append([s, e])
    return [(s, e) for s, e in spans
            if e - s >= min_len and count_of(data[s:e], _ALNUM) >= MIN_ALNUM]


_CONTROL_TO_REPLACEMENT = {c: 0xFFFD for c in list(range(0, 32)) + [127] if c not in (9, 10, 13)}


def as_text(data: bytes) -> str:
    """Bytes as text: UTF-8 where valid, control bytes other than tab/CR/LF shown as U+FFFD."""
    return data.decode("utf-8", "replace").translate(_CONTROL_TO_REPLACEMENT)


def excerpt(data: bytes | str, limit: int = 120) -> str:
    """A short printable excerpt: whitespace runs collapsed, other unprintables shown as '.'."""
    if isinstance(data, (bytes, bytearray)):
        # Only the first limit * 4 characters are read. Each comes from at most 4 bytes, and UTF-8
        # decodes a character from its own bytes alone: decoding limit * 16 + 3 bytes gives them all.
        text = data[: limit * 16 + 3].decode("utf-8", "replace")
    else:
        text = data
    text = " ".join(text[: limit * 4].split())
    # The replacement keeps the length, so only the characters that can be shown need it.
    shown = text[:limit]
    if not shown.isprintable():
        shown = "".join(c if c.isprintable() else "." for c in shown)
    return shown if len(text) <= limit else shown[: limit - 3] + "..."


def inflate(data: bytes, cap: int = 1 << 20) -> bytes | None:
    """The inflated bytes (at most `cap`) when `data` starts a zlib or gzip stream, else None."""
    if len(data) < 8:
        return None
    if data[:2] == b"\x1f\x8b" and data[2] == 8:
        wbits = 31
    elif data[0] == 0x78 and data[1] in (0x01, 0x5E, 0x9C, 0xDA) and (data[0] << 8 | data[1]) % 31 == 0:
        wbits = 15
    else:
        return None
    try:
        out = zlib.decompressobj(wbits).decompress(data, cap)
    except zlib.error:
        return None
    return out or None


def canary_tokens(data: bytes) -> list[str]:
    """Canary-shaped tokens (`CNRY-` + 16 hex digits), in order of first appearance."""
    if data.find(b"CNRY-") < 0:
        return []
    return list(dict.fromkeys(m.group().decode() for m in CANARY.finditer(data)))


def email_addresses(data: bytes) -> list[str]:
    """E-mail addresses (lower-cased), in order of first appearance."""
    if data.find(b"@") < 0:
        return []
    return list(dict.fromkeys(m.group().decode().lower() for m in EMAIL.finditer(data)))


def lines(data: bytes, start: int = 0, end: int | None = None):
    """(line start, line end without the EOL, next line start) for each line of data[start:end]."""
    end = len(data) if end is None else end
    pos = start
    while pos < end:
        nl = data.find(b"\n", pos, end)
        if nl < 0:
            yield pos, end, end
            return
        stop = nl - 1 if nl > pos and data[nl - 1] == 0x0D else nl
        yield pos, stop, nl + 1
        pos = nl + 1
