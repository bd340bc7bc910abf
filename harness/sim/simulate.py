"""Scenario -> (frames the tapped links carry, ground truth, keys the adversary may hold)."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from harness.errors import HarnessError
from harness.sim.rng import substream
from harness.sim.services import services
from harness.sim.services.context import SimContext, truth_flow
from harness.sim.truth import Leg, Truth, TruthMessage
from harness.sim.workload import make_messages, make_users
from harness.wire.packets import build_frame
from harness.wire.pcap_writer import write_pcap
from harness.wire.tcp_sim import simulate_connection


@dataclass
class SimResult:
    frames: list[tuple[float, bytes]]
    truth: Truth
    adversary_keys: list[dict]  # [{"name", "kind", "material": hex}] granted by adversary.keys
    costs: dict = field(default_factory=dict)  # what the scenario's [defences] cost (defence_costs)


def simulate(scenario) -> SimResult:
    users = make_users(scenario)
    messages = make_messages(scenario, users)
    ctx = SimContext(scenario, users, messages)
    planners = services()
    if scenario.service.protocol not in planners:
        from harness.plugins import PLUGIN_ERRORS

        why = PLUGIN_ERRORS.get(scenario.service.protocol, "")
        raise HarnessError(f"service.protocol: no simulator for {scenario.service.protocol!r}"
                           + (f" ({why})" if why else ""), path=scenario.path)
    plan = planners[scenario.service.protocol](ctx)

    packets = []
    legs: dict[str, list[Leg]] = {m.id: [] for m in messages}
    flows = []
    device_ips = {u.device_ip for u in users}
    for i, pc in enumerate(plan.connections):
        result = simulate_connection(pc.plan, substream(scenario.seed, "tcp", i))
        packets.extend(result.packets)
        tf = truth_flow(pc, ctx)
        flows.append(tf)
        for mid, (direction, tap_time) in result.legs.items():
            device = pc.leg_devices.get(mid) or (pc.plan.client_ip if pc.plan.client_ip in device_ips else "")
            legs[mid].append(Leg(flow=tf.flow, direction=direction, tap_time=round(tap_time, 6), device=device))
    packets.sort(key=lambda p: (p.time, p.src, p.sport))
    frames = [(p.time, build_frame(p)) for p in packets]

    granted = []
    for k, name in enumerate(scenario.adversary.keys):
        if name not in ctx.keys:
            have = ", ".join(sorted(ctx.keys)) or "none"
            raise HarnessError(f"adversary.keys[{k}]: unknown key {name!r} (this scenario has: {have})",
                               path=scenario.path)
        kind, material = ctx.keys[name]
        granted.append({"name": name, "kind": kind, "material": material.hex()})

    truth = Truth(
        scenario=scenario.name, seed=scenario.seed, duration=scenario.duration, users=users,
        messages=[TruthMessage(m.id, m.kind, m.sender.name, m.recipient.name, round(m.send_time, 6), m.size,
                               m.canary, m.subject, sorted(legs[m.id], key=lambda l: l.tap_time))
                  for m in messages],
        flows=flows,
        hosts={h.name: {"ip": h.ip, "hostname": h.hostname, "role": h.role} for h in scenario.topology.hosts},
    )
    return SimResult(frames, truth, granted, defence_costs(scenario, ctx, frames, truth))


def defence_costs(scenario, ctx: SimContext, frames: list, truth: Truth) -> dict:
    """With [defences] on: the same scenario is simulated without them, and the capture's bytes (every
    frame on the tapped links, headers included) compared; latency comes from the schedule
    (harness/sim/defences.py), and the tap times of the messages' legs are compared as a check."""
    defences = getattr(scenario, "defences", None)
    if defences is None or not defences.any:
        return {}
    from harness.scenario.schema import Defences

    base = simulate(replace(scenario, defences=Defences()))
    size, base_size = sum(len(f) for _, f in frames), sum(len(f) for _, f in base.frames)
    last = {m.id: max((l.tap_time for l in m.legs), default=None) for m in truth.messages}
    tap_delay = sorted(last[m.id] - t for m in base.truth.messages
                       for t in [max((l.tap_time for l in m.legs), default=None)]
                       if t is not None and last.get(m.id) is not None)
    return {**ctx.costs,
            "bandwidth": {"bytes": size, "baseline_bytes": base_size,
                          "overhead_pct": round(100.0 * (size - base_size) / max(base_size, 1), 2),
                          "source": "capture: frame bytes on the tapped links, with minus without defences"},
            "tap_latency": {"messages": len(tap_delay),
                            "p50_s": round(tap_delay[len(tap_delay) // 2], 4) if tap_delay else 0.0,
                            "source": "capture: tap time of each message's last leg (its first byte), with minus without"}}


def _write_json_atomic(path: Path, doc) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)


def write_outputs(result: SimResult, outdir: str | Path, name: str) -> dict[str, Path]:
    """captures/NAME.pcap, NAME.truth.json and NAME.keys.json (the adversary's keys); each atomic."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    paths = {"pcap": outdir / f"{name}.pcap", "truth": outdir / f"{name}.truth.json",
             "keys": outdir / f"{name}.keys.json"}
    write_pcap(paths["pcap"], result.frames)
    _write_json_atomic(paths["truth"], result.truth.to_json())
    _write_json_atomic(paths["keys"], {"schema": "harness.keys/1", "keys": result.adversary_keys})
    return paths
