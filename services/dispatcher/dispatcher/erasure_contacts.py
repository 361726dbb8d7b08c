"""An erasure's Siteti contact deletions: tried once by the erasure itself, then retried on
the retrier's schedule (`retry_pending`) until Siteti confirmed each (404 counts: already
gone). The erasure stays `pending` meanwhile; it never gives up.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import timedelta

import asyncpg

from bridge.logs import get_logger
from bridge.retry import RetryPolicy

from .siteti import SitetiClient, SitetiError

log = get_logger("dispatcher.erasure")

# Between attempts at a pending erasure's Siteti deletions: never gives up (it stays pending).
ERASURE_BACKOFF = RetryPolicy(base_seconds=60, factor=2, max_seconds=3600, max_retries=0)
# While one process deletes contacts, the others leave the erasure alone this long.
CLAIM_LEASE = timedelta(minutes=5)


async def _delete_one(siteti: SitetiClient, contact_id: str, policy: RetryPolicy) -> None:
    for retry in range(policy.max_retries + 1):
        try:
            await siteti.delete_contact(contact_id)
            return
        except SitetiError as exc:
            if exc.status == 404:
                return  # deleted already (an earlier attempt whose answer was lost)
            if not exc.transient or retry >= policy.max_retries:
                raise
            await asyncio.sleep(exc.retry_after or policy.delay(retry))


async def delete_contacts(
    siteti: SitetiClient, contact_ids: Sequence[str], policy: RetryPolicy
) -> tuple[list[str], str | None]:
    """(the contacts still to delete, the last error) after trying each under `policy`."""
    left: list[str] = []
    error: str | None = None
    for contact_id in contact_ids:
        try:
            await _delete_one(siteti, contact_id, policy)
        except SitetiError as exc:
            left.append(contact_id)
            error = f"{exc.status or 'no answer'} {exc.code}"
    return left, error


async def attempt(
    pool: asyncpg.Pool,
    siteti: SitetiClient,
    erasure_id: int,
    contact_ids: Sequence[str],
    attempts: int,
    *,
    policy: RetryPolicy,
    backoff: RetryPolicy = ERASURE_BACKOFF,
) -> list[str]:
    """Delete the erasure's contacts and record the outcome; returns the contacts left
    (none: the erasure is done)."""
    left, error = await delete_contacts(siteti, contact_ids, policy)
    status = "pending" if left else "done"
    await pool.execute(
        "UPDATE erasures SET status = $2, contact_ids = $3, attempts = attempts + 1,"
        " last_error = $4, next_attempt_at = CASE WHEN $2 = 'pending' THEN now() + $5 END,"
        " completed_at = CASE WHEN $2 = 'done' THEN now() END, updated_at = now() WHERE id = $1",
        erasure_id,
        status,
        left,
        error,
        timedelta(seconds=backoff.delay(attempts)),
    )
    log.info("erasure_siteti", id=erasure_id, status=status, left=len(left), error=error)
    return left


_CLAIM_DUE = """
UPDATE erasures SET next_attempt_at = now() + $2::interval, updated_at = now()
 WHERE id IN (SELECT id FROM erasures
               WHERE status = 'pending' AND (next_attempt_at IS NULL OR next_attempt_at <= now())
               ORDER BY next_attempt_at NULLS FIRST, id LIMIT $1 FOR UPDATE SKIP LOCKED)
RETURNING id, contact_ids, attempts
"""


async def retry_pending(
    pool: asyncpg.Pool,
    siteti: SitetiClient,
    *,
    policy: RetryPolicy,
    backoff: RetryPolicy = ERASURE_BACKOFF,
    limit: int = 20,
) -> dict[int, str]:
    """Retry the due pending erasures' Siteti deletions (claimed for `CLAIM_LEASE`, so one
    worker each across instances); {erasure id: status}."""
    claimed = await pool.fetch(_CLAIM_DUE, limit, CLAIM_LEASE)
    outcomes: dict[int, str] = {}
    for row in claimed:
        left = await attempt(
            pool,
            siteti,
            row["id"],
            row["contact_ids"],
            row["attempts"],
            policy=policy,
            backoff=backoff,
        )
        outcomes[row["id"]] = "pending" if left else "done"
    return outcomes
