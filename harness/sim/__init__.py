"""Simulator: scenario -> messages -> sans-IO protocol sessions -> timed packets (no sockets, no wall clock)."""
