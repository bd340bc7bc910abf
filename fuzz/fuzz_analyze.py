"""Atheris (libFuzzer) harness for the whole analyze path: bytes -> capture file -> observe -> every analyzer.

    python fuzz/fuzz_analyze.py [libFuzzer options] [CORPUS_DIR ...]     (`make fuzz` runs it with a time limit)

Any exception other than `HarnessError` (a file that is not a capture) is a crash; so is an analyzer error the
runner contained, and a run slower than `-timeout`. libFuzzer's `-rss_limit_mb` catches unbounded memory.
Seed it with small captures, e.g. the real corpus (../shared/corpus/real).
"""
from __future__ import annotations

import os
import sys
import tempfile

import atheris

with atheris.instrument_imports(include=["harness"]):
    from harness.errors import HarnessError
    from harness.pipeline import analyze_captures

_DIR = tempfile.mkdtemp(prefix="harness-fuzz-")
_PATH = os.path.join(_DIR, "input.pcap")


def test_one_input(data: bytes) -> None:
    with open(_PATH, "wb") as f:
        f.write(data)
    try:
        doc = analyze_captures([_PATH])
    except HarnessError:
        return
    if doc["errors"]:
        raise RuntimeError(f"analyzer error contained by the runner: {doc['errors'][0]}")


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
