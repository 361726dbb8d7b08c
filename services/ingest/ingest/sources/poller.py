"""The database poller: rows of a configured view or query become canonical events, once.

Every `POLLER_INTERVAL_SECONDS` (120) it runs `POLLER_QUERY` (required, e.g.
`SELECT * FROM bridge_demo_orders_ready`) in a read-only transaction on `POLLER_DATABASE_URL`
(default `DATABASE_URL`; it never writes there) and emits each row it has not emitted before
as a canonical event, priority `bulk`, provider `POLLER_SOURCE_NAME` (`dbpoll`).

Columns (names as returned by the query; use `AS` to rename):

| column                  | becomes                                  | required                    |
|-------------------------|------------------------------------------|-----------------------------|
| `source_id`             | tracking identity (text, unique per row) | yes                         |
| `event_type`            | the canonical type (`order.completed`…)  | yes                         |
| `transaction_reference` | subject `<source>:<reference>`           | no, defaults to `source_id` |
| `amount`                | `data.amount` (numeric or `12,500.00`)   | yes (use 0 when none)       |
| `currency`              | `data.currency`                          | no, NGN                     |
| `account_number`, `email`, `phone`, `name` | `data.customer`       | one of the first three      |
| `occurred_at`           | `data.occurred_at` (naive = WAT)         | no                          |
| `description`, `reason`, `channel`, `next_due_date` | the `data` fields of those names | no      |
| anything else           | `data.details[column]` as text (NULL dropped); plus `source_id` | |

Tracking (table `poller_tracking`, in `DATABASE_URL`, key `(source, source_id)`):

1. **Claim** the batch's rows (`POLLER_BATCH_SIZE`) in one short transaction:
   `INSERT … ON CONFLICT DO UPDATE … WHERE <claim expired or failed row changed> RETURNING`.
   A row is returned to exactly one poller: a new row, a row whose claim is older than
   `POLLER_LEASE_SECONDS` (its poller died), or a failed row whose content has changed since
   (fixed at the source). Emitted rows and live claims are never returned. The claim takes
   `pg_advisory_xact_lock` on the source name first, so concurrent pollers' claims run one
   after the other (short, and no deadlock however their batches overlap).
2. **Publish** the claimed rows' events to Kafka and wait for acks=all.
3. **Mark** them `emitted` (event id, time). Unmappable rows (bad amount, unknown type, no
   customer, a value the canonical model refuses: a `0001-01-01` or infinite timestamp, an
   over-long text…) are marked `failed` with the reason and logged; the rest of the batch goes
   on. A row whose `source_id` cannot be a tracking key (over 500 characters) is skipped and
   logged, since claiming it would fail every poll.
   A row whose publish failed is released (re-claimable at the next poll).

Why a customer gets exactly one message: delivery to Kafka is at-least-once, the message is
exactly once. A poller killed between publish and mark leaves the row `claimed`; after the
lease another poller re-claims it and publishes it again with the same event id and dedupe key
(`<source>:<reference>:<type>`): both derive from the row, not from the time or the poller
(`bridge.events.new_event`). The dispatcher reserves that key in Redis before calling Siteti
and keeps it `done` for `DEDUPE_TTL_SECONDS` (7 days, far longer than the lease), so the second
copy is acknowledged without a send; were both copies in flight at once, the Siteti
Idempotency-Key (derived from the same key) still makes it one message. Two pollers never
both publish a row inside the lease (the claim), so duplicates on Kafka come only from crashes.

A row claimed by a poller that died and no longer returned by the query stays `claimed`; each
poll logs how many such stale claims there are (`poller_stale_claims`) for an operator to look
at. To resend a row on purpose, delete its tracking row.

Keep the query to rows still worth a message (e.g. `WHERE ready_at > now() - interval '7
days'`): every poll reads its whole result (streamed in batches) and skips tracked rows.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import orjson

from bridge.config import Settings, get_settings
from bridge.db import connect, create_pool
from bridge.events import CanonicalEvent
from bridge.kafka import DurableProducer, Publisher, client_options
from bridge.logs import get_logger
from bridge.metrics import POLLER_LAST_SUCCESS, POLLER_POLLS, POLLER_ROWS
from bridge.protect import Sealer, sealer

from . import (
    EVENT_FIELDS,
    RowError,
    Stopper,
    as_text,
    build_event,
    metrics_endpoint,
    send_all,
    worker_id,
)

log = get_logger("ingest.sources.poller")

_CLAIM = """
INSERT INTO poller_tracking AS t (source, source_id, status, claimed_by, claimed_at, row_hash)
SELECT $1, r.source_id, 'claimed', $2, now(), r.row_hash
  FROM unnest($3::text[], $4::text[]) AS r(source_id, row_hash)
 ORDER BY r.source_id
ON CONFLICT (source, source_id) DO UPDATE
   SET status = 'claimed', claimed_by = EXCLUDED.claimed_by, claimed_at = now(),
       attempts = t.attempts + 1, row_hash = EXCLUDED.row_hash, updated_at = now()
 WHERE (t.status = 'claimed' AND t.claimed_at < now() - make_interval(secs => $5))
    OR (t.status = 'failed' AND t.row_hash IS DISTINCT FROM EXCLUDED.row_hash)
RETURNING t.source_id
"""

_MARK_EMITTED = """
UPDATE poller_tracking AS t
   SET status = 'emitted', event_id = e.event_id, event_type = e.event_type,
       reference = e.reference, emitted_at = now(), error = NULL, updated_at = now()
  FROM unnest($3::text[], $4::text[], $5::text[], $6::text[])
       AS e(source_id, event_id, event_type, reference)
 WHERE t.source = $1 AND t.source_id = e.source_id AND t.claimed_by = $2
   AND t.status = 'claimed'
"""

_MARK_FAILED = """
UPDATE poller_tracking AS t
   SET status = 'failed', error = f.error, updated_at = now()
  FROM unnest($3::text[], $4::text[]) AS f(source_id, error)
 WHERE t.source = $1 AND t.source_id = f.source_id AND t.claimed_by = $2
   AND t.status = 'claimed'
"""

# A publish failed: keep the row claimed but with an expired lease, so the next poll retries.
_RELEASE = """
UPDATE poller_tracking AS t
   SET claimed_at = '-infinity', error = f.error, updated_at = now()
  FROM unnest($3::text[], $4::text[]) AS f(source_id, error)
 WHERE t.source = $1 AND t.source_id = f.source_id AND t.claimed_by = $2
   AND t.status = 'claimed'
"""

_STALE = """
SELECT count(*) FROM poller_tracking
 WHERE source = $1 AND status = 'claimed' AND claimed_at < now() - make_interval(secs => $2)
"""


@dataclass(frozen=True)
class Candidate:
    """One source row, mapped: `event` when usable, else `error`."""

    source_id: str
    row_hash: str
    event: CanonicalEvent | None = None
    error: str | None = None


@dataclass
class PollReport:
    rows: int = 0  # rows the query returned
    claimed: int = 0
    emitted: int = 0
    failed: int = 0  # unmappable rows marked failed
    unpublished: int = 0  # publish errors (released for the next poll)
    skipped: int = 0  # rows without a source_id, or repeated within one result
    event_ids: list[str] = field(default_factory=list)

    def add(self, other: PollReport) -> None:
        self.rows += other.rows
        self.claimed += other.claimed
        self.emitted += other.emitted
        self.failed += other.failed
        self.unpublished += other.unpublished
        self.skipped += other.skipped
        self.event_ids.extend(other.event_ids)

    def count(self) -> None:
        """Add this report's rows to `bridge_poller_rows_total`."""
        for outcome, rows in (
            ("emitted", self.emitted),
            ("failed", self.failed),
            ("unpublished", self.unpublished),
            ("skipped", self.skipped),
        ):
            POLLER_ROWS.labels(outcome).inc(rows)


def row_hash(row: Mapping[str, Any]) -> str:
    """A fingerprint of the row's content (a failed row is retried when it changes)."""
    canonical = {str(k): as_text(v) for k, v in row.items()}
    return hashlib.sha256(orjson.dumps(canonical, option=orjson.OPT_SORT_KEYS)).hexdigest()


def map_row(row: Mapping[str, Any], source: str) -> CanonicalEvent:
    """The canonical event for one polled row (columns: the module docstring), or RowError."""
    source_id = as_text(row.get("source_id"))
    if source_id is None:
        raise RowError("source_id is missing")
    values = {name: row.get(name) for name in EVENT_FIELDS}
    if as_text(values["transaction_reference"]) is None:
        values["transaction_reference"] = source_id
    details: dict[str, str] = {}
    for column, value in row.items():
        text = as_text(value)
        if column not in EVENT_FIELDS and text is not None:
            details[str(column)] = text
    return build_event(source, values, details)


#: A source_id longer than this cannot be tracked: the tracking key is a btree index, whose
#: entries PostgreSQL limits to about 2.7 kB (an insert over it fails the whole claim).
MAX_SOURCE_ID_LENGTH = 500


def trackable(source_id: str) -> bool:
    """Whether `source_id` can be a tracking key (PostgreSQL text refuses NUL)."""
    return len(source_id) <= MAX_SOURCE_ID_LENGTH and "\x00" not in source_id


def prepare(rows: Sequence[Mapping[str, Any]], source: str) -> tuple[list[Candidate], int]:
    """Map a batch of rows; returns the candidates and how many rows were skipped (no
    source_id, one that cannot be tracked, or one already seen earlier in the batch: such a
    row cannot be claimed or marked, and letting it into the claim would fail every poll)."""
    candidates: list[Candidate] = []
    seen: set[str] = set()
    skipped = 0
    for row in rows:
        source_id = as_text(row.get("source_id"))
        if source_id is None or not trackable(source_id) or source_id in seen:
            skipped += 1
            continue
        seen.add(source_id)
        fingerprint = row_hash(row)
        try:
            candidates.append(Candidate(source_id, fingerprint, event=map_row(row, source)))
        except RowError as exc:
            candidates.append(Candidate(source_id, fingerprint, error=str(exc)))
    return candidates, skipped


class Poller:
    """One poller. `poll_once` runs the query and handles every row in batches of
    `batch_size`: `prepare` (pure mapping), `claim`, `publish`, then `mark`."""

    def __init__(
        self,
        *,
        tracking: asyncpg.Pool,
        source_db: asyncpg.Pool,
        producer: Publisher,
        query: str,
        source: str = "dbpoll",
        lease_seconds: float = 300.0,
        batch_size: int = 200,
        send_timeout: float = 10.0,
        topic: str,
        seal: Sealer | None = None,
        owner: str | None = None,
    ) -> None:
        if not query.strip():
            raise ValueError("POLLER_QUERY is empty: set it to the view or query to poll")
        self.tracking = tracking
        self.source_db = source_db
        self.producer = producer
        self.query = query
        self.source = source
        self.lease_seconds = lease_seconds
        self.batch_size = max(1, batch_size)
        self.send_timeout = send_timeout
        self.topic = topic
        # The number a row gives is sealed before it leaves (bridge.protect).
        self.seal = seal or sealer(get_settings())
        self.owner = owner or worker_id()

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        tracking: asyncpg.Pool,
        source_db: asyncpg.Pool,
        producer: Publisher,
    ) -> Poller:
        return cls(
            tracking=tracking,
            source_db=source_db,
            producer=producer,
            query=settings.poller_query,
            source=settings.poller_source_name,
            lease_seconds=settings.poller_lease_seconds,
            batch_size=settings.poller_batch_size,
            send_timeout=settings.kafka_send_timeout_seconds,
            topic=settings.events_topic,
            seal=sealer(settings),
        )

    async def poll_once(self, stopping: asyncio.Event | None = None) -> PollReport:
        """One poll: the whole query result, batch by batch. When `stopping` is set, the
        current batch is finished and the rest left for the next poll."""
        report = PollReport()
        async with (
            self.source_db.acquire() as conn,
            conn.transaction(readonly=True, isolation="repeatable_read"),
        ):
            batch: list[Mapping[str, Any]] = []
            async for record in conn.cursor(self.query, prefetch=self.batch_size):
                batch.append(dict(record.items()))
                if len(batch) >= self.batch_size:
                    report.add(await self.process_batch(batch))
                    batch = []
                    if stopping is not None and stopping.is_set():
                        break
            else:
                if batch:
                    report.add(await self.process_batch(batch))
        stale = await self.tracking.fetchval(_STALE, self.source, self.lease_seconds)
        if stale:
            log.warning("poller_stale_claims", source=self.source, count=stale)
        return report

    async def process_batch(self, rows: Sequence[Mapping[str, Any]]) -> PollReport:
        candidates, skipped = prepare(rows, self.source)
        report = PollReport(rows=len(rows), skipped=skipped)
        if skipped:
            log.warning(
                "poller_rows_skipped",
                source=self.source,
                count=skipped,
                reason="source_id missing, repeated in the result, or not trackable"
                f" (NUL, longer than {MAX_SOURCE_ID_LENGTH})",
            )
        claimed = await self.claim(candidates)
        report.claimed = len(claimed)
        failed = [c for c in claimed if c.event is None]
        if failed:
            await self.mark_failed(failed)
            report.failed = len(failed)
            for candidate in failed:
                log.error(
                    "poller_row_failed",
                    source=self.source,
                    source_id=candidate.source_id,
                    reason=candidate.error,
                )
        ready = [c for c in claimed if c.event is not None]
        if ready:
            errors = await self.publish([c.event for c in ready if c.event is not None])
            sent = [c for c, error in zip(ready, errors, strict=True) if error is None]
            unsent = [(c, e) for c, e in zip(ready, errors, strict=True) if e is not None]
            await self.mark_emitted(sent)
            if unsent:
                await self.release(unsent)
                log.error(
                    "poller_publish_failed",
                    source=self.source,
                    count=len(unsent),
                    error=repr(unsent[0][1]),
                )
            report.emitted = len(sent)
            report.unpublished = len(unsent)
            report.event_ids = [c.event.id for c in sent if c.event is not None]
        if report.claimed:
            log.info(
                "poller_batch",
                source=self.source,
                rows=report.rows,
                emitted=report.emitted,
                failed=report.failed,
                unpublished=report.unpublished,
            )
        report.count()  # per batch: a poll that fails later still counts what it did
        return report

    async def claim(self, candidates: Sequence[Candidate]) -> list[Candidate]:
        """The candidates this poller now holds (see the module docstring)."""
        if not candidates:
            return []
        async with self.tracking.acquire() as conn, conn.transaction():
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
                f"bridge:poller:{self.source}",
            )
            rows = await conn.fetch(
                _CLAIM,
                self.source,
                self.owner,
                [c.source_id for c in candidates],
                [c.row_hash for c in candidates],
                float(self.lease_seconds),
            )
        won = {row["source_id"] for row in rows}
        return [c for c in candidates if c.source_id in won]

    async def publish(self, events: Sequence[CanonicalEvent]) -> list[BaseException | None]:
        return await send_all(self.producer, events, self.send_timeout, self.topic, self.seal)

    async def mark_emitted(self, sent: Sequence[Candidate]) -> None:
        if not sent:
            return
        events = [c.event for c in sent if c.event is not None]
        await self.tracking.execute(
            _MARK_EMITTED,
            self.source,
            self.owner,
            [c.source_id for c in sent],
            [e.id for e in events],
            [e.type for e in events],
            [e.reference for e in events],
        )

    async def mark_failed(self, failed: Sequence[Candidate]) -> None:
        await self.tracking.execute(
            _MARK_FAILED,
            self.source,
            self.owner,
            [c.source_id for c in failed],
            [(c.error or "unmappable")[:500] for c in failed],
        )

    async def release(self, unsent: Sequence[tuple[Candidate, BaseException]]) -> None:
        await self.tracking.execute(
            _RELEASE,
            self.source,
            self.owner,
            [c.source_id for c, _ in unsent],
            [f"publish failed: {e!r}"[:500] for _, e in unsent],
        )


async def run(settings: Settings, *, once: bool = False) -> int:
    """The poller process: poll every interval until SIGTERM (or once); exit status."""
    if not settings.poller_query.strip():
        log.error("poller_not_configured", reason="POLLER_QUERY is empty")
        return 2
    stopper = Stopper()
    stopper.install()
    tracking = await connect(settings.database_url, min_size=1, max_size=4)
    source_url = settings.poller_database_url or settings.database_url
    source_db = (
        tracking
        if source_url == settings.database_url
        else await create_pool(source_url, min_size=1, max_size=2)
    )
    # Replaces itself if a broker restart leaves it unable to send (bridge.kafka).
    producer = DurableProducer(settings.kafka_bootstrap_servers, client_options(settings))
    await producer.start()
    poller = Poller.from_settings(
        settings, tracking=tracking, source_db=source_db, producer=producer
    )
    log.info(
        "poller_started",
        source=poller.source,
        interval=settings.poller_interval_seconds,
        owner=poller.owner,
    )
    port = 0 if once else settings.poller_metrics_port
    stop_metrics = metrics_endpoint("poller", settings.ingest_host, port)
    status = 0
    try:
        while not stopper.stopping.is_set():
            started = time.monotonic()
            try:
                report = await poller.poll_once(stopper.stopping)
                log.info(
                    "poller_poll",
                    source=poller.source,
                    rows=report.rows,
                    emitted=report.emitted,
                    failed=report.failed,
                    unpublished=report.unpublished,
                    seconds=round(time.monotonic() - started, 3),
                )
                POLLER_POLLS.labels("ok").inc()
                POLLER_LAST_SUCCESS.set_to_current_time()
            except Exception as exc:
                # The source or the tracking database is down, or the query is wrong: say so
                # and try again at the next interval.
                log.error("poller_poll_failed", source=poller.source, error=repr(exc))
                POLLER_POLLS.labels("error").inc()
                status = 1
            if once:
                break
            elapsed = time.monotonic() - started
            await stopper.sleep(settings.poller_interval_seconds - elapsed)
    finally:
        stop_metrics()
        await producer.stop()
        if source_db is not tracking:
            await source_db.close()
        await tracking.close()
        stopper.uninstall()
        log.info("poller_stopped", source=poller.source)
    return status if once else 0
