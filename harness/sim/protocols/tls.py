"""Real TLS 1.3 around any endpoint, from Python's `ssl` over memory BIOs (sans-IO: bytes in, bytes out).

The only file this simulator touches: `ssl` can load a certificate chain only from a file, so the
server identity is written to a private temporary directory for the duration of `load_cert_chain`.
Handshake randomness comes from OpenSSL and is not seeded: TLS captures differ byte-wise between runs,
while their sizes and timing (and so every verdict) do not.
"""
from __future__ import annotations

import os
import ssl
import tempfile

from harness.sim.crypto import ServerIdentity
from harness.sim.protocols.interface import Endpoint


def server_context(identity: ServerIdentity) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.num_tickets = 0
    with tempfile.TemporaryDirectory(prefix="harness-tls-") as tmp:
        cert, key = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
        with open(cert, "wb") as f:
            f.write(identity.cert_pem)
        with open(key, "wb") as f:
            f.write(identity.key_pem)
        ctx.load_cert_chain(cert, key)
    return ctx


def client_context(identity: ServerIdentity) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_verify_locations(cadata=identity.ca_pem.decode())
    return ctx


class TlsLayer:
    """Wraps an inner endpoint: its plaintext travels as TLS application data after a real handshake."""

    def __init__(self, inner: Endpoint, context: ssl.SSLContext, *, server_side: bool,
                 server_hostname: str | None = None) -> None:
        self.inner = inner
        self.events: list = []
        self._in, self._out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self._obj = context.wrap_bio(self._in, self._out, server_side=server_side,
                                     server_hostname=None if server_side else server_hostname)
        self._ready = False
        self._pending = b""  # inner bytes produced before the handshake finished
        self._closed = False

    def _handshake(self) -> None:
        try:
            self._obj.do_handshake()
        except ssl.SSLWantReadError:
            return
        self._ready = True
        self.events.append(("handshake", self._obj.version(), self._obj.cipher()[0]))
        self._send_plain(self._pending + self.inner.start())
        self._pending = b""

    def _send_plain(self, data: bytes) -> None:
        if not data:
            return
        if not self._ready:
            self._pending += data
            return
        self._obj.write(data)
        if self.inner.wants_close and not self._closed:
            self._closed = True
            try:
                self._obj.unwrap()  # close_notify alert
            except (ssl.SSLWantReadError, ssl.SSLError):
                pass

    def start(self) -> bytes:
        self._handshake()
        return self._out.read()

    def receive(self, data: bytes) -> bytes:
        self._in.write(data)
        if not self._ready:
            self._handshake()
        if self._ready:
            plain = b""
            while True:
                try:
                    chunk = self._obj.read(65536)
                except (ssl.SSLWantReadError, ssl.SSLZeroReturnError):
                    break
                if not chunk:
                    break
                plain += chunk
            if plain:
                self._send_plain(self.inner.receive(plain))
        return self._out.read()

    def push(self, item) -> bytes:
        self._send_plain(self.inner.push(item))
        return self._out.read()

    @property
    def wants_close(self) -> bool:
        return self.inner.wants_close
