"""Bring your own system: a protocol plugin (examples/chatproto) by entry point and by hand, and
`harness score` on a capture with a hand-written truth file."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from harness import plugins
from harness.scenario import schema
from harness.sim import services

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "chatproto"


def write_dist_info(site: Path) -> Path:
    """What `pip install examples/chatproto` leaves behind for importlib.metadata: a dist-info with the
    entry point (the package itself is found on sys.path next to it)."""
    info = site / "chatproto_harness_example-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: chatproto-harness-example\nVersion: 0.1.0\n")
    ep = (EXAMPLE / "pyproject.toml").read_text().split('[project.entry-points."harness.protocols"]')[1]
    name, value = ep.strip().splitlines()[0].split("=", 1)  # chatproto = "chatproto:plan"
    (info / "entry_points.txt").write_text(f"[harness.protocols]\n{name.strip()} = {value.strip().strip(chr(34))}\n")
    return site


@pytest.fixture
def plugin_registry():
    """Leave the registries as they were."""
    before = (set(schema.PROTOCOLS), set(schema.RELAYED_PROTOCOLS), dict(services._SERVICES),
              dict(plugins.PLUGIN_ERRORS), list(sys.path))
    yield
    schema.PROTOCOLS.clear(), schema.PROTOCOLS.update(before[0])
    schema.RELAYED_PROTOCOLS.clear(), schema.RELAYED_PROTOCOLS.update(before[1])
    services._SERVICES.clear(), services._SERVICES.update(before[2])
    plugins.PLUGIN_ERRORS.clear(), plugins.PLUGIN_ERRORS.update(before[3])
    sys.path[:] = before[4]
    sys.modules.pop("chatproto", None), sys.modules.pop("chatproto.engine", None)


def test_engines_talk_through_the_sans_io_interface():
    sys.path.insert(0, str(EXAMPLE))
    try:
        from chatproto.engine import ChatClient, ChatServer, frame
        from harness.sim.protocols.interface import Endpoint, converse
    finally:
        sys.path.remove(str(EXAMPLE))
    client, server = ChatClient("alice@corp.example"), ChatServer()
    assert isinstance(client, Endpoint) and isinstance(server, Endpoint)
    turns = converse(client, server)
    assert turns[0] == ("server", b"CHAT/1 READY\n") and turns[1] == ("client", b"HELLO alice@corp.example\n")
    up = client.push(("send", "bob@corp.example", b"hi bob", 0))
    assert up == frame("MSG", "bob@corp.example", b"hi bob", 0)
    assert server.receive(up[:5]) == b"" and server.receive(up[5:]) == b"OK 1\n"
    assert server.events[-1] == ("MSG", b"hi bob")


def test_entry_point_registers_the_protocol_and_a_scenario_uses_it(tmp_path, plugin_registry, harness_attack):
    sys.path[:0] = [str(write_dist_info(tmp_path / "site")), str(EXAMPLE)]
    assert "chatproto" not in schema.PROTOCOLS
    plugins.load_protocol_plugins(reload=True)
    assert "chatproto" in schema.PROTOCOLS and "chatproto" not in plugins.PLUGIN_ERRORS
    sealed = harness_attack(EXAMPLE / "scenario.toml")
    sealed.assert_policy_holds()
    assert sealed.hidden("content") and sealed.visible("device")
    clear = harness_attack(EXAMPLE / "scenario.toml", protection={"payload": "none"})
    assert clear.visible("content")
    assert [b["observable"] for b in clear.policy_breaks] == ["content"]


def test_registered_by_hand(plugin_registry, harness_attack):
    sys.path.insert(0, str(EXAMPLE))
    import chatproto

    plugins.register_protocol("chatproto", chatproto.plan)
    assert harness_attack(EXAMPLE / "scenario.toml").hidden("content")


def test_a_broken_plugin_is_named_when_a_scenario_asks_for_it(tmp_path, plugin_registry):
    from harness.errors import HarnessError
    from harness.scenario.load import load_scenario
    from harness.sim.simulate import simulate

    info = tmp_path / "broken-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[harness.protocols]\nbrokenproto = no_such_module:plan\n")
    sys.path.insert(0, str(tmp_path))
    plugins.load_protocol_plugins(reload=True)
    sc = (EXAMPLE / "scenario.toml").read_text().replace('"chatproto"', '"brokenproto"')
    (tmp_path / "b.toml").write_text(sc)
    with pytest.raises(HarnessError, match="no simulator for 'brokenproto'.*ModuleNotFoundError"):
        simulate(load_scenario(tmp_path / "b.toml"))


def test_cli_attack_with_an_installed_plugin(tmp_path):
    """The path a team takes: the plugin installed (here: its dist-info and package on PYTHONPATH)."""
    site = write_dist_info(tmp_path / "site")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), str(EXAMPLE)]))
    proc = subprocess.run([sys.executable, "-m", "harness", "attack", str(EXAMPLE / "scenario.toml")],
                          capture_output=True, text=True, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[2].split()[:2] == ["scenario", "hidden"]
    report = json.loads((tmp_path / "reports" / "scenario.json").read_text())
    assert report["observables"]["content"]["verdict"] == "hidden"


def test_score_a_capture_against_a_truth_file(tmp_path):
    """`harness score`: a team's capture plus what it knows was sent gives the same report as attack."""
    env = dict(os.environ)
    sim = subprocess.run([sys.executable, "-m", "harness", "simulate", "email-tls", "-o", str(tmp_path / "cap")],
                         capture_output=True, text=True, cwd=ROOT)
    assert sim.returncode == 0, sim.stderr
    cap = tmp_path / "cap"
    proc = subprocess.run([sys.executable, "-m", "harness", "score", str(cap / "email-tls.pcap"),
                           "--truth", str(cap / "email-tls.truth.json"), "--keys", str(cap / "email-tls.keys.json"),
                           "--scenario", str(ROOT / "scenarios" / "email-tls.toml"),
                           "--reports", str(tmp_path / "rep")], capture_output=True, text=True, cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "rep" / "email-tls.json").read_text())
    assert report["schema"] == "harness.report/1" and report["policy"]["hidden"][0] == "content"
    assert report["observables"]["content"]["verdict"] == "hidden"
    assert report["observables"]["endpoint"]["verdict"] == "visible"
    assert "email-tls" in proc.stdout
    bad = subprocess.run([sys.executable, "-m", "harness", "score", str(cap / "email-tls.pcap"),
                          "--truth", str(cap / "email-tls.keys.json")], capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 2 and "not a truth file" in bad.stderr and len(bad.stderr.splitlines()) == 1
