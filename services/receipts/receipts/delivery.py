"""Delivery confirmation metrics: a stored `message.delivered` receipt counts once
(`bridge_messages_delivered_total`), and is timed from when Siteti accepted the message
(`bridge_send_to_delivered_seconds`).

The send time is the audit store's: the dispatcher's `dispatched` row for the same reference
and message id, written as Siteti's acceptance came back (Siteti's receipts do not say when
the message was sent). The delivery time is the receipt's `created_at`, Siteti's clock in
whole seconds: clocks differ, so the time is clamped at 0. A receipt whose `dispatched` row
is not there (erased, past retention, or sent by another system) is counted but not timed.
"""

from __future__ import annotations

import asyncio

import asyncpg

from bridge.logs import get_logger
from bridge.metrics import MESSAGES_DELIVERED, SEND_TO_DELIVERED, elapsed_seconds

from .webhooks import Receipt

log = get_logger(__name__)

# The first acceptance: a replayed trigger (same Idempotency-Key) records a later one.
_SENT_AT = (
    "SELECT min(occurred_at) FROM audit_log"
    " WHERE reference = $1 AND stage = 'dispatched' AND detail->>'message_id' = $2"
)
TIMEOUT_SECONDS = 2.0


async def note_delivery(pool: asyncpg.Pool, receipt: Receipt) -> None:
    """Count and time a receipt stored for the first time, if it is a delivery. Never raises
    for the database: the receipt is stored already, only its timing is lost."""
    if receipt.type != "message.delivered":
        return
    MESSAGES_DELIVERED.inc()
    message_id = receipt.detail.get("message_id")
    if not isinstance(message_id, str):
        return
    try:
        async with asyncio.timeout(TIMEOUT_SECONDS):
            sent_at = await pool.fetchval(_SENT_AT, receipt.reference, message_id)
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
        log.warning("delivery_timing_failed", event_id=receipt.event_id, error=repr(exc))
        return
    if sent_at is not None:
        SEND_TO_DELIVERED.observe(elapsed_seconds(sent_at, receipt.occurred_at))
