"""Issue 12: what receipts do with `message.failed` (receipts.outcomes), against real
PostgreSQL: each action of the default WHATSAPP_FAILURE_ACTIONS, the delivery state that never
moves backwards, a failure that comes ahead of the dispatcher's record of the send, and the
dispatcher holding messages to a flagged number (dispatcher.sent)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import orjson
import pytest

from bridge.events import CanonicalEvent, Customer, EventData, new_event
from bridge.failure_codes import DEFAULT_ACTIONS, FailurePolicy
from dispatcher.sent import forget_sent, held_for_review, record_dispatched
from receipts.app import _store
from receipts.outcomes import NotRecordedYet
from receipts.webhooks import parse_webhook

pytestmark = pytest.mark.integration

POLICY = FailurePolicy.parse(DEFAULT_ACTIONS, 30, 2)


def event() -> CanonicalEvent:
    data = EventData(
        provider="moniepoint",
        transaction_reference=f"FAIL-{uuid.uuid4().hex[:10]}",
        amount=Decimal("5000.00"),
        customer=Customer(account_number="0123456789"),
        occurred_at=datetime(2026, 1, 20, tzinfo=UTC),
    )
    return new_event(data, "payment.successful")


async def sent(
    pool: asyncpg.Pool, ev: CanonicalEvent, *, template: str | None = "tpl_x", generation: int = 0
) -> tuple[str, str]:
    """As the dispatcher records an accepted message: (message id, number's keyed hash)."""
    message_id, phone_index = f"msg_{uuid.uuid4().hex[:12]}", f"ph_{uuid.uuid4().hex[:12]}"
    await record_dispatched(
        pool,
        ev,
        customer_hash=f"ch_{ev.data.transaction_reference}",
        phone_index=phone_index,
        template_id=template,  # None: a free-form message
        key_generation=generation,
        detail={"message_id": message_id},
    )
    return message_id, phone_index


async def receive(
    pool: asyncpg.Pool,
    kind: str,
    reference: str,
    message_id: str,
    code: int | None = None,
    at: datetime | None = None,
) -> bool:
    data: dict[str, Any] = {"message_id": message_id, "reference": reference, "status": kind}
    if code is not None:
        data["error"] = {"code": code, "title": "from Meta"}
    body = {
        "id": f"evt_{uuid.uuid4().hex}",
        "type": f"message.{kind}",
        "created_at": (at or datetime.now(UTC)).isoformat(),
        "data": data,
    }
    return await _store(pool, parse_webhook(orjson.dumps(body)), policy=POLICY)


async def entry(pool: asyncpg.Pool, ev: CanonicalEvent) -> asyncpg.Record:
    row = await pool.fetchrow(
        "SELECT status, reason, key_generation, next_attempt_at - now() AS wait, template_id,"
        " payload, retry_count FROM dead_letters WHERE dedupe_key = $1",
        ev.dedupe_key,
    )
    assert row is not None
    return row


async def failed_row(pool: asyncpg.Pool, reference: str) -> dict[str, Any]:
    rows = await pool.fetch(
        "SELECT detail FROM audit_log WHERE reference = $1 AND stage = 'failed' ORDER BY id",
        reference,
    )
    assert len(rows) >= 1
    detail: dict[str, Any] = rows[-1]["detail"]
    return detail


async def state(pool: asyncpg.Pool, message_id: str) -> str:
    value: str = await pool.fetchval(
        "SELECT state FROM sent_messages WHERE message_id = $1", message_id
    )
    return value


async def test_undeliverable_goes_to_review_and_flags_the_number(pg_pool: asyncpg.Pool) -> None:
    ev = event()
    message_id, phone_index = await sent(pg_pool, ev, generation=2)
    assert await receive(pg_pool, "sent", ev.reference, message_id)
    assert await receive(pg_pool, "failed", ev.reference, message_id, 131026)

    got = await entry(pg_pool, ev)
    assert (got["status"], got["reason"], got["wait"]) == (
        "manual_review",
        "whatsapp_undeliverable",
        None,
    )
    # The refused message went under generation 2: a re-send must use a new key.
    assert got["key_generation"] == 3
    assert got["payload"] == orjson.loads(ev.model_dump_json())
    assert await state(pg_pool, message_id) == "failed"
    detail = await failed_row(pg_pool, ev.reference)
    assert detail["error"]["code"] == 131026
    assert detail["action"] == "manual_review_flagged"
    assert detail["reason"] == "whatsapp_undeliverable"

    # The dispatcher holds the next message to that number for review, without sending.
    held = await held_for_review(pg_pool, phone_index)
    assert held is not None and (held.reason, held.status) == ("number_flagged", "manual_review")
    assert "131026" in held.error and ev.reference in held.error
    # The same failure again (another event id) changes nothing: no second entry write.
    assert await receive(pg_pool, "failed", ev.reference, message_id, 131026)
    dead = await pg_pool.fetchval(
        "SELECT count(*) FROM audit_log WHERE reference = $1 AND stage = 'dead_lettered'",
        ev.reference,
    )
    assert dead == 1
    assert "action" not in await failed_row(pg_pool, ev.reference)

    # An operator's retry lifts the flag; an erasure forgets the rest.
    assert await held_for_review(pg_pool, phone_index, lift=True) is None
    assert await held_for_review(pg_pool, phone_index) is None
    async with pg_pool.acquire() as conn:
        await forget_sent(conn, [f"ch_{ev.data.transaction_reference}"])
    assert (
        await pg_pool.fetchval(
            "SELECT count(*) FROM sent_messages WHERE message_id = $1", message_id
        )
        == 0
    )


async def test_throughput_limits_are_retried_later_with_backoff(pg_pool: asyncpg.Pool) -> None:
    ev = event()
    first, _ = await sent(pg_pool, ev)
    assert await receive(pg_pool, "failed", ev.reference, first, 130429)
    got = await entry(pg_pool, ev)
    assert (got["status"], got["reason"], got["key_generation"]) == (
        "pending",
        "whatsapp_rate_limit",
        1,
    )
    assert timedelta(seconds=25) < got["wait"] <= timedelta(seconds=30)
    assert (await failed_row(pg_pool, ev.reference))["action"] == "retry"

    # The retrier re-sent it (generation 1, one retry counted); the pair limit hits it now.
    await pg_pool.execute(
        "UPDATE dead_letters SET status = 'completed', retry_count = 1 WHERE dedupe_key = $1",
        ev.dedupe_key,
    )
    second, _ = await sent(pg_pool, ev, generation=1)
    assert await receive(pg_pool, "failed", ev.reference, second, 131056)
    got = await entry(pg_pool, ev)
    assert (got["status"], got["reason"], got["key_generation"]) == (
        "pending",
        "whatsapp_pair_limit",
        2,
    )
    assert timedelta(seconds=55) < got["wait"] <= timedelta(seconds=60)

    # Re-sent twice already (WHATSAPP_MAX_RESENDS here): a person decides.
    await pg_pool.execute(
        "UPDATE dead_letters SET status = 'completed', retry_count = 2 WHERE dedupe_key = $1",
        ev.dedupe_key,
    )
    third, _ = await sent(pg_pool, ev, generation=2)
    assert await receive(pg_pool, "failed", ev.reference, third, 130429)
    assert (await entry(pg_pool, ev))["status"] == "manual_review"


async def test_spam_and_ecosystem_limits_are_not_retried(pg_pool: asyncpg.Pool) -> None:
    for code, reason in ((131048, "whatsapp_spam_limit"), (131049, "whatsapp_ecosystem_limit")):
        ev = event()
        message_id, phone_index = await sent(pg_pool, ev)
        assert await receive(pg_pool, "failed", ev.reference, message_id, code)
        got = await entry(pg_pool, ev)
        assert (got["status"], got["reason"], got["wait"]) == ("manual_review", reason, None)
        assert (await failed_row(pg_pool, ev.reference))["action"] == "manual_review"
        assert await held_for_review(pg_pool, phone_index) is None  # not flagged


async def test_outside_the_window_a_free_form_message_is_resent_as_a_template(
    pg_pool: asyncpg.Pool,
) -> None:
    free_form = event()
    message_id, _ = await sent(pg_pool, free_form, template=None)
    assert await receive(pg_pool, "failed", free_form.reference, message_id, 131047)
    got = await entry(pg_pool, free_form)
    assert (got["status"], got["reason"]) == ("pending", "whatsapp_window_closed")
    assert got["wait"] <= timedelta(0)  # due at once
    assert (await failed_row(pg_pool, free_form.reference))["action"] == "resend_as_template"

    template = event()
    message_id, _ = await sent(pg_pool, template)
    assert await receive(pg_pool, "failed", template.reference, message_id, 131047)
    got = await entry(pg_pool, template)
    assert (got["status"], got["template_id"]) == ("manual_review", "tpl_x")


async def test_the_state_never_moves_backwards(pg_pool: asyncpg.Pool) -> None:
    ev = event()
    message_id, _ = await sent(pg_pool, ev)
    assert await state(pg_pool, message_id) == "accepted"
    assert await receive(pg_pool, "read", ev.reference, message_id)
    for kind in ("delivered", "sent"):
        assert await receive(pg_pool, kind, ev.reference, message_id)
    assert await state(pg_pool, message_id) == "read"
    # A failure after the phone had it is stale: no dead letter.
    assert await receive(pg_pool, "failed", ev.reference, message_id, 130429)
    assert await state(pg_pool, message_id) == "read"
    assert (
        await pg_pool.fetchval(
            "SELECT count(*) FROM dead_letters WHERE dedupe_key = $1", ev.dedupe_key
        )
        == 0
    )


async def test_a_failure_ahead_of_the_dispatchers_record_is_retried(
    pg_pool: asyncpg.Pool,
) -> None:
    ev = event()
    message_id = f"msg_{uuid.uuid4().hex[:12]}"
    await pg_pool.execute(
        "INSERT INTO audit_log (reference, stage, source, occurred_at) VALUES"
        " ($1, 'received', 'dispatcher', now())",
        ev.reference,
    )
    assert await receive(pg_pool, "sent", ev.reference, message_id)  # stored: state only
    with pytest.raises(NotRecordedYet):
        await receive(pg_pool, "failed", ev.reference, message_id, 130429)
    assert await state(pg_pool, message_id) == "sent"  # rolled back with the receipt

    # Siteti's retry, once the dispatcher's record is there, is acted on.
    await record_dispatched(
        pg_pool,
        ev,
        customer_hash="ch",
        phone_index="ph",
        template_id="tpl_x",
        key_generation=0,
        detail={"message_id": message_id},
    )
    assert await state(pg_pool, message_id) == "sent"  # the dispatcher's write keeps it
    assert await receive(pg_pool, "failed", ev.reference, message_id, 130429)
    assert (await entry(pg_pool, ev))["reason"] == "whatsapp_rate_limit"


async def test_a_failure_of_a_send_never_recorded_is_stored_without_action(
    pg_pool: asyncpg.Pool,
) -> None:
    reference = f"other:{uuid.uuid4().hex[:10]}"  # another system's message
    message_id = f"msg_{uuid.uuid4().hex[:12]}"
    assert await receive(pg_pool, "failed", reference, message_id, 131026)
    detail = await failed_row(pg_pool, reference)
    assert detail["action"] == "none"
    assert await state(pg_pool, message_id) == "failed"
