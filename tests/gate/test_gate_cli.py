"""`harness gate` from the command line: --update then gate passes, a leak fails with the table,
--junit and --markdown outputs, --strict, exit codes, one-line input errors."""
import contextlib
import io
import json
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness.cli import main

ROOT = Path(__file__).resolve().parents[2]


def harness(*args, cwd) -> subprocess.CompletedProcess:
    """The CLI run in this process (no interpreter start-up per call), in folder `cwd`."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.chdir(cwd), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A project with two scenarios, attacked once."""
    work = tmp_path_factory.mktemp("gatecli")
    (work / "scenarios").mkdir()
    for name in ("email-tls", "email-plaintext"):
        shutil.copy(ROOT / "scenarios" / f"{name}.toml", work / "scenarios")
    proc = harness("attack", cwd=work)
    assert proc.returncode == 0, proc.stderr
    return work


def test_update_then_gate_passes_twice(work):
    up = harness("gate", "--update", cwd=work)
    assert up.returncode == 0, up.stderr
    assert "new baseline with 2 scenarios" in up.stdout
    base = json.loads((work / "reports" / "baseline.json").read_text())
    assert base["schema"] == "harness.baseline/1" and set(base["scenarios"]) == {"email-tls", "email-plaintext"}
    assert "findings" in base["scenarios"]["email-plaintext"]["observables"]["content"]
    for _ in range(2):
        proc = harness("gate", "--junit", "gate.xml", "--markdown", "gate.md", cwd=work)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert proc.stdout.startswith("gate passed: no change (2 scenarios, 22 observables)")
    # An unchanged tree attacked again still passes, and --update then says nothing changed.
    assert harness("attack", cwd=work).returncode == 0
    assert harness("gate", cwd=work).returncode == 0
    again = harness("gate", "--update", cwd=work)
    assert "unchanged" in again.stdout
    suites = ET.parse(work / "gate.xml").getroot()
    assert suites.get("tests") == "22" and suites.get("failures") == "0"
    assert (work / "gate.md").read_text().startswith("### Leak gate passed")


def test_a_leak_fails_with_the_table_first(work, tmp_path):
    reports = tmp_path / "reports"
    shutil.copytree(work / "reports", reports)
    tls = json.loads((reports / "email-tls.json").read_text())
    leaked = json.loads((reports / "email-plaintext.json").read_text())["observables"]["recipient"]
    tls["observables"]["recipient"] = leaked  # as if a change sent the To: header in clear
    (reports / "email-tls.json").write_text(json.dumps(tls))
    proc = harness("gate", "--reports", str(reports), "--baseline", str(reports / "baseline.json"),
                   "--junit", str(tmp_path / "j.xml"), "--markdown", str(tmp_path / "m.md"), cwd=work)
    assert proc.returncode == 1
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("gate FAILED: 1 regression")
    assert lines[2].startswith("REGRESSION email-tls / recipient: hidden")
    assert "-> visible 1.00" in lines[2]
    assert "why: verdict hidden -> visible" in proc.stdout
    assert "evidence: recovered" in proc.stdout and "by payload.dpi" in proc.stdout
    assert proc.stdout.rstrip().splitlines()[-1].startswith("exit 1:")
    root = ET.parse(tmp_path / "j.xml").getroot()
    failures = root.findall(".//failure")
    assert len(failures) == 1 and failures[0].get("message").startswith("email-tls recipient: verdict hidden")
    assert "evidence: recovered" in failures[0].text
    case = failures[0]
    assert root.find(".//testcase[@name='recipient']/failure") is not None and case.get("type") == "regression"
    md = (tmp_path / "m.md").read_text()
    assert md.startswith("### Leak gate **FAILED**") and "| email-tls | **recipient** |" in md


def test_new_and_missing_scenarios(work, tmp_path):
    reports = tmp_path / "reports"
    shutil.copytree(work / "reports", reports)
    (reports / "email-tls.json").rename(tmp_path / "held.json")
    base = ["--reports", str(reports), "--baseline", str(reports / "baseline.json")]
    proc = harness("gate", *base, cwd=work)
    assert proc.returncode == 0 and "email-tls: in the baseline but not in the current reports" in proc.stdout
    strict = harness("gate", *base, "--strict", cwd=work)
    assert strict.returncode == 1 and "missing from the current reports (--strict): email-tls" in strict.stdout
    doc = json.loads((tmp_path / "held.json").read_text())
    doc["scenario"] = "email-tls-2"
    (reports / "email-tls-2.json").write_text(json.dumps(doc))
    proc = harness("gate", *base, cwd=work)
    assert proc.returncode == 0 and "email-tls-2: new scenario (not in baseline)" in proc.stdout


def test_policy_break_fails_and_attack_says_so(work, tmp_path):
    proj = tmp_path / "proj"
    (proj / "scenarios").mkdir(parents=True)
    text = (ROOT / "scenarios" / "email-plaintext.toml").read_text().replace('hidden = []', 'hidden = ["content"]')
    (proj / "scenarios" / "email-plaintext.toml").write_text(text)
    att = harness("attack", cwd=proj)
    assert att.returncode == 0
    assert "policy broken (1): email-plaintext content (hidden: visible)" in att.stdout
    assert harness("gate", "--update", cwd=proj).returncode == 0  # a break is never accepted into a baseline
    proc = harness("gate", cwd=proj)
    assert proc.returncode == 1 and "POLICY     email-plaintext / content" in proc.stdout


def test_input_errors_are_one_line_exit_2(tmp_path):
    (tmp_path / "reports").mkdir()
    proc = harness("gate", cwd=tmp_path)
    assert proc.returncode == 2 and "no harness.report/1 reports here" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    (tmp_path / "reports" / "x.json").write_text(json.dumps({"schema": "harness.report/1", "scenario": "x",
                                                             "seed": 1, "observables": {}}))
    proc = harness("gate", cwd=tmp_path)
    assert proc.returncode == 2 and "no such baseline (create it with `harness gate --update`)" in proc.stderr
    (tmp_path / "reports" / "baseline.json").write_text("{}")
    proc = harness("gate", cwd=tmp_path)
    assert proc.returncode == 2 and "not a baseline" in proc.stderr and len(proc.stderr.splitlines()) == 1


def test_a_declared_known_break_passes(tmp_path):
    proj = tmp_path / "proj"
    (proj / "scenarios").mkdir(parents=True)
    text = (ROOT / "scenarios" / "email-plaintext.toml").read_text().replace(
        'hidden = []', 'hidden = ["content"]\nknown_breaks = ["content"]')
    (proj / "scenarios" / "email-plaintext.toml").write_text(text)
    att = harness("attack", cwd=proj)
    assert att.returncode == 0 and "policy broken" not in att.stdout
    assert "known policy breaks (1, declared in the scenarios' [policy] known_breaks): email-plaintext content" \
        in att.stdout
    assert harness("gate", "--update", cwd=proj).returncode == 0
    proc = harness("gate", cwd=proj)
    assert proc.returncode == 0 and "email-plaintext content: known policy break" in proc.stdout
