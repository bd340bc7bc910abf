"""harness.observe.transforms: reversible encodings and compression undone, nested, bounded."""
from __future__ import annotations

import base64
import binascii
import codecs
import gzip
import quopri
import random
import zlib
from urllib.parse import quote_from_bytes

import pytest

from harness.observe.transforms import english_score, undo_transforms

from .conftest import C, TOKEN, make_flow, pick, run

TEXT = (f"Please send the signed contract to the legal team before the meeting on thursday {TOKEN} and "
        "confirm the budget figures for the quarter with the board.").encode()


def _deflate(data: bytes) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush()


@pytest.mark.parametrize("name,encode", [
    ("base64", base64.b64encode), ("base32", base64.b32encode), ("hex", binascii.hexlify),
    ("url", lambda t: quote_from_bytes(t).encode()),
    ("quoted-printable", lambda t: quopri.encodestring(t.replace(b" ", b"\xa0 "), quotetabs=True)),
    ("rot13", lambda t: codecs.encode(t.decode(), "rot13").encode()),
    ("zlib", zlib.compress), ("gzip", lambda t: gzip.compress(t, mtime=0)), ("deflate", _deflate),
])
def test_each_transform_is_undone(name, encode):
    results = undo_transforms(b"x=1;" + encode(TEXT) + b"\r\n" if name not in ("zlib", "gzip", "deflate")
                              else encode(TEXT))
    assert any(r.chain == (name,) and TOKEN.encode() in r.data for r in results), [r.rule for r in results]


def test_nestings_are_undone_to_the_text_with_their_chain():
    nested = base64.b64encode(gzip.compress(binascii.hexlify(zlib.compress(TEXT)), mtime=0))
    (deepest,) = [r for r in undo_transforms(nested) if TOKEN.encode() in r.data]
    assert deepest.chain == ("base64", "gzip", "hex", "zlib") and deepest.offset == 0
    assert deepest.length == len(nested)


def test_depth_and_size_are_bounded():
    data = TEXT
    for _ in range(8):
        data = base64.b64encode(data)
    assert not any(TOKEN.encode() in r.data for r in undo_transforms(data, max_depth=5))
    assert any(TOKEN.encode() in r.data for r in undo_transforms(data, max_depth=8))


def test_concatenated_compressed_messages_are_each_inflated():
    texts = [TEXT.replace(TOKEN.encode(), f"CNRY-{i:016x}".encode()) for i in range(3)]
    stream = b"".join(zlib.compress(t) for t in texts) + b"".join(_deflate(t) for t in texts)
    out = b"".join(r.data for r in undo_transforms(stream))
    assert all(f"CNRY-{i:016x}".encode() in out for i in range(3))


def test_plain_text_random_bytes_and_english_are_left_alone():
    rng = random.Random(3)
    assert undo_transforms(TEXT) == []
    assert undo_transforms(rng.randbytes(4096)) == []
    assert english_score(TEXT) > 0.12 > english_score(codecs.encode(TEXT.decode(), "rot13").encode())


def test_dpi_reports_decoded_text_with_the_chain_and_where_it_was():
    wire = b"DATA " + base64.b64encode(gzip.compress(TEXT, mtime=0)) + b"\r\n"
    found = run("payload.dpi", make_flow([(1.0, C, wire)], dst=("10.9.0.9", 7000)))
    (hit,) = [f for f in pick(found, "content", "text") if TOKEN in f.value]
    assert hit.evidence["rule"] == "base64>gzip-decoded" and hit.evidence["offset"] == 5
    assert hit.evidence["length"] == len(wire) - 7 and hit.evidence["tokens"] == [TOKEN]
    assert hit.evidence["packet"] == 1 and hit.evidence["direction"] == "client"
