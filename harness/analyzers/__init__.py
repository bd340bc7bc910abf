"""Passive adversary analyzers: one module per analyzer, each registered under a stable id.

Adding an analyzer is adding one file to this package (or an entry point in the group
`harness.analyzers` from another package) that defines an `Analyzer` subclass decorated with
`@register`.
"""
from __future__ import annotations

import importlib
import pkgutil
from importlib.metadata import entry_points

from harness.analyzers.interface import Analyzer, Finding, KeyGrant, Knowledge

_REGISTRY: dict[str, type[Analyzer]] = {}
_LOADED = False


def register(cls: type[Analyzer]) -> type[Analyzer]:
    """Class decorator: make an analyzer available under its `id`."""
    if not cls.id:
        raise ValueError(f"{cls.__name__} has no id")
    if cls.id in _REGISTRY and _REGISTRY[cls.id] is not cls:
        raise ValueError(f"analyzer id {cls.id!r} registered twice")
    _REGISTRY[cls.id] = cls
    return cls


def _load_all() -> None:
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    for info in pkgutil.iter_modules(__path__):
        if info.name != "interface" and not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")
    for ep in entry_points(group="harness.analyzers"):
        ep.load()


def registry() -> dict[str, type[Analyzer]]:
    """Every registered analyzer by id, in id order."""
    _load_all()
    return dict(sorted(_REGISTRY.items()))


__all__ = ["Analyzer", "Finding", "KeyGrant", "Knowledge", "register", "registry"]
