"""Protocols from outside the harness: the `harness.protocols` entry point group.

An entry point's name is a `service.protocol` value; its object is a planner, a callable
`(SimContext) -> ServicePlan` like `harness.sim.services.email_smtp.plan_smtp`, built from sans-IO
engines (`harness.sim.protocols.interface.Endpoint`). Loading one imports its module (which may add
to other vocabularies at import: `schema.MESSAGE_KINDS.add(...)`, `schema.RELAYED_PROTOCOLS.add(...)`),
registers the planner with the simulator and the name with the scenario validator. Loading happens
once, before the first scenario is validated; a plugin that fails to import is recorded in
`PLUGIN_ERRORS` and named when a scenario asks for it, never fatal to scenarios that do not.
docs/plugins.md shows a whole plugin (examples/chatproto).
"""
from __future__ import annotations

from importlib.metadata import entry_points
from typing import Callable

GROUP = "harness.protocols"
PLUGIN_ERRORS: dict[str, str] = {}  # protocol name -> why its entry point did not load
_loaded = False


def register_protocol(name: str, planner: Callable, relayed: bool = False) -> None:
    """Make `name` a valid `service.protocol` simulated by `planner` (also for plugins loaded by hand)."""
    from harness.scenario import schema
    from harness.sim.services import _SERVICES

    if not callable(planner):
        raise TypeError(f"protocol {name!r}: planner {planner!r} is not callable")
    _SERVICES[name] = planner
    schema.PROTOCOLS.add(name)
    if relayed:
        schema.RELAYED_PROTOCOLS.add(name)


def load_protocol_plugins(reload: bool = False) -> None:
    """Import every `harness.protocols` entry point once (again with reload=True)."""
    global _loaded
    if _loaded and not reload:
        return
    _loaded = True
    for ep in entry_points(group=GROUP):
        try:
            planner = ep.load()
            register_protocol(ep.name, planner, relayed=bool(getattr(planner, "relayed", False)))
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not break other scenarios
            from harness.scenario import schema

            PLUGIN_ERRORS[ep.name] = f"entry point {ep.name} = {ep.value}: {type(exc).__name__}: {exc}"
            schema.PROTOCOLS.add(ep.name)  # so a scenario asking for it is told why it cannot run
        else:
            PLUGIN_ERRORS.pop(ep.name, None)
