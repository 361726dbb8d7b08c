"""What the dispatcher keeps of each message Siteti accepted, for what WhatsApp says later
(receipts.outcomes), and the numbers WhatsApp cannot reach.

A `sent_messages` row holds the canonical event (as dead letters keep it: numbers sealed),
the template and the Idempotency-Key generation it went under, and the number's keyed hash:
all a re-send or a flag needs, without asking the dispatcher. It is written in the same
statement as the `dispatched` audit row (one round trip per send, as before).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

from bridge.audit import record
from bridge.events import CanonicalEvent

from .dlq import storable
from .outcomes import NUMBER_FLAGGED, DeadLettered

# $1 reference, $4 the time, $6 customer hash: the audit row's own arguments (bridge.audit).
# A row receipts made first (a receipt that came ahead of this write) keeps its state.
_SENT = """
INSERT INTO sent_messages (message_id, reference, dedupe_key, customer_hash, phone_index,
  template_id, key_generation, payload, accepted_at)
VALUES ($9, $1, $10, $6, $11, $12, $13, $14, $4)
ON CONFLICT (message_id) DO UPDATE SET
  dedupe_key = EXCLUDED.dedupe_key, customer_hash = EXCLUDED.customer_hash,
  phone_index = EXCLUDED.phone_index, template_id = EXCLUDED.template_id,
  key_generation = EXCLUDED.key_generation, payload = EXCLUDED.payload,
  accepted_at = COALESCE(sent_messages.accepted_at, EXCLUDED.accepted_at), updated_at = now()
"""


async def record_dispatched(
    pool: asyncpg.Pool,
    event: CanonicalEvent,
    *,
    customer_hash: str,
    phone_index: str,
    template_id: str | None,
    key_generation: int,
    detail: dict[str, Any],
) -> None:
    """The `dispatched` audit row and, when Siteti named the message, its `sent_messages`
    row, in one statement."""
    message_id = detail.get("message_id")
    also = None
    if isinstance(message_id, str):
        payload = storable(event.model_dump(mode="json"))
        values = (message_id, event.dedupe_key, phone_index, template_id, key_generation, payload)
        also = (_SENT, values)
    async with pool.acquire() as conn:
        await record(
            conn,
            reference=event.reference,
            stage="dispatched",
            source="dispatcher",
            customer_hash=customer_hash,
            detail=detail,
            also=also,
        )


async def held_for_review(
    pool: asyncpg.Pool, phone_index: str, *, lift: bool = False
) -> DeadLettered | None:
    """The dead letter a message to a flagged number becomes; None to send it. `lift`: an
    operator retries an entry about the flag, which says the number may be tried again."""
    if lift:
        await pool.execute("DELETE FROM flagged_numbers WHERE phone_index = $1", phone_index)
        return None
    row = await pool.fetchrow(
        "SELECT code, reference, flagged_at FROM flagged_numbers WHERE phone_index = $1",
        phone_index,
    )
    if row is None:
        return None
    return DeadLettered(
        NUMBER_FLAGGED,
        "manual_review",
        f"the number is flagged: WhatsApp error {row['code']} on {row['reference']}"
        f" ({row['flagged_at']:%Y-%m-%d}); retry to lift the flag and send",
    )


async def forget_sent(conn: asyncpg.Connection, hashes: Sequence[str]) -> None:
    """An erasure (dispatcher.erasure): the customer's sent messages (by the events' keyed
    hash) and their numbers' flags (by the numbers' keyed hash) go, in its transaction."""
    await conn.execute("DELETE FROM sent_messages WHERE customer_hash = ANY($1::text[])", hashes)
    await conn.execute("DELETE FROM flagged_numbers WHERE phone_index = ANY($1::text[])", hashes)
