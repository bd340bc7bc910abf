"""The workload extensions: attachments, chat bursts, activity over the day and between users; the
existing kinds draw exactly what they drew before the extensions."""
import hashlib
import json
from collections import Counter

from harness.scenario.load import load_scenario, load_scenario_text
from harness.sim.workload import activity_at, make_messages, make_users
from tests.conftest import scenario_path

# sha256 of (id, kind, sender, recipient, send time, text) of every message, taken before the
# extensions existed: new options default off and use their own substreams, so nothing moved.
BEFORE = {"bes-relay": "1e0d91dac1bb6d392d7809f1f51a698487ce51577d712d6e01438ebf2e45498b",
          "email-plaintext": "b907e8f943778227874bf03dcd34f9477e028ae88d61e0f0e7d3db3e6018d908"}


def messages(sc):
    return make_messages(sc, make_users(sc))


def test_existing_scenarios_draw_the_same_messages():
    for name, digest in BEFORE.items():
        ms = messages(load_scenario(scenario_path(name)))
        rows = [(m.id, m.kind, m.sender.name, m.recipient.name, round(m.send_time, 6), m.text.decode()) for m in ms]
        assert hashlib.sha256(json.dumps(rows).encode()).hexdigest() == digest, name


def test_attachments_are_heavy_tailed_mime_parts():
    ms = messages(load_scenario(scenario_path("bes-email")))
    with_att = [m for m in ms if b"Content-Disposition: attachment" in m.text]
    assert 0.1 * len(ms) < len(with_att) < 0.45 * len(ms)
    sizes = sorted(m.size for m in with_att)
    assert sizes[-1] > 4 * sizes[len(sizes) // 2]  # a heavy tail
    assert all(m.canary in m.body for m in with_att)


def test_chat_bursts_go_back_and_forth():
    ms = messages(load_scenario(scenario_path("bbm-consumer")))
    replies = sum(1 for a, b in zip(ms, ms[1:]) if (a.sender.name, a.recipient.name) == (b.recipient.name, b.sender.name)
                  and b.send_time - a.send_time < 120)
    assert replies >= len(ms) // 4


def test_activity_follows_the_day_and_differs_between_users():
    assert activity_at(0.0, 3 * 3600) < 0.2 < 1.5 < activity_at(0.0, 10 * 3600)
    text = scenario_path("pin-global-key").read_text()
    flat = load_scenario_text(text.replace("activity_sigma = 0.5", "activity_sigma = 0.0")
                              .replace("duration = 600.0", "duration = 7200.0"), "flat.toml")
    spread = load_scenario_text(text.replace("activity_sigma = 0.5", "activity_sigma = 1.5")
                                .replace("duration = 600.0", "duration = 7200.0"), "spread.toml")
    def cv(sc):
        c = Counter(m.sender.name for m in messages(sc))
        counts = [c.get(u.name, 0) for u in make_users(sc)]
        mean = sum(counts) / len(counts)
        return (sum((x - mean) ** 2 for x in counts) / len(counts)) ** 0.5 / mean
    assert cv(spread) > 1.5 * cv(flat)
    night = load_scenario_text(text.replace("activity_sigma = 0.5", "activity_sigma = 0.0\ndiurnal = true\nstart_hour = 2.0"), "n.toml")
    day = load_scenario_text(text.replace("activity_sigma = 0.5", "activity_sigma = 0.0\ndiurnal = true\nstart_hour = 10.0"), "d.toml")
    assert len(messages(night)) < 0.5 * len(messages(day))
