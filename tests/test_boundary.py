"""The adversary never sees the truth: analyzers and the observe tier cannot reach the truth or scorer."""
import ast
import inspect
import subprocess
import sys
from pathlib import Path

import pytest

from harness.analyzers import registry
from harness.analyzers.interface import Analyzer

ROOT = Path(__file__).resolve().parents[1]
ADVERSARY_SIDE = ["harness/analyzers", "harness/observe", "harness/analysis.py", "harness/keys.py",
                  "harness/wire/capture_reader.py", "harness/adversary.py", "harness/parallel.py",
                  "harness/findings_file.py"]
FORBIDDEN = ("harness.sim", "harness.scoring", "harness.pipeline", "harness.cli")


def _modules():
    for entry in ADVERSARY_SIDE:
        p = ROOT / entry
        yield from (sorted(p.rglob("*.py")) if p.is_dir() else [p])


def _imports(path: Path):
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module
            yield from (f"{node.module}.{a.name}" for a in node.names)


@pytest.mark.parametrize("path", list(_modules()), ids=lambda p: str(p.relative_to(ROOT)))
def test_adversary_side_imports_no_truth(path):
    bad = [m for m in _imports(path) if m.startswith(FORBIDDEN) or "truth" in m.split(".")]
    assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


def test_loading_every_analyzer_loads_no_truth():
    code = ("import sys, harness.analyzers as a, harness.observe, harness.analysis, harness.adversary; a.registry();"
            "print(sorted(m for m in sys.modules if m.startswith(('harness.sim', 'harness.scoring'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


def test_the_analyzer_interface_carries_only_flows_and_knowledge():
    assert list(inspect.signature(Analyzer.__init__).parameters) == ["self", "knowledge"]
    for aid, cls in registry().items():
        assert list(inspect.signature(cls.__init__).parameters) == ["self", "knowledge"], aid
        assert list(inspect.signature(cls.on_flow).parameters) == ["self", "flow"], aid
        assert list(inspect.signature(cls.finish).parameters) == ["self", "flows"], aid


def test_the_checker_would_catch_a_truth_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from harness.sim.truth import Truth\nimport harness.scoring\n")
    assert sorted(m for m in _imports(bad) if m.startswith(FORBIDDEN)) == [
        "harness.scoring", "harness.sim.truth", "harness.sim.truth.Truth"]
