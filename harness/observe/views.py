"""Per-flow views the analyzers share: the stream clock, the stream layout and the message bursts.

Each is computed once per flow and kept in `Flow.derived`, keyed by the payload and chunk counts it was
computed from (a flow still growing gets a fresh one). Every analyzer that frames a stream asks here,
so one flow is parsed once, not once per analyzer. Callers must treat the views as read-only.
"""
from __future__ import annotations

from harness.observe.bursts import Burst, StreamLayout, message_bursts, stream_layout
from harness.observe.model import Flow
from harness.observe.stream_clock import StreamClock


def _memo(flow: Flow, name: str, make):
    key = (name, len(flow.payload[0]), len(flow.payload[1]), len(flow.chunks))
    cached = flow.derived.get(name)
    if cached is not None and cached[0] == key:
        return cached[1]
    value = make()
    flow.derived[name] = (key, value)
    return value


def clock(flow: Flow) -> StreamClock:
    """The flow's StreamClock (byte offset -> capture time), shared."""
    return _memo(flow, "clock", lambda: StreamClock(flow))


def layout(flow: Flow) -> StreamLayout:
    """The flow's StreamLayout (framing and units), shared."""
    return _memo(flow, "layout", lambda: stream_layout(flow, clock(flow)))


def messages(flow: Flow) -> list[Burst]:
    """The flow's message bursts (`harness.observe.bursts.message_bursts`), shared: do not modify."""
    return _memo(flow, "messages", lambda: message_bursts(layout(flow)))
