"""One test per BlackBerry scenario: its verdicts, from analysis of its capture with the keys it grants."""
import re

from tests.blackberry.conftest import Run

CANARY = re.compile(r"CNRY-[0-9a-f]{16}")


def recovered_canaries(run: Run) -> set[str]:
    return {t for f in run.findings["findings"] if f["observable"] == "content" and isinstance(f["value"], str)
            for t in CANARY.findall(f["value"])}


def assert_verdicts(run: Run, **expected):
    got = {o: run.verdict(o) for o in expected}
    want = {o: (v if isinstance(v, tuple) else (v,)) for o, v in expected.items()}
    bad = {o: got[o] for o in expected if got[o] not in want[o]}
    assert not bad, f"{run.scenario.name}: {bad} (wanted {({o: want[o] for o in bad})})"


SEALED = dict(content="hidden", subject="hidden", sender="hidden", recipient="hidden")
SHAPE = dict(timing="visible", device="visible", volume="visible", service="visible", endpoint="hidden")


def test_bes_email_sealed_end_to_end_but_shape_and_pins_show(bb_runs):
    run = bb_runs("bes-email")
    assert_verdicts(run, **SEALED, **SHAPE, size=("partial", "visible"))
    assert not recovered_canaries(run)
    assert not any(m.canary.encode() in f for _, f in run.sim.frames for m in run.sim.truth.messages[:20])
    assert run.summaries()[0]["value"].startswith("no key held")


def test_bes_email_legacy_3des_is_just_as_sealed(bb_runs):
    run = bb_runs("bes-email-legacy-3des")
    assert_verdicts(run, **SEALED, **SHAPE)
    crossed = run.summaries()[0]["evidence"]["crossed"]
    assert crossed.get("BES mail (3des-cbc)", 0) > 0 and "BES mail (aes-256-cbc)" not in crossed


def test_bes_escrow_opens_every_message(bb_runs):
    run = bb_runs("bes-escrow")
    assert_verdicts(run, content="visible", subject="visible", sender="visible", recipient="visible",
                    size="visible", **SHAPE)
    (summary,) = run.summaries()
    opened, total = re.search(r"(\d+) of (\d+) BES mail messages", summary["value"]).groups()
    assert opened == total and int(total) > 0 and "escrow key" in summary["value"]
    assert recovered_canaries(run) == {m.canary for m in run.sim.truth.messages if m.legs}
    # the escrow made the difference: the same workload without it (bes-email, same seed) stays sealed
    plain = bb_runs("bes-email")
    assert [m.canary for m in plain.sim.truth.messages] == [m.canary for m in run.sim.truth.messages]
    assert plain.verdict("content") == "hidden"


def test_one_seized_device_exposes_that_device_and_nothing_else(bb_runs):
    run = bb_runs("bes-seized-device")
    assert_verdicts(run, content="partial", subject="partial")
    got = recovered_canaries(run)
    alice = {m.canary for m in run.sim.truth.messages if "alice" in (m.sender, m.recipient) and m.legs}
    assert got and got == alice, "exactly alice's mail, sent and received, and no one else's"
    (summary,) = run.summaries()
    assert "device:alice" in summary["value"]


def test_in_country_gateway_sees_the_srp_link_not_the_mail(bb_runs):
    run = bb_runs("bes-in-country")
    # the SRP link names each mail's device by PIN (the BES, the link's client, is named too: partial)
    assert_verdicts(run, **SEALED, timing="visible", endpoint="visible", volume="visible", contacts=("partial", "visible"),
                    device=("partial", "visible"))
    assert not recovered_canaries(run)
    (summary,) = run.summaries()
    assert "1 of 1 SRP authentications verified" in summary["value"]
    srp_ids = {f["evidence"]["srp_id"] for f in run.of("endpoint") if f["kind"] == "srp-verified-bes"}
    assert srp_ids and all(re.fullmatch(r"S\d{8}", s) for s in srp_ids)


def test_pin_with_the_global_key_is_read_in_full(bb_runs):
    run = bb_runs("pin-global-key")
    assert_verdicts(run, content="visible", subject="visible", sender="visible", recipient="visible",
                    contacts="visible", timing="visible", size="visible", device="visible")
    (summary,) = run.summaries()
    opened, total = re.search(r"(\d+) of (\d+) PIN messages", summary["value"]).groups()
    assert opened == total and int(total) == sum(len(m.legs) for m in run.sim.truth.messages)
    assert "global" in summary["value"]


def test_pin_with_an_organisation_key_hides_content_not_who_talks_to_whom(bb_runs):
    run = bb_runs("pin-org-key")
    assert_verdicts(run, content="hidden", subject="hidden", sender="hidden", recipient="hidden",
                    contacts="visible", timing="visible", size="visible", device="visible")
    assert not recovered_canaries(run)
    pairs = [f for f in run.of("contacts") if f["kind"] == "pin-pair"]
    users = {f"pin:{u.pin}" for u in run.sim.truth.users}
    assert pairs and all({p["value"]["sender"], p["value"]["recipient"]} <= users for p in pairs)
    (summary,) = run.summaries()
    assert "opened nothing" in summary["value"]


def test_consumer_bbm_with_the_global_key_is_read(bb_runs):
    run = bb_runs("bbm-consumer")
    assert_verdicts(run, content="visible", sender="visible", recipient="visible", contacts="visible",
                    timing="visible", size="visible", device="visible")
    crossed = run.summaries()[0]["evidence"]["crossed"]
    assert crossed.get("receipts", 0) > 0 and crossed.get("presence updates", 0) > 0


def test_bbm_protected_keeps_content_even_from_the_global_key(bb_runs):
    run = bb_runs("bbm-protected")
    assert_verdicts(run, content="hidden", sender="hidden", recipient="hidden", contacts="visible",
                    timing="visible", size="visible", device="visible")
    assert not recovered_canaries(run)
    (summary,) = run.summaries()
    assert "outer layers (inner still sealed)" in summary["value"]
    assert summary["evidence"]["crossed"].get("BBM Protected key exchanges", 0) > 0
