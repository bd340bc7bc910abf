"""CHAT/1, a small line-framed chat protocol, as two sans-IO engines (bytes in, bytes out; no sockets).

    server: CHAT/1 READY\\n                      client: HELLO <user>\\n
    client: MSG <to> <n> <flags>\\n<n bytes>      server: OK <seq>\\n
    server: FROM <from> <n> <flags>\\n<n bytes>   client: ACK <seq>\\n

Both implement harness.sim.protocols.interface.Endpoint: `start()`, `receive(data)`, `push(item)`,
`wants_close` and `events`. The harness's simulated TCP calls them; tests can run them against each
other with `harness.sim.protocols.interface.converse`.
"""
from __future__ import annotations


class FrameDecoder:
    """Incremental: feed bytes, take (words, body) frames; a body follows a header line whose third
    word is its length."""

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, data: bytes) -> list[tuple[list[str], bytes]]:
        self._buf += data
        out = []
        while b"\n" in self._buf:
            line, rest = self._buf.split(b"\n", 1)
            words = line.decode("utf-8", "replace").split()
            n = int(words[2]) if len(words) >= 3 and words[0] in ("MSG", "FROM") else 0
            if len(rest) < n:
                break
            out.append((words, rest[:n]))
            self._buf = rest[n:]
        return out


def frame(verb: str, who: str, body: bytes, flags: int) -> bytes:
    return f"{verb} {who} {len(body)} {flags}\n".encode() + body


class ChatClient:
    """A user's device. push(("send", to, body, flags))."""

    def __init__(self, user: str) -> None:
        self.user = user
        self.events: list = []
        self._decoder = FrameDecoder()
        self._seq = 0

    def start(self) -> bytes:
        return b""

    def receive(self, data: bytes) -> bytes:
        out = b""
        for words, body in self._decoder.feed(data):
            self.events.append((words[0], body))
            if words[0] == "CHAT/1":
                out += f"HELLO {self.user}\n".encode()
            elif words[0] == "FROM":
                self._seq += 1
                out += f"ACK {self._seq}\n".encode()
        return out

    def push(self, item) -> bytes:
        _, to, body, flags = item
        return frame("MSG", to, body, flags)

    @property
    def wants_close(self) -> bool:
        return False


class ChatServer:
    """The chat server's end of one device connection. push(("deliver", from, body, flags))."""

    def __init__(self) -> None:
        self.events: list = []
        self._decoder = FrameDecoder()
        self._seq = 0

    def start(self) -> bytes:
        return b"CHAT/1 READY\n"

    def receive(self, data: bytes) -> bytes:
        out = b""
        for words, body in self._decoder.feed(data):
            self.events.append((words[0], body))
            if words[0] == "MSG":
                self._seq += 1
                out += f"OK {self._seq}\n".encode()
        return out

    def push(self, item) -> bytes:
        _, sender, body, flags = item
        return frame("FROM", sender, body, flags)

    @property
    def wants_close(self) -> bool:
        return False
