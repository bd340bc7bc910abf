"""The leak zoo: labelled captures with one flow per leak class and sound-crypto controls, and the
precision and recall of the payload analyzers on them.

    python -m bench.leakzoo [--out DIR] [--per-class N] [--seed S]

Every flow is a TCP connection on which the client sends e-mail-like messages, each carrying its own
canary (`CNRY-` + 16 hex). Leak classes hide the messages in ways a tap can undo (clear text,
encodings, compression, nestings) or break (repeating-key XOR, a reused keystream, ECB, a fixed CBC
IV). Controls use sound encryption: AES-256-GCM and ChaCha20-Poly1305 with random nonces, AES-CBC
and AES-CTR with random IVs, and real TLS 1.3 from Python's ssl.

The labels are written next to the capture (`leakzoo.labels.json`) and read only by the scoring here,
never by the analyzers, which get the pcap alone - as `harness analyze` would.
"""
from __future__ import annotations

import argparse
import base64
import binascii
import codecs
import gzip
import json
import os
import quopri
import random
import ssl
import sys
import tempfile
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote_from_bytes

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from harness.wire.packets import ACK, FIN, PSH, SYN, TcpPacket, build_frame
from harness.wire.pcap_writer import write_pcap

MSS = 1448
MESSAGES_PER_FLOW = 12
HELD_KEY = bytes(range(32))  # the one key the adversary is declared to hold (class held-key)
KEYSTREAM_MESSAGES = 24  # a persistent connection: the keystream-reuse flows carry more messages

# Leak classes: where the canary can be recovered without a key, recall counts recovered canaries;
# where only structure leaks (ECB, fixed IV), recall counts flows called weak for the right reason.
RECOVERABLE = ("plaintext", "base64", "base32", "hex", "quoted-printable", "url", "rot13", "zlib", "gzip",
               "deflate", "nested", "repeating-key-xor", "keystream-reuse", "keystream-reuse-across-flows",
               "held-key")
STRUCTURAL = ("ecb", "ecb-3des", "fixed-iv-cbc")
CONTROLS = ("aes-gcm", "chacha20-poly1305", "aes-cbc-random-iv", "aes-ctr-random-nonce", "tls13")
CLASSES = RECOVERABLE + STRUCTURAL + CONTROLS

_WORDS = ("the budget review meeting is moved to thursday please confirm attendance and send the draft "
          "figures before noon contract renewal with our supplier needs legal sign off by friday the "
          "quarterly numbers look better than expected but the board wants a summary of risks for the "
          "new office and a plan for the migration of the mail servers").split()
_NAMES = ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi")


@dataclass
class ZooFlow:
    cls: str
    client: tuple[str, int]
    server: tuple[str, int]
    messages: list[bytes]  # wire bytes the client sends, one burst each
    canaries: list[str]
    server_messages: list[bytes] = field(default_factory=list)  # TLS: the server's flights
    tls_chunks: list[tuple[float, int, bytes]] | None = None


def message_text(rng: random.Random, canary: str, i: int) -> bytes:
    sender, rcpt = rng.sample(_NAMES, 2)
    words = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(28, 44)))
    more = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(10, 20)))
    return (f"From: {sender}@corp.example\r\nTo: {rcpt}@corp.example\r\nSubject: note {i} about the "
            f"{rng.choice(_WORDS)} plan\r\n\r\nHi {rcpt}, {words} reference {canary} and {more}.\r\n").encode()


def _pkcs7(data: bytes, block: int) -> bytes:
    p = padding.PKCS7(block * 8).padder()
    return p.update(data) + p.finalize()


def _nest(rng: random.Random, text: bytes, k: int) -> bytes:
    chains = [
        lambda t: base64.b64encode(gzip.compress(t, mtime=0)),
        lambda t: binascii.hexlify(zlib.compress(t)),
        lambda t: quote_from_bytes(base64.b64encode(t)).encode(),
        lambda t: base64.b64encode(base64.b32encode(t)),
        lambda t: base64.encodebytes(zlib.compress(codecs.encode(t.decode(), "rot13").encode())),
        lambda t: gzip.compress(base64.b64encode(t), mtime=0),
    ]
    return chains[k % len(chains)](text)


def _raw_deflate(t: bytes) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return c.compress(t) + c.flush()


def encode_messages(cls: str, texts: list[bytes], rng: random.Random, k: int) -> list[bytes]:
    """The wire bytes of each message under leak class or control `cls` (k: instance number)."""
    key = rng.randbytes(32)
    if cls in ("plaintext", "tls13"):  # tls13: the texts go through a real TLS connection instead
        return texts
    if cls == "base64":
        return [base64.encodebytes(t) for t in texts]
    if cls == "base32":
        return [base64.b32encode(t) + b"\r\n" for t in texts]
    if cls == "hex":
        return [binascii.hexlify(t) + b"\r\n" for t in texts]
    if cls == "quoted-printable":
        return [quopri.encodestring(t.replace(b" ", b"\xa0 "), quotetabs=True) for t in texts]
    if cls == "url":
        return [b"msg=" + quote_from_bytes(t).encode() + b"\r\n" for t in texts]
    if cls == "rot13":
        return [codecs.encode(t.decode(), "rot13").encode() for t in texts]
    if cls == "zlib":
        return [zlib.compress(t) for t in texts]
    if cls == "gzip":
        return [gzip.compress(t, mtime=0) for t in texts]
    if cls == "deflate":
        return [_raw_deflate(t) for t in texts]
    if cls == "nested":
        return [_nest(rng, t, k) for t in texts]
    if cls == "repeating-key-xor":
        xk = rng.randbytes(rng.randint(1, 24))
        return [bytes(b ^ xk[i % len(xk)] for i, b in enumerate(t)) for t in texts]
    if cls in ("keystream-reuse", "keystream-reuse-across-flows"):
        nonce = rng.randbytes(16)
        return [Cipher(algorithms.AES(key), modes.CTR(nonce)).encryptor().update(t) for t in texts]
    if cls == "ecb":
        enc = Cipher(algorithms.AES(key), modes.ECB())
        return [enc.encryptor().update(_pkcs7(t + b"\r\n" + b"=" * 64 + b"\r\n-- sent from the mobile\r\n", 16))
                for t in texts]
    if cls == "ecb-3des":
        enc = Cipher(TripleDES(rng.randbytes(24)), modes.ECB())
        return [enc.encryptor().update(_pkcs7(t + b"\r\n" + b"-" * 48 + b"\r\n", 8)) for t in texts]
    if cls == "fixed-iv-cbc":
        iv = rng.randbytes(16)
        enc = Cipher(algorithms.AES(key), modes.CBC(iv))
        return [enc.encryptor().update(_pkcs7(t, 16)) for t in texts]
    if cls == "held-key":  # sound AES-256-GCM, but the state holds the key (declared in leakzoo.keys.json)
        out = []
        for t in texts:
            nonce = os.urandom(12)
            out.append(nonce + AESGCM(HELD_KEY).encrypt(nonce, t, None))
        return out
    if cls == "aes-gcm":
        out = []
        for t in texts:
            nonce = os.urandom(12)
            out.append(nonce + AESGCM(key).encrypt(nonce, t, None))
        return out
    if cls == "chacha20-poly1305":
        out = []
        for t in texts:
            nonce = os.urandom(12)
            out.append(nonce + ChaCha20Poly1305(key).encrypt(nonce, t, None))
        return out
    if cls == "aes-cbc-random-iv":
        out = []
        for t in texts:
            iv = os.urandom(16)
            out.append(iv + Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor().update(_pkcs7(t, 16)))
        return out
    if cls == "aes-ctr-random-nonce":
        out = []
        for t in texts:
            nonce = os.urandom(16)
            out.append(nonce + Cipher(algorithms.AES(key), modes.CTR(nonce)).encryptor().update(t))
        return out
    raise ValueError(cls)


def tls13_chunks(texts: list[bytes], t0: float) -> list[tuple[float, int, bytes]]:
    """A real TLS 1.3 connection (Python's ssl over memory BIOs) carrying `texts` from the client."""
    from harness.sim.crypto import server_identity
    from harness.sim.protocols.tls import client_context, server_context

    identity = server_identity(7, "mail.zoo.example")
    bios = [(ssl.MemoryBIO(), ssl.MemoryBIO()), (ssl.MemoryBIO(), ssl.MemoryBIO())]
    ends = [client_context(identity).wrap_bio(*bios[0], server_hostname="mail.zoo.example"),
            server_context(identity).wrap_bio(*bios[1], server_side=True)]
    chunks: list[tuple[float, int, bytes]] = []

    def flush(side: int, t: float) -> None:
        data = bios[side][1].read()
        if data:
            chunks.append((t, side, data))
            bios[1 - side][0].write(data)

    def step(side: int) -> None:
        try:
            ends[side].do_handshake()
        except ssl.SSLWantReadError:
            pass

    for i, side in enumerate((0, 1, 0, 1)):
        step(side)
        flush(side, t0 + 0.03 * i)
    for i, text in enumerate(texts):
        ends[0].write(text)
        flush(0, t0 + 1.0 + i)
        try:
            while ends[1].read(65536):
                pass
        except ssl.SSLWantReadError:
            pass
    return chunks


def build_zoo(per_class: int = 6, seed: int = 20261128) -> list[ZooFlow]:
    rng = random.Random(seed)
    flows: list[ZooFlow] = []
    for ci, cls in enumerate(CLASSES):
        # Across-flow keystream reuse: every flow of the class shares one key and nonce (seeded by class).
        # Keystream reuse across flows: one message per flow, so as many flows as others have messages.
        instances = MESSAGES_PER_FLOW if cls == "keystream-reuse-across-flows" else per_class
        for k in range(instances):
            count = KEYSTREAM_MESSAGES if cls == "keystream-reuse" else MESSAGES_PER_FLOW
            canaries = [f"CNRY-{rng.getrandbits(64):016x}" for _ in range(count)]
            texts = [message_text(rng, c, i) for i, c in enumerate(canaries)]
            if cls == "keystream-reuse-across-flows":
                texts, canaries = texts[:1], canaries[:1]
                wire = encode_messages(cls, texts, random.Random(99 + ci), k)
            else:
                wire = encode_messages(cls, texts, random.Random(rng.random()), k)
            client = (f"10.20.{ci}.{k + 10}", 40000 + k)
            server = ("10.30.0.1", 7000 + ci)
            flow = ZooFlow(cls, client, server, wire, canaries)
            if cls == "tls13":
                flow.tls_chunks = tls13_chunks(texts, 0.0)
            flows.append(flow)
    return flows


def flow_frames(flow: ZooFlow, t0: float) -> list[tuple[float, bytes]]:
    """A TCP connection: handshake, the client's messages one second apart (each ACKed), FIN/FIN."""
    seq = [1000, 500000]
    frames: list[tuple[float, bytes]] = []

    def send(t: float, side: int, flags: int, data: bytes = b"") -> None:
        src, dst = (flow.client, flow.server) if side == 0 else (flow.server, flow.client)
        p = TcpPacket(t, src[0], dst[0], src[1], dst[1], seq[side], seq[1 - side] if flags & ACK else 0, flags,
                      data, mss=MSS if flags & SYN else 0)
        frames.append((t, build_frame(p)))
        seq[side] += len(data) + (1 if flags & (SYN | FIN) else 0)

    send(t0, 0, SYN)
    send(t0 + 0.01, 1, SYN | ACK)
    send(t0 + 0.02, 0, ACK)
    if flow.tls_chunks is not None:
        chunks = [(t0 + 0.05 + t, side, data) for t, side, data in flow.tls_chunks]
    else:
        chunks = [(t0 + 1.0 + i, 0, m) for i, m in enumerate(flow.messages)]
    t = t0
    for t, side, data in chunks:
        for k in range(0, len(data), MSS):
            send(t + k / MSS * 1e-4, side, PSH | ACK, data[k:k + MSS])
        send(t + 0.005, 1 - side, ACK)
    send(t + 0.5, 0, FIN | ACK)
    send(t + 0.51, 1, FIN | ACK)
    send(t + 0.52, 0, ACK)
    return frames


def write_zoo(out_dir: str | Path, per_class: int = 6, seed: int = 20261128) -> tuple[Path, Path]:
    """Write leakzoo.pcap, leakzoo.keys.json (what the adversary holds) and leakzoo.labels.json (read by
    the scoring only) into `out_dir`; returns the capture's and the labels' paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    flows = build_zoo(per_class, seed)
    frames: list[tuple[float, bytes]] = []
    labels = []
    for i, f in enumerate(flows):
        frames.extend(flow_frames(f, 1000.0 + i * 0.25))
        labels.append({"flow": f"tcp {f.client[0]}:{f.client[1]} > {f.server[0]}:{f.server[1]}", "class": f.cls,
                       "canaries": f.canaries})
    frames.sort(key=lambda x: x[0])
    pcap = out / "leakzoo.pcap"
    write_pcap(pcap, frames)
    keys = {"schema": "harness.keys/1", "keys": [{"name": "zoo-held", "kind": "aes-256-gcm",
                                                  "material": HELD_KEY.hex()}]}
    (out / "leakzoo.keys.json").write_text(json.dumps(keys, indent=1) + "\n")
    label_path = out / "leakzoo.labels.json"
    label_path.write_text(json.dumps({"schema": "harness.leakzoo/1", "flows": labels}, indent=1) + "\n")
    return pcap, label_path


# --- scoring ------------------------------------------------------------------------------------

_WEAKNESS_CLASS = {"held-key": "held-key", "repeating-key-xor": "repeating-key-xor", "keystream-reuse": "keystream-reuse",
                   "keystream-reuse-across-flows": "keystream-reuse-across-flows", "ecb": "ecb",
                   "fixed-iv-cbc": "fixed-iv-cbc"}


def detected_class(flow_doc: dict, findings: list[dict]) -> str:
    """What the harness called a flow: a weakness, else the deepest transform chain it undid, else
    its payload class."""
    weak = [f for f in findings if f["kind"] == "weak-cipher"]
    if weak:
        return _WEAKNESS_CLASS.get(weak[0]["value"]["weakness"], weak[0]["value"]["weakness"])
    chains = []
    for f in findings:
        rule = str(f["evidence"].get("rule", ""))
        if f["kind"] == "text" and rule.endswith("-decoded") and rule not in ("mime-decoded",):
            chains.append(rule[: -len("-decoded")].split(">"))
    if chains:
        chain = max(chains, key=len)
        return "nested" if len(chain) > 1 else chain[0].replace("base64url", "base64")
    return flow_doc.get("payload_class") or "unknown"


def score_zoo(doc: dict, labels: dict) -> dict:
    """Per class: flows, recall (canaries recovered, or flows called weak for the right reason), the
    precision of the label the harness gave, and for controls whether each was called encrypted."""
    by_flow: dict[str, list[dict]] = {}
    for f in doc["findings"]:
        if f["flow"]:
            by_flow.setdefault(f["flow"], []).append(f)
    flows = {f["id"]: f for f in doc["flows"]}
    rows: dict[str, dict] = {c: {"flows": 0, "hits": 0, "trials": 0, "called": 0, "called_right": 0}
                             for c in CLASSES}
    predicted: dict[str, str] = {}
    for lab in labels["flows"]:
        fid, cls = lab["flow"], lab["class"]
        found = by_flow.get(fid, [])
        text = "\n".join(f["value"] for f in found if f["observable"] == "content" and isinstance(f["value"], str))
        got = detected_class(flows.get(fid, {}), found)
        predicted[fid] = got
        row = rows[cls]
        row["flows"] += 1
        if cls in RECOVERABLE:
            row["trials"] += len(lab["canaries"])
            row["hits"] += sum(1 for c in lab["canaries"] if c in text)
        elif cls in STRUCTURAL:
            row["trials"] += 1
            row["hits"] += int(got == cls.replace("ecb-3des", "ecb"))
        else:  # control: sound only if called encrypted and nothing was read
            row["trials"] += 1
            leaked = any(c in text for c in lab["canaries"])
            row["hits"] += int(got == "encrypted" and not leaked)
    for lab in labels["flows"]:
        got = predicted[lab["flow"]]
        truth = lab["class"].replace("ecb-3des", "ecb")
        for cls, row in rows.items():
            name = cls.replace("ecb-3des", "ecb")
            if cls in CONTROLS:
                name = "encrypted"
            if got == name:
                row["called"] += 1
                row["called_right"] += int(truth == name or (name == "encrypted" and lab["class"] in CONTROLS))
    out = {}
    for cls, row in rows.items():
        out[cls] = {"flows": row["flows"], "recall": row["hits"] / row["trials"] if row["trials"] else None,
                    "precision": row["called_right"] / row["called"] if row["called"] else None,
                    "kind": "recoverable" if cls in RECOVERABLE else "structural" if cls in STRUCTURAL else "control"}
    return out


def render(table: dict) -> str:
    lines = ["| class | kind | flows | recall | precision of the label |", "|---|---|---:|---:|---:|"]
    for cls, r in table.items():
        rec = "-" if r["recall"] is None else f"{r['recall']:.2f}"
        prec = "-" if r["precision"] is None else f"{r['precision']:.2f}"
        lines.append(f"| {cls} | {r['kind']} | {r['flows']} | {rec} | {prec} |")
    return "\n".join(lines)


def run_zoo(per_class: int = 6, seed: int = 20261128, out_dir: str | None = None) -> tuple[dict, float]:
    from harness.pipeline import analyze_captures

    with tempfile.TemporaryDirectory(prefix="leakzoo-") as tmp:
        pcap, label_path = write_zoo(out_dir or tmp, per_class, seed)
        started = time.perf_counter()
        doc = analyze_captures([str(pcap)], str(Path(pcap).with_name("leakzoo.keys.json")))
        elapsed = time.perf_counter() - started
        labels = json.loads(label_path.read_text())
    return score_zoo(doc, labels), elapsed


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.leakzoo", description=__doc__.splitlines()[0])
    p.add_argument("--out", help="keep leakzoo.pcap and leakzoo.labels.json in this folder")
    p.add_argument("--per-class", type=int, default=6)
    p.add_argument("--seed", type=int, default=20261128)
    args = p.parse_args(argv)
    table, elapsed = run_zoo(args.per_class, args.seed, args.out)
    print(render(table))
    print(f"\nanalyzed in {elapsed:.1f} s", file=sys.stderr)
    bad = [c for c, r in table.items() if r["recall"] is not None and r["recall"] < 0.95]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
