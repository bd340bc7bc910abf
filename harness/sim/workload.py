"""Who sends what to whom, and when: users, devices and messages drawn from the scenario's seed."""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import numpy as np

from harness.sim.rng import substream
from harness.sim.text import body_with_canary, canary, subject_line
from harness.sim.truth import TruthUser

FIRST_NAMES = ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory",
               "niaj", "olivia", "peggy", "rupert", "sybil", "trent", "victor", "walter", "yasmin")


@dataclass
class Message:
    """One message a user composes: the simulator's unit of work (becomes a TruthMessage)."""

    id: str
    kind: str
    sender: TruthUser
    recipient: TruthUser
    send_time: float
    subject: str | None
    body: str
    canary: str
    text: bytes  # the message as composed: RFC 822 for e-mail, body for chat

    @property
    def size(self) -> int:
        return len(self.text)


def make_users(scenario) -> list[TruthUser]:
    """Users with addresses, one device each: IPs in order from the device subnet, PINs from the seed."""
    wl = scenario.workload
    net = ipaddress.ip_network(scenario.topology.device_subnet, strict=False)
    rng = substream(scenario.seed, "users")
    pins = set()
    users = []
    hosts = net.hosts()
    for i in range(wl.users):
        base = FIRST_NAMES[i % len(FIRST_NAMES)]
        name = base if i < len(FIRST_NAMES) else f"{base}{i // len(FIRST_NAMES)}"
        while True:
            pin = "2" + rng.bytes(4).hex()[:7]
            if pin not in pins:
                pins.add(pin)
                break
        users.append(TruthUser(name=name, email=f"{name}@{wl.domain}", device=f"{name}-device",
                               device_ip=str(next(hosts)), pin=pin))
    return users


def _contacts(users: list[TruthUser], k: int, rng: np.random.Generator) -> dict[str, list[TruthUser]]:
    out = {}
    for u in users:
        others = [v for v in users if v.name != u.name]
        idx = rng.choice(len(others), size=min(k, len(others)), replace=False) if others else []
        out[u.name] = [others[int(i)] for i in idx]
    return out


def draw_size(rng: np.random.Generator, size) -> int:
    if size.dist == "fixed":
        n = size.value
    elif size.dist == "uniform":
        n = int(rng.integers(size.min, size.max + 1))
    elif size.dist == "lognormal":
        n = int(round(size.median * float(np.exp(rng.normal(0.0, size.sigma)))))
    elif size.dist == "pareto":
        n = int(round(size.scale * (1.0 + float(rng.pareto(size.alpha)))))
    else:  # validated on load; a new distribution must be added here
        raise ValueError(f"unknown size distribution {size.dist!r}")
    return int(min(max(n, size.min), size.max))


def compose_email(m_id: str, sender: TruthUser, recipient: TruthUser, subject: str | None, body: str,
                  send_time: float) -> bytes:
    headers = [f"From: {sender.name.capitalize()} <{sender.email}>", f"To: {recipient.email}"]
    if subject is not None:
        headers.append(f"Subject: {subject}")
    headers += [f"Message-ID: <{m_id}@{sender.email.split('@')[1]}>", "MIME-Version: 1.0",
                "Content-Type: text/plain; charset=utf-8"]
    return ("\r\n".join(headers) + "\r\n\r\n" + body + "\r\n").encode()


def make_messages(scenario, users: list[TruthUser]) -> list[Message]:
    """Every message of the run, in send-time order. Poisson arrivals per user and kind."""
    wl = scenario.workload
    duration = scenario.duration
    margin = min(10.0, duration * 0.1)
    contacts = _contacts(users, wl.contacts_per_user, substream(scenario.seed, "contacts"))
    drafts = []
    for ki, kind in enumerate(wl.kinds):
        for u in users:
            rng = substream(scenario.seed, "messages", kind.kind, ki, u.name)
            n = int(rng.poisson(kind.rate_per_hour * duration / 3600.0))
            times = np.sort(rng.uniform(1.0, max(duration - margin, 1.5), n))
            for t in times:
                pool = contacts[u.name] if wl.recipients == "contacts" else [v for v in users if v.name != u.name]
                rcpt = pool[int(rng.integers(0, len(pool)))] if pool else u
                size = draw_size(rng, kind.size)
                token = canary(rng)
                subject = subject_line(rng) if kind.subject else None
                drafts.append((float(t), kind.kind, u, rcpt, size, token, subject))
    drafts.sort(key=lambda d: (d[0], d[2].name))
    messages = []
    for i, (t, kind, u, rcpt, size, token, subject) in enumerate(drafts):
        m_id = f"m{i:06d}"
        rng = substream(scenario.seed, "text", m_id)
        if kind == "email":
            head = len(compose_email(m_id, u, rcpt, subject, "", t))
            body = body_with_canary(rng, wl.text, size - head, token)
            text = compose_email(m_id, u, rcpt, subject, body, t)
        else:
            body = body_with_canary(rng, wl.text, size, token)
            text = body.encode()
        messages.append(Message(m_id, kind, u, rcpt, t, subject, body, token, text))
    return messages
