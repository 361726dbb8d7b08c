"""The dispatcher's gauges of state that no single event touches, read every
METRICS_REFRESH_SECONDS (bridge.metrics has their meaning):

- GLOBAL, from PostgreSQL and Redis: dead-letter depth by status and reason, the oldest open
  dead letter, the oldest outbox row, pending erasures, the governor's pause. Every instance
  reports the same values (dashboards take max()), so any one of them may die.
- per instance, from Kafka: the lag of each partition this instance owns (dashboards sum()).

The readings are pure (`dead_letter_readings`, `partition_lag`, `LabelledGauge`); the
adapters query. A failed read is logged and counted (`bridge_metrics_refresh_failures_total`)
and the gauges keep their last value: the worker never stops for it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Literal, NamedTuple, Protocol

import asyncpg
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from faust.exceptions import ConsumerNotStarted
from prometheus_client import Gauge

from bridge.config import Settings
from bridge.kafka import client_options
from bridge.logs import get_logger
from bridge.metrics import (
    CONSUMER_LAG,
    DEAD_LETTER_DEPTH,
    DEAD_LETTER_OLDEST,
    ERASURES_PENDING,
    GOVERNOR_PAUSE_REMAINING,
    METRICS_REFRESH_FAILURES,
    OUTBOX_OLDEST,
    elapsed_seconds,
)

from .governor import Governor
from .retention import OPEN_DEAD_LETTERS

log = get_logger("dispatcher.gauges")

# Ages are measured on the database's clock, the one that stamped the rows.
_DEAD_LETTERS_SQL = (
    "SELECT now() AS now, status, reason, count(*) AS entries, min(created_at) AS oldest"
    " FROM dead_letters WHERE status = ANY($1::text[]) GROUP BY status, reason"
)
# By primary key, not min(created_at): an index look-up however long the backlog grows.
_STORE_SQL = (
    "SELECT now() AS now,"
    " (SELECT created_at FROM outbox ORDER BY id LIMIT 1) AS outbox_oldest,"
    " (SELECT count(*) FROM erasures WHERE status = 'pending') AS erasures_pending"
)

Labels = tuple[str, ...]


class Partition(NamedTuple):
    topic: str
    partition: int


# --- readings (pure) -------------------------------------------------------------------------


class DeadLetterReading(NamedTuple):
    depth: dict[Labels, int]  # (status, reason) → open entries
    oldest_seconds: float  # 0 when none is open


def dead_letter_readings(rows: Iterable[Mapping[str, Any]]) -> DeadLetterReading:
    """Rows of `_DEAD_LETTERS_SQL` (now, status, reason, entries, oldest) as gauge values."""
    depth: dict[Labels, int] = {}
    oldest = 0.0
    for row in rows:
        depth[(str(row["status"]), str(row["reason"]))] = int(row["entries"])
        oldest = max(oldest, elapsed_seconds(row["oldest"], row["now"]))
    return DeadLetterReading(depth, oldest)


def age_seconds(oldest: datetime | None, now: datetime) -> float:
    return 0.0 if oldest is None else elapsed_seconds(oldest, now)


def partition_lag(
    owned: Iterable[Partition],
    highwaters: Mapping[Partition, int],
    committed: Mapping[Partition, int],
    earliest: Mapping[Partition, int],
) -> dict[Labels, int]:
    """(topic, partition) → highwater minus the group's committed offset. A partition with no
    commit yet (offset -1 or absent) is read from its earliest offset (auto_offset_reset)."""
    lag: dict[Labels, int] = {}
    for tp in owned:
        start = committed.get(tp, -1)
        if start < 0:
            start = earliest.get(tp, 0)
        lag[(tp.topic, str(tp.partition))] = max(0, highwaters.get(tp, start) - start)
    return lag


class LabelledGauge:
    """Sets a labelled gauge to a complete reading. A label set the reading no longer has is
    set to 0 (`absent="zero"`: the depth of a reason that emptied reads 0, not its last value)
    or removed (`absent="remove"`: a partition this instance owns no more is not its lag)."""

    def __init__(self, gauge: Gauge, *, absent: Literal["zero", "remove"]) -> None:
        self._gauge = gauge
        self._absent = absent
        self._shown: set[Labels] = set()

    def show(self, values: Mapping[Labels, float]) -> None:
        for labels in self._shown - set(values):
            if self._absent == "zero":
                self._gauge.labels(*labels).set(0)
            else:
                self._gauge.remove(*labels)
        for labels, value in values.items():
            self._gauge.labels(*labels).set(value)
        self._shown = set(values) | (self._shown if self._absent == "zero" else set())


# --- adapters --------------------------------------------------------------------------------


class Consumer(Protocol):
    """What is read of faust's consumer (`app.consumer`)."""

    def assignment(self) -> set[Any]: ...

    async def highwaters(self, *partitions: Any) -> Mapping[Any, int]: ...

    async def earliest_offsets(self, *partitions: Any) -> Mapping[Any, int]: ...


class LagReader:
    """The lag of the partitions `consumer` owns, against the group's offsets committed on the
    broker (what a successor would start from), read with an admin client of its own."""

    def __init__(self, consumer: Consumer, settings: Settings) -> None:
        self._consumer = consumer
        self._group = settings.dispatcher_group_id
        self._bootstrap = settings.kafka_bootstrap_servers
        self._options = client_options(settings)
        self._admin: AIOKafkaAdminClient | None = None

    async def read(self) -> dict[Labels, int]:
        try:
            assigned = list(self._consumer.assignment())  # the consumer's own partition type
        except ConsumerNotStarted:
            return {}  # not in the group yet: it owns nothing
        if not assigned:
            return {}
        owned = sorted(Partition(tp.topic, tp.partition) for tp in assigned)
        highwaters = _by_partition(await self._consumer.highwaters(*assigned))
        earliest = _by_partition(await self._consumer.earliest_offsets(*assigned))
        committed = await self._committed(owned)
        return partition_lag(owned, highwaters, committed, earliest)

    async def _committed(self, owned: Sequence[Partition]) -> dict[Partition, int]:
        if self._admin is None:
            admin = AIOKafkaAdminClient(bootstrap_servers=self._bootstrap, **self._options)
            await admin.start()
            self._admin = admin
        try:
            offsets = await self._admin.list_consumer_group_offsets(
                self._group, partitions=[TopicPartition(*tp) for tp in owned]
            )
        except BaseException:
            await self.aclose()  # a fresh client next time, not one stuck on a dead broker
            raise
        return {Partition(tp.topic, tp.partition): meta.offset for tp, meta in offsets.items()}

    async def aclose(self) -> None:
        admin, self._admin = self._admin, None
        if admin is not None:
            await admin.close()


def _by_partition(offsets: Mapping[Any, int]) -> dict[Partition, int]:
    return {Partition(tp.topic, tp.partition): offset for tp, offset in offsets.items()}


class Gauges:
    """Reads every source and sets the gauges; each source fails on its own."""

    def __init__(self, pool: asyncpg.Pool, governor: Governor, lag: LagReader | None) -> None:
        self._pool = pool
        self._governor = governor
        self._lag = lag
        self._depth = LabelledGauge(DEAD_LETTER_DEPTH, absent="zero")
        self._partitions = LabelledGauge(CONSUMER_LAG, absent="remove")

    async def refresh(self) -> None:
        for source, read in (
            ("postgres", self._read_store),
            ("redis", self._read_governor),
            ("kafka", self._read_lag),
        ):
            try:
                await read()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                METRICS_REFRESH_FAILURES.labels(source).inc()
                log.warning("gauge_refresh_failed", source=source, error=repr(exc))

    async def _read_store(self) -> None:
        dead = dead_letter_readings(
            await self._pool.fetch(_DEAD_LETTERS_SQL, list(OPEN_DEAD_LETTERS))
        )
        store = await self._pool.fetchrow(_STORE_SQL)
        self._depth.show(dead.depth)
        DEAD_LETTER_OLDEST.set(dead.oldest_seconds)
        OUTBOX_OLDEST.set(age_seconds(store["outbox_oldest"], store["now"]))
        ERASURES_PENDING.set(store["erasures_pending"])

    async def _read_governor(self) -> None:
        GOVERNOR_PAUSE_REMAINING.set(await self._governor.paused_for())

    async def _read_lag(self) -> None:
        if self._lag is not None:
            self._partitions.show(await self._lag.read())

    async def run(self, interval_seconds: float) -> None:
        """Refresh every `interval_seconds` until cancelled."""
        try:
            while True:
                await self.refresh()
                await asyncio.sleep(interval_seconds)
        finally:
            if self._lag is not None:
                await self._lag.aclose()
