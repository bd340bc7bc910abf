"""The real corpus end to end: `harness analyze` gives a report (or one clean line) for every file, and what the
adversary reads in clear agrees with tshark's dissectors, run in the same test session.

Compared per flow (by its two endpoints): SMTP MAIL FROM / RCPT TO (smtp.req.parameter), HTTP Host (http.host),
DNS query names (dns.qry.name), and IMAP/POP3 requests (imap.request, pop.request.*), which must appear in the
clear text we report for that flow. TLS SNI is compared with tshark in tests/analyzers/test_corpus_agreement.py,
and the application per flow with nDPI there too. Every difference is in ALLOWED with its reason; a new one
fails, and an entry no longer needed fails as well.
"""
from __future__ import annotations

import re
from collections import defaultdict
from functools import lru_cache
from pathlib import Path

import pytest

from harness.cli import main as harness_main
from harness.pipeline import analyze_captures

CORPUS = Path(__file__).resolve().parents[2] / ".." / "shared" / "corpus" / "real"
FILES = sorted(p.name for p in CORPUS.glob("*") if p.is_file() and p.suffix in (".pcap", ".pcapng")) \
    if CORPUS.is_dir() else []
needs_corpus = pytest.mark.skipif(not FILES, reason=f"corpus not found at {CORPUS}")

# (file, field, endpoints, value) -> why we differ from tshark on purpose. `value` is what one side has and the
# other lacks; endpoints as "a <-> b" sorted.
_SHORT = ("the client's whole stream is 'CAPA' and 'QUIT' (12 bytes): shorter than payload.dpi's shortest clear-text "
          "span for a content finding (24 bytes, harness/observe/text.py MIN_TEXT); the flow is still labelled pop3")
_SSDP = ("SSDP M-SEARCH to 239.255.255.250:1900 is HTTP-formatted UDP: tshark's HTTP dissector reads its HOST header; "
         "payload.dpi reports http-host for HTTP requests over TCP only")
ALLOWED: dict[tuple[str, str, str, str], str] = {
    **{("ndpi__pop3.pcap", "pop-request missing", f"192.168.0.4:{port} <-> 212.227.15.166:110", req): _SHORT
       for port in (26272, 26304) for req in ("CAPA", "QUIT")},
    **{("ndpi__telegram.pcap", "http-host missing", f"{cli} <-> 239.255.255.250:1900", "239.255.255.250:1900"): _SSDP
       for cli in ("192.168.1.53:50698", "192.168.1.53:54306", "192.168.1.53:56384", "192.168.1.75:57916",
                   "192.168.1.77:52127")},
}

_ADDR = re.compile(r"(?i)^(?:FROM|TO):\s*<?([^<>\s]*)>?")


@lru_cache(maxsize=None)
def _ours(name: str) -> dict:
    return analyze_captures([str(CORPUS / name)])


def _ends(a: str, ap: str | int, b: str, bp: str | int) -> str:
    return " <-> ".join(sorted((f"{a}:{ap}", f"{b}:{bp}")))


def _flow_ends(doc: dict) -> dict[str, str]:
    """flow id -> endpoints "a <-> b" (IPv6 without brackets, as tshark prints them)."""
    out = {}
    for f in doc["flows"]:
        ends = [e.replace("[", "").replace("]", "") for e in (f["src"], f["dst"])]
        out[f["id"]] = " <-> ".join(sorted(ends))
    return out


def tshark_facts(rows: list[dict[str, list[str]]]) -> dict[str, set[tuple[str, str]]]:
    """field -> {(endpoints, value)} from tshark's per-packet fields."""
    facts: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for r in rows:
        src = (r["ip.src"] or r["ipv6.src"] or [""])[-1]  # the innermost IP header (tunnels)
        dst = (r["ip.dst"] or r["ipv6.dst"] or [""])[-1]
        sport = (r["tcp.srcport"] or r["udp.srcport"] or [""])[-1]
        dport = (r["tcp.dstport"] or r["udp.dstport"] or [""])[-1]
        ends = _ends(src, sport, dst, dport)
        for cmd, param in zip(r["smtp.req.command"], r["smtp.req.parameter"] + [""] * len(r["smtp.req.command"])):
            m = _ADDR.match(param)
            if cmd.upper() == "MAIL" and m:
                facts["smtp-mail-from"].add((ends, m[1]))
            elif cmd.upper() == "RCPT" and m:
                facts["smtp-rcpt-to"].add((ends, m[1]))
        for host in r["http.host"]:
            facts["http-host"].add((ends, host.lower()))
        if r["dns.flags.response"][:1] == ["0"]:  # queries only: the name the client asked for
            for qname in r["dns.qry.name"]:
                facts["dns-query"].add((ends, qname.lower().rstrip(".")))
        for req in r["imap.request"]:
            facts["imap-request"].add((ends, req))
        for i, cmd in enumerate(r["pop.request.command"]):
            param = r["pop.request.parameter"][i] if i < len(r["pop.request.parameter"]) else ""
            facts["pop-request"].add((ends, f"{cmd} {param}".strip()))
    return facts


def our_facts(doc: dict, wanted: dict[str, set[tuple[str, str]]]) -> dict[str, set[tuple[str, str]]]:
    """The same facts from our findings; IMAP/POP3 requests count when our clear text of that flow holds them."""
    ends = _flow_ends(doc)
    facts: dict[str, set[tuple[str, str]]] = defaultdict(set)
    text: dict[str, str] = defaultdict(str)
    for f in doc["findings"]:
        if f["flow"] not in ends:
            continue
        e = ends[f["flow"]]
        if f["kind"] in ("smtp-mail-from", "smtp-rcpt-to") and isinstance(f["value"], str):
            facts[f["kind"]].add((e, f["value"]))
        elif f["kind"] in ("http-host", "dns-query") and isinstance(f["value"], str):
            facts[f["kind"]].add((e, f["value"].lower().rstrip(".")))
        elif f["kind"] == "text" and isinstance(f["value"], str) and f["evidence"].get("direction") == "client":
            text[e] += f["value"] + "\n"
    lines = {e: {line.strip().lower() for line in t.splitlines()} for e, t in text.items()}
    for kind in ("imap-request", "pop-request"):
        for e, req in wanted.get(kind, ()):
            if req.lower() in lines.get(e, ()):  # a whole line the client sent, as we report it
                facts[kind].add((e, req))
    return facts


def differences(name: str, rows: list[dict[str, list[str]]]) -> list[tuple[str, str, str, str]]:
    theirs = tshark_facts(rows)
    ours = our_facts(_ours(name), theirs)
    out = []
    for kind in sorted(set(theirs) | set(ours)):
        for e, v in sorted(theirs.get(kind, set()) - ours.get(kind, set())):
            out.append((kind + " missing", e, v))
        if kind not in ("imap-request", "pop-request"):
            for e, v in sorted(ours.get(kind, set()) - theirs.get(kind, set())):
                out.append((kind + " extra", e, v))
    return [(name, *d) for d in out]


@needs_corpus
@pytest.mark.tshark
@pytest.mark.parametrize("name", FILES)
def test_clear_text_fields_agree_with_tshark(name, tshark_corpus):
    found = differences(name, tshark_corpus[name][1])
    unexplained = [d for d in found if d not in ALLOWED]
    assert not unexplained, f"{name}: differences from tshark not in ALLOWED: {unexplained}"
    stale = [k for k in ALLOWED if k[0] == name and k not in found]
    assert not stale, f"ALLOWED entries no longer needed: {stale}"


@needs_corpus
def test_the_corpus_has_each_field_to_compare(tshark_corpus):
    """So the comparison above is not vacuous: tshark finds each kind of fact somewhere in the corpus."""
    kinds = set()
    for name in FILES:
        kinds |= set(tshark_facts(tshark_corpus[name][1]))
    assert kinds >= {"smtp-mail-from", "smtp-rcpt-to", "http-host", "dns-query", "imap-request", "pop-request"}


@needs_corpus
@pytest.mark.parametrize("name", FILES)
def test_the_cli_reports_on_every_corpus_file(name, capsys):
    """`harness analyze FILE`: exit 0 and a summary, or exit 2 and one line; never a traceback."""
    code = harness_main(["analyze", str(CORPUS / name)])
    out, err = capsys.readouterr()
    assert code in (0, 2), (code, err)
    if code == 2:
        assert len(err.strip().splitlines()) == 1 and name in err
        return
    assert re.match(r"\d+ flows, \d+ findings, skipped: ", out)
    doc = _ours(name)
    if sum(doc["skipped"].values()) or doc["notes"]:  # the malformed ones say what was skipped and why
        assert all(f"{k}={v}" in out for k, v in doc["skipped"].items())
        assert all(f"note: {n}" in out for n in doc["notes"])
