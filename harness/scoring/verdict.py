"""From a measurement to a verdict: visible, partial or hidden, with the advantage over guessing.

advantage = max(0, (accuracy - chance) / (1 - chance)). The verdict is
  - "n/a"      when there is nothing to measure (no message of that kind crossed a tapped link);
  - "hidden"   when the adversary does no better than chance beyond sampling noise: the lower bound
               of the 95% Wilson interval on its accuracy (n trials) is at or below chance, and
               neither are the claims it did make (the precision of its claims, same test);
  - "visible"  when the advantage is at least VISIBLE_ADVANTAGE;
  - "partial"  otherwise: a real, but incomplete, leak.
So one recovered message body out of a thousand is "partial", never "hidden".
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

VISIBLE_ADVANTAGE = 0.8
Z95 = 1.959963984540054


@dataclass
class Measurement:
    accuracy: float  # the adversary's score, 0..1
    chance: float  # what guessing from public priors scores
    n: int  # trials (messages, flows, users, pairs)
    evidence: list[dict] = field(default_factory=list)
    details: dict = field(default_factory=dict)
    claims: int = 0  # trials on which the adversary named anything at all
    claims_correct: float = 0.0  # credit earned on those
    claims_chance: float | None = None  # a blind claim's hit rate, if not `chance` (contacts: the pair base rate)


def wilson_interval(p: float, n: int, z: float = Z95) -> tuple[float, float]:
    if n <= 0:
        return 0.0, 1.0
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def advantage(accuracy: float, chance: float) -> float:
    """Clamped at 0: an adversary who does worse than guessing can always guess instead."""
    if chance >= 1.0:
        return 0.0
    return max(0.0, (accuracy - chance) / (1.0 - chance))


def precise_claims(m: Measurement) -> bool:
    """The adversary named something for only a few trials, but those claims are right far more often
    than guessing would be (Wilson lower bound of their precision above chance): a real, narrow leak,
    e.g. the senders of the messages one seized device decrypts."""
    if m.claims <= 0:
        return False
    low, _ = wilson_interval(min(m.claims_correct / m.claims, 1.0), m.claims)
    return low > (m.chance if m.claims_chance is None else m.claims_chance)


def decide(m: Measurement) -> str:
    if m.n == 0:
        return "n/a"
    low, _ = wilson_interval(m.accuracy, m.n)
    if m.accuracy <= m.chance or low <= m.chance:
        return "partial" if precise_claims(m) else "hidden"
    if advantage(m.accuracy, m.chance) >= VISIBLE_ADVANTAGE:
        return "visible"
    return "partial"
