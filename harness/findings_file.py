"""The findings document (schema harness.findings/1) as a file: written as a stream, one line per item.

Each finding is encoded (compact, keys sorted) when its flow is done and appended to a spool file beside
the destination, so neither the findings nor their JSON text are held in memory; `finish` writes the
document around the spooled lines and renames it into place (nothing half-written is ever left at the
destination). The same layout is used for a document held in memory (`document_text`): top-level keys
sorted, each flow and each finding on its own line, so a reader can grep or stream it line by line.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import IO, Iterable

from harness.analyzers import Finding
from harness.analyzers.interface import json_encoder


_line = json_encoder((", ", ": "))  # the text json.dumps(item, sort_keys=True, default=str) gives


def encode_finding(f: Finding) -> str:
    """A finding's line in the document."""
    return _line(f.to_json())


def _write_document(out: IO[str], doc: dict, findings_spool: IO[str] | None) -> None:
    """`doc` without its findings; those come from `findings_spool` (already encoded) or doc["findings"]."""
    out.write("{\n")
    keys = sorted(set(doc) | {"findings"})
    for i, key in enumerate(keys):
        out.write(json.dumps(key) + ": ")
        if key == "findings" and findings_spool is not None:
            out.write("[")
            copied = _append_file(out, findings_spool)
            out.write("\n]" if copied else "]")  # as `document_text` writes an empty list
        elif key in ("findings", "flows"):  # row by row: a large capture has hundreds of thousands of flows
            out.write("[")
            written = False
            for item in doc.get(key, []):
                out.write(("\n" if not written else ",\n") + _line(item))
                written = True
            out.write("\n]" if written else "]")
        else:
            out.write(json.dumps(doc[key], sort_keys=True, default=str))
        out.write(",\n" if i < len(keys) - 1 else "\n")
    out.write("}\n")


def _append_file(out: IO[str], spool: IO[str]) -> int:
    """Append all of `spool`'s bytes (UTF-8, like `out`) to `out`; return how many. In the kernel
    (`os.sendfile`) where it can: the spool of a large capture is hundreds of megabytes, which a copy
    through Python decodes and encodes again."""
    spool.flush()
    out.flush()
    size = os.fstat(spool.fileno()).st_size
    sent = 0
    try:
        while sent < size:
            n = os.sendfile(out.fileno(), spool.fileno(), sent, size - sent)
            if n == 0:
                break
            sent += n
    except (AttributeError, OSError):  # no sendfile between these files here: through Python
        pass
    if sent < size:
        with open(spool.fileno(), "rb", closefd=False) as raw:
            raw.seek(sent)
            shutil.copyfileobj(raw, out.buffer, 1 << 20)
        out.buffer.flush()
    return size


def document_text(doc: dict) -> str:
    """A whole findings document, held in memory, as text in the file layout."""
    import io

    out = io.StringIO()
    _write_document(out, doc, None)
    return out.getvalue()


class FindingsFile:
    """A sink for `run_analyzers`: spools findings, then `finish(doc)` writes `path` atomically.

    Use as a context manager: on an exception the spool and any partial file are removed.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._spool_path = self.path.with_name(f".{self.path.name}.findings{os.getpid()}")
        self._tmp_path = self.path.with_name(f".{self.path.name}.tmp{os.getpid()}")
        self._spool: IO[str] = open(self._spool_path, "w+", encoding="utf-8")
        self.count = 0

    def __call__(self, findings: Iterable[Finding], flow_id: str | None = None) -> None:
        self.lines(encode_finding(f) for f in findings)

    def finish_lines(self, keyed: Iterable[tuple[str, str]]) -> None:
        """Findings of `finish`, encoded, in document order behind their sort keys."""
        self.lines(line for _key, line in keyed)

    def lines(self, encoded: Iterable[str]) -> None:
        """Append findings already encoded as JSON (one object per string)."""
        write = self._spool.write
        for text in encoded:
            write(("," if self.count else "") + "\n" + text)
            self.count += 1

    def finish(self, doc: dict) -> Path:
        """Write the document: `doc`'s other keys around the spooled findings; rename into place."""
        self._spool.flush()
        with open(self._tmp_path, "w", encoding="utf-8") as out:
            _write_document(out, {k: v for k, v in doc.items() if k != "findings"}, self._spool)
        os.replace(self._tmp_path, self.path)
        return self.path

    def close(self) -> None:
        self._spool.close()
        for p in (self._spool_path, self._tmp_path):
            if p.exists():
                p.unlink()

    def __enter__(self) -> "FindingsFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
