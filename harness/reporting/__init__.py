"""Reporters: pure `render(reports) -> str` functions, one per format, registered by name."""
from __future__ import annotations

import importlib
import pkgutil
from typing import Callable

Reporter = Callable[[list[dict]], str]
_REPORTERS: dict[str, Reporter] = {}


def reporter(name: str):
    def deco(fn: Reporter) -> Reporter:
        _REPORTERS[name] = fn
        return fn
    return deco


def reporters() -> dict[str, Reporter]:
    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("_") and info.name != "atomic":
            importlib.import_module(f"{__name__}.{info.name}")
    return dict(_REPORTERS)
