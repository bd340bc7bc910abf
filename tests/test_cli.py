"""The command line: verdict differences between scenarios, and clean one-line errors on bad input."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.cli import main

ROOT = Path(__file__).resolve().parents[1]


def run(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True, cwd=cwd)


@pytest.fixture(scope="module")
def attacked(tmp_path_factory):
    """`harness attack` over the project's scenarios, in a scratch copy of the repo layout."""
    work = tmp_path_factory.mktemp("attack")
    shutil.copytree(ROOT / "scenarios", work / "scenarios")
    proc = run("attack", cwd=work)
    assert proc.returncode == 0, proc.stderr
    reports = {p.stem: json.loads(p.read_text()) for p in (work / "reports").glob("*.json")}
    return work, proc, reports


def verdicts(report):
    return {o: v["verdict"] for o, v in report["observables"].items()}


def test_attack_writes_reports_and_prints_the_table(attacked):
    work, proc, reports = attacked
    assert set(reports) == {p.stem for p in (ROOT / "scenarios").glob("*.toml")} >= {"email-plaintext", "email-tls", "bes-relay"}
    assert (work / "reports" / "summary.md").read_text().startswith("# What a passive adversary")
    header = proc.stdout.splitlines()[0].split()
    assert header[:2] == ["scenario", "content"] and "device" in header
    for r in reports.values():
        assert r["schema"] == "harness.report/1"
        for obs in r["observables"].values():
            assert set(obs) >= {"verdict", "advantage", "chance", "evidence"}


def test_plaintext_smtp_leaks_everything(attacked):
    v = verdicts(attacked[2]["email-plaintext"])
    for obs in ("content", "subject", "sender", "recipient", "contacts", "timing", "size", "service",
                "endpoint", "device"):
        assert v[obs] == "visible", obs


def test_tls_hides_content_and_identities_but_not_the_server_or_traffic_shape(attacked):
    v = verdicts(attacked[2]["email-tls"])
    for obs in ("content", "subject", "sender", "recipient", "contacts"):
        assert v[obs] == "hidden", obs
    for obs in ("endpoint", "timing", "size", "device"):
        assert v[obs] == "visible", obs
    sni = [e for e in attacked[2]["email-tls"]["observables"]["endpoint"]["evidence"]]
    assert sni, "endpoint verdict must carry evidence"


def test_relay_hides_content_and_destination_but_not_devices_or_timing(attacked):
    v = verdicts(attacked[2]["bes-relay"])
    for obs in ("content", "subject", "sender", "endpoint"):
        assert v[obs] == "hidden", obs
    for obs in ("device", "timing", "size", "service"):
        assert v[obs] == "visible", obs


def test_policy_breaks_are_reported(attacked):
    for r in attacked[2].values():
        broken = {b["observable"] for b in r["policy"]["breaks"]}
        expected = {o for o in r["policy"]["hidden"] if r["observables"][o]["verdict"] in ("partial", "visible")}
        assert broken == expected


def test_findings_document_shape(attacked, tmp_path):
    work = attacked[0]
    out = tmp_path / "f.json"
    proc = run("analyze", str(work / "captures" / "email-tls.pcap"), "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(out.read_text())
    assert doc["schema"] == "harness.findings/1"
    assert set(doc) >= {"captures", "flows", "findings", "skipped"}
    flow = doc["flows"][0]
    assert set(flow) >= {"id", "proto", "src", "dst", "packets", "bytes", "first_seen", "last_seen", "app",
                         "payload_class", "entropy"}
    assert {f["payload_class"] for f in doc["flows"]} == {"encrypted"}
    snis = {f["value"] for f in doc["findings"] if f["kind"] == "tls-sni"}
    assert snis == {"mail.corp.example"}
    f = doc["findings"][0]
    assert set(f) >= {"id", "analyzer", "observable", "kind", "flow", "value", "evidence", "confidence"}


# -- bad input: one line on stderr, exit 2, nothing written -------------------------------------------

def _one_line_error(proc, *needles):
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for n in needles:
        assert n in lines[0], lines[0]


def test_analyze_missing_file(tmp_path):
    _one_line_error(run("analyze", str(tmp_path / "nope.pcap")), "nope.pcap", "no such file")


def test_analyze_not_a_capture(tmp_path):
    p = tmp_path / "notes.pcap"
    p.write_text("hello, this is not a capture\n")
    out = tmp_path / "out.json"
    _one_line_error(run("analyze", str(p), "--json", str(out)), "notes.pcap", "not a capture")
    assert not out.exists()


def test_analyze_truncated_capture_reports_a_note(attacked, tmp_path):
    data = (attacked[0] / "captures" / "email-plaintext.pcap").read_bytes()
    p = tmp_path / "cut.pcap"
    p.write_bytes(data[: len(data) // 2 + 7])
    out = tmp_path / "out.json"
    proc = run("analyze", str(p), "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(out.read_text())
    assert any("truncated" in n for n in doc["notes"])
    assert doc["flows"]


def test_analyze_bad_keys_file(attacked, tmp_path):
    k = tmp_path / "keys.json"
    k.write_text("{}")
    _one_line_error(run("analyze", str(attacked[0] / "captures" / "bes-relay.pcap"), "--keys", str(k)),
                    "keys.json", "not a keys file")


def test_attack_with_an_invalid_scenario_writes_nothing(tmp_path):
    (tmp_path / "scenarios").mkdir()
    shutil.copy(ROOT / "scenarios" / "email-plaintext.toml", tmp_path / "scenarios" / "a-good.toml")
    bad = (ROOT / "scenarios" / "email-plaintext.toml").read_text().replace("rate_per_hour = 12.0",
                                                                          "rate_per_hour = -1.0")
    (tmp_path / "scenarios" / "b-bad.toml").write_text(bad)
    proc = run("attack", cwd=tmp_path)
    _one_line_error(proc, "scenarios/b-bad.toml", "workload.kinds[0].rate_per_hour", "must be > 0")
    assert not (tmp_path / "captures").exists() and not (tmp_path / "reports").exists()


def test_unknown_scenario_and_usage_errors(capsys):
    assert main(["attack", "no-such-scenario"]) == 2
    assert "no such scenario" in capsys.readouterr().err
    assert main(["frobnicate"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "invalid choice" in err[0]


def test_list_names_every_scenario():
    proc = run("list")
    assert proc.returncode == 0
    assert {line.split()[0] for line in proc.stdout.splitlines()} == {p.stem for p in (ROOT / "scenarios").glob("*.toml")}
