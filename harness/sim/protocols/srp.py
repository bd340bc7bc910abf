"""The SRP link between an enterprise BES and the BlackBerry relay (TCP 3101), sans-IO.

The BES opens the connection; the relay sends a challenge (a nonce); the BES answers with its SRP id
and HMAC-SHA256(SRP key, nonce || SRP id); the relay checks it against the key it holds for that SRP
id and accepts (auth-ok) or refuses (auth-fail, then closes). After that both sides send data frames
(each carrying one device envelope, acknowledged by a data-ack echoing its sequence number) and the
BES sends keep-alives that the relay answers. Frame layout: harness.blackberry.formats.SRP_FRAME.
"""
from __future__ import annotations

from harness.blackberry import ciphers
from harness.blackberry.formats import (
    SRP_AUTH_FAIL,
    SRP_AUTH_OK,
    SRP_CHALLENGE,
    SRP_DATA,
    SRP_DATA_ACK,
    SRP_FRAME,
    SRP_ID_BYTES,
    SRP_KEEPALIVE,
    SRP_KEEPALIVE_ACK,
    SRP_MAGIC,
    SRP_NONCE_BYTES,
    SRP_RESPONSE,
)


def frame(ftype: int, seq: int, body: bytes = b"") -> bytes:
    return SRP_FRAME.pack(magic=SRP_MAGIC, type=ftype, flags=0, length=len(body), seq=seq) + body


def srp_id_field(srp_id: str) -> bytes:
    raw = srp_id.encode("ascii")
    if len(raw) > SRP_ID_BYTES:
        raise ValueError("SRP id too long")
    return raw.ljust(SRP_ID_BYTES, b" ")


def auth_mac(srp_key: bytes, nonce: bytes, srp_id: bytes) -> bytes:
    return ciphers.hmac_sha256(srp_key, nonce + srp_id)


class FrameDecoder:
    def __init__(self) -> None:
        self._buf = b""

    def feed(self, data: bytes) -> list[tuple[int, int, bytes]]:
        self._buf += data
        out = []
        while (h := SRP_FRAME.unpack(self._buf)) is not None:
            if h["magic"] != SRP_MAGIC:
                raise ValueError("bad SRP frame magic")
            end = SRP_FRAME.size + h["length"]
            if len(self._buf) < end:
                break
            out.append((h["type"], h["seq"], self._buf[SRP_FRAME.size:end]))
            self._buf = self._buf[end:]
        return out


class _SrpPeer:
    def __init__(self) -> None:
        self.events: list = []
        self._decoder = FrameDecoder()
        self._seq = 0
        self._closed = False

    def _next(self, ftype: int, body: bytes = b"") -> bytes:
        self._seq += 1
        return frame(ftype, self._seq, body)

    def _data_frames(self, ftype: int, seq: int, body: bytes) -> bytes:
        if ftype == SRP_DATA:
            self.events.append(("data", body))
            return frame(SRP_DATA_ACK, seq)
        if ftype == SRP_DATA_ACK:
            self.events.append(("data-ack", seq))
        return b""

    @property
    def wants_close(self) -> bool:
        return self._closed


class SrpBes(_SrpPeer):
    """The enterprise server's end: authenticates, then sends and receives device envelopes.

    push(("data", envelope_bytes)) or push(("keepalive",)); data pushed before the relay accepted
    the BES waits until it has.
    """

    def __init__(self, srp_id: str, srp_key: bytes) -> None:
        super().__init__()
        self.srp_id = srp_id_field(srp_id)
        self.srp_key = srp_key
        self.authenticated = False
        self._waiting: list[bytes] = []

    def start(self) -> bytes:
        return b""  # the relay speaks first

    def receive(self, data: bytes) -> bytes:
        out = b""
        for ftype, seq, body in self._decoder.feed(data):
            if ftype == SRP_CHALLENGE and len(body) == SRP_NONCE_BYTES:
                out += self._next(SRP_RESPONSE, self.srp_id + auth_mac(self.srp_key, body, self.srp_id))
            elif ftype == SRP_AUTH_OK:
                self.authenticated = True
                self.events.append(("authenticated", self.srp_id.decode().strip()))
                out += b"".join(self._waiting)
                self._waiting.clear()
            elif ftype == SRP_AUTH_FAIL:
                self.events.append(("refused",))
                self._closed = True
            elif ftype == SRP_KEEPALIVE_ACK:
                self.events.append(("keepalive-ack", seq))
            else:
                out += self._data_frames(ftype, seq, body)
        return out

    def push(self, item) -> bytes:
        if item[0] == "keepalive":
            data = self._next(SRP_KEEPALIVE)
        elif item[0] == "data":
            data = self._next(SRP_DATA, item[1])
        else:
            raise ValueError(f"unknown push {item[0]!r}")
        if not self.authenticated:
            self._waiting.append(data)
            return b""
        return data


class SrpRelay(_SrpPeer):
    """The relay's end: challenges the BES, checks its answer against `keys` (SRP id -> SRP key)."""

    def __init__(self, keys: dict[str, bytes], nonce: bytes) -> None:
        super().__init__()
        self.keys = keys
        self.nonce = nonce
        self.peer: str | None = None
        self._waiting: list[bytes] = []

    def start(self) -> bytes:
        return self._next(SRP_CHALLENGE, self.nonce)

    def receive(self, data: bytes) -> bytes:
        out = b""
        for ftype, seq, body in self._decoder.feed(data):
            if ftype == SRP_RESPONSE and self.peer is None:
                srp_id, mac = body[:SRP_ID_BYTES], body[SRP_ID_BYTES:]
                key = self.keys.get(srp_id.decode("ascii", "replace").strip())
                if key is not None and ciphers.hmac_equal(mac, auth_mac(key, self.nonce, srp_id)):
                    self.peer = srp_id.decode().strip()
                    self.events.append(("authenticated", self.peer))
                    out += self._next(SRP_AUTH_OK) + b"".join(self._waiting)
                    self._waiting.clear()
                else:
                    self.events.append(("refused", srp_id.decode("ascii", "replace").strip()))
                    out += self._next(SRP_AUTH_FAIL)
                    self._closed = True
            elif ftype == SRP_KEEPALIVE:
                out += frame(SRP_KEEPALIVE_ACK, seq)
            else:
                out += self._data_frames(ftype, seq, body)
        return out

    def push(self, item) -> bytes:
        if item[0] != "data":
            raise ValueError(f"unknown push {item[0]!r}")
        data = self._next(SRP_DATA, item[1])
        if self.peer is None:
            self._waiting.append(data)
            return b""
        return data
