"""Customers' replies (bridge.replies.v1) that answer a number confirmation: the dispatcher's
consumer of the replies topic (app.py runs `Replies.handle` on every record).

A reply that confirms or declines (confirmation.reply_intent) and matches a request
(confirmation_requests.find_request) settles it; then every event still waiting for that
request is retried once, oldest first, through the dead-letter store's own retry
(recovery.retry_entry: the same dedupe lease and Idempotency-Key as any retry). The pipeline
decides each: sent, once the number is confirmed; `number_declined` otherwise.

Settling is idempotent: a reply read again (Kafka delivers at least once, e.g. after a crash
between settling and releasing) finds the request settled and releases what still waits.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import orjson

from bridge.inbound import REPLY_TYPE
from bridge.logs import get_logger
from bridge.metrics import CONFIRMATION_REPLIES
from bridge.retry import OUTAGE_BACKOFF

from . import dlq
from .confirmation import answered, reply_of
from .confirmation_requests import answer, find_request, waiting_entries
from .failures import is_dependency_outage
from .pipeline import Dispatcher
from .recovery import retry_entry, with_owner

log = get_logger("dispatcher.replies")

RETRIED_BY = "number_confirmation"


def reply_data(value: bytes) -> dict[str, Any] | None:
    """A replies-topic record's `data`, when it is a reply at all (outside input: None for
    anything else)."""
    try:
        document = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(document, dict) or document.get("type") != REPLY_TYPE:
        return None
    data = document.get("data")
    return data if isinstance(data, dict) else None


@dataclass
class Replies:
    dispatcher: Dispatcher

    def __post_init__(self) -> None:
        # Its own lease owner: never shares a dedupe lease with the lanes of this process.
        self.dispatcher = with_owner(self.dispatcher, "replies")

    async def handle(self, value: bytes) -> str:
        """One record; retried while a dependency is down (the record is not acked meanwhile),
        logged and skipped for any other error. Returns what came of it (the metric's
        `outcome`)."""
        attempt = 0
        while True:
            try:
                outcome = await self._handle(value)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not is_dependency_outage(exc):
                    log.error("reply_failed", error=repr(exc))
                    outcome = "error"
                else:
                    delay = OUTAGE_BACKOFF.delay(attempt)
                    log.warning("reply_retry", error=repr(exc), delay=round(delay, 3))
                    await asyncio.sleep(delay)
                    attempt += 1
                    continue
            CONFIRMATION_REPLIES.labels(outcome).inc()
            return outcome

    async def _handle(self, value: bytes) -> str:
        data = reply_data(value)
        if data is None:
            return "not_a_reply"
        reply = reply_of(data)
        if reply.intent is None:
            return "no_answer"
        pool = self.dispatcher.pool
        request = await find_request(
            pool,
            context_message_id=reply.context_message_id,
            reference=reply.reference,
            from_index=reply.from_index,
        )
        if request is None:
            return "unmatched"
        now = await pool.fetchval("SELECT now()")
        status = answered(request, reply.intent, now)
        settled = status is not None and await answer(self.dispatcher, request, status)
        released = await self.release(request.id)
        log.info(
            "number_confirmation_reply",
            request=request.id,
            intent=reply.intent,
            settled=status if settled else None,
            released=released,
        )
        return status if settled and status is not None else "late"

    async def release(self, request_id: int) -> list[str]:
        """Retry every event still waiting for the request, oldest first, one at a time (so
        they are sent in order); returns what came of each."""
        outcomes: list[str] = []
        for entry_id in await waiting_entries(self.dispatcher.pool, request_id):
            entry = await dlq.claim(self.dispatcher.pool, entry_id, ("pending",))
            if entry is None:
                continue  # the retrier (or an operator) has it
            outcome = await retry_entry(self.dispatcher, entry, by=RETRIED_BY)
            outcomes.append(outcome.label)
        return outcomes
