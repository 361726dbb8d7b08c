"""What a message receipt changes besides its audit row, in the receipt's own transaction (so
200 means all of it is stored, and a retried webhook finds none of it done):

- the message's delivery state (`sent_messages.state`, bridge.delivery_states): moved only
  forward, whatever order and however many copies the receipts come in;
- for a `message.failed` that moves it to failed, the action its code calls for
  (bridge.failure_codes): the event's dead-letter entry, from what the dispatcher kept of the
  send (`sent_messages.payload`), pending with its next attempt or in manual review, under the
  next Idempotency-Key generation (Siteti would replay the refused message's acceptance for
  the old one, and send nothing); and a flagged number.

A failure whose send the dispatcher has not recorded yet (its receipt raced the dispatcher's
write, milliseconds after Siteti's acceptance) is answered 503 so that Siteti sends it again
(`NotRecordedYet`), for as long as the dispatcher may still record it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from bridge import dead_letters
from bridge.dead_letters import DeadLetterRow
from bridge.delivery_states import BY_EVENT_TYPE, State, advance
from bridge.failure_codes import Decision, FailurePolicy

from .webhooks import Receipt

# How long after the failure a receipt for an unrecorded send is refused (and retried by
# Siteti); later, it is stored without an action.
RECORD_WAIT = timedelta(minutes=5)

_ROW = (
    "SELECT state, dedupe_key, customer_hash, phone_index, template_id, key_generation,"
    " payload, accepted_at FROM sent_messages WHERE message_id = $1 FOR UPDATE"
)


class NotRecordedYet(Exception):
    """A failure for a send the dispatcher is about to record: answer 503, Siteti retries."""


@dataclass(frozen=True)
class Effect:
    """What the receipt changed: the message's state before and after (None: unchanged)."""

    before: State | None = None
    after: State | None = None
    accepted_at: datetime | None = None  # when Siteti accepted the message (dispatcher)
    audit: dict[str, Any] = field(default_factory=dict)  # added to the receipt's audit row
    dead_letter_reason: str | None = None


async def apply(conn: asyncpg.Connection, receipt: Receipt, policy: FailurePolicy) -> Effect:
    """Advance the receipt's message and act on a failure; call inside the transaction
    that stores the receipt."""
    reported = BY_EVENT_TYPE.get(receipt.type)
    message_id = receipt.detail.get("message_id")
    if reported is None or not isinstance(message_id, str):
        return Effect()
    row = await conn.fetchrow(_ROW, message_id)
    if row is None:
        await conn.execute(
            "INSERT INTO sent_messages (message_id, reference) VALUES ($1, $2)"
            " ON CONFLICT (message_id) DO NOTHING",
            message_id,
            receipt.reference,
        )
        row = await conn.fetchrow(_ROW, message_id)
        before: State | None = None  # nothing was known of the message
    else:
        before = row["state"]
    after = advance(before, reported)
    if after is None:
        return Effect(before, None, row["accepted_at"])
    await conn.execute(
        "UPDATE sent_messages SET state = $2, updated_at = now() WHERE message_id = $1",
        message_id,
        after,
    )
    effect = Effect(before, after, row["accepted_at"])
    if after != "failed":
        return effect
    if row["payload"] is None:
        if await _may_record(conn, receipt):
            raise NotRecordedYet(f"the send of {message_id} is not recorded yet")
        return Effect(before, after, None, {"action": "none", "why": "send not recorded"})
    return await _act(conn, receipt, policy, message_id, row, effect)


async def _may_record(conn: asyncpg.Connection, receipt: Receipt) -> bool:
    """Whether the dispatcher handled the reference (so its record of the send is on its way)
    and the failure is recent enough to wait for it."""
    if receipt.occurred_at < datetime.now(UTC) - RECORD_WAIT:
        return False
    known: bool = await conn.fetchval(
        "SELECT EXISTS (SELECT FROM audit_log WHERE reference = $1 AND stage = 'received')",
        receipt.reference,
    )
    return known


def _code(receipt: Receipt) -> tuple[int | None, str | None]:
    error = receipt.detail.get("error")
    if not isinstance(error, dict):
        return None, None
    code, title = error.get("code"), error.get("title")
    if isinstance(code, str) and code.isdigit():  # Meta's codes are numbers; be lenient
        code = int(code)
    valid = isinstance(code, int) and not isinstance(code, bool)
    return (code if valid else None), (title if isinstance(title, str) else None)


async def _act(
    conn: asyncpg.Connection,
    receipt: Receipt,
    policy: FailurePolicy,
    message_id: str,
    row: asyncpg.Record,
    effect: Effect,
) -> Effect:
    payload: dict[str, Any] = row["payload"]
    resends = await conn.fetchval(
        "SELECT retry_count FROM dead_letters WHERE dedupe_key = $1", row["dedupe_key"]
    )
    code, title = _code(receipt)
    decision = policy.decide(code, title, template_id=row["template_id"], resends=resends or 0)
    entry_id = await dead_letters.write(
        conn,
        DeadLetterRow(
            dedupe_key=row["dedupe_key"],
            reference=receipt.reference,
            provider=str(payload.get("data", {}).get("provider", "unknown")),
            event_type=str(payload.get("type", "unknown")),
            payload=payload,
            customer_hash=row["customer_hash"] or "",
        ),
        reason=decision.reason,
        status=decision.status,
        error=decision.note,
        next_attempt=_next_attempt(decision),
        template_id=row["template_id"],
        key_generation=row["key_generation"] + 1,
        audit_detail={"message_id": message_id, "code": code},
        source="receipts",
    )
    if decision.flag and row["phone_index"]:
        await conn.execute(
            "INSERT INTO flagged_numbers (phone_index, code, message_id, reference)"
            " VALUES ($1, $2, $3, $4) ON CONFLICT (phone_index) DO UPDATE SET"
            " code = EXCLUDED.code, message_id = EXCLUDED.message_id,"
            " reference = EXCLUDED.reference, flagged_at = now()",
            row["phone_index"],
            code or 0,
            message_id,
            receipt.reference,
        )
    audit = {"action": decision.taken, "reason": decision.reason, "dead_letter": entry_id}
    return Effect(effect.before, effect.after, effect.accepted_at, audit, decision.reason)


def _next_attempt(decision: Decision) -> datetime | None:
    if decision.retry_in is None:
        return None
    return datetime.now(UTC) + timedelta(seconds=decision.retry_in)
