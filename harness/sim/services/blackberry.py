"""The BlackBerry systems: BES e-mail through the SRP link, PIN-to-PIN, BBM and BBM Protected.

Every device keeps one connection to the relay through its carrier (envelope version 2, PIN in
clear); the enterprise BES keeps one authenticated SRP connection to the relay. The kind of each
workload message decides its path and protection:

* "email": device -> relay -> BES -> relay -> device, compressed then encrypted per message
  (AES-256-CBC or legacy 3DES), the message key wrapped with each device's transport key, and with
  the state's escrow key when `protection.escrow` is on.
* "pin": device -> relay -> device, scrambled with the PIN key (global or the organisation's);
  both PINs in clear; delivered and read receipts follow (`protection.receipts`).
* "bbm" / "chat": consumer BBM, the same scrambling; receipts and presence updates.
* "bbm-protected": a signed key exchange per chat, then AES-256-CTR per-message keys from HKDF,
  ECDSA P-521 signatures, inside the usual scrambling; chat id, counter and nonce in clear.

Relayed traffic is a `Transmission` schedule that passes `apply_defences` before connections are built.
"""
from __future__ import annotations

from dataclasses import replace

from harness.blackberry.formats import (
    AGREE_P521,
    AGREE_X25519,
    MAIL_3DES_CBC,
    MAIL_AES_CBC,
    PIN_BBM_CHAT,
    PIN_DELIVERED,
    PIN_MESSAGE,
    PIN_PRESENCE,
    PIN_PROTECTED,
    PIN_READ,
    SERVICE_BBM,
    SERVICE_BBM_PROTECTED,
    SERVICE_BES_MAIL,
    SERVICE_PIN,
    SRP_NONCE_BYTES,
)
from harness.blackberry.payloads import chat_id_for, scramble, seal_bes_mail
from harness.sim import bb_keys
from harness.sim.defences import apply_defences
from harness.sim.protocols.bb_relay import BbDevice, BbRelay
from harness.sim.protocols.bbm_protected import BbmProtectedParty
from harness.sim.protocols.pin_message import pin_text
from harness.sim.protocols.relay_envelope import (
    DATA_DOWN,
    DATA_UP,
    FLAG_COMPRESSED,
    FLAG_ENCRYPTED,
    KEEPALIVE,
    KEY_EXCHANGE,
    PRESENCE,
    RECEIPT,
    EnvelopeV2,
)
from harness.sim.protocols.srp import SrpBes, SrpRelay
from harness.sim.rng import derive_bytes, substream
from harness.sim.services import service
from harness.sim.services.context import ServicePlan, SimContext
from harness.sim.services.relay_path import (
    DOWNLINK,
    FROM_ENTERPRISE,
    RELAY_PROCESSING,
    TO_ENTERPRISE,
    UPLINK,
    RelayPath,
    Transmission,
    build_connections,
    keepalives,
    relay_message,
)

DEFAULT_PORT = 3101
SRP_KEEPALIVE_INTERVAL = 60.0
DEVICE_PROCESSING = (0.05, 0.4)  # seconds between a message arriving and its delivered receipt
READ_DELAY = 45.0  # mean seconds until a chat is read
ENVELOPE_TYPES = {"receipt": RECEIPT, "presence": PRESENCE, "kex": KEY_EXCHANGE}
CHAT_KINDS = {"pin": (SERVICE_PIN, PIN_MESSAGE), "bbm": (SERVICE_BBM, PIN_BBM_CHAT),
              "chat": (SERVICE_BBM, PIN_BBM_CHAT), "bbm-protected": (SERVICE_BBM_PROTECTED, PIN_PROTECTED)}


def push_item(t: Transmission, side: str):
    """What the engine at `side` is asked to send for one transmission."""
    backbone = t.hop in (TO_ENTERPRISE, FROM_ENTERPRISE)
    if t.kind == "keepalive":
        return ("keepalive",) if backbone else ("envelope", EnvelopeV2(KEEPALIVE, t.pin, t.msg_no))
    body, flags = t.seal(t.plaintext)
    etype = ENVELOPE_TYPES.get(t.kind, DATA_UP if t.hop in (UPLINK, TO_ENTERPRISE) else DATA_DOWN)
    env = EnvelopeV2(etype, t.pin, t.msg_no, body, flags, t.peer_pin, t.service, t.ext)
    return ("data", env.encode()) if backbone else ("envelope", env)


class _Planner:
    def __init__(self, ctx: SimContext) -> None:
        self.ctx = ctx
        sc = ctx.scenario
        self.bb = sc.blackberry
        self.seed = ctx.seed
        self.cipher = MAIL_3DES_CBC if self.bb.mail_cipher == "3des-cbc" else MAIL_AES_CBC
        self.agreement = AGREE_P521 if self.bb.key_agreement == "p521" else AGREE_X25519
        self.receipts = sc.protection.receipts == "on"
        self.escrow = bb_keys.escrow_key(self.seed) if sc.protection.escrow else None
        self.pin_key = (bb_keys.GLOBAL_PIN_KEY if self.bb.pin_key == "global"
                        else bb_keys.org_pin_key(self.seed, sc.workload.domain))
        self.path = RelayPath.from_scenario(ctx, DEFAULT_PORT, app="bes-relay")
        enterprise = self.path.enterprise.name
        self.srp_id = self.bb.srp_id or bb_keys.srp_id(self.seed, enterprise)
        self.srp_key = bb_keys.srp_key(self.seed, enterprise)
        nonce = derive_bytes(self.seed, SRP_NONCE_BYTES, "blackberry", "srp-nonce", enterprise)
        self.path.carrier_engines = lambda pin: (BbDevice(pin), BbRelay(pin))
        self.path.backbone_engines = lambda: (SrpBes(self.srp_id, self.srp_key),
                                              SrpRelay({self.srp_id: self.srp_key}, nonce))
        self.path.push_item = push_item
        self.rng = substream(self.seed, "blackberry", "timing")
        self.msg_no = 0
        self.parties: dict[str, BbmProtectedParty] = {}
        self.keyed: set[int] = set()
        self.counters: dict[int, int] = {}
        self.latency = self.path.t_carrier.latency
        self._grant()

    def _grant(self) -> None:
        ctx = self.ctx
        ctx.grant("pin-global", "3des-pin", bb_keys.GLOBAL_PIN_KEY)
        ctx.grant("pin-org", "3des-pin", bb_keys.org_pin_key(self.seed, ctx.scenario.workload.domain))
        ctx.grant("escrow", "bes-escrow", bb_keys.escrow_key(self.seed))
        ctx.grant(f"srp:{self.path.enterprise.name}", "srp-key", self.srp_key)
        kind = "bbm-x25519" if self.agreement == AGREE_X25519 else "bbm-p521"
        for u in ctx.users:
            ctx.grant(f"device:{u.name}", "bb-transport", bb_keys.transport_key(self.seed, u.device, self.cipher))
            ctx.grant(f"bbm-identity:{u.name}", kind, bb_keys.agreement_private(self.seed, u.device, self.agreement))

    def next_no(self) -> int:
        self.msg_no += 1
        return self.msg_no

    # -- seals ----------------------------------------------------------------------------------
    def mail_seal(self, m, holder):
        key, iv = bb_keys.message_key(self.seed, self.cipher, m.id, holder.name)
        tkey = bb_keys.transport_key(self.seed, holder.device, self.cipher)
        escrow = self.escrow

        def seal(plaintext: bytes):
            return (seal_bes_mail(plaintext, cipher=self.cipher, message_key=key, iv=iv, transport_key=tkey,
                                  escrow_key=escrow), FLAG_ENCRYPTED | FLAG_COMPRESSED)
        return seal

    def scramble_seal(self, kind: int, iv: bytes, ref: int = 0):
        pin_key = self.pin_key
        return lambda plaintext: (scramble(pin_key, iv, kind, plaintext, ref), FLAG_ENCRYPTED)

    def party(self, user) -> BbmProtectedParty:
        if user.name not in self.parties:
            self.parties[user.name] = BbmProtectedParty(
                int(user.pin, 16), self.agreement, bb_keys.agreement_private(self.seed, user.device, self.agreement),
                bb_keys.signing_key(self.seed, user.device))
        return self.parties[user.name]

    # -- paths ----------------------------------------------------------------------------------
    def direct(self, t0: float, sender, recipient, kind: str, service_id: int, plaintext: bytes, seal,
               message_id: str | None, msg_no: int, ext: bytes = b"") -> tuple[list[Transmission], float]:
        """Device -> relay -> device: both PINs in clear on both legs. Returns (hops, delivery time)."""
        sp, rp = int(sender.pin, 16), int(recipient.pin, 16)
        down = t0 + self.latency + RELAY_PROCESSING
        hops = [Transmission(t0, UPLINK, sender.name, kind, plaintext, seal, message_id, msg_no, sp,
                             service_id, rp, ext),
                Transmission(down, DOWNLINK, recipient.name, kind, plaintext, seal, message_id, msg_no, rp,
                             service_id, sp, ext)]
        return hops, down + self.latency

    def receipts_for(self, m, msg_no: int, service_id: int, delivered_at: float) -> list[Transmission]:
        out = []
        end = self.ctx.scenario.duration - 1.0
        t = delivered_at + float(self.rng.uniform(*DEVICE_PROCESSING))
        marks = [(t, PIN_DELIVERED), (t + float(self.rng.exponential(READ_DELAY)), PIN_READ)]
        for at, mark in marks:
            if at >= end:
                continue
            no = self.next_no()
            text = pin_text(m.recipient.name, m.sender.name, "D" if mark == PIN_DELIVERED else "R")
            iv = derive_bytes(self.seed, 8, "blackberry", "receipt-iv", m.id, mark)
            hops, _ = self.direct(at, m.recipient, m.sender, "receipt", service_id, text,
                                  self.scramble_seal(mark, iv, msg_no), None, no)
            out += hops
        return out

    def chat(self, m) -> list[Transmission]:
        service_id, pin_kind = CHAT_KINDS[m.kind]
        msg_no = self.next_no()
        subject = m.subject if m.kind == "pin" else None
        sender_id = m.sender.email if m.kind == "pin" else m.sender.name
        recipient_id = m.recipient.email if m.kind == "pin" else m.recipient.name
        # A PIN message is composed with its headers (harness.sim.workload.compose_pin); a chat is its body.
        text = m.text if m.kind == "pin" else pin_text(sender_id, recipient_id, m.body, subject)
        iv = derive_bytes(self.seed, 8, "blackberry", "pin-iv", m.id)
        out: list[Transmission] = []
        ext = b""
        t0 = m.send_time
        if service_id == SERVICE_BBM_PROTECTED:
            a, b = self.party(m.sender), self.party(m.recipient)
            cid = chat_id_for(a.pin, b.pin)
            if cid not in self.keyed:  # first message of this chat: both sides publish their keys
                self.keyed.add(cid)
                for x, y, offset in ((m.sender, m.recipient, 0.0), (m.recipient, m.sender, 0.0)):
                    px = self.party(x)
                    kex = px.key_exchange(int(y.pin, 16))
                    hops, _ = self.direct(t0 - 0.4 + offset, x, y, "kex", SERVICE_BBM_PROTECTED, kex,
                                          lambda p: (p, 0), None, self.next_no())
                    out += hops
                a.learn(b.key_exchange(a.pin))
                b.learn(a.key_exchange(b.pin))
            counter = self.counters[cid] = self.counters.get(cid, 0) + 1
            nonce = derive_bytes(self.seed, 16, "blackberry", "bbmp-nonce", m.id)
            ext, inner = a.seal(b.pin, counter, nonce, text)
            pin_key = self.pin_key
            seal = (lambda inner_: (lambda plaintext: (scramble(pin_key, iv, PIN_PROTECTED, inner_), FLAG_ENCRYPTED)))(inner)
        else:
            seal = self.scramble_seal(pin_kind, iv)
        hops, delivered = self.direct(t0, m.sender, m.recipient, "data", service_id, text, seal, m.id, msg_no, ext)
        out += hops
        if self.receipts:
            out += self.receipts_for(m, msg_no, service_id, delivered)
        return out

    def presence(self, partners: dict[str, set]) -> list[Transmission]:
        out = []
        rate = self.bb.presence_per_hour
        if not self.receipts or rate <= 0:
            return out
        users = {u.name: u for u in self.ctx.users}
        for u in self.ctx.users:
            if not partners.get(u.name):
                continue
            rng = substream(self.seed, "blackberry", "presence", u.name)
            n = int(rng.poisson(rate * self.ctx.scenario.duration / 3600.0))
            for t in sorted(float(x) for x in rng.uniform(1.0, self.ctx.scenario.duration - 2.0, n)):
                status = ["available", "busy", "away"][int(rng.integers(0, 3))]
                for peer in sorted(partners[u.name]):
                    text = pin_text(u.name, peer, f"status: {status}")
                    iv = derive_bytes(self.seed, 8, "blackberry", "presence-iv", u.name, peer, t)
                    hops, _ = self.direct(t, u, users[peer], "presence", SERVICE_BBM, text,
                                          self.scramble_seal(PIN_PRESENCE, iv), None, self.next_no())
                    out += hops
        return out

    def srp_keepalives(self) -> list[Transmission]:
        out, seq = [], 0
        rng = substream(self.seed, "blackberry", "srp-keepalive")
        t = float(rng.uniform(20.0, SRP_KEEPALIVE_INTERVAL))
        while t < self.ctx.scenario.duration - 1.0:
            seq += 1
            out.append(Transmission(t, FROM_ENTERPRISE, "", "keepalive", msg_no=seq))
            t += SRP_KEEPALIVE_INTERVAL * float(rng.uniform(0.95, 1.05))
        return out

    def plan(self) -> ServicePlan:
        ctx = self.ctx
        out = keepalives(ctx, self.path) + self.srp_keepalives()
        partners: dict[str, set] = {}
        for m in ctx.messages:
            if m.kind == "email":
                msg_no = self.next_no()
                hops = relay_message(ctx, self.path, m, msg_no, lambda user, m=m: self.mail_seal(m, user), self.rng)
                # The BES delivers the mail as a new message of its own: a new envelope id on the way down.
                down_no = self.next_no() if len(hops) > 2 else msg_no
                out += [replace(t, service=SERVICE_BES_MAIL,
                                msg_no=down_no if t.hop in (FROM_ENTERPRISE, DOWNLINK) else msg_no) for t in hops]
            else:
                out += self.chat(m)
                if m.kind in ("bbm", "chat", "bbm-protected") and m.sender.name != m.recipient.name:
                    partners.setdefault(m.sender.name, set()).add(m.recipient.name)
                    partners.setdefault(m.recipient.name, set()).add(m.sender.name)
        out += self.presence(partners)
        return build_connections(ctx, self.path, apply_defences(ctx, self.path, out))


@service("blackberry")
def plan_blackberry(ctx: SimContext) -> ServicePlan:
    return _Planner(ctx).plan()
