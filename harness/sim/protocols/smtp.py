"""SMTP (RFC 5321) client and server engines, sans-IO: submit one message per session."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Envelope:
    mail_from: str
    rcpt_to: list[str]
    data: bytes  # RFC 822 message, CRLF line endings


def dot_stuff(data: bytes) -> bytes:
    lines = data.split(b"\r\n")
    body = b"\r\n".join(b"." + ln if ln.startswith(b".") else ln for ln in lines)
    if not body.endswith(b"\r\n"):
        body += b"\r\n"
    return body + b".\r\n"


def dot_unstuff(data: bytes) -> bytes:
    lines = data.split(b"\r\n")
    return b"\r\n".join(ln[1:] if ln.startswith(b"..") else ln for ln in lines)


class SmtpClient:
    """Sends one envelope: EHLO, MAIL FROM, RCPT TO (each), DATA, the message, QUIT."""

    def __init__(self, envelope: Envelope, helo: str) -> None:
        self.envelope = envelope
        self.helo = helo
        self.events: list = []
        self._buf = b""
        self._script = self._steps()
        self._closed = False

    def _steps(self):
        yield b"EHLO " + self.helo.encode() + b"\r\n"
        yield f"MAIL FROM:<{self.envelope.mail_from}>\r\n".encode()
        for rcpt in self.envelope.rcpt_to:
            yield f"RCPT TO:<{rcpt}>\r\n".encode()
        yield b"DATA\r\n"
        yield dot_stuff(self.envelope.data)
        yield b"QUIT\r\n"

    def start(self) -> bytes:
        return b""  # the server speaks first

    def receive(self, data: bytes) -> bytes:
        self._buf += data
        out = b""
        while b"\r\n" in self._buf:
            line, self._buf = self._buf.split(b"\r\n", 1)
            if len(line) >= 4 and line[3:4] == b"-":
                continue  # continuation of a multi-line reply
            code = int(line[:3]) if line[:3].isdigit() else 0
            self.events.append(("reply", code, line.decode(errors="replace")))
            if code >= 400:
                self._closed = True
                return out + b"QUIT\r\n"
            if code == 221:
                self._closed = True
                continue
            out += next(self._script, b"")
        return out

    def push(self, item) -> bytes:
        return b""

    @property
    def wants_close(self) -> bool:
        return self._closed


class SmtpServer:
    """Accepts messages; records ("message", Envelope) events."""

    def __init__(self, hostname: str) -> None:
        self.hostname = hostname
        self.events: list = []
        self._buf = b""
        self._in_data = False
        self._from = ""
        self._rcpts: list[str] = []
        self._closed = False

    def start(self) -> bytes:
        return f"220 {self.hostname} ESMTP ready\r\n".encode()

    def receive(self, data: bytes) -> bytes:
        self._buf += data
        out = b""
        while True:
            if self._in_data:
                end = self._buf.find(b"\r\n.\r\n")
                if end < 0:
                    break
                body, self._buf = self._buf[:end + 2], self._buf[end + 5:]
                self._in_data = False
                self.events.append(("message", Envelope(self._from, list(self._rcpts), dot_unstuff(body))))
                out += b"250 2.0.0 Ok: queued\r\n"
                continue
            if b"\r\n" not in self._buf:
                break
            line, self._buf = self._buf.split(b"\r\n", 1)
            out += self._command(line.decode(errors="replace"))
        return out

    def _command(self, line: str) -> bytes:
        verb = line[:4].upper()
        if verb in ("EHLO", "HELO"):
            return (f"250-{self.hostname}\r\n250-PIPELINING\r\n250-SIZE 52428800\r\n250-8BITMIME\r\n"
                    f"250 SMTPUTF8\r\n").encode()
        if verb == "MAIL":
            self._from, self._rcpts = line.split(":", 1)[1].strip().strip("<>"), []
            return b"250 2.1.0 Ok\r\n"
        if verb == "RCPT":
            self._rcpts.append(line.split(":", 1)[1].strip().strip("<>"))
            return b"250 2.1.5 Ok\r\n"
        if verb == "DATA":
            self._in_data = True
            return b"354 End data with <CR><LF>.<CR><LF>\r\n"
        if verb == "QUIT":
            self._closed = True
            return b"221 2.0.0 Bye\r\n"
        return b"502 5.5.2 Error: command not recognized\r\n"

    def push(self, item) -> bytes:
        return b""

    @property
    def wants_close(self) -> bool:
        return self._closed
