"""Number confirmation requests in PostgreSQL (`number_confirmations`, and
`number_confirmation_events`: which events wait for which request), and the pipeline's hook
`ask_to_confirm`. The decisions are confirmation.py's; `replies` settles requests.

One request is open per customer and candidate number at a time (a unique partial index), so
however many events wait, the template goes out once: under an Idempotency-Key of its own,
sent again only while Siteti has not accepted it.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import asyncpg

from bridge.audit import record
from bridge.events import CanonicalEvent, stable_key

from .confirmation import Candidate, Request, RequestStatus, decide
from .customers import CustomerRecord
from .outcomes import DeadLettered, Failure, Unconfirmed
from .pacing import paced
from .rules import MissingVariable, NoRuleMatched, choose
from .siteti import SitetiError

if TYPE_CHECKING:
    from .pipeline import Dispatcher

T = TypeVar("T")
Retrying = Callable[[CanonicalEvent, Callable[[], Awaitable[T]]], Awaitable[T]]


class DeadLetter(Protocol):
    """The pipeline's `_failed`: stores the event's dead-letter entry and parks the event."""

    def __call__(
        self, event: CanonicalEvent, failure: Failure, *, template_id: str | None = None
    ) -> Awaitable[DeadLettered]: ...


REQUEST_COLUMNS = "id, status, expires_at, message_id, reference, template_id"
# What a confirmation message's reference starts with (Siteti echoes it in its webhooks).
REFERENCE_PREFIX = "number-confirmation:"
# An erasure of a number (erasure.apply): the requests asking it, whoever's customer they were
# for ($1 the subject's keyed hash, $2 its kind). A customer's own go with them (cascade).
FORGET_CANDIDATE = "DELETE FROM number_confirmations WHERE phone_index = $1 AND $2::text = 'phone'"


def request_of(row: Any) -> Request:
    return Request(**{name.strip(): row[name.strip()] for name in REQUEST_COLUMNS.split(",")})


def confirmation_key(reference: str, generation: int) -> str:
    """The Idempotency-Key of a request's template: stable per request (and key generation,
    bumped after Siteti refused the template: it would replay that refusal for 24 h)."""
    key = stable_key("confirm_number", reference)
    return key if generation <= 0 else stable_key(key, f"g{generation}")


async def ask_to_confirm(
    d: Dispatcher,
    event: CanonicalEvent,
    customer: CustomerRecord,
    candidate: Candidate,
    retrying: Retrying[Any],
    dead_letter: DeadLetter,
) -> DeadLettered:
    """Dead-letter an event whose number is a candidate: waiting for the customer's answer
    (the request opened and sent if need be), declined, timed out, or a Siteti failure to
    send the request (retried like any other)."""
    asking = replace(customer, phone=candidate.phone)
    try:
        choice = choose(d.rules, event, asking, confirmation=True)
    except (NoRuleMatched, MissingVariable) as exc:
        return await dead_letter(
            event, Unconfirmed("no_rule", f"the number is not confirmed, and {exc}")
        )
    sealed, index = d.directory.sealed_phone(candidate.phone)
    linked, latest, now = await _state(d.pool, event.dedupe_key, candidate.customer_id, index)
    decision = decide(linked, latest, now)
    if decision.kind == "declined":
        return await dead_letter(
            event, Unconfirmed("declined", "the customer said the number is not theirs")
        )
    if decision.kind == "timeout":
        assert decision.request is not None
        await d.pool.execute(
            "UPDATE number_confirmations SET status = 'expired' WHERE id = $1"
            " AND status = 'requested'",
            decision.request.id,
        )
        seconds = int(d.number_confirmation_timeout)
        return await dead_letter(
            event, Unconfirmed("timeout", f"no reply to the number confirmation in {seconds} s")
        )
    request = decision.request or await _open(
        d.pool,
        candidate.customer_id,
        sealed,
        index,
        choice.template_id,
        d.number_confirmation_timeout,
    )
    if request.message_id is None:
        try:
            async with paced(d.pacer, candidate.phone):
                answer = await retrying(
                    event,
                    lambda: d.siteti.trigger_template(
                        request.template_id,
                        to=candidate.phone,
                        contact_id=None,
                        variables=choice.variables,
                        reference=request.reference,
                        idempotency_key=confirmation_key(request.reference, d.key_generation),
                    ),
                )
        except SitetiError as exc:
            return await dead_letter(event, exc, template_id=request.template_id)
        message_id = answer.body.get("message_id")
        request = await _accepted(
            d.pool, request, message_id if isinstance(message_id, str) else ""
        )
    wait = max(request.expires_at - now, timedelta(0))
    dead = await dead_letter(
        event,
        Unconfirmed(
            "waiting",
            f"asked with {request.template_id} ({request.reference}); waiting for the reply",
            wait,
        ),
    )
    # Linked once stored: a reply settles the entries it finds linked (`answer`), and one
    # that came in between makes this entry due for the retrier at once.
    await _link(d.pool, event, request, d.directory.customer_hash(event))
    return dead


async def _state(
    pool: asyncpg.Pool, dedupe_key: str, customer_id: int, phone_index: str
) -> tuple[Request | None, Request | None, datetime]:
    """The request the event waits for (if for this customer and number), the latest one for
    them, and the database's clock (every time here is the database's)."""
    columns = ", ".join(f"r.{c.strip()}" for c in REQUEST_COLUMNS.split(","))
    async with pool.acquire() as conn:
        linked = await conn.fetchrow(
            f"SELECT {columns} FROM number_confirmation_events e"  # noqa: S608 - fixed columns
            " JOIN number_confirmations r ON r.id = e.confirmation_id"
            " WHERE e.dedupe_key = $1 AND r.customer_id = $2 AND r.phone_index = $3",
            dedupe_key,
            customer_id,
            phone_index,
        )
        latest = await conn.fetchrow(
            f"SELECT {columns} FROM number_confirmations r"  # noqa: S608 - fixed columns
            " WHERE r.customer_id = $1 AND r.phone_index = $2 ORDER BY r.id DESC LIMIT 1",
            customer_id,
            phone_index,
        )
        now: datetime = await conn.fetchval("SELECT now()")
    return (
        request_of(linked) if linked else None,
        request_of(latest) if latest else None,
        now,
    )


async def _open(
    pool: asyncpg.Pool,
    customer_id: int,
    sealed: str,
    phone_index: str,
    template_id: str,
    timeout_seconds: float,
) -> Request:
    """The open request for the customer and number: a new one, or the one another event
    opened meanwhile (the unique partial index decides)."""
    async with pool.acquire() as conn, conn.transaction():
        # An expired request nobody settled yet makes way (its events time out on their retry).
        await conn.execute(
            "UPDATE number_confirmations SET status = 'expired' WHERE customer_id = $1"
            " AND phone_index = $2 AND status = 'requested' AND expires_at <= now()",
            customer_id,
            phone_index,
        )
        await conn.execute(
            "INSERT INTO number_confirmations (customer_id, phone, phone_index, status,"
            " reference, template_id, expires_at)"
            " VALUES ($1, $2, $3, 'requested', $4, $5, now() + $6::interval)"
            " ON CONFLICT (customer_id, phone_index) WHERE status = 'requested' DO NOTHING",
            customer_id,
            sealed,
            phone_index,
            f"{REFERENCE_PREFIX}{secrets.token_hex(10)}",
            template_id,
            timedelta(seconds=timeout_seconds),
        )
        row = await conn.fetchrow(
            f"SELECT {REQUEST_COLUMNS} FROM number_confirmations"  # noqa: S608 - fixed columns
            " WHERE customer_id = $1 AND phone_index = $2 AND status = 'requested'",
            customer_id,
            phone_index,
        )
    return request_of(row)


async def _accepted(pool: asyncpg.Pool, request: Request, message_id: str) -> Request:
    row = await pool.fetchrow(
        "UPDATE number_confirmations SET message_id = COALESCE(message_id, $2)"  # noqa: S608
        f" WHERE id = $1 RETURNING {REQUEST_COLUMNS}",
        request.id,
        message_id or None,
    )
    return request_of(row) if row else request


async def _link(
    pool: asyncpg.Pool, event: CanonicalEvent, request: Request, customer_hash: str
) -> None:
    """The event waits for `request`; audited (`confirmation_requested`) when it starts to.
    Against `answer`, the request's row lock orders them: an answer either finds this link, or
    came first and this makes the entry due now (the retrier releases it)."""
    async with pool.acquire() as conn, conn.transaction():
        status = await conn.fetchval(
            "SELECT status FROM number_confirmations WHERE id = $1 FOR SHARE", request.id
        )
        if status != "requested":
            await conn.execute(
                "UPDATE dead_letters SET next_attempt_at = now(), updated_at = now()"
                " WHERE dedupe_key = $1 AND status = 'pending'",
                event.dedupe_key,
            )
        linked = await conn.fetchval(
            "INSERT INTO number_confirmation_events (dedupe_key, confirmation_id)"
            " VALUES ($1, $2) ON CONFLICT (dedupe_key) DO UPDATE"
            " SET confirmation_id = EXCLUDED.confirmation_id, linked_at = now()"
            " WHERE number_confirmation_events.confirmation_id <> EXCLUDED.confirmation_id"
            " RETURNING confirmation_id",
            event.dedupe_key,
            request.id,
        )
        if linked is None:
            return  # waits for it already (a retry before the answer)
        await record(
            conn,
            reference=event.reference,
            stage="confirmation_requested",
            source="dispatcher",
            customer_hash=customer_hash,
            detail={
                "request": request.id,
                "template": request.template_id,
                "message_id": request.message_id,
                "confirmation_reference": request.reference,
                "expires_at": request.expires_at.isoformat(),
            },
        )


# --- settling a request (the replies consumer) ------------------------------------------------


async def find_request(
    pool: asyncpg.Pool,
    *,
    context_message_id: str | None,
    reference: str | None,
    from_index: str | None,
) -> Request | None:
    """The request a reply answers: the message it quotes (or that message's reference); a
    reply quoting nothing, by the number it comes from when exactly one request is open for
    it. A reply quoting another message answers no request."""
    if context_message_id or reference:
        row = await pool.fetchrow(
            f"SELECT {REQUEST_COLUMNS} FROM number_confirmations"  # noqa: S608 - fixed columns
            " WHERE message_id = $1 OR reference = $2 ORDER BY id DESC LIMIT 1",
            context_message_id,
            reference,
        )
        return request_of(row) if row else None
    if not from_index:
        return None
    rows = await pool.fetch(
        f"SELECT {REQUEST_COLUMNS} FROM number_confirmations"  # noqa: S608 - fixed columns
        " WHERE phone_index = $1 AND status = 'requested' AND expires_at > now() LIMIT 2",
        from_index,
    )
    return request_of(rows[0]) if len(rows) == 1 else None


async def answer(d: Dispatcher, request: Request, status: RequestStatus) -> bool:
    """Settle an open request with the customer's answer; a confirmation makes the number the
    customer's confirmed one. Audited on every waiting event (`number_confirmed`,
    `number_declined`). False when the request was no longer open."""
    async with d.pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            "UPDATE number_confirmations SET status = $2, answered_at = now()"
            " WHERE id = $1 AND status = 'requested' AND expires_at > now()"
            " RETURNING customer_id, phone, phone_index",
            request.id,
            status,
        )
        if row is None:
            return False
        stale: list[str] = []
        if status == "confirmed":
            stale = await d.directory.mark_confirmed(
                conn, row["customer_id"], row["phone"], row["phone_index"]
            )
        waiting = await conn.fetch(
            "SELECT l.reference, l.customer_hash FROM dead_letters l"
            " JOIN number_confirmation_events e USING (dedupe_key)"
            " WHERE e.confirmation_id = $1 ORDER BY l.id",
            request.id,
        )
        for entry in waiting:
            await record(
                conn,
                reference=entry["reference"],
                stage="number_confirmed" if status == "confirmed" else "number_declined",
                source="dispatcher",
                customer_hash=entry["customer_hash"],
                detail={"request": request.id, "confirmation_reference": request.reference},
            )
    # Once committed: a look-up meanwhile may have cached the number as unconfirmed.
    await d.directory.drop_cached(stale)
    return True


async def waiting_entries(pool: asyncpg.Pool, request_id: int) -> list[int]:
    """The dead-letter entries still waiting for the request, oldest first."""
    rows = await pool.fetch(
        "SELECT l.id FROM dead_letters l JOIN number_confirmation_events e USING (dedupe_key)"
        " WHERE e.confirmation_id = $1 AND l.status = 'pending' ORDER BY l.id",
        request_id,
    )
    return [int(r["id"]) for r in rows]
