"""Traffic-monitoring resistance test harness: what a passive adversary on tapped links can learn."""

__version__ = "0.1.0"
