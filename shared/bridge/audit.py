"""The audit trail: a row per step of a message's life, relayed to the audit topic.

`record` writes the audit row and its outbox row in the caller's transaction, so the audit
store and the audit topic cannot disagree; `OutboxRelay` publishes outbox rows to Kafka.

The relay runs wherever outbox rows are written: in receipts and in every dispatcher
(`relay_outbox`). Several relays share the table safely: a batch is claimed with
`SELECT … FOR UPDATE SKIP LOCKED` and deleted in the same transaction once Kafka acknowledged
every record, so concurrent relays never hold, or send, the same row. Delivery is at least
once: a relay that dies (or times out) after Kafka's acknowledgement but before its commit
leaves the rows to be sent again, as docs/events.md warns consumers. Records keep the outbox's
order within one relay's batch, not across relays.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import KW_ONLY, dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson

from .events import AUDIT_TOPIC
from .kafka import DurableProducer
from .logs import get_logger
from .metrics import OUTBOX_LAG
from .retry import OUTAGE_BACKOFF

log = get_logger(__name__)

# Stages in the order a reader expects them when timestamps tie.
STAGES = (
    "received",
    "double_fire_suspected",  # held: a second event for money already announced (issue 12)
    # Number confirmation (issue 12; dispatcher.confirmation): asked, then answered, before
    # what was held is sent (or dead-lettered) in the same second.
    "confirmation_requested",
    "number_confirmed",
    "number_declined",
    "dispatched",
    "dead_lettered",
    "retried",
    "resolved",
    "sent",
    "delivered",
    "read",
    "failed",
    "replied",
)
STAGE_RANK = {stage: rank for rank, stage in enumerate(STAGES)}


async def record(
    conn: asyncpg.Connection,
    *,
    reference: str,
    stage: str,
    source: str,
    detail: dict[str, Any],
    occurred_at: datetime | None = None,
    customer_hash: str | None = None,
    also: tuple[str, Sequence[Any]] | None = None,
) -> None:
    """Append one audit row and its outbox row, in one statement: atomic alone, or part of
    the caller's transaction.

    `customer_hash` (bridge.protect.customer_key) says whose transaction it is, so that an
    erasure finds the row; it is not relayed. `also` is one more data-modifying statement
    and its arguments (numbered from $9), run in the same statement (still one round trip).
    """
    when = occurred_at or datetime.now(UTC)
    message = {
        "reference": reference,
        "stage": stage,
        "source": source,
        "occurred_at": when.isoformat(),
        "detail": detail,
    }
    args = (reference, stage, source, when, detail, customer_hash, AUDIT_TOPIC.name, message)
    if also is None:
        await conn.execute(_RECORD, *args)
    else:
        statement, more = also
        await conn.execute(f"{_RECORD_ALSO}\n{statement}", *args, *more)


# Both rows in one statement (one round trip, and no transaction of its own needed): the
# dispatcher writes two audit records per event on its hot path (issue 11).
_RECORD = """
WITH audit AS (
  INSERT INTO audit_log (reference, stage, source, occurred_at, detail, customer_hash)
  VALUES ($1, $2, $3, $4, $5, $6)
)
INSERT INTO outbox (topic, key, payload) VALUES ($7, $1, $8)
"""
_RECORD_ALSO = _RECORD.replace("\nINSERT INTO outbox", ",\noutbox AS (INSERT INTO outbox") + ")"


async def record_now(pool: asyncpg.Pool, **kwargs: Any) -> None:
    async with pool.acquire() as conn:
        await record(conn, **kwargs)


async def trace_id_of(pool: asyncpg.Pool, reference: str) -> str | None:
    """The trace the dispatcher last received the reference's event in (its `received` row's
    `trace_id`), for lines about the reference from a participant without the trace."""
    value = await pool.fetchval(
        "SELECT detail->>'trace_id' FROM audit_log WHERE reference = $1 AND stage = 'received'"
        " AND detail->>'trace_id' IS NOT NULL ORDER BY id DESC LIMIT 1",
        reference,
    )
    return value if isinstance(value, str) else None


async def history(pool: asyncpg.Pool, reference: str) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        "SELECT stage, source, occurred_at, recorded_at, detail FROM audit_log"
        " WHERE reference = $1 ORDER BY occurred_at, id",
        reference,
    )
    entries = [dict(row) for row in rows]
    # Siteti's webhooks are not ordered and carry whole seconds: sort by the second, then by
    # the stage's natural rank (so a 'dispatched' at .4 s stays before a 'sent' stamped .0 s).
    entries.sort(
        key=lambda e: (
            e["occurred_at"].replace(microsecond=0),
            STAGE_RANK.get(e["stage"], len(STAGES)),
        )
    )
    return entries


def as_json(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`history`'s rows as `GET /audit/{reference}` and `bridge audit` show them: times in
    ISO 8601."""
    return [
        {
            "stage": e["stage"],
            "source": e["source"],
            "occurred_at": e["occurred_at"].isoformat(),
            "recorded_at": e["recorded_at"].isoformat(),
            "detail": e["detail"],
        }
        for e in entries
    ]


@dataclass
class OutboxRelay:
    """Moves outbox rows to Kafka in batches; a row is deleted only after Kafka acked it."""

    pool: asyncpg.Pool
    producer: DurableProducer
    _: KW_ONLY
    batch_size: int = 500
    idle_seconds: float = 0.2
    # A batch that takes longer (Kafka or PostgreSQL gone mid-batch) is given up and its
    # rows unlocked: the next attempt sends them again rather than waiting on a dead peer.
    timeout_seconds: float = 30.0

    async def relay_once(self) -> int:
        async with asyncio.timeout(self.timeout_seconds):
            return await self._relay_batch()

    async def _relay_batch(self) -> int:
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                "SELECT id, topic, key, payload FROM outbox ORDER BY id"
                " LIMIT $1 FOR UPDATE SKIP LOCKED",
                self.batch_size,
            )
            if not rows:
                return 0
            futures = [
                await self.producer.send(
                    row["topic"], value=orjson.dumps(row["payload"]), key=row["key"].encode()
                )
                for row in rows
            ]
            await asyncio.gather(*futures)
            await conn.execute(
                "DELETE FROM outbox WHERE id = ANY($1::bigint[])", [r["id"] for r in rows]
            )
            return len(rows)

    async def run(self) -> None:
        """Relay until cancelled. Every failure (Kafka or PostgreSQL away, restarting) is
        retried on `OUTAGE_BACKOFF`, so relaying resumes within seconds of their return; it
        never stops for good."""
        failures = 0
        while True:
            try:
                sent = await self.relay_once()
                OUTBOX_LAG.set(await self.pool.fetchval("SELECT count(*) FROM outbox"))
            except Exception as exc:
                failures += 1
                log.warning("outbox_relay_error", error=repr(exc), failures=failures)
                await asyncio.sleep(OUTAGE_BACKOFF.delay(failures - 1))
                continue
            failures = 0
            if sent < self.batch_size:
                await asyncio.sleep(self.idle_seconds)


async def relay_outbox(
    pool: asyncpg.Pool,
    bootstrap_servers: str,
    *,
    kafka_options: Mapping[str, Any] | None = None,
    **options: Any,
) -> None:
    """Relay until cancelled, with a producer of its own. It starts lazily, so a Kafka that
    is away only delays relaying (`OutboxRelay.run` retries); `kafka_options` are the
    connection's security (`bridge.kafka.client_options`), `options` go to `OutboxRelay`."""
    producer = DurableProducer(bootstrap_servers, kafka_options)
    try:
        await OutboxRelay(pool, producer, **options).run()
    finally:
        await producer.stop()
