"""Service deployments: how messages travel (which connections, on which links, carrying what).

One module per `service.protocol` value, each registering a planner with `@service("name")`.
A planner turns the workload's messages into ConnectionPlans on links, with the truth about each flow.
"""
from __future__ import annotations

import importlib
import pkgutil
from typing import Callable

from harness.sim.services.context import ServicePlan, SimContext

Planner = Callable[[SimContext], ServicePlan]
_SERVICES: dict[str, Planner] = {}


def service(name: str):
    def deco(fn: Planner) -> Planner:
        _SERVICES[name] = fn
        return fn
    return deco


def services() -> dict[str, Planner]:
    """Every planner: the modules of this package, then the `harness.protocols` entry points."""
    from harness.plugins import load_protocol_plugins

    for info in pkgutil.iter_modules(__path__):
        if info.name != "context":
            importlib.import_module(f"{__name__}.{info.name}")
    load_protocol_plugins()
    return dict(_SERVICES)
