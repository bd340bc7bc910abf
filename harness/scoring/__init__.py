"""Scorer: the adversary's findings against the ground truth -> a verdict per observable.

The only place besides the simulator that reads truth. How each observable is measured is in
measures.py (one function per observable) and how a measurement becomes a verdict in verdict.py.
"""
from harness.scoring.score import score

__all__ = ["score"]
