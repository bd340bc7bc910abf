"""Named random substreams from one scenario seed, so adding a draw in one place never shifts another."""
from __future__ import annotations

import zlib

import numpy as np


def substream(seed: int, *names: str | int) -> np.random.Generator:
    """A numpy Generator fixed by the seed and the names (e.g. `substream(7, "workload", "alice")`)."""
    words = [seed & 0xFFFFFFFF, seed >> 32]
    for name in names:
        words.append(zlib.crc32(str(name).encode()))
    return np.random.default_rng(np.random.SeedSequence(words))


def derive_bytes(seed: int, n: int, *names: str | int) -> bytes:
    """n deterministic bytes for keys and nonces (from the named substream)."""
    return substream(seed, "bytes", *names).bytes(n)
