"""Shared runs for the metadata tests: the tradeoff variants of bes-relay, simulated and scored once."""
from __future__ import annotations

import pytest

from harness.scenario.load import load_scenario
from harness.tradeoff import VARIANTS, metadata_analyzers, run_tradeoff


@pytest.fixture(scope="session")
def bes_relay():
    return load_scenario("scenarios/bes-relay.toml")


@pytest.fixture(scope="session")
def variants(bes_relay, tmp_path_factory):
    """name -> VariantResult for every variant (metadata analyzers only, fixed seed 103)."""
    out = run_tradeoff(bes_relay, tmp_path_factory.mktemp("tradeoff"), metadata_analyzers(), VARIANTS)
    return {r.name: r for r in out}
