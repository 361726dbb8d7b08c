"""Correlation: which event (and trace) the code running now is handling.

`correlated` binds `trace_id`, `event_id` and `reference` to every log line written inside
it (structlog contextvars, which `bridge.logs` merges into library records too) and makes
its span the one `outgoing_headers` propagates. Both live in contextvars, so they follow the
asyncio task: concurrent events never see each other's values, and leaving the block puts
back what was bound before, so a long-lived worker task carries nothing over to its next
event.

On Kafka, an event's trace travels as the `traceparent` record header and, the same value,
as the event's CloudEvents distributed-tracing attribute (kept in the dead-letter store, so a
retry continues the trace).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

import structlog

from . import tracing
from .events import CanonicalEvent
from .tracing import Span

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Receive, Scope, Send

TRACEPARENT = "traceparent"
_SPAN: ContextVar[Span | None] = ContextVar("bridge_span", default=None)


class correlated:  # used as a function: `with correlated(span, ...):`
    """Inside: log lines carry the span's `trace_id` and the given fields (None: left out),
    and outgoing calls carry the span (kept from outside when None).

    A class rather than a generator-based context manager: it is entered for every webhook
    and every event, and contextlib's machinery cost as much as the binding itself."""

    __slots__ = ("_span", "_span_token", "_tokens", "_values")

    def __init__(self, span: Span | None = None, **fields: str | None) -> None:
        values = {k: v for k, v in fields.items() if v is not None}
        if span is not None:
            values["trace_id"] = span.trace_id
        self._values = values
        self._span = span

    def __enter__(self) -> None:
        self._span_token = _SPAN.set(self._span or _SPAN.get())
        # Tokens, not bound_contextvars: that one copies the whole context to save what it
        # overwrites, a cost paid twice on every webhook.
        self._tokens = structlog.contextvars.bind_contextvars(**self._values)

    def __exit__(self, *_: object) -> None:
        structlog.contextvars.reset_contextvars(**self._tokens)
        _SPAN.reset(self._span_token)


@contextmanager
def handling(event: CanonicalEvent, traceparent: str | bytes | None = None) -> Iterator[Span]:
    """Handling one event: a child of the trace it came with (`traceparent`, else the event's
    own attribute; neither valid: a new trace), its id and reference on every line."""
    span = tracing.continue_trace(traceparent or event.traceparent)
    with correlated(span, event_id=event.id, reference=event.reference):
        yield span


def current_span() -> Span | None:
    return _SPAN.get()


def current_trace_id() -> str | None:
    span = _SPAN.get()
    return span.trace_id if span is not None else None


def outgoing_headers() -> dict[str, str]:
    """The `traceparent` header for a call made on behalf of the current span (none: {})."""
    span = _SPAN.get()
    return {TRACEPARENT: span.traceparent} if span is not None else {}


def traced(event: CanonicalEvent, span: Span) -> CanonicalEvent:
    """The event as it leaves this participant: `span` as its tracing attribute. Set in
    place (the edges trace the events they have just built; a copy cost as much as the
    signature check)."""
    event.traceparent = span.traceparent
    return event


def kafka_headers(event: CanonicalEvent) -> list[tuple[str, bytes]]:
    """The record headers of an event: its `traceparent`, when it has one."""
    return [(TRACEPARENT, event.traceparent.encode())] if event.traceparent else []


def record_traceparent(headers: Mapping[str, Any] | None) -> bytes | None:
    """A Kafka record's `traceparent` header (faust gives a dict of bytes), None if absent."""
    value = (headers or {}).get(TRACEPARENT)
    return value if isinstance(value, bytes) else None


class TraceContextMiddleware:
    """Each HTTP request in a trace of its own scope: its valid `traceparent` continued, else
    (`start=True`) a new trace started; `start=False` leaves a request without one
    uncorrelated until the handler knows more (receipts: by the reference)."""

    def __init__(self, app: ASGIApp, start: bool = True) -> None:
        self.app = app
        self.start = start

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        header = next((v for k, v in scope["headers"] if k == b"traceparent"), None)
        parent = tracing.parse(header)
        span = tracing.child_of(parent) if self.start or parent is not None else None
        with correlated(span):
            await self.app(scope, receive, send)
