"""Benchmark of the relay contact correlation at scale: synthetic burst records fed straight to the core.

    .venv/bin/python -m bench.bench_correlation                      # 10,000 devices, 1,000,000 messages
    .venv/bin/python -m bench.bench_correlation --devices 1000 --messages 100000 --padded

Each message is one inbound burst (device -> relay) and one outbound burst (relay -> recipient) after a
relay delay of 0.15 s + lognormal (median 0.1 s); every device writes to --contacts fixed partners;
send times uniform over --hours. No pcap is built: the records are what `message_bursts` yields.
Prints wall time per stage, peak memory (ru_maxrss), and precision/recall of the emitted links.
"""
from __future__ import annotations

import argparse
import resource
import time

import numpy as np

from harness.analyzers.relay_correlation import Bursts, correlate


def synthetic(devices: int, messages: int, contacts: int, hours: float, padded: bool, seed: int = 1):
    rng = np.random.default_rng(seed)
    partners = (np.arange(devices)[:, None] + rng.integers(1, devices, (devices, contacts))) % devices
    snd = rng.integers(0, devices, messages)
    rcv = partners[snd, rng.integers(0, contacts, messages)]
    t = rng.uniform(0.0, hours * 3600.0, messages)
    size = np.full(messages, 1024) if padded else np.clip(rng.lognormal(np.log(400), 1.0, messages), 8, 1e6).astype(int)
    t_out = t + 0.15 + rng.lognormal(np.log(0.1), 0.5, messages)
    b = Bursts(np.r_[t, t_out], np.r_[snd, rcv], np.r_[np.zeros(messages), np.ones(messages)], np.r_[size, size])
    truth = set(zip(snd.tolist(), rcv.tolist()))
    return b, truth


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--devices", type=int, default=10000)
    p.add_argument("--messages", type=int, default=1000000)
    p.add_argument("--contacts", type=int, default=5)
    p.add_argument("--hours", type=float, default=24.0)
    p.add_argument("--padded", action="store_true", help="every body 1024 bytes: timing alone")
    args = p.parse_args(argv)

    t0 = time.perf_counter()
    b, truth = synthetic(args.devices, args.messages, args.contacts, args.hours, args.padded)
    t1 = time.perf_counter()
    c = correlate(b)
    t2 = time.perf_counter()
    got = {(link.sender, link.recipient) for link in c.links}
    tp = len(got & truth)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"devices {args.devices}, messages {args.messages} ({len(b.time)} bursts), "
          f"{args.messages / (args.hours * 3600):.1f} msg/s, sizes {'padded' if args.padded else 'lognormal'}")
    print(f"generate {t1 - t0:.1f} s, correlate {t2 - t1:.1f} s, peak RSS {rss:.0f} MiB")
    print(f"delay support {c.model.support}, candidate pairs {len(c.posterior)}, "
          f"links {len(got)}, true pairs {len(truth)}")
    print(f"precision {tp / max(len(got), 1):.3f}, recall {tp / len(truth):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
