"""Every BlackBerry scenario's capture dissects cleanly: in tshark at TCP level, and field by field in
scapy with the layers built from the format tables (harness/wire/layers.py)."""
import shutil
import subprocess

import pytest
from scapy.layers.inet import TCP
from scapy.layers.l2 import Ether
from scapy.packet import Raw, bind_layers, split_layers

from harness.observe.relay_wire import relay_envelope_at, srp_frame_at
from harness.wire.layers import (
    BbmpKeying,
    BesMailPayload,
    BlackBerryStream,
    RelayEnvelopeV2,
    SrpFrame,
)
from tests.blackberry.conftest import BLACKBERRY

PER_SCENARIO = 60  # segments checked field by field per capture


def whole_units(frames):
    """(frame, payload) of segments that start on an envelope or SRP-frame boundary and hold it whole."""
    for _, frame in frames:
        ihl = (frame[14] & 0x0F) * 4
        tcp = 14 + ihl
        payload = frame[tcp + (frame[tcp + 12] >> 4) * 4:]
        if payload[:2] == b"\xbb\x02":
            env = relay_envelope_at(payload, 0)
            if env is not None and env.end == len(payload):
                yield frame, payload
        elif payload[:2] == b"SR":
            f = srp_frame_at(payload, 0)
            if f is not None and f.end == len(payload):
                yield frame, payload


@pytest.fixture
def bound():
    bind_layers(TCP, BlackBerryStream, dport=3101)
    bind_layers(TCP, BlackBerryStream, sport=3101)
    yield
    split_layers(TCP, BlackBerryStream, dport=3101)
    split_layers(TCP, BlackBerryStream, sport=3101)


@pytest.mark.parametrize("name", BLACKBERRY)
def test_scapy_dissects_envelopes_field_by_field(name, bb_runs, bound):
    run = bb_runs(name)
    checked = 0
    kinds = set()
    for frame, payload in whole_units(run.sim.frames):
        pkt = Ether(frame)
        if payload[:2] == b"SR":
            srp = pkt[SrpFrame]
            f = srp_frame_at(payload, 0)
            assert (srp.type, srp.length, srp.seq) == (f.type, f.length, f.seq)
            kinds.add(("srp", f.type))
            if f.type != 5:
                checked += 1
                continue
            inner, at = pkt[RelayEnvelopeV2], f.body_offset
        else:
            inner, at = pkt[RelayEnvelopeV2], 0
        env = relay_envelope_at(payload, at)
        assert (inner.magic, inner.type, inner.flags, inner.pin, inner.peer_pin, inner.msg_id, inner.service,
                inner.ext_len) == (0xBB02, env.type, env.flags, env.pin, env.peer_pin, env.msg_id, env.service,
                                   env.ext_len)
        kinds.add(("envelope", env.type, env.service))
        if env.ext_len:
            k = inner[BbmpKeying]
            assert k.nonce == payload[env.ext_offset + 12:env.ext_offset + 28] and k.agreement == 1
        if env.service == 1 and env.type in (1, 2):
            mail = inner[BesMailPayload]
            assert mail.cipher in (1, 2) and len(mail.wrapped) == mail.wrapped_len and len(mail.iv) == mail.iv_len
            assert bytes(mail) == payload[env.body_offset:env.end]
        assert bytes(inner) == payload[at:env.end]  # dissect, rebuild: the same bytes
        checked += 1
        if checked >= PER_SCENARIO:
            break
    assert checked >= 10, f"{name}: too few whole envelopes to check ({checked})"
    assert kinds


def test_explicit_decode_without_binding(bb_runs):
    _, payload = next(whole_units(bb_runs("pin-global-key").sim.frames))
    pkt = BlackBerryStream(payload)
    assert isinstance(pkt, RelayEnvelopeV2) and pkt.magic == 0xBB02
    assert isinstance(BlackBerryStream(b"not an envelope"), Raw)


@pytest.mark.tshark
@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
@pytest.mark.parametrize("name", BLACKBERRY)
def test_tshark_dissects_without_warnings(name, bb_runs):
    pcap = str(bb_runs(name).paths["pcap"])
    out = subprocess.run(["tshark", "-r", pcap, "-o", "tcp.check_checksum:TRUE", "-o", "ip.check_checksum:TRUE",
                          "-q", "-z", "expert,warn"], capture_output=True, text=True, check=True).stdout
    assert "Warnings" not in out and "Errors" not in out, out
    fields = subprocess.run(["tshark", "-r", pcap, "-T", "fields", "-e", "_ws.malformed", "-e", "tcp.analysis.flags"],
                            capture_output=True, text=True, check=True).stdout
    assert not fields.strip(), fields[:500]
