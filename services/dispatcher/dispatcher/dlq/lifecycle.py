"""An entry's life after it is stored: claimed by one worker at a time across instances
(`claim`, `claim_due`: processing), then completed (`mark`), given back untouched
(`release`), failed again — the pipeline `put`s its new decision and `settle_retry` writes the
retry's bookkeeping, computed in Python by `after_retry` — or settled by an operator
(`operator_settle`). Entries left `processing` by a dead worker are recovered
(`recover_stale`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

import asyncpg

from bridge.audit import record
from bridge.logs import mask_text
from bridge.retry import RetryPolicy

from ..outcomes import (
    AWAITING_NUMBER_CONFIRMATION,
    SITETI_UNAVAILABLE,
    TEMPLATE_NOT_APPROVED,
    Status,
)
from .entries import CLOSABLE, ENTRY_COLUMNS, RESOLVABLE, RETRYABLE, Entry
from .store import REKEY_REASONS

# Backoff between retries of one entry: 1 min × 2^(retries so far), capped at 1 h; the
# retrier gives up (→ failed) after `max_retries`. Pass another policy to change it.
DLQ_RETRY_POLICY = RetryPolicy(base_seconds=60.0, factor=2.0, max_seconds=3600.0, max_retries=10)


async def claim(
    pool: asyncpg.Pool,
    id: int,
    statuses: Sequence[str] = RETRYABLE,
) -> Entry | None:
    """Take one entry for a retry (→ processing); None if it is not in `statuses` (someone
    else has it, or it is settled or unknown)."""
    row = await pool.fetchrow(
        f"""
        WITH prev AS (
          SELECT id, status FROM dead_letters
          WHERE id = $1 AND status = ANY($2::text[]) FOR UPDATE
        )
        UPDATE dead_letters d SET status = 'processing', updated_at = now()
        FROM prev WHERE d.id = prev.id AND d.status = ANY($2::text[])
        RETURNING {", ".join(f"d.{c.strip()}" for c in ENTRY_COLUMNS.split(","))},
                  prev.status AS claimed_from
        """,  # noqa: S608 - fixed columns
        id,
        list(statuses),
    )
    return Entry.from_row(row) if row is not None else None


def backoff_seconds(retry_count: int, policy: RetryPolicy = DLQ_RETRY_POLICY) -> float:
    """How long after its last retry an entry that has been retried `retry_count` times waits:
    0 before the first retry, then base, base×factor, … capped (no jitter: operators read it)."""
    if retry_count <= 0:
        return 0.0
    return float(
        min(policy.max_seconds, policy.base_seconds * policy.factor ** min(retry_count - 1, 60))
    )


# Every wait (the pipeline's, the backoff after a retry) is in `next_attempt_at`.
_DUE_SQL = "status = 'pending' AND (next_attempt_at IS NULL OR next_attempt_at <= now())"


@dataclass(frozen=True)
class AfterRetry:
    """An entry's bookkeeping once a retry failed again (see `after_retry`)."""

    retry_count: int
    key_generation: int  # of the next trigger call
    status: Status
    wait: timedelta | None  # until the next attempt; None: not scheduled (pending: as stored)


def after_retry(
    entry: Entry,
    *,
    reason: str,
    status: Status,
    policy: RetryPolicy = DLQ_RETRY_POLICY,
    max_retries: int | None = None,
) -> AfterRetry:
    """A claimed `entry` was retried and dead-lettered again with `reason` and `status`: the
    retry counts; a refusal in `REKEY_REASONS` burns the key generation the retry used; a
    pending entry waits the backoff, or has failed for good once `max_retries` are used."""
    retries = entry.retry_count + 1
    generation = entry.key_generation + (1 if reason in REKEY_REASONS else 0)
    if status != "pending":
        return AfterRetry(retries, generation, status, None)
    if reason == AWAITING_NUMBER_CONFIRMATION:
        # Still waiting for the customer (retried before the request expired): not a failed
        # attempt; it waits until the expiry the pipeline stored (wait None keeps it).
        return AfterRetry(entry.retry_count, generation, status, None)
    if max_retries is not None and retries >= max_retries:
        return AfterRetry(retries, generation, "failed", None)
    return AfterRetry(
        retries, generation, status, timedelta(seconds=backoff_seconds(retries, policy))
    )


async def claim_due(
    pool: asyncpg.Pool,
    limit: int,
    *,
    providers: Sequence[str] | None = None,
    template_id: str | None = None,
) -> list[Entry]:
    """Claim up to `limit` pending entries whose time has come (`next_attempt_at` passed),
    skipping rows another worker holds.

    Without `template_id`, entries waiting for a known template's approval are left out (the
    retrier asks Siteti about the template first); with it, only those for that template.
    """
    rows = await pool.fetch(
        f"""
        WITH due AS (
          SELECT id, status FROM dead_letters
          WHERE {_DUE_SQL}
            AND CASE WHEN $2::text IS NULL THEN NOT (reason = $3 AND template_id IS NOT NULL)
                     ELSE reason = $3 AND template_id = $2 END
            AND ($4::text[] IS NULL OR provider = ANY($4::text[]))
          ORDER BY next_attempt_at NULLS FIRST, id
          LIMIT $1
          FOR UPDATE SKIP LOCKED
        )
        UPDATE dead_letters d SET status = 'processing', updated_at = now()
        FROM due WHERE d.id = due.id AND d.status = 'pending'
        RETURNING {", ".join(f"d.{c.strip()}" for c in ENTRY_COLUMNS.split(","))},
                  due.status AS claimed_from
        """,  # noqa: S608 - fixed clauses
        limit,
        template_id,
        TEMPLATE_NOT_APPROVED,
        list(providers) if providers else None,
    )
    return sorted((Entry.from_row(r) for r in rows), key=lambda e: e.id)


async def templates_awaited(
    pool: asyncpg.Pool,
    *,
    providers: Sequence[str] | None = None,
) -> list[str]:
    """Templates that due `template_not_approved` entries wait for (one Siteti call each)."""
    rows = await pool.fetch(
        f"""
        SELECT DISTINCT template_id FROM dead_letters
        WHERE {_DUE_SQL} AND reason = $1 AND template_id IS NOT NULL
          AND ($2::text[] IS NULL OR provider = ANY($2::text[]))
        ORDER BY template_id
        """,  # noqa: S608 - fixed clauses
        TEMPLATE_NOT_APPROVED,
        list(providers) if providers else None,
    )
    return [str(r["template_id"]) for r in rows]


async def mark(
    pool: asyncpg.Pool,
    id: int,
    status: Status,
    error: str | None = None,
    next_attempt_at: datetime | None = None,
    *,
    retried: bool = False,
    only_from: Status | None = None,
) -> Entry | None:
    """Set an entry's status (and error, next attempt); `retried` counts one more retry.
    With `only_from`, only an entry in that status changes (None otherwise)."""
    row = await pool.fetchrow(
        f"""
        UPDATE dead_letters SET status = $2, last_error = COALESCE($3, last_error),
          next_attempt_at = $4, retry_count = retry_count + $5, updated_at = now()
        WHERE id = $1 AND ($6::text IS NULL OR status = $6) RETURNING {ENTRY_COLUMNS}
        """,  # noqa: S608 - fixed columns
        id,
        status,
        mask_text(error) if error else error,  # as in store.put: words may quote a number
        next_attempt_at,
        1 if retried else 0,
        only_from,
    )
    return Entry.from_row(row) if row is not None else None


async def release(pool: asyncpg.Pool, entry: Entry) -> Entry | None:
    """Give a claimed entry back, untouched (the retry did not happen)."""
    row = await pool.fetchrow(
        f"""
        UPDATE dead_letters SET status = $2, updated_at = now()
        WHERE id = $1 AND status = 'processing' RETURNING {ENTRY_COLUMNS}
        """,  # noqa: S608 - fixed columns
        entry.id,
        entry.claimed_from or "pending",
    )
    return Entry.from_row(row) if row is not None else None


async def settle_retry(pool: asyncpg.Pool, entry: Entry, after: AfterRetry) -> Entry | None:
    """Write a failed retry's bookkeeping (`after_retry`) onto the entry the pipeline has
    just stored again; the wait runs on the database's clock, as every other time here."""
    row = await pool.fetchrow(
        f"""
        UPDATE dead_letters SET retry_count = $2, key_generation = $3, status = $4,
          next_attempt_at = CASE WHEN $5::interval IS NOT NULL THEN now() + $5
                                 WHEN $4 = 'pending' THEN next_attempt_at END,
          updated_at = now()
        WHERE id = $1 RETURNING {ENTRY_COLUMNS}
        """,  # noqa: S608 - fixed columns
        entry.id,
        after.retry_count,
        after.key_generation,
        after.status,
        after.wait,
    )
    return Entry.from_row(row) if row is not None else None


async def recover_stale(pool: asyncpg.Pool, older_than: timedelta) -> list[Entry]:
    """Entries left `processing` by a worker that died mid-retry go back to where the retrier
    or an operator will see them."""
    rows = await pool.fetch(
        f"""
        UPDATE dead_letters SET
          status = CASE WHEN reason = ANY($2::text[]) THEN 'pending' ELSE 'manual_review' END,
          updated_at = now()
        WHERE status = 'processing' AND updated_at < now() - $1::interval
        RETURNING {ENTRY_COLUMNS}
        """,  # noqa: S608 - fixed columns
        older_than,
        # A confirmation's waiting events wait again (the pipeline re-decides on the retry).
        [SITETI_UNAVAILABLE, TEMPLATE_NOT_APPROVED, AWAITING_NUMBER_CONFIRMATION],
    )
    return [Entry.from_row(r) for r in rows]


async def record_retry(pool: asyncpg.Pool, entry: Entry, outcome: str, by: str) -> None:
    """Audit one retry (stage `retried`): who, and what came of it."""
    async with pool.acquire() as conn, conn.transaction():
        await record(
            conn,
            reference=entry.reference,
            stage="retried",
            source="dispatcher",
            detail={
                "id": entry.id,
                "outcome": outcome,
                "status": entry.status,
                "reason": entry.reason,
                "retry_count": entry.retry_count,
                "by": by,
            },
        )


async def operator_settle(
    pool: asyncpg.Pool,
    id: int,
    status: Literal["completed", "failed"],
    *,
    note: str,
    by: str,
) -> Entry | None:
    """An operator's decision: `completed` (handled it, e.g. sent by hand) or `failed` (given
    up). Audited as stage `resolved`. None when the entry is unknown or not in a status that
    allows it (`RESOLVABLE`, `CLOSABLE`)."""
    allowed = RESOLVABLE if status == "completed" else CLOSABLE
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            f"""
            UPDATE dead_letters SET status = $2, next_attempt_at = NULL,
              last_error = CASE WHEN $4 = '' THEN last_error
                                ELSE concat_ws(' | ', last_error, 'operator: ' || $4) END,
              updated_at = now()
            WHERE id = $1 AND status = ANY($3::text[])
            RETURNING {ENTRY_COLUMNS}
            """,  # noqa: S608 - fixed columns
            id,
            status,
            list(allowed),
            note,
        )
        if row is None:
            return None
        entry = Entry.from_row(row)
        await record(
            conn,
            reference=entry.reference,
            stage="resolved",
            source="dispatcher",
            detail={"id": entry.id, "status": status, "note": note, "by": by},
        )
    return entry
