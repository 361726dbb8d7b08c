"""One record of the events topic, from the moment a lane takes it until it is settled:
sent, a duplicate, or dead-lettered. Only then may its offset be committed (offsets.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from bridge.correlation import correlated, handling, record_traceparent
from bridge.events import CanonicalEvent
from bridge.events import describe as describe_refusal
from bridge.logs import get_logger
from bridge.retry import OUTAGE_BACKOFF
from bridge.tracing import continue_trace

from . import dlq
from .failures import describe, is_dependency_outage
from .pipeline import Dispatcher

log = get_logger("dispatcher")


@dataclass(frozen=True)
class Work:
    """A record as a lane handles it: its canonical event, or why it is not one."""

    record: dlq.RecordPosition
    event: CanonicalEvent | None
    error: str = ""
    # The record's `traceparent` header: the trace this record's handling continues.
    traceparent: bytes | None = None


def read(record: Any) -> Work:
    """A faust event of the events topic as Work; never raises."""
    message = record.message
    value = record.value or b""  # a tombstone (None) is a record no event comes from
    position = dlq.RecordPosition(
        message.topic, message.partition, message.offset, record.key, value
    )
    traceparent = record_traceparent(record.headers)
    try:
        return Work(position, CanonicalEvent.from_json(value), traceparent=traceparent)
    except ValidationError as exc:  # not JSON, or not a canonical event
        error = f"not a canonical event: {describe_refusal(exc)}"
        return Work(position, None, error, traceparent)


def _correlation(work: Work) -> AbstractContextManager[object]:
    """The record's trace and, for an event, its id and reference on every line while it is
    settled (per lane task: the next record starts clean)."""
    if work.event is None:
        return correlated(continue_trace(work.traceparent))
    return handling(work.event, work.traceparent)


async def settle(
    dispatcher: Dispatcher,
    work: Work,
    *,
    poison_attempts: int,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
) -> None:
    """Settle one record; returns only once it is sent, skipped or dead-lettered.

    A dependency outage (PostgreSQL, Redis down) is waited out, however long. Any other
    failure is retried until `poison_attempts` attempts have failed; then the event is
    dead-lettered as `unprocessable`, so that one odd record never stalls its lane. A record
    that is not a canonical event is dead-lettered at once: reading it again changes nothing.
    """
    with _correlation(work):
        failures = 0
        error = work.error
        pause = 0
        while True:
            try:
                if work.event is None:
                    await dispatcher.give_up_record(work.record, error)
                elif failures >= poison_attempts:
                    await dispatcher.give_up(work.event, error)
                else:
                    await dispatcher.handle(work.event)
                return
            except Exception as exc:  # the event's reference is bound (_correlation)
                if is_dependency_outage(exc):
                    log.error("dependency_unavailable_retrying", error=repr(exc))
                else:
                    failures += 1
                    error = describe(exc)
                    log.exception("event_failed", attempt=failures)
            await sleep(OUTAGE_BACKOFF.delay(pause))
            pause += 1
