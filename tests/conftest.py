"""Shared fixtures: the repository's paths and the real capture corpus."""
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]  # tests/gate runs a team's suite in process against the harness plugin

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ROOT / "scenarios"
CORPUS = (ROOT / ".." / "shared" / "corpus" / "real").resolve()


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


def scenario_path(name: str) -> Path:
    return SCENARIOS / f"{name}.toml"
