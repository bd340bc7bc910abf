"""Ground truth: what was really sent. Written by the simulator, read only by the scorer and tests.

Analyzers must never import this module (tests/test_boundary.py enforces it).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

SCHEMA = "harness.truth/1"


@dataclass
class TruthUser:
    name: str
    email: str
    device: str  # device name
    device_ip: str
    pin: str  # 8 lower-case hex digits


@dataclass
class Leg:
    """One crossing of a tapped link by a message."""

    flow: str  # observe.model.flow_key of the connection that carried it
    direction: str  # "client" (sent by the flow's opener) or "server"
    tap_time: float  # when its first byte passed the tap
    device: str  # the device at the tapped end of this leg (its IP)


@dataclass
class TruthMessage:
    id: str
    kind: str  # "email" | "chat" | ...
    sender: str  # user name
    recipient: str  # user name
    send_time: float
    size: int  # bytes of the message as composed (headers + body for e-mail)
    canary: str
    subject: str | None
    legs: list[Leg] = field(default_factory=list)


@dataclass
class TruthFlow:
    flow: str
    app: str  # the application it really carries: "smtp", "bes-relay", ...
    transport: str  # "tcp", "tls", ...
    server: str  # final destination host name
    server_ip: str
    server_hostname: str


@dataclass
class Truth:
    scenario: str
    seed: int
    duration: float
    users: list[TruthUser]
    messages: list[TruthMessage]
    flows: list[TruthFlow]
    hosts: dict[str, dict]  # host name -> {"ip", "hostname", "role"}
    schema: str = SCHEMA

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, doc: dict) -> "Truth":
        if doc.get("schema") != SCHEMA:
            raise ValueError(f"not a {SCHEMA} document")
        return cls(
            scenario=doc["scenario"], seed=doc["seed"], duration=doc["duration"],
            users=[TruthUser(**u) for u in doc["users"]],
            messages=[TruthMessage(**{**m, "legs": [Leg(**l) for l in m["legs"]]}) for m in doc["messages"]],
            flows=[TruthFlow(**f) for f in doc["flows"]],
            hosts=doc["hosts"],
        )


def load_truth(path: str | Path) -> Truth:
    from harness.errors import HarnessError

    try:
        return Truth.from_json(json.loads(Path(path).read_text()))
    except FileNotFoundError:
        raise HarnessError("no such file", path=str(path)) from None
    except (ValueError, KeyError, TypeError) as exc:
        raise HarnessError(f"not a truth file ({exc})", path=str(path)) from None
