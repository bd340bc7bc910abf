"""Field tables and the walker that checks a parsed TOML document against them; no file I/O here.

A `Section` is a table of `Field` rows: key, kind (TOML type), default, checks, doc. `read_section`
walks the document's keys in document order and stops at the first problem with `Invalid(where,
problem)`, where `where` is a key path like `topology.hosts[1].ip`. A missing key is reported
where it would have to be written: a plain key before the table's first sub-table, a sub-table at
the end of the table. Checks that compare a value with its siblings (`late=True`) run once the whole
table is known, in field order.
"""
from __future__ import annotations

import datetime
import difflib
import ipaddress
import json
import math
import re
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from typing import Any

from harness.scenario.schema import FrozenMap


class Invalid(Exception):
    """The first problem in a document: `where` is the key path, `problem` what is wrong there."""

    def __init__(self, where: str, problem: str) -> None:
        super().__init__(f"{where}: {problem}" if where else problem)
        self.where = where
        self.problem = problem


class Problem(Exception):
    """Raised by a check with what is wrong with the value; the walker adds where it is."""


# --- rendering ----------------------------------------------------------------------------------
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def quote(text: str) -> str:
    """A string as a double-quoted, one-line, ASCII literal for messages."""
    return json.dumps(text)


def key_path(parent: str, key: str) -> str:
    """`parent.key`, quoting keys that are not bare TOML keys so a path is always one line."""
    segment = key if _BARE_KEY.fullmatch(key) else quote(key)
    return f"{parent}.{segment}" if parent else segment


def toml_type(value: Any) -> str:
    """The TOML type name of a parsed value, for "got ..." in messages."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "table"
    if isinstance(value, datetime.datetime):
        return "datetime"
    if isinstance(value, datetime.date):
        return "date"
    if isinstance(value, datetime.time):
        return "time"
    return type(value).__name__


def _bound(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(x)


# --- where a check runs -------------------------------------------------------------------------
@dataclass
class At:
    """What a check may look at: the value's path, its siblings, the array it is in, the document context."""

    where: str
    key: str
    table: dict[str, Any]  # the enclosing table's values read so far (all of them for late checks)
    seen: dict[str, dict[Any, str]]  # per array: field key -> value -> where it was first seen
    context: Any  # whatever the loader passes (known names and the like)

    @property
    def table_label(self) -> str:
        """The enclosing table's own key: `size` for `workload.kinds[0].size.max`."""
        parent = self.where.rpartition(".")[0] if "." in self.where else ""
        return re.sub(r"\[\d+\]$", "", parent.rpartition(".")[2])


@dataclass(frozen=True)
class Check:
    """One constraint: `fn(value, at)` returns the (possibly normalised) value or raises Problem."""

    doc: str | Callable[[], str]  # a callable describes a set read at validation time
    fn: Callable[[Any, At], Any]
    late: bool = False  # needs the complete enclosing table

    def describe(self) -> str:
        return self.doc() if callable(self.doc) else self.doc

    def __call__(self, value: Any, at: At) -> Any:
        return self.fn(value, at)


def _predicate(doc: str, ok: Callable[[Any], bool], problem: str) -> Check:
    def fn(value: Any, at: At) -> Any:
        if not ok(value):
            raise Problem(problem)
        return value

    return Check(doc, fn)


def gt(bound: float) -> Check:
    return _predicate(f"> {_bound(bound)}", lambda v: v > bound, f"must be > {_bound(bound)}")


def ge(bound: float) -> Check:
    return _predicate(f">= {_bound(bound)}", lambda v: v >= bound, f"must be >= {_bound(bound)}")


def le(bound: float) -> Check:
    return _predicate(f"<= {_bound(bound)}", lambda v: v <= bound, f"must be <= {_bound(bound)}")


def between(low: float, high: float) -> Check:
    text = f"{_bound(low)} and {_bound(high)}"
    return _predicate(f"{_bound(low)}..{_bound(high)}", lambda v: low <= v <= high, f"must be between {text}")


def one_of(choices: Collection[str] | Callable[[], Collection[str]]) -> Check:
    """The value is one of `choices`; pass a callable to read an extensible set at validation time."""

    def current() -> list[str]:
        return sorted(choices() if callable(choices) else choices)

    def fn(value: Any, at: At) -> Any:
        allowed = current()
        if value not in allowed:
            raise Problem(f"must be one of: {', '.join(allowed)}")
        return value

    return Check(lambda: "one of: " + ", ".join(current()), fn)


def matches(pattern: str, what: str | None = None) -> Check:
    """The whole value matches `pattern`; `what` ("a domain name") replaces the pattern in messages."""
    regex = re.compile(pattern)
    text = what or f"matches {pattern}"
    problem = f"must be {what}" if what else f"must match {pattern}"
    return _predicate(text, lambda v: regex.fullmatch(v) is not None, problem)


def not_value(reserved: str, why: str = "is reserved") -> Check:
    return _predicate(f"not {quote(reserved)}", lambda v: v != reserved, f"{quote(reserved)} {why}")


def ip_address() -> Check:
    """An IPv4 or IPv6 address, normalised to its canonical text."""

    def fn(value: str, at: At) -> str:
        try:
            return str(ipaddress.ip_address(value))
        except ValueError:
            raise Problem(f"must be an IPv4 or IPv6 address, got {quote(value)}") from None

    return Check("IPv4 or IPv6 address", fn)


def ip_network() -> Check:
    """An IPv4 or IPv6 network in CIDR form with no host bits set, normalised to its canonical text."""

    def fn(value: str, at: At) -> str:
        try:
            return str(ipaddress.ip_network(value, strict=True))
        except ValueError:
            pass
        try:
            loose = ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise Problem(f'must be an IPv4 or IPv6 network like "10.20.0.0/16", got {quote(value)}') from None
        raise Problem(f"{quote(value)} has host bits set (the network is {loose})")

    return Check("IPv4 or IPv6 network (CIDR)", fn)


def unique(noun: str) -> Check:
    """No two entries of the enclosing array have this value: `duplicate host name "relay"`."""

    def fn(value: Any, at: At) -> Any:
        first = at.seen.setdefault(at.key, {})
        if value in first:
            raise Problem(f"duplicate {noun} {quote(str(value))}")
        first[value] = at.where
        return value

    return Check(f"unique {noun}", fn)


def known(noun: str, names: Callable[[Any], Collection[str]], also: Iterable[str] = ()) -> Check:
    """The value names something declared elsewhere: `names(context)` lists what exists."""
    extra = tuple(also)

    def fn(value: str, at: At) -> str:
        if value not in extra and value not in names(at.context):
            raise Problem(f"unknown {noun} {quote(value)}")
        return value

    return Check(f"a {noun} name" + "".join(f" or {quote(x)}" for x in extra), fn)


def ge_sibling(other: str) -> Check:
    """Late: the value is at least its sibling `other` (`size.max >= size.min`)."""

    def fn(value: Any, at: At) -> Any:
        bound = at.table.get(other)
        if bound is not None and value < bound:
            raise Problem(f"must be >= {at.table_label}.{other}")
        return value

    return Check(f">= {other}", fn, late=True)


def differs_from(other: str) -> Check:
    """Late: the value is not equal to its sibling `other`."""

    def fn(value: Any, at: At) -> Any:
        if value == at.table.get(other):
            raise Problem(f"must differ from {other}")
        return value

    return Check(f"not the same as {other}", fn, late=True)


def rule(doc: str | Callable[[], str], fn: Callable[[Any, At], Any], *, late: bool = False) -> Check:
    """A one-off check written as a function (keep these rare: prefer the named ones above)."""
    return Check(doc, fn, late)


# --- kinds: the TOML type a field holds ---------------------------------------------------------
class Kind:
    """How a raw TOML value of one type is read; `nested` kinds are sub-tables."""

    expect = "a value"
    nested = False

    def read(self, value: Any, where: str, context: Any) -> Any:
        raise NotImplementedError

    def wrong_type(self, value: Any, where: str) -> Invalid:
        return Invalid(where, f"must be {self.expect}, got {toml_type(value)}")


class _Scalar(Kind):
    def __init__(self, expect: str, accepts: Callable[[Any], bool]) -> None:
        self.expect = expect
        self.accepts = accepts

    def read(self, value: Any, where: str, context: Any) -> Any:
        if not self.accepts(value):
            raise self.wrong_type(value, where)
        return value


class _Number(Kind):
    expect = "a number"

    def read(self, value: Any, where: str, context: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.wrong_type(value, where)
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        if not math.isfinite(number):
            raise Invalid(where, "must be a finite number")
        return number


STR = _Scalar("a string", lambda v: isinstance(v, str))
INT = _Scalar("an integer", lambda v: isinstance(v, int) and not isinstance(v, bool))
BOOL = _Scalar("a boolean", lambda v: isinstance(v, bool))
NUMBER = _Number()


class ListOf(Kind):
    """An array of scalars, read to a tuple; item checks see the array's earlier items (for `unique`)."""

    expect = "an array"

    def __init__(self, item: Kind, checks: Iterable[Check] = (), min_items: int = 0) -> None:
        self.item = item
        self.checks = tuple(checks)
        self.min_items = min_items
        self.expect = f"an array of {item.expect.split(' ', 1)[1]}s"

    def read(self, value: Any, where: str, context: Any) -> tuple[Any, ...]:
        if not isinstance(value, list):
            raise self.wrong_type(value, where)
        seen: dict[str, dict[Any, str]] = {}
        items = []
        for index, raw in enumerate(value):
            item_where = f"{where}[{index}]"
            item = self.item.read(raw, item_where, context)
            items.append(_run(self.checks, item, At(item_where, "", {}, seen, context)))
        _at_least(self.min_items, items, where)
        return tuple(items)


class MapOf(Kind):
    """A table of arbitrary keys to values of one kind, read to a FrozenMap."""

    expect = "a table"

    def __init__(self, value: Kind, key_checks: Iterable[Check] = (), value_checks: Iterable[Check] = ()) -> None:
        self.value = value
        self.key_checks = tuple(key_checks)
        self.value_checks = tuple(value_checks)

    def read(self, value: Any, where: str, context: Any) -> FrozenMap:
        if not isinstance(value, dict):
            raise self.wrong_type(value, where)
        items = {}
        for key, raw in value.items():
            item_where = key_path(where, key)
            at = At(item_where, key, items, {}, context)
            key = _run(self.key_checks, key, at)
            items[key] = _run(self.value_checks, self.value.read(raw, item_where, context), at)
        return FrozenMap(items)


class Table(Kind):
    """A sub-table read through its own section."""

    expect = "a table"
    nested = True

    def __init__(self, section: Section) -> None:
        self.section = section

    def read(self, value: Any, where: str, context: Any) -> Any:
        if not isinstance(value, dict):
            raise self.wrong_type(value, where)
        return read_section(value, self.section, where, context)


class Tables(Kind):
    """An array of tables (`[[topology.hosts]]`), each read through the section, to a tuple."""

    expect = "an array of tables"
    nested = True

    def __init__(self, section: Section, min_items: int = 0) -> None:
        self.section = section
        self.min_items = min_items

    def read(self, value: Any, where: str, context: Any) -> tuple[Any, ...]:
        if not isinstance(value, list):
            raise self.wrong_type(value, where)
        seen: dict[str, dict[Any, str]] = {}
        items = []
        for index, raw in enumerate(value):
            item_where = f"{where}[{index}]"
            if not isinstance(raw, dict):
                raise Invalid(item_where, f"must be a table, got {toml_type(raw)}")
            items.append(read_section(raw, self.section, item_where, context, seen))
        _at_least(self.min_items, items, where)
        return tuple(items)


def _at_least(count: int, items: list[Any], where: str) -> None:
    if len(items) < count:
        raise Invalid(where, f"must have at least {count} {'entry' if count == 1 else 'entries'}")


def _run(checks: Iterable[Check], value: Any, at: At) -> Any:
    for check in checks:
        try:
            value = check(value, at)
        except Problem as problem:
            raise Invalid(at.where, problem.args[0]) from None
    return value


# --- defaults -----------------------------------------------------------------------------------
class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()


@dataclass(frozen=True)
class RequiredFor:
    """Required when sibling `key` has one of `values` (a callable reads an extensible set); else `default`."""

    key: str
    values: Collection[str] | Callable[[], Collection[str]]
    default: Any = None

    def applies(self, table: dict[str, Any]) -> bool:
        values = self.values() if callable(self.values) else self.values
        return table.get(self.key) in values


@dataclass(frozen=True)
class Computed:
    """A default computed from the siblings and the loader's context; it goes through the field's checks."""

    fn: Callable[[dict[str, Any], Any], Any]
    doc: str


# --- fields and sections ------------------------------------------------------------------------
@dataclass(frozen=True)
class Field:
    """One row of a field table.

    `default` is REQUIRED, a raw TOML value (read through `kind`, checks skipped), RequiredFor(...)
    or Computed(...). None means "absent and no default": the value stays None.
    """

    key: str
    kind: Kind
    default: Any
    checks: tuple[Check, ...] = ()
    doc: str = ""


@dataclass(frozen=True)
class Section:
    """A field table and what builds the value from the read fields (`make(**fields)`)."""

    fields: tuple[Field, ...]
    make: Callable[..., Any] = dict
    by_key: dict[str, Field] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_key", {f.key: f for f in self.fields})


def read_section(
    raw: dict[str, Any],
    section: Section,
    where: str,
    context: Any,
    seen: dict[str, dict[Any, str]] | None = None,
) -> Any:
    """Check one table against its section, in document order, and build its value."""
    seen = {} if seen is None else seen
    values: dict[str, Any] = {}
    plain_done = False
    for key, value in raw.items():
        entry = section.by_key.get(key)
        at_where = key_path(where, key)
        if entry is None:
            raise Invalid(at_where, "unknown key" + _did_you_mean(key, section, raw))
        if entry.kind.nested and not plain_done:
            _fill_absent(section, values, raw, where, context, seen, nested=False)
            plain_done = True
        read = entry.kind.read(value, at_where, context)
        checks = [c for c in entry.checks if not c.late]
        values[key] = _run(checks, read, At(at_where, key, values, seen, context))
    if not plain_done:
        _fill_absent(section, values, raw, where, context, seen, nested=False)
    _fill_absent(section, values, raw, where, context, seen, nested=True)
    for entry in section.fields:
        late = [c for c in entry.checks if c.late]
        if late and values[entry.key] is not None:
            at = At(key_path(where, entry.key), entry.key, values, seen, context)
            values[entry.key] = _run(late, values[entry.key], at)
    return section.make(**{f.key: values[f.key] for f in section.fields})


def _fill_absent(
    section: Section,
    values: dict[str, Any],
    raw: dict[str, Any],
    where: str,
    context: Any,
    seen: dict[str, dict[Any, str]],
    *,
    nested: bool,
) -> None:
    for entry in section.fields:
        if entry.key in raw or entry.kind.nested != nested:
            continue
        at_where = key_path(where, entry.key)
        default = entry.default
        if default is REQUIRED:
            raise Invalid(at_where, "required")
        if isinstance(default, RequiredFor):
            if default.applies(values):
                raise Invalid(at_where, f"required for {default.key} {values[default.key]}")
            default = default.default
        if isinstance(default, Computed):
            value = entry.kind.read(default.fn(values, context), at_where, context)
            try:
                values[entry.key] = _run(entry.checks, value, At(at_where, entry.key, values, seen, context))
            except Invalid as err:
                text = value if isinstance(value, str) else json.dumps(value)
                raise Invalid(at_where, f"{err.problem} (default {quote(text)} {default.doc})") from None
        elif default is None:
            values[entry.key] = None
        else:
            values[entry.key] = entry.kind.read(default, at_where, context)


def _did_you_mean(key: str, section: Section, raw: dict[str, Any]) -> str:
    free = [k for k in section.by_key if k not in raw]
    close = difflib.get_close_matches(key, free, n=1, cutoff=0.75)
    return f" (did you mean {quote(close[0])}?)" if close else ""


def describe(section: Section, prefix: str = "") -> list[str]:
    """One line per field, sub-tables expanded: `path  kind  default  checks  doc` (a format reference)."""
    lines = []
    for entry in section.fields:
        path = key_path(prefix, entry.key)
        default = entry.default
        if default is REQUIRED:
            shown = "required"
        elif isinstance(default, RequiredFor):
            shown = f"required for {default.key} in {sorted(default.values() if callable(default.values) else default.values)}"
        elif isinstance(default, Computed):
            shown = f"default: {default.doc}"
        else:
            shown = f"default: {json.dumps(default)}"
        checks = "; ".join(c.describe() for c in entry.checks)
        if getattr(entry.kind, "min_items", 0):
            checks = "; ".join(filter(None, [f"at least {entry.kind.min_items}", checks]))
        lines.append(f"{path}  ({entry.kind.expect}, {shown}{', ' + checks if checks else ''})  {entry.doc}")
        if isinstance(entry.kind, Table):
            lines += describe(entry.kind.section, path)
        elif isinstance(entry.kind, Tables):
            lines += describe(entry.kind.section, path + "[]")
    return lines
