"""Reading the store: an entry as operators see it, filters, lists and look-ups (the
retrier, `bridge dlq` and the admin API)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from bridge.audit import history

from ..outcomes import MISSING_CONTACT, STATUSES, Status

# What a retry (by the retrier, the CLI or the API) may take an entry from.
RETRYABLE: tuple[Status, ...] = ("pending", "manual_review", "failed")
# What an operator may settle: resolve (→ completed) or close (→ failed).
RESOLVABLE: tuple[Status, ...] = ("pending", "manual_review", "failed")
CLOSABLE: tuple[Status, ...] = ("pending", "manual_review")

ENTRY_COLUMNS = (
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
    reference: str | None = None  # one transaction's entries (the console's story page)

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
        reference: str | None = None,
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
            reference=reference or None,
        )

    @property
    def narrowing(self) -> bool:
        """At least one condition besides the limit (bulk actions require one)."""
        return bool(
            self.statuses
            or self.reason
            or self.provider
            or self.older_than
            or self.newer_than
            or self.reference
        )


async def list_entries(
    pool: asyncpg.Pool,
    status: str | Sequence[str] | None = None,
    reason: str | None = None,
    provider: str | None = None,
    older_than: timedelta | None = None,
    newer_than: timedelta | None = None,
    limit: int = 100,
    reference: str | None = None,
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
    if reference:
        clauses.append(f"reference = {arg(reference)}")
    if older_than is not None:
        clauses.append(f"created_at <= now() - {arg(older_than)}::interval")
    if newer_than is not None:
        clauses.append(f"created_at >= now() - {arg(newer_than)}::interval")
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    rows = await pool.fetch(
        f"SELECT {ENTRY_COLUMNS} FROM dead_letters {where} ORDER BY created_at, id"  # noqa: S608 - fixed clauses
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
        reference=filters.reference,
    )


async def get_entry(pool: asyncpg.Pool, id: int) -> Entry | None:
    row = await pool.fetchrow(f"SELECT {ENTRY_COLUMNS} FROM dead_letters WHERE id = $1", id)  # noqa: S608
    return Entry.from_row(row) if row is not None else None


async def count_by_status_and_reason(
    pool: asyncpg.Pool, newer_than: timedelta | None = None
) -> list[asyncpg.Record]:
    """(status, reason, n) rows of entries created within `newer_than` (None: all): the
    figures of `GET /dlq/stats` and `bridge dlq stats`."""
    rows: list[asyncpg.Record] = await pool.fetch(
        "SELECT status, reason, count(*) AS n FROM dead_letters"
        " WHERE $1::interval IS NULL OR created_at >= now() - $1::interval"
        " GROUP BY status, reason ORDER BY status, reason",
        newer_than,
    )
    return rows


async def entry_history(pool: asyncpg.Pool, entry: Entry) -> list[dict[str, Any]]:
    """The audit trail of the entry's reference (every stage, from every service)."""
    return await history(pool, entry.reference)


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
        SELECT {ENTRY_COLUMNS} FROM dead_letters
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


def dead_letter_counts(
    rows: Sequence[Mapping[str, Any]], window: timedelta | None
) -> dict[str, Any]:
    """GET /dlq/stats's body from (status, reason, n) rows: totals by status, by reason, and
    by both."""
    by_status: dict[str, int] = {}
    by_reason: dict[str, int] = {}
    for row in rows:
        by_status[row["status"]] = by_status.get(row["status"], 0) + row["n"]
        by_reason[row["reason"]] = by_reason.get(row["reason"], 0) + row["n"]
    return {
        "window_seconds": int(window.total_seconds()) if window is not None else None,
        "total": sum(by_status.values()),
        "by_status": by_status,
        "by_reason": by_reason,
        "by_status_and_reason": [
            {"status": row["status"], "reason": row["reason"], "count": row["n"]} for row in rows
        ],
    }
