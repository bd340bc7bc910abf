"""The literal pre-filters of the text and transform scans find exactly what a plain regex scan finds.

Each fast path is compared with the straightforward regex version it replaced (kept here as the
reference) on mixtures of encoded, printable and random bytes.
"""
from __future__ import annotations

import base64
import binascii
import random
import re
from urllib.parse import quote_from_bytes

from hypothesis import given, settings
from hypothesis import strategies as st

from harness.observe import transforms
from harness.observe.text import (
    _ALNUM,
    PrintableView,
    byte_class,
    count_of,
    long_runs,
    printable_fraction,
    text_spans,
)

_RUN = re.compile(rb"[\t\n\r\x20-\x7e]{6,}")


def reference_text_spans(data: bytes, min_len: int = 24, max_gap: int = 3) -> list[tuple[int, int]]:
    spans: list[list[int]] = []
    for m in _RUN.finditer(data):
        if spans and m.start() - spans[-1][1] <= max_gap:
            spans[-1][1] = m.end()
        else:
            spans.append([m.start(), m.end()])
    return [(s, e) for s, e in spans if e - s >= min_len and count_of(data[s:e], _ALNUM) >= 8]


def reference_regions(data: bytes) -> list[tuple[str, int, int, bytes]]:
    """transforms._regions with each regex run over the whole buffer (no run pre-filter)."""
    saved = transforms._matches, transforms.long_runs
    transforms._matches = lambda data, pattern, *_: pattern.finditer(data)
    transforms.long_runs = lambda marks, min_len: [(0, len(marks))]
    try:
        return transforms._regions(data)
    finally:
        transforms._matches, transforms.long_runs = saved


_TEXT = b"Please send the contract to legal before Thursday, CNRY-0123456789abcdef, thanks.\r\n"


def _piece(rng: random.Random) -> bytes:
    text = _TEXT[: rng.randrange(4, len(_TEXT))]
    kind = rng.randrange(9)
    if kind == 0:
        return rng.randbytes(rng.randrange(1, 80)) if rng.random() < 0.8 else b"\f\v"[rng.randrange(2):]
    if kind == 1:
        return base64.b64encode(text)
    if kind == 2:
        return base64.urlsafe_b64encode(rng.randbytes(rng.randrange(20, 60)))
    if kind == 3:
        b32 = base64.b32encode(text)
        return b" ".join(b32[i:i + 8] for i in range(0, len(b32), 8))
    if kind == 4:
        return binascii.hexlify(text) if rng.random() < 0.5 else binascii.hexlify(text).upper()
    if kind == 5:
        return quote_from_bytes(text).encode()
    if kind == 6:
        return bytes(rng.choice(b"ABCDEF0123456789=%\r\n -_+/") for _ in range(rng.randrange(1, 60)))
    if kind == 7:
        b64 = base64.b64encode(text * 3)
        return b"\r\n".join(b64[i:i + 16] for i in range(0, len(b64), 16))
    return text


def _mixture(rng: random.Random) -> bytes:
    return b"".join(_piece(rng) for _ in range(rng.randrange(1, 12)))


def test_long_runs_are_the_maximal_runs():
    marks = bytes([1, 1, 0, 1, 1, 1, 0, 0, 1, 1, 1, 1])
    assert long_runs(marks, 3) == [(3, 6), (8, 12)]
    assert long_runs(marks, 1) == [(0, 2), (3, 6), (8, 12)]
    assert long_runs(b"", 2) == [] and long_runs(bytes(5), 1) == []
    assert byte_class(b"ab")[ord("a")] == 1 and byte_class(b"ab")[ord("c")] == 0


def test_fast_scans_equal_the_regex_scans_on_mixtures():
    rng = random.Random(7)
    for _ in range(1500):
        data = _mixture(rng)
        assert text_spans(data) == reference_text_spans(data)
        assert text_spans(data, min_len=16, max_gap=1) == reference_text_spans(data, 16, 1)
        expected = reference_regions(data)
        assert transforms._regions(data) == expected, data
        view = PrintableView(data)
        assert transforms._regions(data, view) == expected, data
        assert text_spans(data, view=view) == text_spans(data)
        assert view.runs_of(24) == long_runs(view.marks, 24)
        assert view.fraction(8192) == printable_fraction(data[:8192])
        assert view.fraction(8) == printable_fraction(data[:8]) and view.fraction() == printable_fraction(data)
        assert transforms.undo_transforms(data, view=view) == transforms.undo_transforms(data)


def test_fast_scans_equal_the_regex_scans_on_random_bytes():
    rng = random.Random(11)
    for _ in range(20):
        data = rng.randbytes(1 << 15)
        assert text_spans(data) == reference_text_spans(data)
        assert transforms._regions(data) == reference_regions(data)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([b"A", b"z", b"0", b"+", b"/", b"=", b"\r\n", b" ", b"%4", b"1", b"-", b"_",
                                 b"\x00", b"\xff", b"Q", b"7", b"f", b"\t", b".", b"hello ", b"\f", b"\v"]), max_size=120))
def test_fast_scans_equal_the_regex_scans_on_alphabet_soup(parts):
    data = b"".join(parts)
    assert text_spans(data) == reference_text_spans(data)
    assert transforms._regions(data) == reference_regions(data)
    assert transforms._regions(data, PrintableView(data)) == reference_regions(data)


_MAGIC = re.compile(rb"\x1f\x8b\x08|\x78[\x01\x5e\x9c\xda]")


def test_magic_offsets_are_the_regex_matches():
    rng = random.Random(5)
    soup = [b"\x1f\x8b\x08", b"\x78\x01", b"\x78\x5e", b"\x78\x9c", b"\x78\xda", b"\x78", b"\x1f", b"\x8b", b"\x00"]
    for _ in range(2000):
        data = b"".join(rng.choice(soup) for _ in range(rng.randrange(0, 40)))
        pos = rng.randrange(0, 4)
        assert list(transforms._magic_offsets(data, pos)) == [m.start() for m in _MAGIC.finditer(data, pos)]


def test_excerpt_keeps_its_output():
    from harness.observe.text import excerpt

    def reference(data, limit=120):
        text = data.decode("utf-8", "replace") if isinstance(data, (bytes, bytearray)) else data
        text = " ".join(text[: limit * 4].split())
        text = "".join(c if c.isprintable() else "." for c in text)
        return text if len(text) <= limit else text[: limit - 3] + "..."

    for data in ("\U0001F600".encode() * 200, "\u00e9".encode() * 300, b"\xf0\x9f" * 400, b"a " * 400):
        assert excerpt(data) == reference(data)
    rng = random.Random(3)
    for _ in range(3000):
        alphabet = [b"a", b"b", b" ", b"\t", b"\n", b"\x00", b"\x7f", b"\xc3", b"\xa9", b"\xff", b"\xe2\x82\xac",
                    b"\xe2\x82", b"\xf0\x9f\x98\x80", b"\xf0\x9f", b"\x80"]
        data = b"".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 700)))
        limit = rng.choice((5, 40, 120))
        assert excerpt(data, limit) == reference(data, limit)
        assert excerpt(data.decode("latin-1"), limit) == reference(data.decode("latin-1"), limit)


def test_rot13_is_judged_as_by_rotating_and_scoring():
    import codecs

    def reference(data):
        if len(data) < transforms.MIN_REGION or printable_fraction(data) < transforms.READABLE:
            return None
        rotated = codecs.encode(data.decode("latin-1"), "rot13").encode("latin-1")
        before, after = transforms.english_score(data), transforms.english_score(rotated)
        return rotated if after >= 0.12 and after > 2.5 * before + 0.02 else None

    rng = random.Random(13)
    english = _TEXT * 3 + b"The meeting is on the morning of the tenth, and please bring the notes for the board."
    found = 0
    for _ in range(1500):
        cut = english[rng.randrange(40):][: rng.randrange(10, 300)]
        data = codecs.encode(cut.decode(), "rot13").encode() if rng.random() < 0.5 else cut
        if rng.random() < 0.3:
            data = bytes(b if rng.random() < 0.9 else rng.randrange(256) for b in data)
        expected = reference(data)
        found += expected is not None
        assert transforms._rot13(data) == expected
        assert transforms._rot13(data, PrintableView(data)) == expected
    assert found > 100
    assert bytes(range(256)).translate(transforms._ROT13) == \
        codecs.encode(bytes(range(256)).decode("latin-1"), "rot13").encode("latin-1")


def test_smtp_unstuffing_equals_the_regex():
    from harness.analyzers.payload_dpi import _unstuff

    rng = random.Random(17)
    for _ in range(3000):
        raw = b"".join(rng.choice([b".", b"\n", b"\r", b"a", b"\n.", b".."]) for _ in range(rng.randrange(0, 20)))
        assert _unstuff(raw) == re.sub(rb"(^|\n)\.", rb"\1", raw), raw


def test_mime_parts_are_read_only_when_an_encoding_is_named():
    from harness.analyzers.payload_dpi import encoded_text_parts

    plain = b"Subject: hi\r\nFrom: a@b.example\r\n\r\nline one\r\nline two\r\n"
    assert encoded_text_parts(plain) == []
    body = base64.b64encode(b"the secret plan").decode()
    for name in (b"Content-Transfer-Encoding", b"CONTENT-transfer-Encoding"):
        mime = (b"MIME-Version: 1.0\r\nContent-Type: text/plain\r\n" + name + b": base64\r\n\r\n"
                + body.encode() + b"\r\n")
        assert encoded_text_parts(mime) == ["the secret plan"]
