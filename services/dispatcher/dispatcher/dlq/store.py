"""Writing a dead letter: what the pipeline decided about an event (`put`), or a record that
is not an event at all (`put_record`), with its outbox row (the dead-letter topic) and audit
entry in the same transaction."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson

from bridge import dead_letters
from bridge.dead_letters import DeadLetterRow
from bridge.events import CanonicalEvent
from bridge.metrics import DEAD_LETTERS

from ..outcomes import (
    TEMPLATE_NOT_APPROVED,
    TEMPLATE_REJECTED,
    UNPROCESSABLE,
    DeadLettered,
    Status,
)

# Siteti answers that only the trigger call gives and that say nothing was sent: Siteti keeps
# that answer under the call's Idempotency-Key, so the next try must use a new key
# (`key_generation` + 1). Other answers (5xx, timeouts, a 409 for a reused key) say nothing
# certain about an earlier attempt under the same key, so they keep it.
REKEY_REASONS = frozenset({TEMPLATE_NOT_APPROVED, TEMPLATE_REJECTED, "template_not_found"})


async def put(
    pool: asyncpg.Pool, event: CanonicalEvent, dead: DeadLettered, customer_hash: str
) -> int:
    """Store (or update) the event's dead-letter entry as the pipeline decided it; returns
    its id. `customer_hash` is the event's Kafka key (bridge.protect.customer_key): the
    dead-letter topic's key, and how an erasure finds the entry.

    `dead.template_id` is the Siteti template the message needs (when one was chosen); the
    retrier asks Siteti about it for `template_not_approved` entries. A first refusal in
    `REKEY_REASONS` burns generation 0 of the Idempotency-Key (a later refusal under a retry
    burns the retry's generation: `settle_retry`). Whatever the event holds is made storable
    first: an `unprocessable` event may be one PostgreSQL refused (NUL characters).
    """
    return await _store(
        pool,
        DeadLetterRow(
            dedupe_key=event.dedupe_key,
            reference=storable(event.reference),
            provider=storable(event.data.provider),
            event_type=storable(event.type),
            payload=storable(event.model_dump(mode="json")),
            customer_hash=customer_hash,
        ),
        reason=dead.reason,
        status=dead.status,
        error=storable(dead.error),
        next_attempt=datetime.now(UTC) + dead.retry_in if dead.retry_in is not None else None,
        template_id=dead.template_id,
    )


async def put_record(pool: asyncpg.Pool, record: RecordPosition, error: str) -> int:
    """Store a record that is not a canonical event at all (an older or foreign producer's):
    `unprocessable`, for a person to look at, kept as text with where it was read."""
    return await _store(
        pool,
        record.as_row(),
        reason=UNPROCESSABLE,
        status="manual_review",
        error=storable(error),
    )


@dataclass(frozen=True)
class RecordPosition:
    """A Kafka record that could not be read as a canonical event, and where it was read."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes

    def as_row(self) -> DeadLetterRow:
        where = f"{self.topic}/{self.partition}/{self.offset}"
        text = self.value[:_RAW_LIMIT].decode("utf-8", errors="backslashreplace")
        subject = _json_field(self.value, "subject")
        return DeadLetterRow(
            # The record's content names it: the same bytes read again are the same entry.
            dedupe_key=f"unprocessable:{hashlib.sha256(self.value).hexdigest()[:40]}",
            reference=storable(subject or f"unknown:{where}")[:200],
            provider=storable(subject.split(":", 1)[0] if ":" in subject else "unknown")[:64],
            event_type=storable(_json_field(self.value, "type") or "unknown")[:128],
            payload={
                "raw": storable(text),
                "truncated": len(self.value) > _RAW_LIMIT,
                "topic": self.topic,
                "partition": self.partition,
                "offset": self.offset,
            },
            # The record's key, when it is ours, is the customer's keyed hash already.
            customer_hash=storable((self.key or b"").decode("utf-8", errors="backslashreplace")),
        )


_RAW_LIMIT = 64 * 1024  # what is kept of a raw record: enough for a person to read


def _json_field(value: bytes, name: str) -> str:
    """A top-level string field of a JSON object, or "" (the record may not be JSON)."""
    try:
        document = orjson.loads(value)
    except orjson.JSONDecodeError:
        return ""
    field = document.get(name) if isinstance(document, dict) else None
    return field if isinstance(field, str) else ""


def storable(value: Any) -> Any:
    """`value` with every NUL character shown as the text `\\u0000`: PostgreSQL text and
    jsonb cannot hold NUL, and the dead letter must be stored whatever the record held."""
    if isinstance(value, str):
        return value.replace("\x00", "\\u0000")
    if isinstance(value, dict):
        return {storable(k): storable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [storable(v) for v in value]
    return value


async def _store(
    pool: asyncpg.Pool,
    row: DeadLetterRow,
    *,
    reason: str,
    status: Status,
    error: str,
    next_attempt: datetime | None = None,
    template_id: str | None = None,
) -> int:
    async with pool.acquire() as conn, conn.transaction():
        entry_id = await dead_letters.write(
            conn,
            row,
            reason=reason,
            status=status,
            error=error,
            next_attempt=next_attempt,
            template_id=template_id,
            # The pipeline's own attempts use generation 0: a refusal burns that one only.
            key_generation=1 if reason in REKEY_REASONS else 0,
        )
    DEAD_LETTERS.labels(reason).inc()
    return entry_id


# --- Reading and working the store (retrier, `bridge dlq`, the admin API) -------------------
