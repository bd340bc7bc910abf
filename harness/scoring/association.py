"""Which findings speak about which message: by content (canary), or by flow and time window."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from harness.series import expand
from harness.sim.truth import Leg, Truth, TruthMessage

# A finding with a time speaks about a message leg if it falls in [tap_time - BEFORE, tap_time + AFTER].
BEFORE, AFTER = 0.5, 3.0


def norm(value) -> str:
    return str(value).strip().strip("<>").lower()


def host_of(value) -> str:
    """The host part of "ip:port", "[v6]:port", a bare address or a name."""
    s = norm(value)
    if s.startswith("["):
        return s[1:s.index("]")] if "]" in s else s
    if s.count(":") == 1:
        return s.split(":")[0]
    return s


@dataclass
class Index:
    """Findings grouped by observable and flow, for association."""

    by_obs_flow: dict

    @classmethod
    def build(cls, findings: list[dict]) -> "Index":
        d: dict = defaultdict(lambda: defaultdict(list))
        for f in findings:
            for item in expand(f):  # a series finding (harness/series.py): one finding per item
                d[item["observable"]][item.get("flow")].append(item)
        return cls(d)

    def of(self, observable: str) -> list[dict]:
        return [f for fl in self.by_obs_flow.get(observable, {}).values() for f in fl]

    def near(self, observable: str, leg: Leg) -> list[dict]:
        """Findings of `observable` on the leg's flow, at the leg's time (or with no time)."""
        out = []
        for f in self.by_obs_flow.get(observable, {}).get(leg.flow, []):
            times = finding_times(f)
            if not times or any(leg.tap_time - BEFORE <= t <= leg.tap_time + AFTER for t in times):
                out.append(f)
        return out


def finding_times(f: dict) -> list[float]:
    """Every moment a finding speaks about: value["time"], evidence["time"], and evidence["times"] (one
    finding for a fact seen repeatedly on one flow, e.g. the same sender in many messages)."""
    ev = f.get("evidence") or {}
    out = [float(t) for t in ev.get("times", ()) if t is not None]
    t = finding_time(f)
    if t is not None:
        out.append(t)
    return out


def finding_time(f: dict) -> float | None:
    v = f.get("value")
    if isinstance(v, dict) and "time" in v:
        return float(v["time"])
    t = (f.get("evidence") or {}).get("time")
    return float(t) if t is not None else None


def user_identities(truth: Truth) -> dict[str, set[str]]:
    """user name -> the application identities that name that user."""
    return {u.name: {u.name.lower(), u.email.lower()} for u in truth.users}


def device_identities(truth: Truth) -> dict[str, set[str]]:
    """device IP -> identities that name the device (address, PIN, device name)."""
    return {u.device_ip: {u.device_ip, f"pin:{u.pin}", u.device.lower()} for u in truth.users}


def device_owner(truth: Truth) -> dict[str, str]:
    """Any device identity -> the device's IP."""
    return {ident: ip for ip, idents in device_identities(truth).items() for ident in idents}


def identity_owner(truth: Truth) -> dict[str, str]:
    """Any identity (address, name, device IP, PIN) -> user name."""
    out = {}
    for u in truth.users:
        for ident in (u.name, u.email, u.device_ip, f"pin:{u.pin}", u.device):
            out[ident.lower()] = u.name
    return out


def credit(candidates: list[str], truths: set[str], canon: dict[str, str] | None = None) -> float:
    """1/k if one of the k distinct candidates is true, else 0 (spraying guesses earns nothing).

    `canon` maps identities to the entity they name, so an address and a PIN of one device are one guess.
    """
    values = {norm(c) for c in candidates}
    if not values:
        return 0.0
    canon = canon or {}
    entities = {canon.get(v, v) for v in values}
    return 1.0 / len(entities) if values & truths else 0.0


def message_excerpt(m: TruthMessage) -> dict:
    return {"message": m.id, "message_kind": m.kind, "sender": m.sender, "recipient": m.recipient,
            "send_time": m.send_time}
