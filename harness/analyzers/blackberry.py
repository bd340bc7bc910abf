"""The BlackBerry systems as a passive state sees them: envelopes, PINs in clear, and what the held keys open.

Finds version-2 relay envelopes (device <-> relay) and SRP frames (BES <-> relay) in each flow,
reports the PINs and pairs that travel in clear, and tries exactly the keys the adversary was
granted: PIN keys (kind "3des-pin") on PIN, BBM and receipt bodies; escrow keys ("bes-escrow") and
device transport keys ("bb-transport") on BES mail; a seized device's BBM identity key
("bbm-x25519"/"bbm-p521") with the public keys of captured key exchanges on BBM Protected chats;
SRP keys ("srp-key") on the SRP authentication. A message that no held key opens stays unread.
A summary finding per key says what it opened ("decrypted with ...: 212 of 212 PIN messages").

Sees only observed flows and the declared keys; never imports the simulator, its truth, or the scorer.
"""
from __future__ import annotations

import email
import email.policy
from collections import defaultdict
from dataclasses import dataclass
from email.utils import getaddresses
from typing import Iterable, Sequence

from harness.analyzers import register
from harness.analyzers.interface import Analyzer, Finding, KeyGrant
from harness.blackberry import ciphers
from harness.blackberry.formats import (
    AGREE_P521,
    AGREE_X25519,
    BBMP_KEYING,
    MAIL_CIPHERS,
    PIN_BBM_CHAT,
    PIN_KINDS,
    PIN_MESSAGE,
    PIN_PROTECTED,
    SRP_ID_BYTES,
    SRP_MAC_BYTES,
    SRP_NONCE_BYTES,
)
from harness.blackberry.payloads import (
    OpenError,
    agree,
    agreement_public,
    chat_key,
    mail_key_from_escrow,
    mail_key_from_transport,
    open_mail_with_key,
    open_protected,
    parse_bes_mail,
    parse_kex,
    unscramble,
)
from harness.observe import views
from harness.observe.model import CLIENT, SERVER, Flow
from harness.observe.relay_wire import RELAY_SERVICES, RelayEnvelope, srp_frames
from harness.observe.stream_clock import StreamClock
from harness.observe.text import canary_tokens, excerpt

ID = "payload.blackberry"
DIRECTION_NAMES = ("client", "server")
CONTENT_CAP = 1 << 17  # characters of recovered text per content finding
MAX_TIMES = 256
SRP_PAIR_WINDOW = (0.0, 1.0)  # seconds from a mail reaching the BES to its delivery leaving it
MAIL_TEXT_RATIO, MAIL_ATTACHMENT_RATIO, MAIL_ATTACHMENT_THRESHOLD = 2.5, 1.32, 6000
BBMP_OVERHEAD = 8 + 8 + ciphers.P521_SIGNATURE_BYTES + 4  # IV, PN header, r||s, mean padding
CHAT_HEADER_ESTIMATE = 26  # "From: x\r\nTo: y\r\n\r\n" with user names of ~5 characters
DATA_UP, DATA_DOWN, RECEIPT, PRESENCE, KEY_EXCHANGE = 1, 2, 5, 6, 7
SERVICE_BES_MAIL, SERVICE_PIN, SERVICE_BBM, SERVICE_BBM_PROTECTED = 1, 2, 3, 4
SRP_CHALLENGE, SRP_RESPONSE = 1, 2
KEY_LABELS = {"3des-pin": "PIN key", "bes-escrow": "escrow key", "bb-transport": "device transport key",
              "bbm-x25519": "BBM Protected identity key", "bbm-p521": "BBM Protected identity key",
              "srp-key": "SRP key"}


def pin_id(pin: int) -> str:
    return f"pin:{pin:08x}"


def split_headers(text: bytes) -> tuple[dict[str, str], str]:
    """(lower-case header -> value, body) of a From/To/Subject block, a blank line, then the body."""
    head, _, body = text.partition(b"\r\n\r\n")
    fields = {}
    for line in head.split(b"\r\n"):
        name, sep, value = line.partition(b":")
        if sep:
            fields[name.decode("ascii", "replace").strip().lower()] = value.decode("utf-8", "replace").strip()
    return fields, body.decode("utf-8", "replace")


def identity(value: str) -> str:
    addrs = [a.lower() for _, a in getaddresses([value]) if "@" in a]
    return addrs[0] if addrs else value.strip()


@dataclass
class _Item:
    """One version-2 envelope as seen on one flow."""

    flow: str
    direction: int
    time: float
    env: RelayEnvelope
    ext: bytes
    body: bytes


@register
class BlackBerryAnalyzer(Analyzer):
    """PINs, pairs and timing in clear; the contents the granted keys open."""

    id = ID
    cost = 0.05  # relative CPU cost (Analyzer.cost), measured at 1M packets: balances analyze --jobs
    finish_reads_flows = False  # finish works from what on_flow kept
    description = ("Parses BlackBerry relay envelopes and SRP frames; reports PINs and PIN pairs in clear, and "
                   "opens PIN/BBM scrambling, BES mail and BBM Protected chats with exactly the keys held.")

    def __init__(self, knowledge) -> None:
        super().__init__(knowledge)
        self.out: dict[str, Finding] = {}
        self.opened: dict[str, dict] = {}  # key name -> {"kind", "opened": Counter-ish, "tried": ...}
        self.seen: dict[str, int] = defaultdict(int)  # what crossed, by label, for the summary
        self.protected: list[_Item] = []  # BBM Protected messages, opened in finish()
        self.kex: dict[int, dict[int, bytes]] = defaultdict(dict)  # chat id -> PIN -> agreement public key
        self.kex_agreement: dict[int, int] = {}
        self.srp_sent: dict[int, int] = {}  # device PIN -> mail envelopes it sent, as the SRP link shows
        self._srp_data: list[_Item] = []  # this flow's SRP data envelopes (for srp_pairs)
        self.pin_keys = self.knowledge.of_kind("3des-pin")
        self.escrow_keys = self.knowledge.of_kind("bes-escrow")
        self.transport_keys = self.knowledge.of_kind("bb-transport")
        self.identity_keys = self.knowledge.of_kind("bbm-x25519") + self.knowledge.of_kind("bbm-p521")
        self.srp_keys = self.knowledge.of_kind("srp-key")
        for k in self.pin_keys + self.escrow_keys + self.transport_keys + self.identity_keys + self.srp_keys:
            self.opened[k.name] = {"kind": k.kind, "opened": defaultdict(int)}

    # -- emitting ------------------------------------------------------------------------------
    def emit(self, observable: str, kind: str, flow: str | None, value, *, rule: str, confidence: float,
             time: float | None = None, **evidence) -> None:
        ev = {"rule": rule, **{k: v for k, v in evidence.items() if v not in (None, [], {})}}
        if time is not None:
            ev["time"] = round(time, 6)
        f = Finding(analyzer=ID, observable=observable, kind=kind, flow=flow, value=value, evidence=ev,
                    confidence=confidence)
        first = self.out.setdefault(f.id, f)
        if first is not f and time is not None and ev["time"] != first.evidence.get("time"):
            times = first.evidence.setdefault("times", [first.evidence.get("time")])
            if len(times) < MAX_TIMES and ev["time"] not in times:
                times.append(ev["time"])

    def credit(self, key: KeyGrant, what: str) -> None:
        self.opened[key.name]["opened"][what] += 1

    # -- per flow ------------------------------------------------------------------------------
    def on_flow(self, flow: Flow) -> Iterable[Finding]:
        layout = views.layout(flow)
        if not layout.is_relay:
            return ()
        clock = views.clock(flow)
        data = (bytes(flow.payload[CLIENT]), bytes(flow.payload[SERVER]))
        for direction in (CLIENT, SERVER):
            d = layout.directions[direction]
            stream = data[direction]
            for env in d.envelopes:
                if env.version != 2 or not env.complete:
                    continue
                t = clock.time(direction, env.offset)
                ext = stream[env.ext_offset:env.ext_offset + env.ext_len]
                item = _Item(flow.id, direction, t, env, ext, stream[env.body_offset:env.end])
                if env.srp_type is not None and env.srp_type in (SRP_CHALLENGE, SRP_RESPONSE):
                    continue
                self.envelope(item)
        self.srp_link(flow, layout, data, clock)
        self.srp_pairs(flow.id)
        return ()

    def srp_pairs(self, flow: str) -> None:
        """On the SRP link, a mail goes in to the BES from the sender's PIN and, a moment later, out to
        the recipient's PIN. Pair each delivery with the one arrival just before it when it is unambiguous."""
        ups = sorted((it.time, it.env.pin) for it in self._srp_data if it.env.type == DATA_UP)
        downs = sorted((it.time, it.env.pin) for it in self._srp_data if it.env.type == DATA_DOWN)
        self._srp_data = []
        for t_down, recipient in downs:
            candidates = [(t, pin) for t, pin in ups if SRP_PAIR_WINDOW[0] <= t_down - t <= SRP_PAIR_WINDOW[1]]
            if len({pin for _, pin in candidates}) != 1:
                continue
            t_up, sender = candidates[-1]
            self.emit("contacts", "srp-timing-pair", flow, {"sender": pin_id(sender), "recipient": pin_id(recipient)},
                      rule="srp-in-then-out", confidence=0.6, time=t_up, delivered_at=round(t_down, 6))

    def envelope(self, it: _Item) -> None:
        env = it.env
        service = RELAY_SERVICES.get(env.service, str(env.service))
        if env.type in (DATA_UP, DATA_DOWN):
            self.seen[f"{service} messages"] += 1
            if env.srp_type is not None:
                self._srp_data.append(it)
            if env.type == DATA_UP and env.srp_type is not None:  # the gateway sees each device's mail
                self.srp_sent[env.pin] = self.srp_sent.get(env.pin, 0) + 1
        elif env.type == RECEIPT:
            self.seen["receipts"] += 1
        elif env.type == PRESENCE:
            self.seen["presence updates"] += 1
        elif env.type == KEY_EXCHANGE:
            self.seen["BBM Protected key exchanges"] += 1
            kex = parse_kex(it.body)
            if kex is not None and kex["valid"]:
                self.kex[kex["chat_id"]][self._sender_pin(it)] = kex["public"]
                self.kex_agreement[kex["chat_id"]] = kex["agreement"]
            return
        if env.type in (DATA_UP, DATA_DOWN) and env.peer_pin and env.service in (SERVICE_PIN, SERVICE_BBM,
                                                                                 SERVICE_BBM_PROTECTED):
            sender, recipient = self._sender_pin(it), self._recipient_pin(it)
            self.emit("contacts", "pin-pair", it.flow, {"sender": pin_id(sender), "recipient": pin_id(recipient)},
                      rule="envelope-pins-in-clear", confidence=0.9, time=it.time, service=service,
                      direction=DIRECTION_NAMES[it.direction], offset=it.env.envelope_offset + 8, length=8)
            self.emit("device", "peer-pin", None, pin_id(env.peer_pin), rule="envelope-peer-pin", confidence=0.9,
                      time=it.time, flow_seen=it.flow, service=service)
        if env.service in (SERVICE_PIN, SERVICE_BBM) or (env.type in (RECEIPT, PRESENCE)):
            self.scrambled(it)
        elif env.service == SERVICE_BBM_PROTECTED and env.type in (DATA_UP, DATA_DOWN):
            self.protected.append(it)
            # The Protected layout is public: a fixed signature and scrambling overhead around the text.
            self.emit("size", "protected-length", it.flow,
                      {"time": round(it.time, 3), "bytes": max(len(it.body) - BBMP_OVERHEAD - CHAT_HEADER_ESTIMATE, 0)},
                      rule="bbm-protected-fixed-overhead", confidence=0.7, time=it.time,
                      direction=DIRECTION_NAMES[it.direction], offset=it.env.body_offset, length=it.env.length)
        elif env.service == SERVICE_BES_MAIL and env.type in (DATA_UP, DATA_DOWN):
            self.bes_mail(it)

    @staticmethod
    def _sender_pin(it: _Item) -> int:
        """Who sent it: the device on the connection for data going up, the peer for data coming down;
        for receipts, presence and key exchanges, the direction on the carrier connection says."""
        env = it.env
        if env.type == DATA_UP:
            return env.pin
        if env.type == DATA_DOWN:
            return env.peer_pin
        return env.pin if it.direction == CLIENT else env.peer_pin

    @staticmethod
    def _recipient_pin(it: _Item) -> int:
        sender = BlackBerryAnalyzer._sender_pin(it)
        return it.env.peer_pin if sender == it.env.pin else it.env.pin

    # -- PIN, BBM, receipts, presence ------------------------------------------------------------
    def scrambled(self, it: _Item) -> None:
        for key in self.pin_keys:
            try:
                kind, ref, text = unscramble(key.material, it.body)
            except OpenError:
                continue
            label = PIN_KINDS.get(kind, str(kind))
            self.credit(key, {"pin": "PIN messages", "bbm": "BBM chats", "delivered": "receipts",
                              "read": "receipts", "presence": "presence updates"}.get(label, label))
            if kind in (PIN_MESSAGE, PIN_BBM_CHAT):
                self.message(it, text, f"{label}-unscrambled", key)
            return

    def message(self, it: _Item, text: bytes, rule: str, key: KeyGrant, **extra) -> None:
        """Content, subject, sender, recipient and contacts of an opened PIN/BBM message."""
        fields, body = split_headers(text)
        shown = text.decode("utf-8", "replace")[:CONTENT_CAP]
        where = dict(direction=DIRECTION_NAMES[it.direction], offset=it.env.body_offset, length=it.env.length,
                     key=key.name, service=RELAY_SERVICES.get(it.env.service), **extra)
        self.emit("content", "decrypted-text", it.flow, shown, rule=rule, confidence=1.0, time=it.time,
                  tokens=canary_tokens(text)[:8], excerpt=excerpt(body), **where)
        composed = len(text) if fields.get("subject") is not None else len(body.encode())
        self.emit("size", "decrypted-text", it.flow, {"time": round(it.time, 3), "bytes": composed}, rule=rule,
                  confidence=1.0, time=it.time, **where)
        if fields.get("subject"):
            self.emit("subject", "decrypted-subject", it.flow, fields["subject"], rule=rule, confidence=1.0,
                      time=it.time, **where)
        sender, recipient = identity(fields.get("from", "")), identity(fields.get("to", ""))
        if sender:
            self.emit("sender", "decrypted-from", it.flow, sender, rule=rule, confidence=1.0, time=it.time, **where)
        if recipient:
            self.emit("recipient", "decrypted-to", it.flow, recipient, rule=rule, confidence=1.0, time=it.time,
                      **where)
        if sender and recipient:
            self.emit("contacts", "decrypted-pair", it.flow, {"sender": sender, "recipient": recipient}, rule=rule,
                      confidence=1.0, time=it.time, **where)

    # -- BES mail --------------------------------------------------------------------------------
    def bes_mail(self, it: _Item) -> None:
        parts = parse_bes_mail(it.body)
        if parts is None:
            return
        self.seen[f"BES mail ({MAIL_CIPHERS.get(parts.cipher, parts.cipher)})"] += 1
        if parts.escrow:
            self.seen["BES mail with an escrow copy of its key"] += 1
        attempts = [(k, mail_key_from_escrow) for k in self.escrow_keys]
        attempts += [(k, mail_key_from_transport) for k in self.transport_keys]
        for key, unwrap in attempts:
            try:
                message = open_mail_with_key(parts, unwrap(parts, key.material))
            except OpenError:
                continue
            self.credit(key, "BES mail messages")
            self.mail_findings(it, message, key, parts.cipher)
            return
        self.mail_size_estimate(it, len(parts.ciphertext))

    def mail_size_estimate(self, it: _Item, ciphertext: int) -> None:
        """What the ciphertext length says about the mail's size without a key. The body was deflated
        before encryption; deflate shrinks base64 attachments (already-compressed files) by a steady
        ~1.32 and business text by ~2-3, so a large body is mostly attachment. A calibration anyone
        with a handset of their own can make; an estimate, reported as one."""
        compressed = max(ciphertext - 8, 0)  # CBC padding: half a block on average
        ratio = MAIL_ATTACHMENT_RATIO if compressed > MAIL_ATTACHMENT_THRESHOLD else MAIL_TEXT_RATIO
        self.emit("size", "compressed-length-estimate", it.flow,
                  {"time": round(it.time, 3), "bytes": int(compressed * ratio)}, rule="deflate-ratio-estimate",
                  confidence=0.4, time=it.time, ciphertext=ciphertext, ratio=ratio,
                  direction=DIRECTION_NAMES[it.direction], offset=it.env.body_offset, length=it.env.length)

    def mail_findings(self, it: _Item, message: bytes, key: KeyGrant, cipher: int) -> None:
        msg = email.message_from_bytes(message, policy=email.policy.default)
        texts, attachments = [], []
        for part in msg.walk():
            if part.is_multipart():
                continue
            if part.get_content_maintype() == "text":
                texts.append(part.get_content())
            else:
                attachments.append({"name": part.get_filename(), "type": part.get_content_type(),
                                    "bytes": len(part.get_payload(decode=True) or b"")})
        head = message.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")
        shown = (head + "\r\n\r\n" + "\n".join(texts))[:CONTENT_CAP]
        where = dict(direction=DIRECTION_NAMES[it.direction], offset=it.env.body_offset, length=it.env.length,
                     key=key.name, cipher=MAIL_CIPHERS.get(cipher), attachments=attachments)
        rule = "bes-mail-escrow-unwrapped" if key.kind == "bes-escrow" else "bes-mail-transport-key"
        self.emit("content", "decrypted-mail", it.flow, shown, rule=rule, confidence=1.0, time=it.time,
                  tokens=canary_tokens(shown.encode())[:8], **where)
        self.emit("size", "decrypted-mail", it.flow, {"time": round(it.time, 3), "bytes": len(message)}, rule=rule,
                  confidence=1.0, time=it.time, **where)
        subject = str(msg.get("Subject", "") or "").strip()
        if subject:
            self.emit("subject", "decrypted-subject", it.flow, subject, rule=rule, confidence=1.0, time=it.time,
                      **where)
        senders = [a.lower() for _, a in getaddresses([str(msg.get("From", ""))]) if "@" in a]
        rcpts = [a.lower() for _, a in getaddresses([str(msg.get("To", ""))]) if "@" in a]
        for s in senders:
            self.emit("sender", "decrypted-from", it.flow, s, rule=rule, confidence=1.0, time=it.time, **where)
        for r in rcpts:
            self.emit("recipient", "decrypted-to", it.flow, r, rule=rule, confidence=1.0, time=it.time, **where)
            for s in senders:
                self.emit("contacts", "decrypted-pair", it.flow, {"sender": s, "recipient": r}, rule=rule,
                          confidence=1.0, time=it.time, **where)

    # -- SRP ---------------------------------------------------------------------------------------
    def srp_link(self, flow: Flow, layout, data: tuple[bytes, bytes], clock: StreamClock) -> None:
        starts = [d.clear_end for d in layout.directions]
        challenges = [f for f in srp_frames(data[SERVER], starts[SERVER]) if f.type == SRP_CHALLENGE]
        responses = [f for f in srp_frames(data[CLIENT], starts[CLIENT]) if f.type == SRP_RESPONSE]
        if not responses:
            return
        r = responses[0]
        body = data[CLIENT][r.body_offset:r.end]
        srp_id = body[:SRP_ID_BYTES].decode("ascii", "replace").strip()
        t = clock.time(CLIENT, r.offset)
        self.seen["SRP links"] += 1
        # The side that authenticates with an SRP id is the enterprise BES: the mail's real destination.
        self.emit("endpoint", "srp-bes", flow.id, flow.src_ip, rule="srp-link-client", confidence=0.9,
                  srp_id=srp_id, seen_at=round(t, 6))
        if not challenges or len(body) != SRP_ID_BYTES + SRP_MAC_BYTES:
            return
        c = challenges[0]
        nonce = data[SERVER][c.body_offset:c.end]
        if len(nonce) != SRP_NONCE_BYTES:
            return
        for key in self.srp_keys:
            mac = ciphers.hmac_sha256(key.material, nonce + body[:SRP_ID_BYTES])
            if ciphers.hmac_equal(mac, body[SRP_ID_BYTES:]):
                self.credit(key, "SRP authentications verified")
                self.emit("endpoint", "srp-verified-bes", flow.id, flow.src_ip, rule="srp-key-verifies-response",
                          confidence=1.0, srp_id=srp_id, key=key.name, seen_at=round(t, 6),
                          note="the SRP key authenticates the BES to the relay; it opens no message")

    # -- BBM Protected (needs key exchanges from every flow) ---------------------------------------
    def open_protected_chats(self) -> None:
        chat_keys: dict[int, tuple[bytes, KeyGrant]] = {}
        for key in self.identity_keys:
            agreement = AGREE_X25519 if key.kind == "bbm-x25519" else AGREE_P521
            try:
                mine = agreement_public(agreement, key.material)
            except ValueError:
                continue
            for cid, pubs in self.kex.items():
                if self.kex_agreement.get(cid) != agreement or mine not in pubs.values():
                    continue
                for peer in (p for p in pubs.values() if p != mine):
                    try:
                        chat_keys[cid] = (chat_key(agree(agreement, key.material, peer), cid), key)
                    except ValueError:  # not a valid public key of that curve
                        continue
        for it in self.protected:
            k = BBMP_KEYING.unpack(it.ext)
            inner = None
            for pkey in self.pin_keys:
                try:
                    kind, _, inner = unscramble(pkey.material, it.body)
                except OpenError:
                    continue
                if kind == PIN_PROTECTED:
                    self.credit(pkey, "BBM Protected outer layers (inner still sealed)")
                    break
                inner = None
            if inner is None or k is None or k["chat_id"] not in chat_keys:
                continue
            chat, key = chat_keys[k["chat_id"]]
            try:
                text = open_protected(chat, it.ext, inner)
            except OpenError:
                continue
            self.credit(key, "BBM Protected messages")
            self.message(it, text, "bbm-protected-chat-key", key, chat_id=k["chat_id"])

    def finish(self, flows: Sequence[Flow]) -> Iterable[Finding]:
        self.open_protected_chats()
        crossed = {k: v for k, v in sorted(self.seen.items()) if v}
        for pin in sorted(self.srp_sent):
            self.emit("volume", "srp-per-pin", None, {"endpoint": pin_id(pin), "messages": self.srp_sent[pin]},
                      rule="srp-data-frames-by-device-pin", confidence=0.9)
        for name, info in self.opened.items():
            label = KEY_LABELS.get(info["kind"], info["kind"])
            opened = dict(info["opened"])
            if opened:
                parts = []
                for what, n in sorted(opened.items()):
                    total = self._total_for(what)
                    parts.append(f"{n} of {total} {what}" if total else f"{n} {what}")
                text = f"decrypted with the {label} {name!r}: " + "; ".join(parts)
            else:
                text = f"the {label} {name!r} opened nothing that crossed the tapped links"
            self.emit("content", "key-summary", None, text, rule="held-key-summary", confidence=1.0, key=name,
                      key_kind=info["kind"], opened=opened, crossed=crossed)
        if crossed and not self.opened:
            self.emit("content", "key-summary", None, "no key held: every scrambled or encrypted body stayed closed",
                      rule="held-key-summary", confidence=1.0, crossed=crossed)
        return list(self.out.values())

    def _total_for(self, what: str) -> int:
        if what == "PIN messages":
            return self.seen.get("pin messages", 0)
        if what == "BBM chats":
            return self.seen.get("bbm messages", 0)
        if what == "BES mail messages":
            return self.seen.get("bes-mail messages", 0)
        if what.startswith("BBM Protected"):
            return self.seen.get("bbm-protected messages", 0)
        if what in ("receipts", "presence updates"):
            return self.seen.get(what, 0)
        if what.startswith("SRP"):
            return self.seen.get("SRP links", 0)
        return 0
