"""Who sends what to whom, and when: users, devices and messages drawn from the scenario's seed."""
from __future__ import annotations

import base64
import ipaddress
from dataclasses import dataclass

import numpy as np

from harness.sim.rng import substream
from harness.sim.text import body_with_canary, canary, subject_line
from harness.scenario.schema import SizeDist
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
                  send_time: float, attachment: tuple[str, str, bytes] | None = None) -> bytes:
    """An RFC 822 message; with `attachment` (file name, MIME type, bytes) a multipart/mixed one."""
    headers = [f"From: {sender.name.capitalize()} <{sender.email}>", f"To: {recipient.email}"]
    if subject is not None:
        headers.append(f"Subject: {subject}")
    headers += [f"Message-ID: <{m_id}@{sender.email.split('@')[1]}>", "MIME-Version: 1.0"]
    if attachment is None:
        headers.append("Content-Type: text/plain; charset=utf-8")
        return ("\r\n".join(headers) + "\r\n\r\n" + body + "\r\n").encode()
    name, ctype, data = attachment
    boundary = f"=_{m_id}"
    encoded = base64.encodebytes(data).decode().replace("\n", "\r\n")
    headers.append(f'Content-Type: multipart/mixed; boundary="{boundary}"')
    parts = (f"--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
             f"--{boundary}\r\nContent-Type: {ctype}; name=\"{name}\"\r\n"
             f"Content-Disposition: attachment; filename=\"{name}\"\r\nContent-Transfer-Encoding: base64\r\n\r\n"
             f"{encoded}--{boundary}--\r\n")
    return ("\r\n".join(headers) + "\r\n\r\n" + parts).encode()


def compose_pin(sender: TruthUser, recipient: TruthUser, subject: str | None, body: str) -> bytes:
    """A PIN message as the handset composes it: From/To(/Subject) lines, a blank line, the body."""
    head = [f"From: {sender.email}", f"To: {recipient.email}"] + ([f"Subject: {subject}"] if subject else [])
    return ("\r\n".join(head) + "\r\n\r\n" + body).encode()


# Relative activity by local hour (mean 1): quiet at night, peaks mid-morning and mid-afternoon.
DAY_PROFILE = tuple(w * 24 / sum(_W) for _W in [(0.1, 0.05, 0.05, 0.05, 0.1, 0.2, 0.5, 1.0, 1.6, 2.0, 2.0, 1.8,
                                                 1.4, 1.7, 1.9, 1.8, 1.6, 1.2, 0.9, 0.8, 0.7, 0.6, 0.4, 0.2)]
                    for w in _W)
ATTACHMENT_TYPES = (("report.pdf", "application/pdf"), ("photo.jpg", "image/jpeg"),
                    ("figures.xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
                    ("slides.pptx", "application/vnd.openxmlformats-officedocument.presentationml.presentation"))
DEFAULT_ATTACHMENT_SIZE = SizeDist("pareto", None, 0.8, 2000, 2000000, None, 1.1, 20000.0)


def activity_at(start_hour: float, t: float) -> float:
    """Relative activity (mean 1 over a day) at `t` seconds into a run that starts at `start_hour`."""
    hour = (start_hour + t / 3600.0) % 24.0
    i = int(hour)
    frac = hour - i
    return DAY_PROFILE[i] * (1 - frac) + DAY_PROFILE[(i + 1) % 24] * frac


def _user_scale(scenario, user: TruthUser) -> float:
    """Per-user activity multiplier (1.0 unless workload.activity_sigma > 0); its own substream."""
    sigma = scenario.workload.activity_sigma
    if not sigma:
        return 1.0
    return float(np.exp(substream(scenario.seed, "activity", user.name).normal(-sigma * sigma / 2, sigma)))


def make_messages(scenario, users: list[TruthUser]) -> list[Message]:
    """Every message of the run, in send-time order. Poisson arrivals per user and kind."""
    wl = scenario.workload
    duration = scenario.duration
    margin = min(10.0, duration * 0.1)
    contacts = _contacts(users, wl.contacts_per_user, substream(scenario.seed, "contacts"))
    drafts = []
    end = max(duration - margin, 1.5)
    peak = max(DAY_PROFILE) if wl.diurnal else 1.0
    for ki, kind in enumerate(wl.kinds):
        for u in users:
            rng = substream(scenario.seed, "messages", kind.kind, ki, u.name)
            scale = _user_scale(scenario, u) * peak
            rate = kind.rate_per_hour * scale if scale != 1.0 else kind.rate_per_hour
            n = int(rng.poisson(rate * duration / 3600.0))
            times = np.sort(rng.uniform(1.0, end, n))
            thin = substream(scenario.seed, "diurnal", ki, u.name) if wl.diurnal else None
            burst = substream(scenario.seed, "burst", ki, u.name) if kind.burst_mean > 0 else None
            for t in times:
                if thin is not None and thin.random() * peak > activity_at(wl.start_hour, float(t)):
                    continue  # thinned: a quieter hour of the day
                pool = contacts[u.name] if wl.recipients == "contacts" else [v for v in users if v.name != u.name]
                rcpt = pool[int(rng.integers(0, len(pool)))] if pool else u
                size = draw_size(rng, kind.size)
                token = canary(rng)
                subject = subject_line(rng) if kind.subject else None
                drafts.append((float(t), kind.kind, u, rcpt, size, token, subject, ki))
                if burst is not None:  # a conversation: replies going back and forth
                    replies = int(burst.geometric(1.0 / (1.0 + kind.burst_mean))) - 1
                    at, a, b = float(t), rcpt, u
                    for _ in range(replies):
                        at += 3.0 + float(burst.exponential(20.0))
                        if at >= end:
                            break
                        drafts.append((at, kind.kind, a, b, draw_size(burst, kind.size), canary(burst),
                                       subject_line(burst) if kind.subject else None, ki))
                        a, b = b, a
    drafts.sort(key=lambda d: (d[0], d[2].name))
    messages = []
    for i, (t, kind, u, rcpt, size, token, subject, ki) in enumerate(drafts):
        m_id = f"m{i:06d}"
        rng = substream(scenario.seed, "text", m_id)
        if kind == "email":
            attachment = None
            mk = wl.kinds[ki]
            if mk.attachment_rate > 0:
                arng = substream(scenario.seed, "attachment", m_id)
                if arng.random() < mk.attachment_rate:
                    name, ctype = ATTACHMENT_TYPES[int(arng.integers(0, len(ATTACHMENT_TYPES)))]
                    data = arng.bytes(draw_size(arng, mk.attachment_size or DEFAULT_ATTACHMENT_SIZE))
                    attachment = (name, ctype, data)
            head = len(compose_email(m_id, u, rcpt, subject, "", t, attachment))
            body = body_with_canary(rng, wl.text, size - head, token)
            text = compose_email(m_id, u, rcpt, subject, body, t, attachment)
        elif kind == "pin":  # a PIN message is composed like a short e-mail: From/To/Subject, then the body
            head = len(compose_pin(u, rcpt, subject, ""))
            body = body_with_canary(rng, wl.text, size - head, token)
            text = compose_pin(u, rcpt, subject, body)
        else:
            body = body_with_canary(rng, wl.text, size, token)
            text = body.encode()
        messages.append(Message(m_id, kind, u, rcpt, t, subject, body, token, text))
    return messages
