"""Retention: what is older than `RETENTION_DAYS` (90) goes, in small batches.

What goes, and the time each is judged by (the cutoff is `now - RETENTION_DAYS`, strictly
before it goes):

| what                                    | judged by     | only when                       |
|-----------------------------------------|---------------|---------------------------------|
| `audit_log` rows                        | `recorded_at` | always                          |
| `dead_letters` (payload and all)        | `updated_at`  | settled: `completed`, `failed`  |
| `siteti_webhook_events`                 | `received_at` | always                          |
| `filedrop_files`                        | `finished_at` | settled: `processed`, `failed`  |
| `poller_tracking`                       | `updated_at`  | settled: `emitted`, `failed`    |
| `number_confirmations` (and links)      | `requested_at`| settled: not `requested`        |
| `sent_messages` (event payload and all) | `updated_at`  | always                          |
| `flagged_numbers`                       | `flagged_at`  | always (the number is tried again) |
| files in FILEDROP_DIR/processed, failed | newest mtime of a file and its `.report.json` | always |

Why these columns: `recorded_at`, not `occurred_at` (the provider's clock: a back-dated or
late event must not go the day it arrives); a settled row's last change is when it was settled,
so an entry an operator closed yesterday stays visible for the whole period. A moved file keeps
the legacy system's mtime, its report is written when it was read: the pair goes together, once
both are old.

Dead letters still open (`pending`, `processing`, `manual_review`) are never deleted however
old: each is a customer's message an operator must still see and decide on. Those dead-lettered
before the cutoff are counted in the report (`open_dead_letters`) so that the decision is made:
resolve or close them (`bridge dlq resolve|close`) and the next round deletes them once settled
for the period. The erasure log (`erasures`) is the legal record of erasures and is never
deleted here; nor are customers (the directory) or the outbox (relayed, then deleted, within
seconds).

Deleting a record forgets that it was handled: a poller row still returned by `POLLER_QUERY`
after its tracking row went is emitted again, and a file dropped again after its record went is
read again. Keep the poller's query to rows younger than `RETENTION_DAYS` (its docstring asks
for a window of days), and do not re-drop exports older than that.

Batches: each statement deletes at most `batch_size` (5,000) rows picked by primary key (`ctid`
where the key is text or composite), `FOR UPDATE SKIP LOCKED`, in its own short transaction:
it never waits on, nor long blocks, a row the services hold. The two large tables are searched
by their time's index (`audit_log_recorded_idx`, `siteti_webhook_events_received_idx`).

It runs in every dispatcher (`run_periodically`, every `RETENTION_INTERVAL_SECONDS`), one
instance at a time: a Redis lease (SET NX PX, renewed by its owner while the round runs,
released after) and a round marker (SET NX PX for the interval) so that N instances make one
round per interval between them, not N (a round that failed is made again an interval later).
`bridge retention run [--dry-run]` runs one round under the same lease, whenever asked.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
from redis.asyncio import Redis
from redis.exceptions import RedisError

from bridge.logs import get_logger
from bridge.metrics import RETENTION_DELETED

log = get_logger("dispatcher.retention")

BATCH_SIZE = 5000
LEASE_KEY = "bridge:retention:lease"
# Long enough for a slow batch; the owner renews it every third while the round runs.
LEASE_SECONDS = 60
OPEN_DEAD_LETTERS = ("pending", "processing", "manual_review")
FILE_DIRS = ("processed", "failed")
REPORT_SUFFIX = ".report.json"


# --- the plan (pure) ---------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """Rows of `table` whose `column` is before the cutoff go, when `settled` (SQL) holds."""

    table: str
    column: str
    key: str = "id"  # what a batch is picked by: the primary key, or ctid
    settled: str = ""

    @property
    def condition(self) -> str:
        extra = f" AND {self.settled}" if self.settled else ""
        return f"{self.column} < $1{extra}"

    def count_sql(self) -> str:
        return f"SELECT count(*) FROM {self.table} WHERE {self.condition}"  # noqa: S608 - fixed

    def delete_sql(self) -> str:
        # FOR UPDATE re-checks the condition on the row's latest version (a dead letter
        # reopened meanwhile is not taken); SKIP LOCKED leaves rows a service holds to later.
        return (
            f"DELETE FROM {self.table} WHERE {self.key} = ANY(ARRAY("  # noqa: S608 - fixed
            f"SELECT {self.key} FROM {self.table} WHERE {self.condition}"
            " LIMIT $2 FOR UPDATE SKIP LOCKED))"
        )


RULES = (
    Rule("audit_log", "recorded_at"),
    Rule("dead_letters", "updated_at", settled="status IN ('completed', 'failed')"),
    Rule("siteti_webhook_events", "received_at", key="ctid"),
    Rule("filedrop_files", "finished_at", settled="status IN ('processed', 'failed')"),
    Rule("poller_tracking", "updated_at", key="ctid", settled="status IN ('emitted', 'failed')"),
    # Answered or expired number confirmations (the candidate number, sealed); their links
    # to waiting events go with them (ON DELETE CASCADE).
    Rule("number_confirmations", "requested_at", settled="status <> 'requested'"),
    Rule("sent_messages", "updated_at", key="message_id"),
    Rule("flagged_numbers", "flagged_at", key="phone_index"),
)

OPEN_DEAD_LETTERS_SQL = (
    "SELECT count(*) FROM dead_letters WHERE status = ANY($2::text[]) AND created_at < $1"
)


@dataclass(frozen=True)
class Plan:
    cutoff: datetime
    rules: tuple[Rule, ...] = RULES


def plan(now: datetime, days: int) -> Plan:
    """What a round at `now` deletes: everything the rules name from before `now - days`."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if days < 1:
        # 0 would delete everything, the audit trail of messages in flight included.
        raise ValueError(f"RETENTION_DAYS must be at least 1, not {days}")
    return Plan(cutoff=now - timedelta(days=days))


def expired_files(entries: Iterable[tuple[str, float]], cutoff: datetime) -> list[str]:
    """Names (of `(name, mtime)` entries of one directory) to delete: a file and its report
    are one group, which goes once its newest member is older than the cutoff."""
    groups: dict[str, list[tuple[str, float]]] = {}
    for name, mtime in entries:
        stem = name.removesuffix(REPORT_SUFFIX)
        groups.setdefault(stem, []).append((name, mtime))
    limit = cutoff.timestamp()
    return sorted(
        name
        for members in groups.values()
        if max(mtime for _, mtime in members) < limit
        for name, _ in members
    )


@dataclass(frozen=True)
class Report:
    """What a round deleted (or, in a dry run, would delete)."""

    cutoff: datetime
    dry_run: bool
    rows: dict[str, int]  # per table
    files: int | None  # None: FILEDROP_DIR is not here (a dispatcher without the volume)
    open_dead_letters: int  # open, dead-lettered before the cutoff: kept

    def lines(self) -> list[str]:
        verb = "would delete" if self.dry_run else "deleted"
        out = [f"cutoff {self.cutoff.isoformat()}" + (" (dry run)" if self.dry_run else "")]
        width = max(len(table) for table in [*self.rows, "files"])
        out += [f"{verb} {table:<{width}} {count:>9}" for table, count in self.rows.items()]
        if self.files is None:
            out.append(f"{verb} {'files':<{width}} {'-':>9}  (FILEDROP_DIR not found)")
        else:
            out.append(f"{verb} {'files':<{width}} {self.files:>9}")
        out.append(
            f"kept {self.open_dead_letters} open dead letters older than the cutoff"
            f" ({', '.join(OPEN_DEAD_LETTERS)}): resolve or close them"
        )
        return out

    def summary(self) -> dict[str, object]:
        return {
            "cutoff": self.cutoff.isoformat(),
            "dry_run": self.dry_run,
            "rows": self.rows,
            "files": self.files,
            "open_dead_letters": self.open_dead_letters,
        }


# --- the adapter: SQL and files ---------------------------------------------------------


def _rows_affected(status: str) -> int:
    return int(status.rsplit(" ", 1)[-1])  # asyncpg's command tag: "DELETE 5000"


async def _delete_rows(pool: asyncpg.Pool, rule: Rule, cutoff: datetime, batch_size: int) -> int:
    total = 0
    while True:
        deleted = _rows_affected(await pool.execute(rule.delete_sql(), cutoff, batch_size))
        total += deleted
        if deleted < batch_size:
            return total


def _listing(directory: Path) -> list[tuple[str, float]]:
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return []
    listing: list[tuple[str, float]] = []
    for entry in entries:
        with contextlib.suppress(FileNotFoundError):  # gone since the scan
            if entry.is_file(follow_symlinks=False):  # never follow a link out of the drop
                listing.append((entry.name, entry.stat(follow_symlinks=False).st_mtime))
    return listing


def _delete_files(root: Path, cutoff: datetime, dry_run: bool) -> int | None:
    if not root.is_dir():
        return None
    count = 0
    for sub in FILE_DIRS:
        directory = root / sub
        for name in expired_files(_listing(directory), cutoff):
            if not dry_run:
                (directory / name).unlink(missing_ok=True)
            count += 1
    return count


async def run(
    pool: asyncpg.Pool,
    filedrop_dir: Path,
    the_plan: Plan,
    *,
    dry_run: bool = False,
    batch_size: int = BATCH_SIZE,
) -> Report:
    """Carry out `the_plan` (or, with `dry_run`, count what it would delete)."""
    cutoff = the_plan.cutoff
    rows: dict[str, int] = {}
    for rule in the_plan.rules:
        if dry_run:
            rows[rule.table] = int(await pool.fetchval(rule.count_sql(), cutoff))
        else:
            rows[rule.table] = await _delete_rows(pool, rule, cutoff, batch_size)
    files = await asyncio.to_thread(_delete_files, filedrop_dir, cutoff, dry_run)
    if not dry_run:
        for table, count in [*rows.items(), ("files", files or 0)]:
            RETENTION_DELETED.labels(table).inc(count)
    still_open = await pool.fetchval(OPEN_DEAD_LETTERS_SQL, cutoff, list(OPEN_DEAD_LETTERS))
    return Report(cutoff, dry_run, rows, files, int(still_open))


# --- one round at a time ----------------------------------------------------------------

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class Lease:
    """One holder at a time across processes: SET NX PX, renewed and released only by its
    owner. Losing it mid-round (Redis away) does no harm: deletes are idempotent; the lease
    saves the duplicate work."""

    def __init__(
        self, redis: Redis, owner: str, *, key: str = LEASE_KEY, seconds: float = LEASE_SECONDS
    ) -> None:
        self.redis = redis
        self.owner = owner
        self.key = key
        self.seconds = seconds
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)

    @property
    def _ms(self) -> int:
        return max(1, int(self.seconds * 1000))

    async def acquire(self) -> bool:
        return bool(await self.redis.set(self.key, self.owner, nx=True, px=self._ms))

    async def renew(self) -> bool:
        return bool(await self._renew(keys=[self.key], args=[self.owner, self._ms]))

    async def release(self) -> None:
        await self._release(keys=[self.key], args=[self.owner])

    async def _keep(self) -> None:
        while True:
            await asyncio.sleep(self.seconds / 3)
            try:
                if not await self.renew():
                    log.warning("retention_lease_lost", key=self.key, owner=self.owner)
                    return
            except RedisError as exc:
                log.warning("retention_lease_renew_failed", error=repr(exc))

    @contextlib.asynccontextmanager
    async def held(self) -> AsyncIterator[bool]:
        """True (and renewed while the body runs) when this owner got the lease."""
        if not await self.acquire():
            yield False
            return
        keeper = asyncio.create_task(self._keep())
        try:
            yield True
        finally:
            keeper.cancel()
            with contextlib.suppress(RedisError):  # else it lapses by itself
                await asyncio.shield(self.release())


async def scheduled_round(
    pool: asyncpg.Pool,
    lease: Lease,
    filedrop_dir: Path,
    *,
    now: datetime,
    days: int,
    interval_seconds: float,
) -> Report | None:
    """The dispatcher's round: None when another instance runs one, or ran one within the
    interval (the round marker, taken under the lease)."""
    the_plan = plan(now, days)
    async with lease.held() as held:
        marker = f"{lease.key}:round"
        px = max(1, int(interval_seconds * 1000))
        if not held or not await lease.redis.set(marker, lease.owner, nx=True, px=px):
            return None
        return await run(pool, filedrop_dir, the_plan)


async def run_periodically(
    pool: asyncpg.Pool,
    redis: Redis,
    filedrop_dir: Path,
    *,
    days: int,
    interval_seconds: float,
    owner: str,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> None:
    """Forever: a round (if no instance made one within the interval), then the interval's
    sleep. A start makes a round at once, so restarts more often than the interval do not
    starve it; the marker keeps them from multiplying it. Errors are logged, not raised."""
    lease = Lease(redis, owner)
    while True:
        try:
            report = await scheduled_round(
                pool,
                lease,
                filedrop_dir,
                now=clock(),
                days=days,
                interval_seconds=interval_seconds,
            )
            if report is not None:
                log.info("retention_round", **report.summary())
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.error("retention_round_failed", error=repr(exc))
        await asyncio.sleep(interval_seconds)
