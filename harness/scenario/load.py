"""Load scenario files: TOML via tomllib, checked against the field tables below, built into `schema.Scenario`.

Every problem is a `HarnessError` whose text is one line, `scenarios/x.toml: workload.kinds[0].rate_per_hour:
must be > 0`, naming the first problem in document order. Adding a key is adding a row to a table here
(and the field to its dataclass in schema.py).
"""
from __future__ import annotations

import ipaddress
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.observables import OBSERVABLES
from harness.scenario import schema
from harness.scenario.fields import (
    BOOL,
    INT,
    NUMBER,
    REQUIRED,
    STR,
    At,
    Check,
    Computed,
    Field,
    Invalid,
    ListOf,
    MapOf,
    Problem,
    RequiredFor,
    Section,
    Table,
    Tables,
    between,
    describe,
    differs_from,
    ge,
    ge_sibling,
    gt,
    ip_address,
    ip_network,
    known,
    le,
    matches,
    not_value,
    one_of,
    quote,
    read_section,
    rule,
    unique,
)
from harness.scenario.schema import (
    DEVICES,
    HOST_ROLES,
    NAME_PATTERN,
    RECIPIENT_MODES,
    Adversary,
    Defences,
    Blackberry,
    Host,
    Link,
    MessageKind,
    Policy,
    Protection,
    Scenario,
    Service,
    SizeDist,
    Topology,
    Workload,
)

DOMAIN_PATTERN = r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"


# --- what checks may know about the rest of the document ---------------------------------------
@dataclass(frozen=True)
class Context:
    """Facts gathered from the raw document before the walk, so references resolve in any order."""

    stem: str  # the file name without .toml: the default scenario name
    hosts: frozenset[str]  # host names declared (valid or not)
    links: frozenset[str]  # link names declared
    subnet: ipaddress.IPv4Network | ipaddress.IPv6Network | None  # device_subnet, when it parses
    users: int | None  # workload.users, when it is an integer

    @classmethod
    def of(cls, doc: dict[str, Any], path: str | Path) -> Context:
        topology = _table(doc.get("topology"))
        users = _table(doc.get("workload")).get("users")
        subnet_text = topology.get("device_subnet")
        try:
            subnet = ipaddress.ip_network(subnet_text, strict=True) if isinstance(subnet_text, str) else None
        except ValueError:
            subnet = None
        return cls(
            stem=Path(path).stem,
            hosts=_names(topology.get("hosts")),
            links=_names(topology.get("links")),
            subnet=subnet,
            users=users if isinstance(users, int) and not isinstance(users, bool) else None,
        )

    def device_addresses(self) -> tuple[Any, Any] | None:
        """The first and last device address: devices are numbered from the network address + 1."""
        if self.subnet is None or self.users is None or not 1 <= self.users < self.subnet.num_addresses:
            return None
        return self.subnet.network_address + 1, self.subnet.network_address + self.users


def _table(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _names(entries: Any) -> frozenset[str]:
    if not isinstance(entries, list):
        return frozenset()
    return frozenset(e["name"] for e in entries if isinstance(e, dict) and isinstance(e.get("name"), str))


def _devices_fit_subnet(users: int, at: At) -> int:
    subnet = at.context.subnet
    if subnet is not None and users > subnet.num_addresses - 1:
        raise Problem(f"device_subnet {subnet} has room for only {subnet.num_addresses - 1} devices")
    return users


def _not_a_device_address(ip: str, at: At) -> str:
    devices = at.context.device_addresses()
    if devices is not None:
        first, last = devices
        address = ipaddress.ip_address(ip)
        if address.version == first.version and first <= address <= last:
            raise Problem(f"{ip} is a device address (devices get {first}-{last} from device_subnet)")
    return ip


def _fewer_contacts_than_users(contacts: int, at: At) -> int:
    users = at.table["users"]
    if at.table["recipients"] == "contacts" and contacts > users - 1:
        raise Problem(f"must be at most users - 1 ({users - 1}) when recipients = contacts")
    return contacts


def _optional(check: Check) -> Check:
    """`check`, except that "" passes (for optional strings)."""
    return rule(lambda: check.describe() + ' or ""', lambda v, at: v if v == "" else check(v, at), late=check.late)


def _observable(name: str, at: At) -> str:
    if name not in OBSERVABLES:
        raise Problem(f"unknown observable {quote(name)}")
    return name


HOST_NAME = known("host", lambda context: context.hosts)
OBSERVABLE = rule("an observable (harness.observables)", _observable)
SCENARIO_NAME = matches(NAME_PATTERN)
DOMAIN_NAME = matches(DOMAIN_PATTERN, "a domain name like \"corp.example\"")


# --- the field tables: key, kind, default, checks, doc ------------------------------------------
HOST = Section(
    (
        Field("name", STR, REQUIRED, (matches(NAME_PATTERN), not_value(DEVICES), unique("host name")),
              "how links and the service refer to the host"),
        Field("role", STR, REQUIRED, (one_of(HOST_ROLES),), "what the host does"),
        Field("ip", STR, REQUIRED, (ip_address(), unique("host address"), rule("not a device address", _not_a_device_address)),
              "its IPv4 or IPv6 address"),
        Field("hostname", STR, "", (_optional(DOMAIN_NAME),), "its DNS name"),
    ),
    Host,
)

LINK = Section(
    (
        Field("name", STR, REQUIRED, (matches(NAME_PATTERN), unique("link name")), "how taps refer to the link"),
        Field("a", STR, REQUIRED, (known("host", lambda context: context.hosts, also=[DEVICES]),),
              '"devices" or a host name: the end nearer the users'),
        Field("b", STR, REQUIRED, (HOST_NAME, differs_from("a")), "a host name: the far end"),
        Field("latency_ms", NUMBER, 10.0, (ge(0),), "one-way latency in milliseconds"),
        Field("jitter_ms", NUMBER, 1.0, (ge(0),), "latency jitter in milliseconds"),
        Field("bandwidth_mbps", NUMBER, 100.0, (gt(0),), "bandwidth in Mbit/s"),
        Field("mss", INT, 1460, (between(536, 9000),), "TCP maximum segment size"),
        Field("tap_position", NUMBER, 0.5, (between(0, 1),), "where the tap sits: 0 = at a, 1 = at b"),
    ),
    Link,
)

TOPOLOGY = Section(
    (
        Field("device_subnet", STR, REQUIRED, (ip_network(),),
              "network the user devices are numbered from, skipping the network address"),
        Field("hosts", Tables(HOST, min_items=1), REQUIRED, (), "the hosts"),
        Field("links", Tables(LINK, min_items=1), REQUIRED, (), "the links"),
    ),
    Topology,
)

SERVICE = Section(
    (
        Field("protocol", STR, REQUIRED, (one_of(lambda: schema.PROTOCOLS),), "the messaging protocol"),
        Field("server", STR, REQUIRED, (HOST_NAME,), "host name of the final destination"),
        Field("relay", STR, RequiredFor("protocol", lambda: schema.RELAYED_PROTOCOLS, ""), (_optional(HOST_NAME),),
              "host name of the relay"),
        Field("port", INT, 0, (between(1, 65535),), "server port; absent = the protocol's default"),
        Field("keepalive", STR, "periodic", (one_of(("periodic", "on-activity")),),
              'relayed services: keep-alives on a fixed period, or also one each time the user sends ("on-activity")'),
    ),
    Service,
)

SIZE = Section(
    (
        Field("dist", STR, REQUIRED, (one_of(lambda: schema.SIZE_DISTS),), "the size distribution"),
        Field("median", NUMBER, RequiredFor("dist", {"lognormal"}), (gt(0),), "lognormal: median size in bytes"),
        Field("sigma", NUMBER, 0.8, (ge(0),), "lognormal: sigma of log size"),
        Field("min", INT, 16, (ge(1),), "smallest size in bytes"),
        Field("max", INT, 1000000, (ge_sibling("min"),), "largest size in bytes"),
        Field("value", INT, RequiredFor("dist", {"fixed"}), (ge(1),), "fixed: the size in bytes"),
        Field("alpha", NUMBER, 1.5, (gt(0),), "pareto: shape"),
        Field("scale", NUMBER, 1000.0, (gt(0),), "pareto: scale in bytes"),
    ),
    SizeDist,
)

MESSAGE_KIND = Section(
    (
        Field("kind", STR, REQUIRED, (one_of(lambda: schema.MESSAGE_KINDS),), "the kind of message"),
        Field("rate_per_hour", NUMBER, REQUIRED, (gt(0),), "messages per user per hour"),
        Field("subject", BOOL, Computed(lambda kind, context: kind.get("kind") in schema.SUBJECT_KINDS,
                                        "true for kinds in SUBJECT_KINDS (email)"), (), "whether messages carry a subject"),
        Field("size", Table(SIZE), REQUIRED, (), "body size distribution"),
        Field("attachment_rate", NUMBER, 0.0, (between(0, 1),), "e-mail: share of messages with an attachment"),
        Field("attachment_size", Table(SIZE), None, (),
              "e-mail: attachment size before base64; absent = pareto, alpha 1.1, scale 20000, 2000..2000000"),
        Field("burst_mean", NUMBER, 0.0, (ge(0), le(50)), "chat kinds: mean replies following each message"),
    ),
    MessageKind,
)

WORKLOAD = Section(
    (
        Field("users", INT, REQUIRED, (between(1, 100000), rule("fits device_subnet", _devices_fit_subnet)),
              "number of users, one device each"),
        Field("domain", STR, REQUIRED, (DOMAIN_NAME,), "the users' mail domain"),
        Field("text", STR, "words", (one_of(lambda: schema.TEXT_GENERATORS),), "how message text is generated"),
        Field("recipients", STR, "any", (one_of(RECIPIENT_MODES),),
              '"contacts": each user writes to a small fixed set of contacts'),
        Field("contacts_per_user", INT, 3, (ge(1), rule("<= users - 1", _fewer_contacts_than_users, late=True)),
              "contacts per user when recipients = contacts"),
        Field("kinds", Tables(MESSAGE_KIND, min_items=1), REQUIRED, (), "the kinds of message sent"),
        Field("diurnal", BOOL, False, (), "activity follows the time of day, starting at start_hour"),
        Field("start_hour", NUMBER, 9.0, (between(0, 24),), "local time of day (hours) at which the run starts"),
        Field("activity_sigma", NUMBER, 0.0, (between(0, 3),), "spread of per-user activity (lognormal sigma)"),
    ),
    Workload,
)

PROTECTION = Section(
    (
        Field("transport", STR, "none", (one_of(lambda: schema.TRANSPORTS),), "protection on the wire"),
        Field("payload", STR, "none", (one_of(lambda: schema.PAYLOAD_PROTECTIONS),), "end-to-end protection"),
        Field("debug_header", BOOL, False, (),
              'relayed services: a debug line "To: <recipient>" travels in clear before the sealed body'),
        Field("nonce", STR, "counter", (one_of(("counter", "reused")),),
              'AES-GCM nonces: "counter" (unique per key) or "reused" (one nonce per key: a broken build)'),
        Field("receipts", STR, "on", (one_of(("on", "off")),),
              "relayed services: delivery/read receipts and presence updates travel"),
        Field("escrow", BOOL, False, (), "lawful-intercept back door: each message key also wrapped to a state-held key"),
    ),
    Protection,
)

ADVERSARY = Section(
    (
        Field("taps", ListOf(STR, (known("link", lambda context: context.links), unique("link")), min_items=1),
              REQUIRED, (), "the links the adversary taps"),
        Field("keys", ListOf(STR), [], (), "names of keys the adversary holds (the protocols resolve them)"),
    ),
    Adversary,
)

BLACKBERRY = Section(
    (
        Field("mail_cipher", STR, "aes-256-cbc", (one_of(("aes-256-cbc", "3des-cbc")),), "BES e-mail cipher"),
        Field("pin_key", STR, "global", (one_of(("global", "org")),),
              "key that scrambles PIN and consumer BBM: the global one every device has, or the organisation's"),
        Field("key_agreement", STR, "x25519", (one_of(("x25519", "p521")),), "BBM Protected chat key agreement"),
        Field("srp_id", STR, "", (_optional(matches(r"^S[0-9]{1,9}$", 'an SRP id like "S12345678"')),),
              "the BES's SRP id; absent = derived from the seed"),
        Field("presence_per_hour", NUMBER, 2.0, (ge(0),), "BBM presence updates per user per hour"),
    ),
    Blackberry,
)

POLICY = Section(
    (
        Field("hidden", ListOf(STR, (OBSERVABLE, unique("observable"))), [], (),
              "observables the deployment promises to hide"),
        Field("max_advantage", MapOf(NUMBER, (OBSERVABLE,), (between(0, 1),)), {}, (),
              "observable -> the largest adversary advantage allowed"),
        Field("known_breaks", ListOf(STR, (OBSERVABLE, unique("observable"))), [], (),
              "observables whose break the scenario exists to show (a weak design on display): "
              "the gate lists them and passes"),
    ),
    Policy,
)

DEFENCES = Section(
    (
        Field("padding", STR, "none", (one_of(("none", "bucket", "constant")),),
              "pad bodies inside the seal: to a multiple of pad_bucket, or all to pad_size"),
        Field("pad_bucket", INT, 160, (between(16, 65536),), "bucket padding: multiple in bytes"),
        Field("pad_size", INT, 4096, (between(64, 1048576),),
              "constant padding: body size in bytes; longer messages travel as several fragments"),
        Field("batching", STR, "none", (one_of(("none", "threshold", "timed")),),
              "the relay holds what it sends on and flushes batches in random order"),
        Field("batch_size", INT, 5, (between(2, 10000),), "threshold mix: flush when this many wait"),
        Field("batch_interval", NUMBER, 10.0, (gt(0), le(3600)),
              "seconds: timed mix period; threshold mix time-out after the first waiting message"),
        Field("cover", STR, "none", (one_of(("none", "constant", "poisson")),),
              "per-device send slots in both directions (fixed period or Poisson); idle slots carry cover"),
        Field("cover_rate_per_min", NUMBER, 6.0, (gt(0), le(600)), "slots per device per direction per minute"),
        Field("jitter_ms", NUMBER, 0.0, (ge(0), le(600000)), "device and relay hold each message 0..jitter_ms"),
        Field("receipts", STR, "on", (one_of(("on", "off", "delayed")),),
              'transmissions of kind "receipt": sent, dropped, or held 0..receipt_delay s'),
        Field("receipt_delay", NUMBER, 30.0, (ge(0), le(3600)), "seconds: the longest hold of a delayed receipt"),
    ),
    Defences,
)

SCENARIO = Section(
    (
        Field("name", STR, Computed(lambda doc, context: context.stem, "from the file name"), (SCENARIO_NAME,),
              "scenario name"),
        Field("description", STR, "", (), "what the scenario shows"),
        Field("seed", INT, REQUIRED, (ge(0),), "seed for every random choice"),
        Field("duration", NUMBER, REQUIRED, (gt(0), le(86400)), "seconds of simulated time"),
        Field("topology", Table(TOPOLOGY), REQUIRED, (), "hosts and links"),
        Field("service", Table(SERVICE), REQUIRED, (), "the messaging service"),
        Field("workload", Table(WORKLOAD), REQUIRED, (), "who sends what"),
        Field("protection", Table(PROTECTION), {}, (), "what protects the traffic"),
        Field("adversary", Table(ADVERSARY), REQUIRED, (), "what the adversary taps and holds"),
        Field("policy", Table(POLICY), {}, (), "what must stay hidden"),
        Field("blackberry", Table(BLACKBERRY), {}, (), 'service.protocol = "blackberry": how the systems are set up'),
        Field("defences", Table(DEFENCES), {}, (), "traffic-analysis defences (relayed services)"),
    ),
)


# --- loading ------------------------------------------------------------------------------------
def load_scenario(path: str | Path) -> Scenario:
    """Read, check and build one scenario file; HarnessError (one line, naming the file) on any problem."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise HarnessError("no such file", path=str(path)) from None
    except IsADirectoryError:
        raise HarnessError("is a directory, not a scenario file", path=str(path)) from None
    except OSError as err:
        raise HarnessError(f"cannot read: {err.strerror or err}", path=str(path)) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise HarnessError(f"invalid TOML: not UTF-8 (byte {err.start})", path=str(path)) from None
    return load_scenario_text(text, path)


def load_scenario_text(text: str, path: str | Path) -> Scenario:
    """Check and build a scenario from TOML text; `path` names it in messages and gives the default name."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise HarnessError(f"invalid TOML: {' '.join(str(err).split())}", path=str(path)) from None
    return scenario_from_document(doc, path)


def scenario_from_document(doc: dict[str, Any], path: str | Path) -> Scenario:
    """Check and build a scenario from an already parsed TOML document."""
    from harness.plugins import load_protocol_plugins

    load_protocol_plugins()  # protocol plugins name their service.protocol values before validation
    try:
        fields = read_section(doc, SCENARIO, "", Context.of(doc, path))
    except Invalid as err:
        raise HarnessError(str(err), path=str(path)) from None
    return Scenario(**fields, path=str(path))


def find_scenarios(directory: str | Path) -> list[Path]:
    """The scenario files (`*.toml`) directly in `directory`, sorted by name."""
    root = Path(directory)
    if not root.is_dir():
        raise HarnessError("no such directory", path=str(directory))
    return sorted(p for p in root.glob("*.toml") if p.is_file())


def format_reference() -> str:
    """Every key of the format with its type, default, constraints and meaning, one per line."""
    return "\n".join(describe(SCENARIO))
