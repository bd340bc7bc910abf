"""The typed scenario: frozen dataclasses that `harness.scenario.load` builds, and the open choice sets.

The sets (PROTOCOLS, TRANSPORTS, ...) are extension points: a module that adds a protocol engine,
a transport, a payload protection, a message kind, a text generator or a size distribution adds its
name here (`schema.PROTOCOLS.add("bbm-pin")`). Validation reads the sets when a file is loaded,
never at import time, so either mutating or rebinding them works.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

# --- extension points: names other modules register -------------------------------------------
PROTOCOLS: set[str] = {"smtp", "bes-relay", "blackberry"}  # service.protocol
RELAYED_PROTOCOLS: set[str] = {"bes-relay", "blackberry"}  # protocols that need service.relay
TRANSPORTS: set[str] = {"none", "tls13"}  # protection.transport
PAYLOAD_PROTECTIONS: set[str] = {"none", "aes-256-gcm"}  # protection.payload
MESSAGE_KINDS: set[str] = {"email", "chat", "pin", "bbm", "bbm-protected"}  # workload.kinds[].kind
SUBJECT_KINDS: set[str] = {"email", "pin"}  # kinds whose messages carry a subject unless `subject` says otherwise
TEXT_GENERATORS: set[str] = {"words"}  # workload.text
SIZE_DISTS: set[str] = {"lognormal", "uniform", "fixed", "pareto"}  # workload.kinds[].size.dist

# --- fixed vocabularies ------------------------------------------------------------------------
HOST_ROLES: tuple[str, ...] = ("server", "relay", "enterprise")
RECIPIENT_MODES: tuple[str, ...] = ("any", "contacts")
DEVICES = "devices"  # the link end that stands for all user devices; no host may take this name
NAME_PATTERN = r"^[a-z0-9][a-z0-9-]*$"  # scenario, host and link names


class FrozenMap(Mapping[str, float]):
    """A read-only, hashable mapping (`policy.max_advantage`): `m.get(obs)`, `m[obs]`, `dict(m)` all work."""

    __slots__ = ("_items",)

    def __init__(self, items: Mapping[str, float] | Iterable[tuple[str, float]] = ()) -> None:
        object.__setattr__(self, "_items", dict(items))

    def __getitem__(self, key: str) -> float:
        return self._items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return hash(frozenset(self._items.items()))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("FrozenMap is read-only")

    def __repr__(self) -> str:
        return f"FrozenMap({self._items!r})"


@dataclass(frozen=True)
class Host:
    """A machine on the far side of a tapped link."""

    name: str
    role: str  # one of HOST_ROLES
    ip: str  # canonical text form of an IPv4 or IPv6 address
    hostname: str  # DNS name, "" for none


@dataclass(frozen=True)
class Link:
    """A network path between the devices or a host (`a`) and a host (`b`), which a tap may sit on."""

    name: str
    a: str  # DEVICES or a host name
    b: str  # a host name
    latency_ms: float  # one way
    jitter_ms: float
    bandwidth_mbps: float
    mss: int
    tap_position: float  # 0 = at a, 1 = at b


@dataclass(frozen=True)
class Topology:
    """Hosts, links, and the subnet the user devices get their addresses from."""

    device_subnet: str  # canonical network text; devices are numbered from network address + 1
    hosts: tuple[Host, ...]
    links: tuple[Link, ...]

    def host(self, name: str) -> Host:
        """The host called `name`; KeyError if there is none."""
        for host in self.hosts:
            if host.name == name:
                return host
        raise KeyError(name)

    def link(self, name: str) -> Link:
        """The link called `name`; KeyError if there is none."""
        for link in self.links:
            if link.name == name:
                return link
        raise KeyError(name)


@dataclass(frozen=True)
class Service:
    """The messaging service the devices use."""

    protocol: str  # one of PROTOCOLS
    server: str  # host name of the final destination
    relay: str  # host name of the relay, "" for none
    port: int  # 0 = the protocol's default
    keepalive: str = "periodic"  # relayed services: "periodic", or also "on-activity" (a ping when the user sends)


@dataclass(frozen=True)
class SizeDist:
    """How large a message body is, in bytes; which fields matter depends on `dist`."""

    dist: str  # one of SIZE_DISTS
    median: float | None  # lognormal
    sigma: float  # lognormal
    min: int  # all: sizes are clamped to min..max
    max: int
    value: int | None  # fixed
    alpha: float  # pareto
    scale: float  # pareto


@dataclass(frozen=True)
class MessageKind:
    """One kind of message the users send, at a rate per user."""

    kind: str  # one of MESSAGE_KINDS
    rate_per_hour: float
    subject: bool
    size: SizeDist
    attachment_rate: float = 0.0  # e-mail: share of messages with an attachment
    attachment_size: SizeDist | None = None  # e-mail: attachment size (before base64)
    burst_mean: float = 0.0  # chat kinds: mean replies that follow each message (a conversation burst)


@dataclass(frozen=True)
class Workload:
    """Who sends what: the users, their domain and the kinds of messages they write."""

    users: int
    domain: str
    text: str  # one of TEXT_GENERATORS
    recipients: str  # one of RECIPIENT_MODES
    contacts_per_user: int
    kinds: tuple[MessageKind, ...]
    diurnal: bool = False  # activity follows the time of day (start_hour)
    start_hour: float = 9.0  # local time of day at which the run starts
    activity_sigma: float = 0.0  # spread of per-user activity (sigma of a lognormal rate multiplier)


@dataclass(frozen=True)
class Protection:
    """What protects the traffic: on the wire (transport) and end to end (payload)."""

    transport: str  # one of TRANSPORTS
    payload: str  # one of PAYLOAD_PROTECTIONS
    debug_header: bool = False  # relayed services: "To: <recipient>" in clear before the sealed body
    nonce: str = "counter"  # AES-GCM nonces: "counter" (never repeat per key) or "reused" (a broken build)
    receipts: str = "on"  # "on" | "off": delivery/read receipts and presence travel (relayed services)
    escrow: bool = False  # lawful-intercept back door: every message key also wrapped to a state-held key


@dataclass(frozen=True)
class Blackberry:
    """How the BlackBerry systems are set up (service.protocol = "blackberry")."""

    mail_cipher: str = "aes-256-cbc"  # BES e-mail: "aes-256-cbc" or legacy "3des-cbc"
    pin_key: str = "global"  # PIN and consumer BBM scrambling: "global" (every device) or "org"
    key_agreement: str = "x25519"  # BBM Protected chat keys: "x25519" or "p521"
    srp_id: str = ""  # the BES's SRP id; "" = derived from the seed
    presence_per_hour: float = 2.0  # BBM presence updates per user per hour (with receipts on)


@dataclass(frozen=True)
class Adversary:
    """The state adversary: the links it taps and the keys it holds (names the protocols resolve)."""

    taps: tuple[str, ...]
    keys: tuple[str, ...]


@dataclass(frozen=True)
class Policy:
    """What the deployment promises to hide, and the advantage allowed per observable."""

    hidden: tuple[str, ...]
    max_advantage: FrozenMap  # observable -> 0..1; `.get(obs)` is None when there is no limit
    known_breaks: tuple[str, ...] = ()  # breaks the scenario exists to show: reported, not failed (docs/gate.md)


@dataclass(frozen=True)
class Defences:
    """Traffic-analysis defences a relayed service applies to its schedule (harness/sim/defences.py)."""

    padding: str = "none"  # "none" | "bucket" | "constant": bodies padded inside the seal
    pad_bucket: int = 160  # bucket: padded up to a multiple of this many bytes
    pad_size: int = 4096  # constant: every body this size; longer messages split into fragments of it
    batching: str = "none"  # "none" | "threshold" | "timed": the relay mixes what it sends on
    batch_size: int = 5  # threshold: flush when this many wait (or batch_interval after the first)
    batch_interval: float = 10.0  # seconds: timed flush period; threshold time-out
    cover: str = "none"  # "none" | "constant" | "poisson": per-device send slots both ways, cover fills idle ones
    cover_rate_per_min: float = 6.0  # slots per device per direction per minute
    jitter_ms: float = 0.0  # device and relay hold each message a uniform 0..jitter_ms
    receipts: str = "on"  # "on" | "off" | "delayed": what happens to transmissions of kind "receipt"
    receipt_delay: float = 30.0  # delayed: receipts held a uniform 0..this many seconds

    @property
    def any(self) -> bool:
        return self != Defences()


@dataclass(frozen=True)
class Scenario:
    """One scenario file, validated and typed."""

    name: str
    description: str
    seed: int
    duration: float  # seconds of simulated time
    topology: Topology
    service: Service
    workload: Workload
    protection: Protection
    adversary: Adversary
    policy: Policy
    path: str  # the file it was loaded from, as given
    blackberry: Blackberry = Blackberry()
    defences: Defences = Defences()

    def to_json(self) -> dict[str, Any]:
        """The whole scenario as plain JSON-able data (dicts, lists, str, int, float, bool, None)."""
        return _plain(self)


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value
