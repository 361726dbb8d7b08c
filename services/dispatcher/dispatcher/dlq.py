"""The dead-letter store: a PostgreSQL table (the operators' work list) plus the dead-letter
topic, written through the outbox in the same transaction as the row and its audit entry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import asyncpg

from bridge.audit import record
from bridge.events import DEAD_LETTER_TOPIC, CanonicalEvent
from bridge.metrics import DEAD_LETTERS

Status = Literal["pending", "processing", "completed", "failed", "manual_review"]

# Why an event is dead-lettered, and what happens next.
MISSING_CONTACT = "missing_contact"  # manual_review: fix the directory, then retry
NO_RULE = "no_template_rule"  # manual_review: add a rule
SITETI_UNAVAILABLE = "siteti_unavailable"  # pending: the retrier tries again
TEMPLATE_NOT_APPROVED = "template_not_approved"  # pending: retried once Siteti approves it


async def put(
    pool: asyncpg.Pool,
    event: CanonicalEvent,
    *,
    reason: str,
    status: Status,
    error: str,
    retry_in: timedelta | None = None,
    extra: dict[str, Any] | None = None,
) -> int:
    """Store (or update) the event's dead-letter entry; returns its id."""
    payload = event.model_dump(mode="json")
    next_attempt = datetime.now(UTC) + retry_in if retry_in is not None else None
    async with pool.acquire() as conn, conn.transaction():
        entry_id: int = await conn.fetchval(
            """
            INSERT INTO dead_letters
              (dedupe_key, reference, provider, event_type, payload, status, reason, last_error,
               next_attempt_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
            ON CONFLICT (dedupe_key) DO UPDATE SET
              status = EXCLUDED.status, reason = EXCLUDED.reason, last_error = EXCLUDED.last_error,
              next_attempt_at = EXCLUDED.next_attempt_at, updated_at = now()
            RETURNING id
            """,
            event.dedupe_key,
            event.reference,
            event.data.provider,
            event.type,
            payload,
            status,
            reason,
            error,
            next_attempt,
        )
        await conn.execute(
            "INSERT INTO outbox (topic, key, payload) VALUES ($1, $2, $3)",
            DEAD_LETTER_TOPIC.name,
            event.data.customer.key,
            {"id": entry_id, "reason": reason, "status": status, "error": error, "event": payload},
        )
        await record(
            conn,
            reference=event.reference,
            stage="dead_lettered",
            source="dispatcher",
            detail={
                "id": entry_id,
                "reason": reason,
                "status": status,
                "error": error,
                **(extra or {}),
            },
        )
    DEAD_LETTERS.labels(reason).inc()
    return entry_id


async def settle(
    pool: asyncpg.Pool, dedupe_key: str, status: Status, note: str | None = None
) -> None:
    """Close an entry after a successful retry (or an operator's decision)."""
    await pool.execute(
        "UPDATE dead_letters SET status = $2, last_error = COALESCE($3, last_error),"
        " retry_count = retry_count + 1, updated_at = now() WHERE dedupe_key = $1",
        dedupe_key,
        status,
        note,
    )
