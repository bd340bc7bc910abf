"""Scenario files: the typed scenario (`schema`) and loading with strict validation (`load`)."""
from harness.scenario.load import find_scenarios, load_scenario, load_scenario_text
from harness.scenario.schema import Scenario

__all__ = ["Scenario", "find_scenarios", "load_scenario", "load_scenario_text"]
