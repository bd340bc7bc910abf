"""Traffic-analysis defences a relayed service can switch on: hooks over its transmission schedule.

`apply_defences(ctx, path, transmissions)` runs every defence the scenario enables, in registry
order, and records what each costs in `path.costs`. A defence is a function registered with
`@defence("name")` taking (ctx, path, transmissions) and returning the new list. None is enabled
by default; with none enabled the schedule passes through untouched.
"""
from __future__ import annotations

from typing import Callable

Defence = Callable[[object, object, list], list]
_DEFENCES: dict[str, Defence] = {}


def defence(name: str):
    def deco(fn: Defence) -> Defence:
        _DEFENCES[name] = fn
        return fn
    return deco


def enabled(ctx) -> list[str]:
    """Names of the defences the scenario switches on (none until the scenario format declares them)."""
    return [name for name in _DEFENCES if getattr(getattr(ctx.scenario, "defences", None), name, None)]


def apply_defences(ctx, path, transmissions: list) -> list:
    for name in enabled(ctx):
        transmissions = _DEFENCES[name](ctx, path, transmissions)
    return transmissions
