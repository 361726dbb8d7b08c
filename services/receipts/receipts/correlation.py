"""A delivery webhook's correlation fields: the rest of its request's log lines carry Siteti's
event id, the message's reference and the trace it belongs to."""

from __future__ import annotations

import asyncio

import asyncpg
import structlog

from bridge.audit import trace_id_of
from bridge.correlation import current_trace_id

from .webhooks import Receipt

# The trace is a convenience for readers of the log: never worth holding a webhook up for.
LOOKUP_TIMEOUT_SECONDS = 1.0


async def correlate(pool: asyncpg.Pool, receipt: Receipt) -> None:
    """Bind the receipt's fields for the rest of the request (uvicorn runs each request in a
    task of its own, so nothing outlives it). The trace is Siteti's `traceparent` when it sent
    one (bridge.correlation.TraceContextMiddleware); else the one the dispatcher recorded for
    the reference, or none when that cannot be read now."""
    trace_id = current_trace_id()
    if trace_id is None:
        try:
            async with asyncio.timeout(LOOKUP_TIMEOUT_SECONDS):
                trace_id = await trace_id_of(pool, receipt.reference)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError):
            trace_id = None
    fields = {"event_id": receipt.event_id, "reference": receipt.reference}
    structlog.contextvars.bind_contextvars(**fields, **({"trace_id": trace_id} if trace_id else {}))
