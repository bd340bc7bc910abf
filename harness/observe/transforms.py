"""Reversible transforms a tap can undo without any key: base64, base32, hex, quoted-printable,
URL-encoding, rot13, zlib, gzip and raw deflate, and nestings of them (bounded depth and size).

`undo_transforms(data)` finds encoded or compressed regions in `data`, undoes them, and recurses into
what comes out; it returns each readable result with the chain of transforms that led to it and the
byte range of the outermost encoded region. Literal pre-filters (alphabet counts with bytes.translate,
`find`) run before any regex or decoder. Part of the observe tier: never sees the simulator or truth.
"""
from __future__ import annotations

import base64
import binascii
import codecs
import quopri
import re
import zlib
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

from harness.observe.text import (
    PrintableView,
    byte_class,
    count_of,
    long_runs,
    printable_fraction,
)

MAX_DEPTH = 5  # transforms in one chain
MAX_OUTPUT = 1 << 20  # bytes produced by one decode step
MAX_RESULTS = 64  # readable results per call
MIN_REGION = 24  # shortest encoded region considered (bytes)
READABLE = 0.85  # printable share above which a result is text

_B64_CHARS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="
_B64URL_CHARS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_="
_B32_CHARS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567="
_HEX_CHARS = b"0123456789abcdefABCDEF"
_B64_RUN = re.compile(rb"(?:[A-Za-z0-9+/]{4}(?:\r?\n)?){6,}(?:[A-Za-z0-9+/]{2,4}={0,2})?")
_B64URL_RUN = re.compile(rb"[A-Za-z0-9_-]{32,}={0,2}")
_B32_RUN = re.compile(rb"(?:[A-Z2-7]{8}\s*){3,}(?:[A-Z2-7]{2,8}={0,6})?")
_HEX_RUN = re.compile(rb"(?:[0-9a-fA-F]{2}){12,}")
_QP_HEX_ESCAPE = re.compile(rb"=[0-9A-F]{2}")
_URL_ESCAPE = re.compile(rb"%[0-9A-Fa-f]{2}")
_URL_RUN = re.compile(rb"[A-Za-z0-9%+._~!*'();:@&=$,/?#\[\]-]*(?:%[0-9A-Fa-f]{2}[A-Za-z0-9%+._~!*'();:@&=$,/?#\[\]-]*){3,}")
_WS = re.compile(rb"\s+")

# English letter and word cues for telling rot13 text from plain text.
_COMMON = (b" the ", b" and ", b" to ", b" of ", b" is ", b" in ", b" for ", b" please ", b" with ", b" on ",
           b"subject", b"from:", b"to:", b"the ", b"ing ", b"tion")


@dataclass(frozen=True)
class Decoded:
    """One readable result: `chain` outermost first, `offset`/`length` the outermost encoded region in
    the input, `data` what it decoded to."""

    chain: tuple[str, ...]
    offset: int
    length: int
    data: bytes

    @property
    def rule(self) -> str:
        return ">".join(self.chain)


_LETTERS = b"etaoin shrdlu"
_ROT13 = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
                         b"NOPQRSTUVWXYZABCDEFGHIJKLMnopqrstuvwxyzabcdefghijklm")
# rot13 maps bytes one to one and commutes with lower(): the cues of rot13(data) are the rot13'd cues
# counted in data, so the score of the rotated text needs no rotation.
_COMMON_ROT13 = tuple(w.translate(_ROT13) for w in _COMMON)
_LETTERS_ROT13 = _LETTERS.translate(_ROT13)


def _score(low: bytes, size: int, words: tuple[bytes, ...], letters: bytes) -> float:
    return (sum(low.count(w) for w in words) * 8 + count_of(low, letters) * 0.1) / size


def english_score(data: bytes) -> float:
    """Common English words and letters per byte: text scores ~0.1+, rot13 text or noise near 0."""
    if not data:
        return 0.0
    return _score(data.lower(), len(data), _COMMON, _LETTERS)


def _inflate(data: bytes, wbits: int) -> tuple[bytes, int] | None:
    """(output, bytes consumed) of one zlib/gzip/raw-deflate stream at the start of `data`."""
    d = zlib.decompressobj(wbits)
    try:
        out = d.decompress(data, MAX_OUTPUT)
    except zlib.error:
        return None
    if not out:
        return None
    if not d.eof and (wbits < 0 and len(out) < len(data)):  # raw deflate that neither ends nor expands
        return None
    consumed = len(data) - len(d.unused_data) - len(d.unconsumed_tail)
    return out, consumed


def compressed_at(data: bytes, pos: int = 0) -> tuple[str, int, bytes] | None:
    """(name, bytes consumed, output) of a gzip, zlib or raw deflate stream starting at `pos`."""
    head = data[pos:pos + 3]
    if len(data) - pos < 8:
        return None
    if head == b"\x1f\x8b\x08":
        got = _inflate(data[pos:], 31)
        return ("gzip", got[1], got[0]) if got else None
    if head[0] == 0x78 and head[1] in (0x01, 0x5E, 0x9C, 0xDA):
        got = _inflate(data[pos:], 15)
        return ("zlib", got[1], got[0]) if got else None
    if len(data) - pos >= 24 and (head[0] & 0x06) in (0x02, 0x04):  # BTYPE fixed or dynamic Huffman
        got = _inflate(data[pos:], -15)
        if got and len(got[0]) >= 16 and (printable_fraction(got[0][:4096]) > READABLE or compressed_at(got[0])):
            return "deflate", got[1], got[0]
    return None


_GZIP_MAGIC = re.compile(rb"\x1f\x8b\x08")
_ZLIB_MAGIC = re.compile(rb"\x78[\x01\x5e\x9c\xda]")


def _compressed(data: bytes) -> list[tuple[str, int, int, bytes]]:
    """(name, offset, length, output) of compressed streams: back to back from offset 0 (messages
    compressed one by one), then at gzip/zlib magic bytes elsewhere (bounded)."""
    out: list[tuple[str, int, int, bytes]] = []
    pos = 0
    while pos < len(data) and len(out) < MAX_RESULTS:
        got = compressed_at(data, pos)
        if got is None or got[1] <= 0:
            break
        out.append((got[0], pos, got[1], got[2]))
        pos += got[1]
    tried = 0
    for at in _magic_offsets(data, pos):
        if tried >= 256 or len(out) >= MAX_RESULTS:
            break
        if at < pos:
            continue
        tried += 1
        got = compressed_at(data, at)
        if got is not None and got[1] > 8:
            out.append((got[0], at, got[1], got[2]))
            pos = at + got[1]
    return out


def _magic_offsets(data: bytes, pos: int) -> list[int]:
    """Offsets of gzip/zlib magic bytes at or after `pos`, in order: the matches of the regex
    \\x1f\\x8b\\x08|\\x78[\\x01\\x5e\\x9c\\xda] (two never overlap), found as two regexes that each
    start with a literal, which the regex engine seeks at C speed (the alternation tries every byte)."""
    gzip_at = [m.start() for m in _GZIP_MAGIC.finditer(data, pos)]
    zlib_at = [m.start() for m in _ZLIB_MAGIC.finditer(data, pos)]
    return sorted(gzip_at + zlib_at) if gzip_at else zlib_at


# Where each region regex can match. Each one matches only bytes of its class and at least MIN_REGION
# (base64url: 32) bytes, and has no anchors or lookaround: every match lies inside one maximal run of
# its class bytes at least that long, and is found the same by a search over that run alone. So a
# regex runs only over such runs, found by translate + find: first the runs of a union class (encrypted
# data almost never holds 24 such bytes in a row, nor English text, whose words spaces split), then
# each alphabet's runs inside those. Base32 alone allows spaces: its runs are sought on their own.
_URL_CHARS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789%+._~!*'();:@&=$,/?#[]-"
_B64_CLASS = byte_class(_B64_CHARS + b"\r\n")
_B64URL_CLASS = byte_class(_B64URL_CHARS)
_B32_CLASS = byte_class(_B32_CHARS + b" \t\n\r\f\v")  # \s in a bytes pattern is [ \t\n\r\f\v]
_B32_LETTER_CLASS = byte_class(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")  # one [A-Z2-7]{8} group of _B32_RUN
_HEX_CLASS = byte_class(_HEX_CHARS)
_URL_CLASS = byte_class(_URL_CHARS)
_UNION_CLASS = byte_class(_B64_CHARS + b"\r\n" + _B64URL_CHARS + _HEX_CHARS + _URL_CHARS)  # all but base32


def _runs_within(data: bytes, windows: list[tuple[int, int]], table: bytes,
                 min_len: int = MIN_REGION) -> list[tuple[int, int]]:
    """The runs (>= `min_len`) of bytes marked in `table` inside `windows`, as stream ranges."""
    return [(ws + s, ws + e) for ws, we in windows for s, e in long_runs(data[ws:we].translate(table), min_len)]


def _matches(data: bytes, pattern: re.Pattern, table: bytes, min_len: int, windows: list[tuple[int, int]]):
    """`pattern.finditer(data)` for a pattern matching only bytes marked in `table`, >= `min_len` of
    them, searched only inside runs of such bytes (within `windows`, runs of a superset class)."""
    for s, e in _runs_within(data, windows, table, min_len):
        yield from pattern.finditer(data, s, e)


def _regions(data: bytes, view: PrintableView | None = None) -> list[tuple[str, int, int, bytes]]:
    """Encoded regions in `data` and what each decodes to (not yet judged readable). `view`:
    `PrintableView(data)`, when the caller has it."""
    out: list[tuple[str, int, int, bytes]] = []
    n = len(data)
    if n < MIN_REGION:
        return out
    if view is not None:
        # Every byte of the union alphabet is printable: its runs lie inside printable runs.
        printable = view.runs_of(MIN_REGION)
        windows = _runs_within(data, printable, _UNION_CLASS)
        # So does a base32 run, unless \f or \v (its only unprintable bytes) occur. Either way a match
        # begins with 8 base32 letters in a row, which are printable: with no such group, no match.
        if data.find(b"\f") < 0 and data.find(b"\v") < 0:
            b32_windows = _runs_within(data, printable, _B32_CLASS)
        elif _runs_within(data, view.runs_of(8), _B32_LETTER_CLASS, 8):
            b32_windows = long_runs(data.translate(_B32_CLASS), MIN_REGION)
        else:
            b32_windows = []
    else:
        windows = long_runs(data.translate(_UNION_CLASS), MIN_REGION)
        b32_windows = long_runs(data.translate(_B32_CLASS), MIN_REGION)
    for m in _matches(data, _B64_RUN, _B64_CLASS, MIN_REGION, windows):
        raw = _WS.sub(b"", m.group())
        raw = raw[: len(raw) - len(raw) % 4]
        if len(raw) < MIN_REGION or count_of(raw, _HEX_CHARS) == len(raw):
            continue  # pure hex digits: leave them to the hex decoder
        if count_of(raw, b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567=") == len(raw) and len(raw) % 8 == 0:
            continue  # base32 alphabet only: leave to the base32 decoder
        try:
            out.append(("base64", m.start(), m.end() - m.start(), base64.b64decode(raw, validate=True)))
        except (binascii.Error, ValueError):
            pass
    if windows and (data.find(b"-") >= 0 or data.find(b"_") >= 0):
        for m in _matches(data, _B64URL_RUN, _B64URL_CLASS, 32, windows):
            raw = m.group().rstrip(b"=")
            if b"-" not in raw and b"_" not in raw:
                continue
            try:
                out.append(("base64url", m.start(), m.end() - m.start(),
                            base64.urlsafe_b64decode(raw + b"=" * (-len(raw) % 4))))
            except (binascii.Error, ValueError):
                pass
    for m in _matches(data, _B32_RUN, _B32_CLASS, MIN_REGION, b32_windows):
        raw = _WS.sub(b"", m.group())
        if len(raw) % 8:
            continue
        try:
            out.append(("base32", m.start(), m.end() - m.start(), base64.b32decode(raw)))
        except (binascii.Error, ValueError):
            pass
    for m in _matches(data, _HEX_RUN, _HEX_CLASS, MIN_REGION, windows):
        try:
            out.append(("hex", m.start(), m.end() - m.start(), binascii.unhexlify(m.group())))
        except (binascii.Error, ValueError):
            pass
    if data.find(b"=") >= 0:
        escapes = len(_QP_HEX_ESCAPE.findall(data, 0, 1 << 16))
        if escapes >= 3:
            decoded = quopri.decodestring(data)
            if decoded != data:
                out.append(("quoted-printable", 0, n, decoded))
    if windows and data.find(b"%") >= 0 and len(_URL_ESCAPE.findall(data, 0, 1 << 16)) >= 3:
        # A URL match shorter than MIN_REGION is dropped below: runs shorter than that need no search.
        for m in _matches(data, _URL_RUN, _URL_CLASS, MIN_REGION, windows):
            if len(m.group()) >= MIN_REGION and len(_URL_ESCAPE.findall(m.group())) >= 3:
                out.append(("url", m.start(), m.end() - m.start(), unquote_to_bytes(m.group().replace(b"+", b" "))))
    return out


def _rot13(data: bytes, view: PrintableView | None = None) -> bytes | None:
    """The rot13 of printable `data` when it reads as English and `data` does not. `view`:
    `PrintableView(data)`, when the caller has it."""
    if len(data) < MIN_REGION or (view.fraction() if view is not None else printable_fraction(data)) < READABLE:
        return None
    low = data.lower()
    after = _score(low, len(data), _COMMON_ROT13, _LETTERS_ROT13)  # english_score(rot13(data))
    if after >= 0.12 and after > 2.5 * _score(low, len(data), _COMMON, _LETTERS) + 0.02:
        return codecs.encode(data.decode("latin-1"), "rot13").encode("latin-1")
    return None


def undo_transforms(data: bytes, *, max_depth: int = MAX_DEPTH, view: PrintableView | None = None) -> list[Decoded]:
    """Every readable result of undoing transforms in `data` (chains of at most `max_depth`). `view`:
    `harness.observe.text.PrintableView(data)`, when the caller has it (saves passes over `data`)."""
    results: list[Decoded] = []
    seen: set[bytes] = set()

    def visit(buf: bytes, chain: tuple[str, ...], offset: int, length: int) -> None:
        if len(results) >= MAX_RESULTS or len(chain) > max_depth:
            return
        key = buf[:256] + len(buf).to_bytes(4, "big")
        if chain and key in seen:
            return
        if chain:
            seen.add(key)
        top = view if not chain else None
        readable = (top.fraction(8192) if top is not None else printable_fraction(buf[:8192])) > READABLE
        found_inner = False
        steps = _compressed(buf)
        steps += _regions(buf, top) if len(chain) < max_depth else []
        for name, off, ln, out in steps:
            if not out or len(out) < 8:
                continue
            # An encoded region decodes to something we then judge: text, or another layer.
            outer = (offset + off, ln) if not chain else (offset, length)
            before = len(results)
            visit(out[:MAX_OUTPUT], chain + (name,), *outer)
            found_inner = found_inner or len(results) > before
        if readable and chain:
            rot = _rot13(buf)
            if rot is not None:
                results.append(Decoded(chain + ("rot13",), offset, length, rot))
            elif not found_inner or printable_fraction(buf) > 0.98:
                results.append(Decoded(chain, offset, length, buf))
        elif readable and not chain:
            rot = _rot13(buf, view)
            if rot is not None:
                results.append(Decoded(("rot13",), offset, length, rot))

    try:
        visit(data, (), 0, len(data))
    finally:
        # `visit` refers to itself through its closure: a reference cycle that would keep `view` (a copy
        # of `data`'s size) and `seen` until the cyclic collector runs, which the analyze path makes rare.
        del visit
    return results
