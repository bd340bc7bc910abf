"""Scenario options of the BlackBerry service: a seized BBM Protected identity, receipts off, P-521 key
agreement, and determinism."""
import hashlib
import re
from collections import Counter

from harness.analysis import run_analyzers
from harness.keys import load_knowledge
from harness.observe import Observer
from harness.scenario.load import load_scenario, load_scenario_text
from harness.scoring import score
from harness.sim.simulate import simulate, write_outputs
from tests.conftest import scenario_path

CANARY = re.compile(r"CNRY-[0-9a-f]{16}")


def variant(name: str, tmp_path, **replace):
    text = scenario_path(name).read_text().replace("duration = 600.0", "duration = 300.0")
    for old, new in replace.items():
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    return load_scenario_text(text, str(tmp_path / f"{name}.toml"))


def analyzed(sc, tmp_path):
    sim = simulate(sc)
    paths = write_outputs(sim, tmp_path, sc.name)
    result = run_analyzers(Observer([str(paths["pcap"])]).flows(), load_knowledge(paths["keys"]))
    doc = {"findings": [f.to_json() for f in result.findings]}
    return sim, doc, score(sim.truth, doc, sc.policy)


def busiest(sc) -> str:
    """The user in most messages (keys do not change the workload, so this holds for every variant)."""
    counts = Counter(u for m in simulate(sc).truth.messages for u in {m.sender, m.recipient})
    return counts.most_common(1)[0][0]


def test_a_seized_bbm_protected_identity_opens_that_devices_chats_only(tmp_path):
    who = busiest(variant("bbm-protected", tmp_path))
    sc = variant("bbm-protected", tmp_path, **{'keys = ["pin-global"]': f'keys = ["pin-global", "bbm-identity:{who}"]'})
    sim, doc, report = analyzed(sc, tmp_path)
    got = {t for f in doc["findings"] if f["observable"] == "content" and isinstance(f["value"], str)
           for t in CANARY.findall(f["value"])}
    theirs = {m.canary for m in sim.truth.messages if who in (m.sender, m.recipient) and m.legs}
    assert got and got == theirs
    assert report["observables"]["content"]["verdict"] == "partial"
    summary = next(f for f in doc["findings"] if f["kind"] == "key-summary" and f["evidence"]["key"].startswith("bbm"))
    assert "BBM Protected messages" in summary["value"]


def test_receipts_off_sends_no_receipts_or_presence(tmp_path):
    sc = variant("bbm-consumer", tmp_path, **{'receipts = "on"': 'receipts = "off"'})
    sim, doc, _ = analyzed(sc, tmp_path)
    summary = next(f for f in doc["findings"] if f["kind"] == "key-summary")
    crossed = summary["evidence"]["crossed"]
    assert "receipts" not in crossed and "presence updates" not in crossed and crossed.get("bbm messages")
    on = variant("bbm-consumer", tmp_path)
    assert len(simulate(on).frames) > len(sim.frames)


def test_p521_key_agreement_runs_end_to_end(tmp_path):
    p521 = {'key_agreement = "x25519"': 'key_agreement = "p521"'}
    who = busiest(variant("bbm-protected", tmp_path, **p521))
    sc = variant("bbm-protected", tmp_path, **p521,
                 **{'keys = ["pin-global"]': f'keys = ["pin-global", "bbm-identity:{who}"]'})
    sim, doc, report = analyzed(sc, tmp_path)
    assert report["observables"]["content"]["verdict"] in ("partial", "visible")
    got = {t for f in doc["findings"] if f["observable"] == "content" and isinstance(f["value"], str)
           for t in CANARY.findall(f["value"])}
    assert got and got == {m.canary for m in sim.truth.messages if who in (m.sender, m.recipient) and m.legs}


def test_same_seed_same_bytes():
    def digest(name):
        h = hashlib.sha256()
        for t, f in simulate(load_scenario(scenario_path(name))).frames:
            h.update(repr(t).encode() + f)
        return h.hexdigest()
    assert digest("bbm-protected") == digest("bbm-protected")
    assert digest("pin-org-key") == digest("pin-org-key")


def test_both_vantage_points_see_both_halves_of_the_path(tmp_path):
    sc = variant("bes-in-country", tmp_path, **{'taps = ["gateway"]': 'taps = ["carrier", "gateway"]'})
    sim, doc, report = analyzed(sc, tmp_path)
    flows = {f.flow: f for f in sim.truth.flows}
    internal = [m for m in sim.truth.messages if m.sender != m.recipient]
    # uplink, the SRP link (truth keeps one leg per flow: the crossing into the BES), downlink
    assert internal and all(len(m.legs) == 3 for m in internal)
    # every leg names the user device it concerns; on the SRP link (whose client is the BES) that is the
    # sender's device, named there by its PIN
    ips = {u.name: u.device_ip for u in sim.truth.users}
    assert all(leg.device for m in internal for leg in m.legs)
    srp = [(m, leg) for m in internal for leg in m.legs if not leg.flow.split()[1].startswith(leg.device + ":")]
    assert len({flows[leg.flow].flow for _, leg in srp}) == 1  # one SRP link
    assert all(leg.device == ips[m.sender] for m, leg in srp)
    v = {o: r["verdict"] for o, r in report["observables"].items()}
    assert v["content"] == "hidden" and v["device"] == "visible" and v["endpoint"] == "visible"
