"""Scenario files: a valid file loads with its defaults; each kind of problem is one exact line naming the file."""
from __future__ import annotations

import copy
import dataclasses
import datetime
import json
import math
import re
import tomllib
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.errors import HarnessError
from harness.scenario import fields, load, schema
from harness.scenario.load import find_scenarios, load_scenario, load_scenario_text
from harness.scenario.schema import (
    Adversary,
    FrozenMap,
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

PATH = "scenarios/x.toml"

MINIMAL = """\
seed = 1
duration = 60

[topology]
device_subnet = "10.0.0.0/24"
[[topology.hosts]]
name = "mail"
role = "server"
ip = "192.0.2.1"
[[topology.links]]
name = "uplink"
a = "devices"
b = "mail"

[service]
protocol = "smtp"
server = "mail"

[workload]
users = 2
domain = "corp.example"
[[workload.kinds]]
kind = "email"
rate_per_hour = 1
size = { dist = "uniform" }

[adversary]
taps = ["uplink"]
"""

FULL = """\
name = "bes-relay"
description = "BlackBerry-style relay"
seed = 7
duration = 600.0

[topology]
device_subnet = "10.20.0.0/16"
[[topology.hosts]]
name = "relay"
role = "relay"
ip = "198.51.100.10"
hostname = "relay.example"
[[topology.hosts]]
name = "enterprise"
role = "enterprise"
ip = "203.0.113.5"
[[topology.links]]
name = "carrier"
a = "devices"
b = "relay"
latency_ms = 40.0
jitter_ms = 5.0
bandwidth_mbps = 100.0
mss = 1460
tap_position = 0.5
[[topology.links]]
name = "internet"
a = "relay"
b = "enterprise"

[service]
protocol = "bes-relay"
server = "enterprise"
relay = "relay"
port = 3101

[workload]
users = 8
domain = "corp.example"
recipients = "contacts"
contacts_per_user = 3
[[workload.kinds]]
kind = "email"
rate_per_hour = 6.0
size = { dist = "lognormal", median = 2000, sigma = 0.8, min = 64, max = 200000 }
[[workload.kinds]]
kind = "chat"
rate_per_hour = 30
size = { dist = "pareto" }

[protection]
transport = "tls13"
payload = "aes-256-gcm"

[adversary]
taps = ["carrier"]
keys = ["device-transport"]

[policy]
hidden = ["content"]
max_advantage = { contacts = 0.1 }
"""


def edited(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"{old!r} must occur exactly once"
    return text.replace(old, new)


def error_of(text: str, path: str = PATH) -> str:
    with pytest.raises(HarnessError) as caught:
        load_scenario_text(text, path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    assert len(message.splitlines()) == 1
    assert caught.value.path == path
    return message


# --- valid files ------------------------------------------------------------------------------
def test_minimal_scenario_gets_every_default():
    scenario = load_scenario_text(MINIMAL, "scenarios/smtp-plain.toml")
    assert scenario == Scenario(
        name="smtp-plain",
        description="",
        seed=1,
        duration=60.0,
        topology=Topology(
            device_subnet="10.0.0.0/24",
            hosts=(Host(name="mail", role="server", ip="192.0.2.1", hostname=""),),
            links=(Link("uplink", "devices", "mail", latency_ms=10.0, jitter_ms=1.0, bandwidth_mbps=100.0,
                        mss=1460, tap_position=0.5),),
        ),
        service=Service(protocol="smtp", server="mail", relay="", port=0),
        workload=Workload(
            users=2, domain="corp.example", text="words", recipients="any", contacts_per_user=3,
            kinds=(MessageKind("email", 1.0, subject=True,
                               size=SizeDist("uniform", median=None, sigma=0.8, min=16, max=1000000, value=None,
                                             alpha=1.5, scale=1000.0)),),
        ),
        protection=Protection(transport="none", payload="none"),
        adversary=Adversary(taps=("uplink",), keys=()),
        policy=Policy(hidden=(), max_advantage=FrozenMap()),
        path="scenarios/smtp-plain.toml",
    )
    assert isinstance(scenario.duration, float) and isinstance(scenario.workload.kinds[0].rate_per_hour, float)


def test_full_scenario_loads_from_a_file(tmp_path):
    path = tmp_path / "whatever.toml"
    path.write_text(FULL)
    scenario = load_scenario(path)
    assert scenario.name == "bes-relay"
    assert scenario.path == str(path)
    assert scenario.topology.host("relay").hostname == "relay.example"
    assert scenario.topology.link("internet").a == "relay"
    assert [k.subject for k in scenario.workload.kinds] == [True, False]  # default follows the kind
    assert scenario.workload.kinds[0].size.median == 2000.0
    assert scenario.workload.kinds[1].size == SizeDist("pareto", None, 0.8, 16, 1000000, None, 1.5, 1000.0)
    assert scenario.policy.max_advantage.get("contacts") == 0.1
    assert scenario.policy.max_advantage.get("content") is None
    assert scenario.adversary.keys == ("device-transport",)
    with pytest.raises(KeyError):
        scenario.topology.host("nope")
    with pytest.raises(KeyError):
        scenario.topology.link("nope")


def test_scenario_is_frozen_hashable_and_deterministic():
    scenario = load_scenario_text(FULL, PATH)
    assert scenario == load_scenario_text(FULL, PATH)
    assert hash(scenario) == hash(load_scenario_text(FULL, PATH))
    with pytest.raises(dataclasses.FrozenInstanceError):
        scenario.seed = 8  # type: ignore[misc]
    with pytest.raises(TypeError):
        scenario.policy.max_advantage["contacts"] = 0.5  # type: ignore[index]
    assert isinstance(scenario.topology.hosts, tuple) and isinstance(scenario.workload.kinds, tuple)


def test_to_json_is_plain_data():
    plain = load_scenario_text(FULL, PATH).to_json()
    assert json.loads(json.dumps(plain, allow_nan=False)) == plain
    assert plain["topology"]["hosts"][0] == {"name": "relay", "role": "relay", "ip": "198.51.100.10",
                                             "hostname": "relay.example"}
    assert plain["policy"] == {"hidden": ["content"], "max_advantage": {"contacts": 0.1}, "known_breaks": []}
    assert plain["workload"]["kinds"][1]["size"]["median"] is None
    assert plain["path"] == PATH


def test_addresses_are_normalised_and_ipv6_works():
    text = edited(MINIMAL, '"10.0.0.0/24"', '"2001:DB8:0:0::/64"')
    text = edited(text, '"192.0.2.1"', '"2001:0db8:0001::0001"')
    scenario = load_scenario_text(text, PATH)
    assert scenario.topology.device_subnet == "2001:db8::/64"
    assert scenario.topology.hosts[0].ip == "2001:db8:1::1"


def test_choice_sets_are_read_when_a_file_is_loaded(monkeypatch):
    text = edited(MINIMAL, 'protocol = "smtp"', 'protocol = "bbm-pin"')
    assert error_of(text).endswith("service.protocol: must be one of: bes-relay, blackberry, smtp")
    monkeypatch.setattr(schema, "PROTOCOLS", schema.PROTOCOLS | {"bbm-pin"})  # rebinding works
    assert load_scenario_text(text, PATH).service.protocol == "bbm-pin"
    monkeypatch.setattr(schema, "TRANSPORTS", set(schema.TRANSPORTS))
    schema.TRANSPORTS.add("tls12")  # and so does mutating
    assert load_scenario_text(text + '[protection]\ntransport = "tls12"\n', PATH).protection.transport == "tls12"


def test_registered_relayed_protocol_needs_a_relay(monkeypatch):
    monkeypatch.setattr(schema, "RELAYED_PROTOCOLS", {"bes-relay", "smtp"})
    assert error_of(MINIMAL) == f"{PATH}: service.relay: required for protocol smtp"


# --- one test per kind of problem -------------------------------------------------------------
@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        # unknown keys, with a hint when a key is close to a real one
        ('ip = "203.0.113.5"\n', 'ip = "203.0.113.5"\ncolour = "red"\n', "topology.hosts[1].colour: unknown key"),
        ("seed = 7", "sed = 7", 'sed: unknown key (did you mean "seed"?)'),
        ('[policy]\n', '[policy]\n"odd key\\n" = 1\n', 'policy."odd key\\n": unknown key'),
        ("[policy]", "[polcy]", 'polcy: unknown key (did you mean "policy"?)'),
        # missing required keys and sections
        ("seed = 7\n", "", "seed: required"),
        ('[adversary]\ntaps = ["carrier"]\nkeys = ["device-transport"]\n', "", "adversary: required"),
        ('kind = "chat"\n', "", "workload.kinds[1].kind: required"),
        ('\nrelay = "relay"\n', "\n", "service.relay: required for protocol bes-relay"),
        ("median = 2000, ", "", "workload.kinds[0].size.median: required for dist lognormal"),
        ('{ dist = "pareto" }', '{ dist = "fixed" }', "workload.kinds[1].size.value: required for dist fixed"),
        # wrong types; a boolean is neither an integer nor a number
        ("duration = 600.0", 'duration = "600"', "duration: must be a number, got string"),
        ("duration = 600.0", "duration = true", "duration: must be a number, got boolean"),
        ("seed = 7", "seed = true", "seed: must be an integer, got boolean"),
        ("mss = 1460", "mss = 1460.0", "topology.links[0].mss: must be an integer, got float"),
        ('taps = ["carrier"]', 'taps = "carrier"', "adversary.taps: must be an array of strings, got string"),
        ('taps = ["carrier"]', "taps = [1]", "adversary.taps[0]: must be a string, got integer"),
        ("max_advantage = { contacts = 0.1 }", "max_advantage = 0.1",
         "policy.max_advantage: must be a table, got float"),
        ("duration = 600.0", "duration = 1979-05-27", "duration: must be a number, got date"),
        ("duration = 600.0", "duration = nan", "duration: must be a finite number"),
        ("latency_ms = 40.0", "latency_ms = inf", "topology.links[0].latency_ms: must be a finite number"),
        ("latency_ms = 40.0", "latency_ms = 1" + "0" * 400, "topology.links[0].latency_ms: must be a finite number"),
        # out of range
        ("rate_per_hour = 6.0", "rate_per_hour = 0", "workload.kinds[0].rate_per_hour: must be > 0"),
        ("port = 3101", "port = 0", "service.port: must be between 1 and 65535"),
        ("port = 3101", "port = 65536", "service.port: must be between 1 and 65535"),
        ("duration = 600.0", "duration = 86400.5", "duration: must be <= 86400"),
        ("seed = 7", "seed = -1", "seed: must be >= 0"),
        ("mss = 1460", "mss = 535", "topology.links[0].mss: must be between 536 and 9000"),
        ("tap_position = 0.5", "tap_position = 1.5", "topology.links[0].tap_position: must be between 0 and 1"),
        ("users = 8", "users = 0", "workload.users: must be between 1 and 100000"),
        ("max = 200000", "max = 63", "workload.kinds[0].size.max: must be >= size.min"),
        ("{ contacts = 0.1 }", "{ contacts = 2 }", "policy.max_advantage.contacts: must be between 0 and 1"),
        ("contacts_per_user = 3", "contacts_per_user = 8",
         "workload.contacts_per_user: must be at most users - 1 (7) when recipients = contacts"),
        ('taps = ["carrier"]', "taps = []", "adversary.taps: must have at least 1 entry"),
        # bad choices
        ('transport = "tls13"', 'transport = "tls12"', "protection.transport: must be one of: none, tls13"),
        ('role = "relay"', 'role = "mta"', "topology.hosts[0].role: must be one of: enterprise, relay, server"),
        ('kind = "chat"', 'kind = "sms"', "workload.kinds[1].kind: must be one of: bbm, bbm-protected, chat, email, pin"),
        ('dist = "lognormal"', 'dist = "normal"',
         "workload.kinds[0].size.dist: must be one of: fixed, lognormal, pareto, uniform"),
        # addresses, networks, names
        ('"198.51.100.10"', '"198.51.100.300"',
         'topology.hosts[0].ip: must be an IPv4 or IPv6 address, got "198.51.100.300"'),
        ('"10.20.0.0/16"', '"10.20.0.0/33"',
         'topology.device_subnet: must be an IPv4 or IPv6 network like "10.20.0.0/16", got "10.20.0.0/33"'),
        ('"10.20.0.0/16"', '"10.20.0.1/16"',
         'topology.device_subnet: "10.20.0.1/16" has host bits set (the network is 10.20.0.0/16)'),
        ('"10.20.0.0/16"', '"10.20.0.0/30"', "workload.users: device_subnet 10.20.0.0/30 has room for only 3 devices"),
        ('"198.51.100.10"', '"10.20.0.8"',
         "topology.hosts[0].ip: 10.20.0.8 is a device address (devices get 10.20.0.1-10.20.0.8 from device_subnet)"),
        ('"203.0.113.5"', '"198.51.100.10"', 'topology.hosts[1].ip: duplicate host address "198.51.100.10"'),
        ('name = "bes-relay"', 'name = "BES"', "name: must match ^[a-z0-9][a-z0-9-]*$"),
        ('name = "relay"\nrole', 'name = "devices"\nrole', 'topology.hosts[0].name: "devices" is reserved'),
        ('"relay.example"', '"relay example"', 'topology.hosts[0].hostname: must be a domain name like "corp.example"'),
        ('"corp.example"', '"corp.example\\n"', 'workload.domain: must be a domain name like "corp.example"'),
        # duplicates and references
        ('name = "enterprise"', 'name = "relay"', 'topology.hosts[1].name: duplicate host name "relay"'),
        ('name = "internet"', 'name = "carrier"', 'topology.links[1].name: duplicate link name "carrier"'),
        ('taps = ["carrier"]', 'taps = ["carrier", "x"]', 'adversary.taps[1]: unknown link "x"'),
        ('taps = ["carrier"]', 'taps = ["carrier", "carrier"]', 'adversary.taps[1]: duplicate link "carrier"'),
        ('server = "enterprise"', 'server = "mail"', 'service.server: unknown host "mail"'),
        ('relay = "relay"\nport', 'relay = "gateway"\nport', 'service.relay: unknown host "gateway"'),
        ('a = "devices"', 'a = "phones"', 'topology.links[0].a: unknown host "phones"'),
        ('b = "enterprise"', 'b = "devices"', 'topology.links[1].b: unknown host "devices"'),
        ('a = "relay"', 'a = "enterprise"', "topology.links[1].b: must differ from a"),
        # policy
        ('hidden = ["content"]', 'hidden = ["contents"]', 'policy.hidden[0]: unknown observable "contents"'),
        ("{ contacts = 0.1 }", "{ contact = 0.1 }", 'policy.max_advantage.contact: unknown observable "contact"'),
    ],
)
def test_each_problem_is_one_exact_line(old, new, problem):
    assert error_of(edited(FULL, old, new)) == f"{PATH}: {problem}"


def test_subject_must_be_a_boolean():
    text = edited(FULL, 'kind = "chat"\n', 'kind = "chat"\nsubject = "no"\n')
    assert error_of(text) == f"{PATH}: workload.kinds[1].subject: must be a boolean, got string"


def test_sections_may_come_in_any_order_and_entries_must_be_tables():
    moved = edited(MINIMAL, '[adversary]\ntaps = ["uplink"]\n', "")
    moved = edited(moved, "[topology]", '[adversary]\ntaps = ["uplink"]\n\n[topology]')
    assert load_scenario_text(moved, PATH) == load_scenario_text(MINIMAL, PATH)
    topology = MINIMAL[MINIMAL.index("[topology]"):MINIMAL.index("[service]")]
    inline = edited(MINIMAL, topology, 'topology = { device_subnet = "10.0.0.0/24", hosts = [1] }\n')
    assert error_of(inline) == f"{PATH}: topology.hosts[0]: must be a table, got integer"


def test_invalid_toml_is_one_line():
    message = error_of(edited(FULL, "duration = 600.0", "duration = "))
    assert message == f"{PATH}: invalid TOML: Invalid value (at line 4, column 12)"
    message = error_of('description = "two\nlines"\n')
    assert message == f"{PATH}: invalid TOML: Illegal character '\\n' (at line 1, column 19)"


def test_missing_file_and_other_read_problems(tmp_path):
    missing = tmp_path / "nope.toml"
    with pytest.raises(HarnessError, match=r"^.*nope\.toml: no such file$") as caught:
        load_scenario(missing)
    assert str(caught.value) == f"{missing}: no such file"
    with pytest.raises(HarnessError, match="is a directory"):
        load_scenario(tmp_path)
    latin = tmp_path / "latin.toml"
    latin.write_bytes(b'description = "caf\xe9"\n')
    with pytest.raises(HarnessError) as caught:
        load_scenario(latin)
    assert str(caught.value) == f"{latin}: invalid TOML: not UTF-8 (byte 18)"


def test_first_problem_in_document_order_wins():
    both = edited(edited(FULL, "seed = 7", "seed = -1"), "rate_per_hour = 6.0", "rate_per_hour = 0")
    assert error_of(both) == f"{PATH}: seed: must be >= 0"
    # a missing plain key is reported where it would be written: before the first section
    later = edited(edited(FULL, "seed = 7\n", ""), "rate_per_hour = 6.0", "rate_per_hour = 0")
    assert error_of(later) == f"{PATH}: seed: required"
    # within a section, keys are checked in the order they are written
    order = edited(FULL, "latency_ms = 40.0\njitter_ms = 5.0", "jitter_ms = -5.0\nlatency_ms = -40.0")
    assert error_of(order) == f"{PATH}: topology.links[0].jitter_ms: must be >= 0"


def test_default_name_comes_from_the_file_name():
    text = edited(FULL, 'name = "bes-relay"\n', "")
    assert load_scenario_text(text, "scenarios/bb-relay.toml").name == "bb-relay"
    assert error_of(text, "scenarios/My_Relay.toml") == (
        'scenarios/My_Relay.toml: name: must match ^[a-z0-9][a-z0-9-]*$ (default "My_Relay" from the file name)'
    )


def test_find_scenarios_lists_toml_files_sorted(tmp_path):
    for name in ("b.toml", "a.toml", "notes.md", "c.toml.bak"):
        (tmp_path / name).write_text("")
    (tmp_path / "dir.toml").mkdir()
    assert find_scenarios(tmp_path) == [tmp_path / "a.toml", tmp_path / "b.toml"]
    assert find_scenarios(str(tmp_path)) == [tmp_path / "a.toml", tmp_path / "b.toml"]
    with pytest.raises(HarnessError, match="no such directory$"):
        find_scenarios(tmp_path / "missing")


# --- the field tables themselves --------------------------------------------------------------
def _sections() -> list[tuple[fields.Section, type]]:
    return [
        (load.HOST, Host), (load.LINK, Link), (load.TOPOLOGY, Topology), (load.SERVICE, Service),
        (load.SIZE, SizeDist), (load.MESSAGE_KIND, MessageKind), (load.WORKLOAD, Workload),
        (load.PROTECTION, Protection), (load.ADVERSARY, Adversary), (load.POLICY, Policy),
    ]


@pytest.mark.parametrize(("section", "cls"), _sections())
def test_field_tables_match_the_dataclasses(section, cls):
    assert [f.key for f in section.fields] == [f.name for f in dataclasses.fields(cls)]
    assert all(f.doc for f in section.fields)


def test_root_table_matches_scenario():
    keys = [f.key for f in load.SCENARIO.fields]
    assert keys == [f.name for f in dataclasses.fields(Scenario) if f.name != "path"]


def test_format_reference_names_every_key():
    reference = load.format_reference()
    assert "workload.kinds[].size.median" in reference
    assert "service.protocol  (a string, required, one of: bes-relay, blackberry, smtp)" in reference


# --- no input makes the loader fail any other way ---------------------------------------------
_BASE = tomllib.loads(FULL)
_KEYS = sorted({"colour", "name", "seed", "kind", "size", "a", "", "x y"})


def _toml_string(text: str) -> str:
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif " " <= ch <= "~":
            out.append(ch)
        else:
            out.append(f"\\u{ord(ch):04x}" if ord(ch) < 0x10000 else f"\\U{ord(ch):08x}")
    return '"' + "".join(out) + '"'


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else _toml_string(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, str)):
        return str(value) if isinstance(value, int) else _toml_string(value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else repr(value)
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"


def to_toml(doc: dict[str, Any]) -> str:
    """A document as TOML: top-level keys one per line, everything nested as inline tables and arrays."""
    return "".join(f"{_toml_key(k)} = {_toml_value(v)}\n" for k, v in doc.items())


_scalars = st.one_of(
    st.text(max_size=10),
    st.sampled_from(["", "devices", "relay", "carrier", "email", "tls13", "fixed", "10.9.0.0/8", "::1", "content"]),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.sampled_from([0, 1, -1, 536, 65536, 86401]),
    st.floats(),
    st.booleans(),
    st.datetimes(),
    st.dates(),
    st.times(),
)
_values = st.recursive(
    _scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)


def _places(node: Any) -> list[tuple[Any, Any]]:
    """Every (container, key or index) in a document, depth first."""
    found = []
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in list(items):
        found.append((node, key))
        found += _places(child)
    return found


def _tables(node: Any) -> list[dict[str, Any]]:
    found = [node] if isinstance(node, dict) else []
    children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
    for child in children:
        found += _tables(child)
    return found


@st.composite
def mutated_documents(draw) -> dict[str, Any]:
    doc = copy.deepcopy(_BASE)
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        action = draw(st.sampled_from(["drop", "retype", "add"]))
        places = _places(doc)
        if action == "add" or not places:
            table = draw(st.sampled_from(_tables(doc)))
            table[draw(st.sampled_from(_KEYS) | st.text(max_size=6))] = draw(_values)
            continue
        container, key = draw(st.sampled_from(places))
        if action == "drop":
            del container[key]
        else:
            container[key] = draw(_values)
    return doc


def _loads_or_fails_cleanly(text: str, path: str = PATH) -> None:
    try:
        scenario = load_scenario_text(text, path)
    except HarnessError as err:
        message = str(err)
        assert message.startswith(f"{path}: "), message
        assert len(message.splitlines()) == 1 and "\n" not in message, message
    else:
        assert isinstance(scenario, Scenario)
        hash(scenario)
        json.dumps(scenario.to_json(), allow_nan=False)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_documents())
def test_mutated_documents_load_or_fail_with_one_line(doc):
    text = to_toml(doc)
    tomllib.loads(text)  # the test's own writer must produce valid TOML
    _loads_or_fails_cleanly(text)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_any_text_loads_or_fails_with_one_line(text):
    _loads_or_fails_cleanly(text)


def test_to_toml_round_trips_the_full_scenario():
    assert tomllib.loads(to_toml(_BASE)) == _BASE
    assert load_scenario_text(to_toml(_BASE), PATH) == load_scenario_text(FULL, PATH)
