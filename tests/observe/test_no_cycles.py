"""The analyze path leaves no reference cycles behind a flow: the cyclic collector runs rarely there
(`fewer_gc_passes`), so anything caught in a cycle (a payload-sized buffer, say) would stay until it did."""
from __future__ import annotations

import gc
from collections import Counter
from pathlib import Path

import pytest

from harness.analysis import run_analyzers
from harness.analyzers import Knowledge
from harness.observe import iter_flows

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpus" / "real"
NAMES = ["zeek__smtp.pcap", "ndpi__http_ipv6.pcap", "ndpi__imap.pcap", "ndpi__telegram.pcap"]


class _Discard:
    def __call__(self, block, flow_id):
        pass

    def finish_lines(self, keyed):
        for _ in keyed:
            pass


def _ours(obj) -> bool:
    code = getattr(obj, "__code__", None)
    module = code.co_filename if code is not None else getattr(type(obj), "__module__", "") or ""
    return "harness" in module


def test_analyzing_flows_leaves_no_cyclic_garbage_of_ours():
    paths = [str(CORPUS / n) for n in NAMES if (CORPUS / n).is_file()]
    if not paths:
        pytest.skip("corpus not present")
    run_analyzers(iter_flows(paths, Counter(), []), Knowledge(), sink=_Discard())  # imports, caches: warm
    gc.collect()
    enabled = gc.isenabled()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        result = run_analyzers(iter_flows(paths, Counter(), []), Knowledge(), sink=_Discard())
        del result
        gc.collect()
        garbage = [o for o in gc.garbage if _ours(o)]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        if enabled:
            gc.enable()
    assert not garbage, Counter(type(o).__name__ for o in garbage).most_common(5)
