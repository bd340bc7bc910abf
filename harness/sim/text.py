"""Message text generators: plausible words around one unique canary token per message.

The canary (`CNRY-` + 16 hex digits) is how the scorer knows a body was read: it appears in no other
message, so finding it in an adversary's finding proves that message's content was recovered.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

WORDS = (
    "the quarterly budget review meeting is moved to thursday please confirm attendance and send the "
    "draft figures before noon contract renewal with supplier needs legal sign off regional sales "
    "numbers look stronger than forecast the board asked for a summary of risks travel approval for "
    "next week shipment delayed at customs call me when you land new pricing sheet attached minutes "
    "from yesterday project timeline slipped two weeks hiring plan for the second half server "
    "maintenance window tonight customer escalation resolved invoice overdue reminder lunch tomorrow"
).split()

TEXT_GENERATORS: dict[str, Callable[[np.random.Generator, int], str]] = {}


def text_generator(name: str):
    def deco(fn):
        TEXT_GENERATORS[name] = fn
        return fn
    return deco


def canary(rng: np.random.Generator) -> str:
    return "CNRY-" + rng.bytes(8).hex()


@text_generator("words")
def words(rng: np.random.Generator, length: int) -> str:
    """About `length` characters of lower-case words in sentences."""
    out: list[str] = []
    total = 0
    while total < length:
        n = int(rng.integers(5, 14))
        sentence = " ".join(WORDS[int(i)] for i in rng.integers(0, len(WORDS), n)).capitalize() + "."
        out.append(sentence)
        total += len(sentence) + 1
    return " ".join(out)[:max(length, 0)]


def body_with_canary(rng: np.random.Generator, generator: str, length: int, token: str) -> str:
    """Text of `length` characters (at least the canary) with the canary at a random word boundary."""
    filler = TEXT_GENERATORS[generator](rng, max(length - len(token) - 2, 0))
    cut = int(rng.integers(0, len(filler) + 1))
    space = filler.rfind(" ", 0, cut)
    cut = space + 1 if space >= 0 else 0
    return f"{filler[:cut]}{token} {filler[cut:]}".strip()


def subject_line(rng: np.random.Generator) -> str:
    n = int(rng.integers(2, 6))
    words_ = " ".join(WORDS[int(i)] for i in rng.integers(0, len(WORDS), n))
    return f"{words_.capitalize()} [{rng.bytes(3).hex()}]"
