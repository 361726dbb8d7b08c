"""The dead-letter store: a PostgreSQL table (the operators' work list) plus the dead-letter
topic, written through the outbox in the same transaction as the row and its audit entry.

Life of an entry: `put` (pending or manual_review: what the pipeline decided) →
`claim`/`claim_due` (processing: one worker at a time, across instances) → the retry's
outcome: completed (`mark`), or failed again — the pipeline `put`s its new decision and
`settle_retry` counts the retry, burns the key generation if needed and schedules the next
attempt, all computed in Python by `after_retry` — or an operator's `resolve`/`close`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import asyncpg
import orjson

from bridge.audit import history, record
from bridge.events import DEAD_LETTER_TOPIC, CanonicalEvent
from bridge.metrics import DEAD_LETTERS

from .outcomes import (
    MISSING_CONTACT,
    SITETI_UNAVAILABLE,
    STATUSES,
    TEMPLATE_NOT_APPROVED,
    UNPROCESSABLE,
    Status,
)
from .retry import RetryPolicy

# What a retry (by the retrier, the CLI or the API) may take an entry from.
RETRYABLE: tuple[Status, ...] = ("pending", "manual_review", "failed")
# What an operator may settle: resolve (→ completed) or close (→ failed).
RESOLVABLE: tuple[Status, ...] = ("pending", "manual_review", "failed")
CLOSABLE: tuple[Status, ...] = ("pending", "manual_review")

# Backoff between retries of one entry: 1 min × 2^(retries so far), capped at 1 h; the
# retrier gives up (→ failed) after `max_retries`. Pass another policy to change it.
DLQ_RETRY_POLICY = RetryPolicy(base_seconds=60.0, factor=2.0, max_seconds=3600.0, max_retries=10)

# Siteti answers that only the trigger call gives and that say nothing was sent: Siteti keeps
# that answer under the call's Idempotency-Key, so the next try must use a new key
# (`key_generation` + 1). Other answers (5xx, timeouts, a 409 for a reused key) say nothing
# certain about an earlier attempt under the same key, so they keep it.
REKEY_REASONS = frozenset({TEMPLATE_NOT_APPROVED, "template_not_found"})


async def put(
    pool: asyncpg.Pool,
    event: CanonicalEvent,
    *,
    reason: str,
    status: Status,
    error: str,
    retry_in: timedelta | None = None,
    template_id: str | None = None,
) -> int:
    """Store (or update) the event's dead-letter entry; returns its id.

    `template_id` is the Siteti template the message needs (when one was chosen); the
    retrier asks Siteti about it for `template_not_approved` entries. A first refusal in
    `REKEY_REASONS` burns generation 0 of the Idempotency-Key (a later refusal under a retry
    burns the retry's generation: `settle_retry`).
    """
    return await _store(
        pool,
        _Row(
            dedupe_key=event.dedupe_key,
            reference=event.reference,
            provider=event.data.provider,
            event_type=event.type,
            payload=event.model_dump(mode="json"),
            kafka_key=event.data.customer.key,
        ),
        reason=reason,
        status=status,
        error=error,
        next_attempt=datetime.now(UTC) + retry_in if retry_in is not None else None,
        template_id=template_id,
    )


async def put_unprocessable(
    pool: asyncpg.Pool,
    error: str,
    *,
    event: CanonicalEvent | None = None,
    record: RecordPosition | None = None,
) -> int:
    """Store an event the pipeline cannot process (reason `unprocessable`, manual review).

    Either the parsed `event` that kept failing (a bug; `bridge dlq retry` re-runs it once
    fixed), or the raw `record` that is not a canonical event at all (an older or foreign
    producer's): it is kept as text, with where it was read, for a person to look at.
    Whatever the record holds is made storable first (PostgreSQL refuses NUL characters).
    """
    if event is not None:
        row = _Row(
            dedupe_key=event.dedupe_key,
            reference=storable(event.reference),
            provider=storable(event.data.provider),
            event_type=storable(event.type),
            payload=storable(event.model_dump(mode="json")),
            kafka_key=storable(event.data.customer.key),
        )
    elif record is not None:
        row = record.as_row()
    else:
        raise ValueError("put_unprocessable needs the event or the record")
    return await _store(
        pool, row, reason=UNPROCESSABLE, status="manual_review", error=storable(error)
    )


@dataclass(frozen=True)
class RecordPosition:
    """A Kafka record that could not be read as a canonical event, and where it was read."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes

    def as_row(self) -> _Row:
        where = f"{self.topic}/{self.partition}/{self.offset}"
        text = self.value[:_RAW_LIMIT].decode("utf-8", errors="backslashreplace")
        subject = _json_field(self.value, "subject")
        return _Row(
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
            kafka_key=storable((self.key or b"").decode("utf-8", errors="backslashreplace")),
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


@dataclass(frozen=True)
class _Row:
    """What a dead-letter row says about the event, whichever way it was read."""

    dedupe_key: str
    reference: str
    provider: str
    event_type: str
    payload: dict[str, Any]
    kafka_key: str


async def _store(
    pool: asyncpg.Pool,
    row: _Row,
    *,
    reason: str,
    status: Status,
    error: str,
    next_attempt: datetime | None = None,
    template_id: str | None = None,
) -> int:
    async with pool.acquire() as conn, conn.transaction():
        entry_id: int = await conn.fetchval(
            """
            INSERT INTO dead_letters
              (dedupe_key, reference, provider, event_type, payload, status, reason, last_error,
               next_attempt_at, template_id, key_generation)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
            ON CONFLICT (dedupe_key) DO UPDATE SET
              status = EXCLUDED.status, reason = EXCLUDED.reason, last_error = EXCLUDED.last_error,
              next_attempt_at = EXCLUDED.next_attempt_at, template_id = EXCLUDED.template_id,
              -- The pipeline's own attempts use generation 0: a refusal burns that one only.
              key_generation = GREATEST(dead_letters.key_generation, EXCLUDED.key_generation),
              updated_at = now()
            RETURNING id
            """,
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
            1 if reason in REKEY_REASONS else 0,
        )
        await conn.execute(
            "INSERT INTO outbox (topic, key, payload) VALUES ($1, $2, $3)",
            DEAD_LETTER_TOPIC.name,
            row.kafka_key,
            {
                "id": entry_id,
                "reason": reason,
                "status": status,
                "error": error,
                "event": row.payload,
            },
        )
        await record(
            conn,
            reference=row.reference,
            stage="dead_lettered",
            source="dispatcher",
            detail={
                "id": entry_id,
                "reason": reason,
                "status": status,
                "error": error,
                **({"template": template_id} if template_id else {}),
            },
        )
    DEAD_LETTERS.labels(reason).inc()
    return entry_id


# --- Reading and working the store (retrier, `bridge dlq`, the admin API) -------------------

_ENTRY_COLUMNS = (
    "id, dedupe_key, reference, provider, event_type, payload, status, reason, retry_count,"
    " last_error, next_attempt_at, created_at, updated_at, template_id, key_generation"
)


@dataclass(frozen=True)
class Entry:
    id: int
    dedupe_key: str
    reference: str
    provider: str
    event_type: str
    payload: dict[str, Any]
    status: str
    reason: str
    retry_count: int
    last_error: str | None
    next_attempt_at: datetime | None
    created_at: datetime
    updated_at: datetime
    template_id: str | None = None
    key_generation: int = 0  # the Idempotency-Key generation of the next trigger call
    # Set by `claim`/`claim_due`: the status the entry had before it was claimed.
    claimed_from: str | None = None

    @classmethod
    def from_row(cls, row: Any) -> Entry:
        values = dict(row)
        return cls(**{k: values[k] for k in cls.__dataclass_fields__ if k in values})

    def summary(self) -> dict[str, Any]:
        """The JSON shape of `bridge dlq list --json` and `GET /dlq` (keep these names)."""
        return {
            "id": self.id,
            "reference": self.reference,
            "status": self.status,
            "reason": self.reason,
            "retry_count": self.retry_count,
            "provider": self.provider,
            "event_type": self.event_type,
            "template_id": self.template_id,
            "last_error": self.last_error,
            "next_attempt_at": _iso(self.next_attempt_at),
            "created_at": _iso(self.created_at),
            "updated_at": _iso(self.updated_at),
        }

    def detail(self) -> dict[str, Any]:
        return {**self.summary(), "dedupe_key": self.dedupe_key, "payload": self.payload}


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def json_safe(value: Any) -> Any:
    """Audit details and rows as plain JSON values (datetimes as ISO-8601)."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])", re.IGNORECASE)
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_age(text: str) -> timedelta:
    """`90s`, `30m`, `2h`, `1d`, `1h30m` (a bare number is seconds) as a timedelta."""
    cleaned = text.strip().lower()
    if re.fullmatch(r"\d+(?:\.\d+)?", cleaned):
        return timedelta(seconds=float(cleaned))
    if not cleaned or _DURATION.sub("", cleaned).strip():
        raise ValueError(f"not a duration: {text!r} (use e.g. 90s, 30m, 2h, 1d, 1h30m)")
    return timedelta(
        seconds=sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION.findall(cleaned))
    )


@dataclass(frozen=True)
class Filters:
    """Which entries: every field set must hold. Ages count from when the entry was created."""

    statuses: tuple[str, ...] = ()
    reason: str | None = None
    provider: str | None = None
    older_than: timedelta | None = None
    newer_than: timedelta | None = None
    limit: int = 100

    def __post_init__(self) -> None:
        unknown = [s for s in self.statuses if s not in STATUSES]
        if unknown:
            raise ValueError(f"unknown status {unknown[0]!r} (one of {', '.join(STATUSES)})")
        if self.limit < 1:
            raise ValueError("limit must be at least 1")

    @classmethod
    def parse(
        cls,
        *,
        status: str | Sequence[str] | None = None,
        reason: str | None = None,
        provider: str | None = None,
        older_than: str | None = None,
        newer_than: str | None = None,
        limit: int | str | None = None,
    ) -> Filters:
        """From text (CLI options, query parameters); `status` may be a comma list."""
        parts = [status] if isinstance(status, str) else list(status or [])
        statuses = tuple(s.strip() for p in parts for s in p.split(",") if s.strip())
        try:
            count = int(limit) if limit not in (None, "") else 100
        except ValueError:
            raise ValueError(f"limit must be a whole number, not {limit!r}") from None
        return cls(
            statuses=statuses,
            reason=reason or None,
            provider=provider or None,
            older_than=parse_age(older_than) if older_than else None,
            newer_than=parse_age(newer_than) if newer_than else None,
            limit=count,
        )

    @property
    def narrowing(self) -> bool:
        """At least one condition besides the limit (bulk actions require one)."""
        return bool(
            self.statuses or self.reason or self.provider or self.older_than or self.newer_than
        )


async def list_entries(
    pool: asyncpg.Pool,
    status: str | Sequence[str] | None = None,
    reason: str | None = None,
    provider: str | None = None,
    older_than: timedelta | None = None,
    newer_than: timedelta | None = None,
    limit: int = 100,
) -> list[Entry]:
    """Entries matching every filter given, oldest first."""
    statuses = [status] if isinstance(status, str) else list(status or [])
    clauses: list[str] = []
    args: list[Any] = []

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    if statuses:
        clauses.append(f"status = ANY({arg(statuses)}::text[])")
    if reason:
        clauses.append(f"reason = {arg(reason)}")
    if provider:
        clauses.append(f"provider = {arg(provider)}")
    if older_than is not None:
        clauses.append(f"created_at <= now() - {arg(older_than)}::interval")
    if newer_than is not None:
        clauses.append(f"created_at >= now() - {arg(newer_than)}::interval")
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    rows = await pool.fetch(
        f"SELECT {_ENTRY_COLUMNS} FROM dead_letters {where} ORDER BY created_at, id"  # noqa: S608 - fixed clauses
        f" LIMIT {arg(limit)}",
        *args,
    )
    return [Entry.from_row(r) for r in rows]


async def list_matching(pool: asyncpg.Pool, filters: Filters) -> list[Entry]:
    return await list_entries(
        pool,
        status=filters.statuses,
        reason=filters.reason,
        provider=filters.provider,
        older_than=filters.older_than,
        newer_than=filters.newer_than,
        limit=filters.limit,
    )


async def get_entry(pool: asyncpg.Pool, id: int) -> Entry | None:
    row = await pool.fetchrow(f"SELECT {_ENTRY_COLUMNS} FROM dead_letters WHERE id = $1", id)  # noqa: S608
    return Entry.from_row(row) if row is not None else None


async def entry_history(pool: asyncpg.Pool, entry: Entry) -> list[dict[str, Any]]:
    """The audit trail of the entry's reference (every stage, from every service)."""
    return await history(pool, entry.reference)


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
        RETURNING {", ".join(f"d.{c.strip()}" for c in _ENTRY_COLUMNS.split(","))},
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
    wait: timedelta | None  # until the next attempt; None: not scheduled


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
        RETURNING {", ".join(f"d.{c.strip()}" for c in _ENTRY_COLUMNS.split(","))},
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


async def waiting_for_contact(
    pool: asyncpg.Pool,
    *,
    after_id: int = 0,
    limit: int = 100,
    providers: Sequence[str] | None = None,
) -> list[Entry]:
    """`missing_contact` entries in manual review, by id from `after_id` (a rolling cursor)."""
    rows = await pool.fetch(
        f"""
        SELECT {_ENTRY_COLUMNS} FROM dead_letters
        WHERE status = 'manual_review' AND reason = $1 AND id > $2
          AND ($4::text[] IS NULL OR provider = ANY($4::text[]))
        ORDER BY id LIMIT $3
        """,  # noqa: S608 - fixed columns
        MISSING_CONTACT,
        after_id,
        limit,
        list(providers) if providers else None,
    )
    return [Entry.from_row(r) for r in rows]


async def mark(
    pool: asyncpg.Pool,
    id: int,
    status: Status,
    error: str | None = None,
    next_attempt_at: datetime | None = None,
    *,
    retried: bool = False,
) -> Entry | None:
    """Set an entry's status (and error, next attempt); `retried` counts one more retry."""
    row = await pool.fetchrow(
        f"""
        UPDATE dead_letters SET status = $2, last_error = COALESCE($3, last_error),
          next_attempt_at = $4, retry_count = retry_count + $5, updated_at = now()
        WHERE id = $1 RETURNING {_ENTRY_COLUMNS}
        """,  # noqa: S608 - fixed columns
        id,
        status,
        error,
        next_attempt_at,
        1 if retried else 0,
    )
    return Entry.from_row(row) if row is not None else None


async def release(pool: asyncpg.Pool, entry: Entry) -> Entry | None:
    """Give a claimed entry back, untouched (the retry did not happen)."""
    row = await pool.fetchrow(
        f"""
        UPDATE dead_letters SET status = $2, updated_at = now()
        WHERE id = $1 AND status = 'processing' RETURNING {_ENTRY_COLUMNS}
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
          next_attempt_at = CASE WHEN $5::interval IS NULL THEN NULL ELSE now() + $5 END,
          updated_at = now()
        WHERE id = $1 RETURNING {_ENTRY_COLUMNS}
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
        RETURNING {_ENTRY_COLUMNS}
        """,  # noqa: S608 - fixed columns
        older_than,
        [SITETI_UNAVAILABLE, TEMPLATE_NOT_APPROVED],
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
            RETURNING {_ENTRY_COLUMNS}
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
