"""The simulator: deterministic from the seed, real TCP as scapy and tshark see it, truth that matches."""
import hashlib
import shutil
import subprocess
from collections import defaultdict

import pytest
from scapy.layers.inet import TCP
from scapy.layers.l2 import Ether

from harness.errors import HarnessError
from harness.scenario.load import load_scenario, load_scenario_text
from harness.sim.simulate import simulate, write_outputs
from tests.conftest import scenario_path

ALL = ["email-plaintext", "email-tls", "bes-relay"]


@pytest.fixture(scope="module")
def sims():
    return {n: simulate(load_scenario(scenario_path(n))) for n in ALL}


def _digest(frames):
    h = hashlib.sha256()
    for t, f in frames:
        h.update(repr(t).encode() + f)
    return h.hexdigest()


@pytest.mark.parametrize("name", ["email-plaintext", "bes-relay"])
def test_same_seed_same_bytes(name, sims):
    again = simulate(load_scenario(scenario_path(name)))
    assert _digest(again.frames) == _digest(sims[name].frames)
    assert again.truth.to_json() == sims[name].truth.to_json()


def test_tls_runs_differ_in_bytes_but_not_in_sizes_or_times(sims):
    again = simulate(load_scenario(scenario_path("email-tls")))
    first = sims["email-tls"]
    assert [(t, len(f)) for t, f in again.frames] == [(t, len(f)) for t, f in first.frames]
    assert again.truth.to_json() == first.truth.to_json()


def test_other_seed_other_workload():
    sc = load_scenario(scenario_path("email-plaintext"))
    text = scenario_path("email-plaintext").read_text().replace("seed = 101", "seed = 999")
    other = simulate(load_scenario_text(text, "x.toml"))
    assert other.truth.messages != simulate(sc).truth.messages


def test_tcp_is_consistent(sims):
    """Per direction: SYN first, sequence numbers contiguous, ACKs never ahead of what the peer sent."""
    for name, sim in sims.items():
        sent = defaultdict(int)  # (src, sport, dst, dport) -> next seq expected
        highest = defaultdict(int)
        for _, frame in sim.frames:
            pkt = Ether(frame)
            tcp = pkt[TCP]
            key = (pkt.payload.src, tcp.sport, pkt.payload.dst, tcp.dport)
            rev = (key[2], key[3], key[0], key[1])
            length = len(bytes(tcp.payload)) + (1 if tcp.flags & 0x03 else 0)
            if tcp.flags & 0x02:  # SYN
                assert key not in sent, f"{name}: second SYN on {key}"
            else:
                assert tcp.seq == sent[key], f"{name}: sequence gap on {key}"
                if tcp.flags & 0x10 and rev in sent:
                    assert tcp.ack <= sent[rev], f"{name}: ACK ahead of data on {key}"
            sent[key] = (tcp.seq + length) & 0xFFFFFFFF
            highest[key] = max(highest[key], len(bytes(tcp.payload)))
        assert max(highest.values()) <= 1460


def test_truth_describes_every_message(sims):
    for name, sim in sims.items():
        t = sim.truth
        assert t.messages, name
        canaries = [m.canary for m in t.messages]
        assert len(set(canaries)) == len(canaries)
        flows = {f.flow for f in t.flows}
        for m in t.messages:
            assert m.legs and all(leg.flow in flows for leg in m.legs)
            assert all(leg.tap_time >= m.send_time for leg in m.legs)


def test_canaries_on_the_wire_only_when_unprotected(sims):
    wire = {n: b"".join(f for _, f in s.frames) for n, s in sims.items()}
    plain = sims["email-plaintext"].truth.messages
    assert all(m.canary.encode() in wire["email-plaintext"] for m in plain)
    for n in ("email-tls", "bes-relay"):
        assert not any(m.canary.encode() in wire[n] for m in sims[n].truth.messages)


def test_relay_messages_cross_the_carrier_twice(sims):
    legs = [len(m.legs) for m in sims["bes-relay"].truth.messages]
    assert set(legs) == {2}  # sender's uplink and recipient's downlink


def test_unknown_adversary_key_is_an_input_error(tmp_path):
    text = scenario_path("bes-relay").read_text().replace('taps = ["carrier"]',
                                                          'taps = ["carrier"]\nkeys = ["device:nobody"]')
    with pytest.raises(HarnessError, match=r"adversary.keys\[0\]: unknown key 'device:nobody'"):
        simulate(load_scenario_text(text, str(tmp_path / "x.toml")))


@pytest.mark.tshark
@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
@pytest.mark.parametrize("name", ALL)
def test_tshark_dissects_without_warnings(name, sims, tmp_path):
    paths = write_outputs(sims[name], tmp_path, name)
    out = subprocess.run(["tshark", "-r", str(paths["pcap"]), "-o", "tcp.check_checksum:TRUE",
                          "-o", "ip.check_checksum:TRUE", "-q", "-z", "expert,warn"],
                         capture_output=True, text=True, check=True).stdout
    assert "Warnings" not in out and "Errors" not in out, out
    fields = subprocess.run(["tshark", "-r", str(paths["pcap"]), "-T", "fields", "-e", "_ws.malformed",
                             "-e", "tcp.analysis.flags"], capture_output=True, text=True, check=True).stdout
    assert not fields.strip(), fields[:500]
