"""Writing one dead-letter entry with its dead-letter topic (outbox) and audit rows, in the
caller's transaction: the dispatcher's store (dispatcher.dlq.store) and receipts (a message
WhatsApp refused after Siteti accepted it) both write through `write`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from .audit import record
from .events import DEAD_LETTER_TOPIC
from .logs import mask_text


@dataclass(frozen=True)
class DeadLetterRow:
    """What a dead-letter row says about the event, whichever way it was read."""

    dedupe_key: str
    reference: str
    provider: str
    event_type: str
    payload: dict[str, Any]
    customer_hash: str


_UPSERT = """
INSERT INTO dead_letters
  (dedupe_key, reference, provider, event_type, payload, status, reason, last_error,
   next_attempt_at, template_id, key_generation, customer_hash)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
ON CONFLICT (dedupe_key) DO UPDATE SET
  status = EXCLUDED.status, reason = EXCLUDED.reason, last_error = EXCLUDED.last_error,
  next_attempt_at = EXCLUDED.next_attempt_at, template_id = EXCLUDED.template_id,
  -- A key generation is never reused: Siteti keeps each one's answer for 24 h.
  key_generation = GREATEST(dead_letters.key_generation, EXCLUDED.key_generation),
  updated_at = now()
RETURNING id
"""


async def write(
    conn: asyncpg.Connection,
    row: DeadLetterRow,
    *,
    reason: str,
    status: str,
    error: str,
    next_attempt: datetime | None = None,
    template_id: str | None = None,
    key_generation: int = 0,
    audit_detail: dict[str, Any] | None = None,
    source: str = "dispatcher",
) -> int:
    """Store (or update) the event's entry; returns its id. `key_generation` is the
    Idempotency-Key generation the next trigger call must use at least; `audit_detail` is
    added to the `dead_lettered` audit row. Call it inside a transaction."""
    # Siteti's or a dependency's words may quote a number (`invalid_phone: 234…`).
    error = mask_text(error)
    entry_id: int = await conn.fetchval(
        _UPSERT,
        row.dedupe_key,
        row.reference,
        row.provider,
        row.event_type,
        row.payload,
        status,
        reason,
        error,
        next_attempt,
        template_id,
        key_generation,
        row.customer_hash,
    )
    await conn.execute(
        "INSERT INTO outbox (topic, key, payload) VALUES ($1, $2, $3)",
        DEAD_LETTER_TOPIC.name,
        row.customer_hash,
        {"id": entry_id, "reason": reason, "status": status, "error": error, "event": row.payload},
    )
    await record(
        conn,
        reference=row.reference,
        stage="dead_lettered",
        source=source,
        customer_hash=row.customer_hash,
        detail={
            "id": entry_id,
            "reason": reason,
            "status": status,
            "error": error,
            **({"template": template_id} if template_id else {}),
            **(audit_detail or {}),
        },
    )
    return entry_id
