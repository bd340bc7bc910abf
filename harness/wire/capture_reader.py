"""Streams records out of pcap, pcapng and gzip-compressed captures; damage ends the stream with a note, not an error.

The format is told by the magic number, never by the file name. Uncompressed files are memory-mapped and walked
with precompiled `struct.Struct`s; gzip files are read through a sliding window, so no file is ever loaded whole.
Only a file that is not a capture at all (missing, empty, unknown magic, header cut short) raises `HarnessError`.
"""
from __future__ import annotations

import gzip
import mmap
import os
import stat
import struct
import zlib
from collections import Counter
from typing import Iterator, NamedTuple

from harness.errors import HarnessError

MAX_RECORD = 256 * 1024  # a record longer than this is corrupt (libpcap's own bound for most link types)
MAX_BLOCK = 16 * 1024 * 1024  # a pcapng block longer than this is corrupt
_CHUNK = 1 << 20  # read size for compressed input
_PROBE = 64  # bytes read to tell the format
_DONTNEED = getattr(mmap, "MADV_DONTNEED", None)
# Records between a walk's checkpoints, where the bytes read so far leave the resident set (a mapped file's
# pages count in RSS until released) and the progress bar hears how far it got: 8,192 records of ~500 bytes
# hold ~4 MB (every 65,536 kept up to ~31 MB more resident during the walk).
CHECKPOINT_MASK = (1 << 13) - 1  # a checkpoint where `not n & CHECKPOINT_MASK`, n records read

_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"
_SHB, _IDB, _PB, _SPB, _EPB = 0x0A0D0D0A, 1, 2, 3, 6

# classic pcap magic (as the first four bytes) -> (byte order, seconds per fraction unit, record header length, name)
_PCAP_MAGICS: dict[bytes, tuple[str, float, int, str]] = {
    b"\xd4\xc3\xb2\xa1": ("<", 1e-6, 16, "pcap"),
    b"\xa1\xb2\xc3\xd4": (">", 1e-6, 16, "pcap"),
    b"\x4d\x3c\xb2\xa1": ("<", 1e-9, 16, "pcap-ns"),
    b"\xa1\xb2\x3c\x4d": (">", 1e-9, 16, "pcap-ns"),
    b"\x34\xcd\xb2\xa1": ("<", 1e-6, 24, "pcap-kuznetzov"),  # "modified" pcap: 8 more bytes per record header
    b"\xa1\xb2\xcd\x34": (">", 1e-6, 24, "pcap-kuznetzov"),
}

_PCAP_HEADER = {bo: struct.Struct(bo + "IHHiIII") for bo in "<>"}
_PCAP_RECORD = {bo: struct.Struct(bo + "IIII") for bo in "<>"}
_U32 = {bo: struct.Struct(bo + "I") for bo in "<>"}
_BLOCK = {bo: struct.Struct(bo + "II") for bo in "<>"}  # type, total length
_EPB_HEAD = {bo: struct.Struct(bo + "IIIII") for bo in "<>"}  # interface, ts high, ts low, caplen, orig len
_PB_HEAD = {bo: struct.Struct(bo + "HHIIII") for bo in "<>"}  # interface, drops, ts high, ts low, caplen, orig len
_IDB_HEAD = {bo: struct.Struct(bo + "HHI") for bo in "<>"}  # link type, reserved, snaplen
_OPTION = {bo: struct.Struct(bo + "HH") for bo in "<>"}
_I64 = {bo: struct.Struct(bo + "q") for bo in "<>"}


class Record(NamedTuple):
    """One captured frame: when, on what link type, the captured bytes and the frame's length on the wire."""

    time: float  # seconds since the epoch
    linktype: int  # LINKTYPE_* of the interface it was captured on
    data: bytes | memoryview  # captured bytes (may be shorter than orig_len)
    orig_len: int  # length of the frame on the wire


class MappedPcap(NamedTuple):
    """A classic pcap file mapped whole, for a caller that walks its records itself (see `CaptureReader.mapped_pcap`)."""

    window: _Window  # close it when done
    buf: mmap.mmap
    first: int  # file offset of the first record header
    record: struct.Struct  # record header: seconds, fraction, captured length, original length
    scale: float  # seconds per fraction unit
    hlen: int  # record header length
    linktype: int


class _Window:
    """The bytes of an open capture: the whole file mapped, or a sliding window over a decompressed stream.

    Parsers index `buf` directly and call `more(pos, need)` only when fewer than `need` bytes remain after `pos`;
    it returns where `pos` now sits in the (possibly replaced) `buf`. `error` says why a stream ended early.
    """

    def __init__(self, path: str, compressed: bool) -> None:
        self.error = ""
        self._stream = None
        self._map: mmap.mmap | None = None
        self.buf: bytes | mmap.mmap = b""
        self.mapped = False  # True: `buf` is the whole file, so a position in it is a file offset
        self._released = 0  # mapped bytes before this offset were released (see `release`)
        if compressed:
            self._stream = gzip.open(path, "rb")
            self.buf = self._read(_CHUNK)
            return
        with open(path, "rb") as f:
            try:
                self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
                self.buf = self._map
                self.mapped = True
                if hasattr(mmap, "MADV_SEQUENTIAL"):
                    self._map.madvise(mmap.MADV_SEQUENTIAL)
            except (ValueError, OSError):  # not mappable (pipe, special file): fall back to streaming
                self._stream = open(path, "rb")
                self.buf = self._read(_CHUNK)

    def _read(self, n: int) -> bytes:
        """Up to `n` bytes; fewer only at the end of the stream. Keeps what came before a damaged part."""
        parts: list[bytes] = []
        have = 0
        try:
            while have < n and self._stream is not None:
                chunk = self._stream.read1(n - have)  # read1: bytes already decompressed survive a later error
                if not chunk:
                    break
                parts.append(chunk)
                have += len(chunk)
        except (OSError, EOFError, zlib.error) as err:  # gzip.BadGzipFile is an OSError
            self.error = f"compressed stream damaged: {err}"
            self._end()
        return b"".join(parts)

    def release(self, upto: int) -> None:
        """The mapped bytes before `upto` are done with: drop them from this process's resident set.

        They stay in the page cache; without this, every page of a mapped file read once counts in the RSS,
        so a 2 GB capture would show 2 GB resident even though records are copied out as they are read.
        """
        if self._map is None or _DONTNEED is None:
            return
        end = upto - upto % mmap.PAGESIZE
        if end > self._released:
            try:
                self._map.madvise(_DONTNEED, self._released, end - self._released)
            except (OSError, ValueError):
                return
            self._released = end

    def _end(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None

    def more(self, pos: int, need: int) -> int:
        if self._stream is None or len(self.buf) - pos >= need:
            return pos
        parts = [self.buf[pos:]]
        have = len(parts[0])
        while have < need and self._stream is not None:
            chunk = self._read(max(_CHUNK, need - have))
            if not chunk:
                self._end()
                break
            parts.append(chunk)
            have += len(chunk)
        self.buf = b"".join(parts)
        return 0

    def close(self) -> None:
        self._end()
        if self._map is not None:
            self.buf = b""
            self._map.close()
            self._map = None


def _open_error(path: str, err: OSError) -> HarnessError:
    if isinstance(err, FileNotFoundError):
        return HarnessError("no such file", path=path)
    if isinstance(err, IsADirectoryError):
        return HarnessError("is a directory, not a capture file", path=path)
    if isinstance(err, PermissionError):
        return HarnessError("cannot read (permission denied)", path=path)
    return HarnessError(f"cannot read ({err.strerror or err})", path=path)


def capture_size(path: str) -> int:
    """Bytes the reader will read from `path`: a gzip file's uncompressed size from its trailer (ISIZE,
    modulo 4 GiB, so never taken below the compressed size); the file's size otherwise. An unreadable file
    answers its size: opening it for real gives the one-line error."""
    size = os.path.getsize(path)
    try:
        with open(path, "rb") as f:
            if f.read(2) == _GZIP_MAGIC and size >= 18:
                f.seek(-4, os.SEEK_END)
                size = max(size, int.from_bytes(f.read(4), "little"))
    except OSError:
        pass
    return size


def _probe(path: str) -> tuple[bool, bytes]:
    """(gzip-compressed?, first bytes of the capture itself); raises HarnessError for anything that is not a capture."""
    try:
        if stat.S_ISDIR(os.stat(path).st_mode):
            raise HarnessError("is a directory, not a capture file", path=path)
        with open(path, "rb") as f:
            head = f.read(_PROBE)
        compressed = head[:2] == _GZIP_MAGIC
        if compressed:
            try:
                with gzip.open(path, "rb") as g:
                    head = g.read(_PROBE)
            except (OSError, EOFError, zlib.error) as err:
                raise HarnessError(f"gzip-compressed, but the stream cannot be read ({err})", path=path) from None
    except OSError as err:
        raise _open_error(path, err) from None
    what = "gzip-compressed file" if compressed else "file"
    if not head:
        raise HarnessError(f"not a capture file (empty {what})", path=path)
    if len(head) < 4:
        raise HarnessError(f"not a capture file (too short for a header: {len(head)} bytes)", path=path)
    magic = head[:4]
    if magic in _PCAP_MAGICS:
        if len(head) < 24:
            raise HarnessError(f"not a capture file (too short for a pcap header: {len(head)} bytes)", path=path)
    elif magic == _PCAPNG_MAGIC:
        if len(head) < 28:
            raise HarnessError(f"not a capture file (too short for a pcapng header: {len(head)} bytes)", path=path)
        if head[8:12] not in (b"\x4d\x3c\x2b\x1a", b"\x1a\x2b\x3c\x4d"):
            raise HarnessError(f"not a capture file (pcapng byte-order magic 0x{head[8:12].hex()} is invalid)",
                               path=path)
    elif magic == _ZSTD_MAGIC:
        raise HarnessError("zstd-compressed captures are not supported: decompress it first", path=path)
    else:
        raise HarnessError(f"not a capture file (unknown magic 0x{magic.hex()})", path=path)
    return compressed, head


class CaptureReader:
    """Reads one capture file record by record; `notes` collects what was wrong with it (truncation, damage).

    The constructor checks that the file is a capture (raising `HarnessError` if not); `records()` streams it.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.notes: list[str] = []
        self.count = 0  # records read, final once `records()` is exhausted or closed
        self._at = 0  # file offset reached, updated every 65,536 records (-1: compressed, unknown)
        self.compressed, head = _probe(path)
        magic = head[:4]
        self.format = "pcapng" if magic == _PCAPNG_MAGIC else _PCAP_MAGICS[magic][3]
        if self.compressed:
            self.format += "+gzip"

    def records(self) -> Iterator[Record]:
        """Yield the records in file order; stops cleanly (with a note) at the first damage it cannot walk past."""
        compressed, head = _probe(self.path)
        try:
            win = _Window(self.path, compressed)
        except OSError as err:
            raise _open_error(self.path, err) from None
        try:
            if head[:4] == _PCAPNG_MAGIC:
                yield from self._pcapng(win)
            else:
                yield from self._pcap(win, *_PCAP_MAGICS[head[:4]][:3])
        except (struct.error, ValueError, IndexError, OverflowError) as err:  # belt and braces: never escape
            self.notes.append(f"capture damaged after {self.count} records ({type(err).__name__}: {err}): stopped")
        finally:
            win.close()

    @property
    def offset(self) -> int | None:
        """Roughly how far into the file reading has got (for progress); None for a compressed stream."""
        return None if self._at < 0 else self._at

    def mapped_pcap(self) -> MappedPcap | None:
        """The file mapped whole if it is an uncompressed classic pcap with a complete header, else None.

        For a reader that walks the records inline (the observe tier's fast path); it must end the same way
        `records()` would: `stopped_short`, `oversized`, `walked`, and close the window.
        """
        if self.compressed or self.format == "pcapng":
            return None
        compressed, head = _probe(self.path)
        if compressed or head[:4] not in _PCAP_MAGICS:
            return None
        try:
            win = _Window(self.path, False)
        except OSError as err:
            raise _open_error(self.path, err) from None
        if not win.mapped or len(win.buf) < 24:
            win.close()
            return None
        bo, scale, hlen, _ = _PCAP_MAGICS[head[:4]]
        network = _PCAP_HEADER[bo].unpack_from(win.buf, 0)[6]
        return MappedPcap(win, win.buf, 24, _PCAP_RECORD[bo], scale, hlen, (network & 0x0FFFFFFF) & 0xFFFF)

    def walked(self, count: int, offset: int) -> None:
        """A caller walking the mapped records has read `count` of them, up to file offset `offset`."""
        self.count = count
        self._at = offset

    def oversized(self, n: int, incl: int) -> None:
        """Record n + 1 claims more captured bytes than any record can have: the walk stops."""
        self.notes.append(f"record {n + 1} claims {incl} captured bytes (more than {MAX_RECORD}): "
                          f"capture corrupt, stopped after {n} records")

    def stopped_short(self, win: _Window, n: int) -> None:
        """The file ends inside a record (after `n` complete ones)."""
        if win.error:
            self.notes.append(f"capture truncated after {n} records ({win.error})")
        else:
            self.notes.append(f"capture truncated after {n} records")


    def _pcap(self, win: _Window, bo: str, scale: float, hlen: int) -> Iterator[Record]:
        pos = win.more(0, 24)
        buf = win.buf
        if len(buf) - pos < 24:
            self.stopped_short(win, 0)
            return
        _, _, _, _, _, _, network = _PCAP_HEADER[bo].unpack_from(buf, pos)
        linktype = (network & 0x0FFFFFFF) & 0xFFFF  # upper bits may carry FCS length flags
        pos += 24
        unpack = _PCAP_RECORD[bo].unpack_from
        new, rec_type = tuple.__new__, Record
        end = len(buf)
        n = 0
        try:
            while True:
                if pos + hlen > end:
                    pos = win.more(pos, hlen)
                    buf, end = win.buf, len(win.buf)
                    if pos + hlen > end:
                        if pos != end or win.error:
                            self.stopped_short(win, n)
                        return
                sec, frac, incl, orig = unpack(buf, pos)
                start = pos + hlen
                if incl > MAX_RECORD:
                    self.oversized(n, incl)
                    return
                pos = start + incl
                if pos > end:
                    start = win.more(start - hlen, hlen + incl) + hlen
                    buf, end = win.buf, len(win.buf)
                    pos = start + incl
                    if pos > end:
                        self.stopped_short(win, n)
                        return
                n += 1
                if not n & CHECKPOINT_MASK:
                    self._at = pos if win.mapped else -1
                    win.release(start - hlen)
                yield new(rec_type, (sec + frac * scale, linktype, buf[start:pos], orig))
        finally:
            self.count = n

    def _pcapng(self, win: _Window) -> Iterator[Record]:
        pos = win.more(0, 12)
        buf, end = win.buf, len(win.buf)
        bo = "<"
        ifaces: list[tuple[int, int, float, int]] = []  # (link type, ticks per second, offset s, snaplen)
        bad: Counter = Counter()
        last_time = 0.0
        simple = False  # saw a simple packet block (no timestamp)
        new, rec_type = tuple.__new__, Record
        n = 0
        block_u, epb_u = _BLOCK[bo].unpack_from, _EPB_HEAD[bo].unpack_from
        trail_u = _U32[bo].unpack_from
        try:
            while True:
                if pos + 12 > end:
                    pos = win.more(pos, 12)
                    buf, end = win.buf, len(win.buf)
                    if pos + 12 > end:
                        if pos != end or win.error:
                            self.stopped_short(win, n)
                        return
                btype, blen = block_u(buf, pos)
                if btype == _SHB:  # a section header reads the same in both byte orders and may switch it
                    bom = buf[pos + 8:pos + 12]
                    if bom == b"\x4d\x3c\x2b\x1a":
                        bo = "<"
                    elif bom == b"\x1a\x2b\x3c\x4d":
                        bo = ">"
                    else:
                        self.notes.append(f"pcapng section header after {n} records has a bad byte-order magic: "
                                          "stopped")
                        return
                    block_u, epb_u, trail_u = _BLOCK[bo].unpack_from, _EPB_HEAD[bo].unpack_from, _U32[bo].unpack_from
                    btype, blen = block_u(buf, pos)
                    ifaces = []
                if blen < 12 or blen % 4 or blen > MAX_BLOCK:
                    self.notes.append(f"pcapng block after {n} records has an impossible length {blen}: "
                                      f"capture corrupt, stopped")
                    return
                nxt = pos + blen
                if nxt > end:
                    pos = win.more(pos, blen)
                    buf, end = win.buf, len(win.buf)
                    nxt = pos + blen
                    if nxt > end:
                        self.stopped_short(win, n)
                        return
                if trail_u(buf, nxt - 4)[0] != blen:
                    self.notes.append(f"pcapng block after {n} records: lengths in header and trailer differ: "
                                      f"capture corrupt, stopped")
                    return
                if not n & CHECKPOINT_MASK:
                    self._at = pos if win.mapped else -1
                    win.release(pos)
                if btype == _EPB:
                    if blen < 32:
                        bad["short enhanced packet blocks"] += 1
                    else:
                        iface, hi, lo, incl, orig = epb_u(buf, pos + 8)
                        if iface >= len(ifaces):
                            bad["packet blocks for an undeclared interface"] += 1
                        elif incl > blen - 32:
                            bad["packet blocks whose captured length overruns the block"] += 1
                        else:
                            lt, tps, offset, _ = ifaces[iface]
                            last_time = ((hi << 32) | lo) / tps + offset
                            n += 1
                            yield new(rec_type, (last_time, lt, buf[pos + 28:pos + 28 + incl], orig))
                elif btype == _SPB:
                    if not ifaces:
                        bad["packet blocks for an undeclared interface"] += 1
                    elif blen < 16:
                        bad["short simple packet blocks"] += 1
                    else:
                        lt, _, _, snaplen = ifaces[0]
                        orig = _U32[bo].unpack_from(buf, pos + 8)[0]
                        incl = min(orig, blen - 16, snaplen or orig)
                        simple = True
                        n += 1
                        yield new(rec_type, (last_time, lt, buf[pos + 12:pos + 12 + incl], orig))
                elif btype == _IDB:
                    if blen < 20:
                        bad["short interface description blocks"] += 1
                        ifaces.append((0xFFFF, 1_000_000, 0.0, 0))  # keep interface numbering
                    else:
                        ifaces.append(self._interface(buf, pos, blen, bo))
                elif btype == _PB:
                    if blen < 32:
                        bad["short packet blocks"] += 1
                    else:
                        iface, _, hi, lo, incl, orig = _PB_HEAD[bo].unpack_from(buf, pos + 8)
                        if iface >= len(ifaces):
                            bad["packet blocks for an undeclared interface"] += 1
                        elif incl > blen - 32:
                            bad["packet blocks whose captured length overruns the block"] += 1
                        else:
                            lt, tps, offset, _ = ifaces[iface]
                            last_time = ((hi << 32) | lo) / tps + offset
                            n += 1
                            yield new(rec_type, (last_time, lt, buf[pos + 28:pos + 28 + incl], orig))
                pos = nxt
        finally:
            self.count = n
            for what, count in bad.items():
                self.notes.append(f"{what} skipped: {count}")
            if simple:
                self.notes.append("simple packet blocks carry no timestamp: each was given the previous record's time")

    @staticmethod
    def _interface(buf: bytes | mmap.mmap, pos: int, blen: int, bo: str) -> tuple[int, int, float, int]:
        """(link type, timestamp ticks per second, timestamp offset in seconds, snaplen) from an IDB."""
        linktype, _, snaplen = _IDB_HEAD[bo].unpack_from(buf, pos + 8)
        tps, offset = 1_000_000, 0.0
        p, stop = pos + 16, pos + blen - 4
        opt_u = _OPTION[bo].unpack_from
        while p + 4 <= stop:
            code, length = opt_u(buf, p)
            if code == 0:
                break
            value = p + 4
            if value + length > stop:
                break
            if code == 9 and length >= 1:  # if_tsresol: 10^-n, or 2^-n when the top bit is set
                res = buf[value]
                exp = res & 0x7F
                if res & 0x80:
                    tps = 1 << exp
                elif exp <= 30:
                    tps = 10 ** exp
            elif code == 14 and length >= 8:  # if_tsoffset: seconds added to every timestamp
                offset = float(_I64[bo].unpack_from(buf, value)[0])
            p = value + ((length + 3) & ~3)
        return linktype, tps or 1, offset, snaplen


def iter_records(path: str, notes: list[str] | None = None) -> Iterator[Record]:
    """Yield the records of one capture file; notes about damage are appended to `notes` when given.

    Raises `HarnessError` at once if `path` is not a readable capture file.
    """
    reader = CaptureReader(path)
    return _with_notes(reader, notes)


def _with_notes(reader: CaptureReader, notes: list[str] | None) -> Iterator[Record]:
    try:
        yield from reader.records()
    finally:
        if notes is not None:
            notes.extend(reader.notes)

