"""The sans-IO endpoint interface every protocol engine implements (after h11: bytes in, bytes out).

The wire layer owns time and TCP: it calls `start()` when the connection is open, `receive(data)`
when bytes arrive, and `push(item)` when the application wants to send (persistent protocols);
whatever bytes these return are sent on. `events` records what the endpoint understood, for tests.
"""
from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Endpoint(Protocol):
    events: list

    def start(self) -> bytes:
        """Bytes to send as soon as the connection is open (a server greeting, a TLS ClientHello)."""

    def receive(self, data: bytes) -> bytes:
        """Bytes arrived from the peer; return the bytes to send in reply (possibly empty)."""

    def push(self, item: Any) -> bytes:
        """The application asks this endpoint to send `item`; return the bytes to send."""

    @property
    def wants_close(self) -> bool:
        """True once this side has nothing more to say and would close the connection."""


def converse(client: Endpoint, server: Endpoint, max_rounds: int = 1000) -> list[tuple[str, bytes]]:
    """Run two endpoints against each other in memory (no timing); returns the (sender, bytes) turns.

    Used by tests to round-trip a protocol, and as the reference for what the wire layer must carry.
    """
    turns: list[tuple[str, bytes]] = []
    pending = [("server", server.start()), ("client", client.start())]
    rounds = 0
    while pending and rounds < max_rounds:
        rounds += 1
        side, data = pending.pop(0)
        if not data:
            continue
        turns.append((side, data))
        peer = client if side == "server" else server
        reply = peer.receive(data)
        pending.append(("client" if side == "server" else "server", reply))
    return turns
