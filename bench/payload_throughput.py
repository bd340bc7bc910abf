"""Payload-analyzer throughput: `harness analyze` against tshark's full dissection of the same capture,
timed in the same run.

    python -m bench.payload_throughput [--per-class N] [--repeat R]

The capture is the leak zoo (bench/leakzoo.py) at N flows per class: every flow carries payload that
the payload analyzers must read (clear text, encodings, compression, weak and sound ciphers, real
TLS 1.3), so it is a worst case for them. tshark dissects every packet with TCP reassembly and prints
the fields a DPI pass looks at (protocol column, SNI, SMTP command, HTTP host, DNS name). Both run as
fresh processes; the best of R runs counts. The ratio is harness time / tshark time.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

TSHARK_FIELDS = ["frame.number", "_ws.col.Protocol", "tls.handshake.extensions_server_name", "smtp.req.command",
                 "http.host", "dns.qry.name"]


def _best(cmd: list[str], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        best = min(best, time.perf_counter() - started)
    return best


def _packets(pcap: Path) -> int:
    from harness.wire.capture_reader import CaptureReader

    reader = CaptureReader(str(pcap))
    return sum(1 for _ in reader.records())


def measure(per_class: int = 30, repeat: int = 2, out_dir: str = "bench/out") -> dict:
    from bench.leakzoo import write_zoo

    pcap, _ = write_zoo(out_dir, per_class=per_class)
    packets = _packets(pcap)
    harness = [sys.executable, "-m", "harness", "analyze", str(pcap), "--json", str(Path(out_dir) / "zoo.findings.json")]
    result = {"capture": str(pcap), "packets": packets, "bytes": pcap.stat().st_size,
              "harness_s": _best(harness, repeat)}
    result["per_analyzer_cpu_s"] = per_analyzer(pcap)
    tshark = shutil.which("tshark")
    if tshark:
        cmd = [tshark, "-n", "-r", str(pcap), "-o", "tcp.desegment_tcp_streams:TRUE", "-T", "fields"]
        for f in TSHARK_FIELDS:
            cmd += ["-e", f]
        result["tshark_s"] = _best(cmd, repeat)
        result["ratio"] = result["harness_s"] / result["tshark_s"]
    return result


def per_analyzer(pcap: Path) -> dict[str, float]:
    """CPU seconds of reading the capture and of each registered analyzer alone, in this process."""
    from harness.analysis import run_analyzers
    from harness.analyzers import Knowledge, registry
    from harness.observe import observe

    started = time.process_time()
    flows = observe([str(pcap)]).flows
    out = {"observe (read, reassemble)": time.process_time() - started}
    for analyzer_id in registry():
        started = time.process_time()
        run_analyzers(flows, Knowledge(), only=[analyzer_id])
        out[analyzer_id] = time.process_time() - started
    return out


def render(r: dict) -> str:
    lines = [f"capture: {r['capture']} ({r['packets']} packets, {r['bytes'] / 1e6:.1f} MB, leak zoo)",
             "| tool | seconds | packets/s |", "|---|---:|---:|",
             f"| harness analyze (all analyzers) | {r['harness_s']:.2f} | {r['packets'] / r['harness_s']:,.0f} |"]
    if "tshark_s" in r:
        lines.append(f"| tshark full dissection | {r['tshark_s']:.2f} | {r['packets'] / r['tshark_s']:,.0f} |")
        lines.append(f"\nratio harness / tshark: {r['ratio']:.2f}")
    else:
        lines.append("\ntshark not on PATH: no ratio")
    lines += ["", "| stage (in-process, CPU) | seconds |", "|---|---:|"]
    lines += [f"| {k} | {v:.2f} |" for k, v in r["per_analyzer_cpu_s"].items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.payload_throughput", description=__doc__.splitlines()[0])
    p.add_argument("--per-class", type=int, default=30)
    p.add_argument("--repeat", type=int, default=2)
    args = p.parse_args(argv)
    print(render(measure(args.per_class, args.repeat)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
