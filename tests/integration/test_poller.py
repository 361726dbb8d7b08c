"""The database poller against the real stack: rows in a PostgreSQL table (a stand-in for the
configured view), events checked on the test session's topic (EVENTS_TOPIC), tracking in
`poller_tracking`.

Each test polls its own table under its own source name, so its events (subject
`<source>:…`) and tracking rows are its own in the shared database, on the test session's topic.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer

from bridge import tracing
from bridge.config import Settings, get_settings
from bridge.kafka import new_producer
from ingest.sources.poller import Poller, prepare
from tests.kafka_tools import collect, events_from_now
from tests.process_tools import start_source, stop_process, stopped_cleanly

pytestmark = pytest.mark.integration

ROOT = Path(__file__).parents[2]


# --- Kafka -------------------------------------------------------------------------------------


# --- the source table --------------------------------------------------------------------------


class Source:
    """A throw-away table shaped like a poller view, and a unique source name."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        tag = uuid.uuid4().hex[:10]
        self.table = f"test_poller_src_{tag}"
        self.name = f"dbpoll-test-{tag}"

    @property
    def query(self) -> str:
        return f"SELECT * FROM {self.table} ORDER BY source_id"

    async def create(self) -> None:
        await self.pool.execute(
            f"""CREATE TABLE {self.table} (
                source_id text PRIMARY KEY, event_type text, transaction_reference text,
                amount text, currency text, account_number text, email text, phone text,
                name text, occurred_at timestamptz, carrier text)"""
        )

    async def add(self, source_id: str, **overrides: Any) -> None:
        row: dict[str, Any] = {
            "source_id": source_id,
            "event_type": "order.completed",
            "transaction_reference": f"ORD-{source_id}",
            "amount": "18500.00",
            "currency": "NGN",
            "account_number": "0123456789",
            "email": "ada@example.com",
            "phone": None,
            "name": "Ada Obi",
            "occurred_at": None,
            "carrier": "GIG Logistics",
        }
        row.update(overrides)
        columns = ", ".join(row)
        placeholders = ", ".join(f"${i}" for i in range(1, len(row) + 1))
        await self.pool.execute(
            f"INSERT INTO {self.table} ({columns}) VALUES ({placeholders})",
            *row.values(),
        )

    async def tracking(self) -> dict[str, asyncpg.Record]:
        rows = await self.pool.fetch(
            "SELECT * FROM poller_tracking WHERE source = $1 ORDER BY source_id", self.name
        )
        return {row["source_id"]: row for row in rows}

    async def drop(self) -> None:
        await self.pool.execute(f"DROP TABLE IF EXISTS {self.table}")
        await self.pool.execute("DELETE FROM poller_tracking WHERE source = $1", self.name)


@pytest.fixture
async def source(pg_pool: asyncpg.Pool) -> AsyncIterator[Source]:
    src = Source(pg_pool)
    await src.create()
    yield src
    await src.drop()


@pytest.fixture
def make_poller(
    pg_pool: asyncpg.Pool, producer: AIOKafkaProducer, source: Source
) -> Callable[..., Poller]:
    def make(**kwargs: Any) -> Poller:
        options: dict[str, Any] = {
            "tracking": pg_pool,
            "source_db": pg_pool,
            "producer": producer,
            "query": source.query,
            "source": source.name,
            "batch_size": 50,
            "topic": get_settings().events_topic,
        }
        options.update(kwargs)
        return Poller(**options)

    return make


def by_status(tracking: dict[str, asyncpg.Record]) -> dict[str, list[str]]:
    """The tracked source ids under their status, in order."""
    ids: dict[str, list[str]] = {}
    for source_id, row in sorted(tracking.items()):
        ids.setdefault(row["status"], []).append(source_id)
    return ids


# --- tests -------------------------------------------------------------------------------------


async def test_each_row_is_emitted_once(
    source: Source, make_poller: Callable[..., Poller], kafka_bootstrap: str
) -> None:
    for n in range(5):
        await source.add(f"r{n}", amount=f"{1000 + n}.50")
    poller = make_poller(batch_size=2)  # three batches
    async with events_from_now(kafka_bootstrap) as consumer:
        report = await poller.poll_once()
        assert (report.rows, report.emitted, report.failed) == (5, 5, 0)
        events = await collect(consumer, f"{source.name}:", 5)
    assert sorted(e.subject for e in events) == [f"{source.name}:ORD-r{n}" for n in range(5)]
    assert {e.type for e in events} == {"order.completed"}
    assert {e.priority for e in events} == {"bulk"}
    assert events[0].data.details["carrier"] == "GIG Logistics"
    # A trace of its own per emitted event (bridge.correlation: the record header is the same).
    spans = [tracing.parse(e.traceparent) for e in events]
    assert len({span.trace_id for span in spans if span is not None}) == 5

    tracking = await source.tracking()
    assert {row["status"] for row in tracking.values()} == {"emitted"}
    by_subject = {e.subject: e for e in events}
    for source_id, row in tracking.items():
        event = by_subject[f"{source.name}:ORD-{source_id}"]
        assert row["event_id"] == event.id
        assert row["reference"] == event.subject
        assert row["emitted_at"] is not None

    # The next poll, and a new poller (a restart), send nothing again.
    async with events_from_now(kafka_bootstrap) as consumer:
        assert (await poller.poll_once()).emitted == 0
        assert (await make_poller().poll_once()).emitted == 0
        await source.add("r9")
        assert (await poller.poll_once()).emitted == 1
        again = await collect(consumer, f"{source.name}:", 1)
    assert [e.subject for e in again] == [f"{source.name}:ORD-r9"]


async def test_concurrent_pollers_emit_each_row_exactly_once(
    source: Source,
    make_poller: Callable[..., Poller],
    pg_pool: asyncpg.Pool,
    kafka_bootstrap: str,
) -> None:
    total = 60
    for n in range(total):
        await source.add(f"c{n:03d}")
    # Two processes (own producers), reading the rows in opposite orders, small batches.
    second = new_producer(kafka_bootstrap)
    await second.start()
    try:
        pollers = [
            make_poller(batch_size=7),
            make_poller(batch_size=5, producer=second, query=source.query + " DESC"),
            make_poller(batch_size=11),
        ]
        async with events_from_now(kafka_bootstrap) as consumer:
            reports = await asyncio.gather(*(p.poll_once() for p in pollers))
            events = await collect(consumer, f"{source.name}:", total, linger=3.0)
    finally:
        await second.stop()
    assert sum(r.emitted for r in reports) == total
    assert all(r.rows == total for r in reports)
    assert len(events) == total
    assert len({e.id for e in events}) == total
    tracking = await source.tracking()
    assert len(tracking) == total
    assert {row["status"] for row in tracking.values()} == {"emitted"}
    assert {row["attempts"] for row in tracking.values()} == {1}


async def test_a_poller_killed_between_publish_and_mark_is_taken_over_after_the_lease(
    source: Source, make_poller: Callable[..., Poller], pg_pool: asyncpg.Pool, kafka_bootstrap: str
) -> None:
    await source.add("k1")
    killed = make_poller(lease_seconds=1.0)
    async with events_from_now(kafka_bootstrap) as consumer:
        # The first poller claims and publishes, then "dies" before marking the row.
        rows = [dict(r.items()) for r in await pg_pool.fetch(source.query)]
        candidates, _ = prepare(rows, source.name)
        claimed = await killed.claim(candidates)
        assert [c.source_id for c in claimed] == ["k1"]
        assert await killed.publish([c.event for c in claimed if c.event]) == [None]
        assert (await source.tracking())["k1"]["status"] == "claimed"

        # Inside the lease another poller leaves the row alone…
        survivor = make_poller(lease_seconds=1.0)
        assert (await survivor.poll_once()).emitted == 0
        await asyncio.sleep(1.3)
        # …after it, it re-claims and publishes the same event again, and marks it.
        assert (await survivor.poll_once()).emitted == 1
        events = await collect(consumer, f"{source.name}:", 2)

    # At least once on Kafka, with one identity: same id, same dedupe key. The dispatcher
    # reserves the dedupe key in Redis before calling Siteti, so the customer gets one message.
    assert len(events) == 2
    assert events[0].id == events[1].id
    assert events[0].dedupe_key == events[1].dedupe_key == f"{source.name}:ORD-k1:order.completed"
    row = (await source.tracking())["k1"]
    assert row["status"] == "emitted"
    assert row["attempts"] == 2
    assert row["claimed_by"] == survivor.owner
    assert row["event_id"] == events[0].id
    # The dead poller's late mark (were it to wake up) changes nothing.
    await killed.mark_emitted(claimed)
    assert (await source.tracking())["k1"]["claimed_by"] == survivor.owner
    assert (await survivor.poll_once()).emitted == 0


async def test_unmappable_rows_are_marked_failed_and_do_not_block_the_rest(
    source: Source, make_poller: Callable[..., Poller], pg_pool: asyncpg.Pool, kafka_bootstrap: str
) -> None:
    await source.add("f1")
    await source.add("f2", amount="eighteen thousand")
    await source.add("f3", event_type="order.teleported")
    await source.add("f4", account_number=None, email=None, phone=None)
    await source.add("f5", phone="08031234567", account_number=None, email=None)
    poller = make_poller(batch_size=50)
    async with events_from_now(kafka_bootstrap) as consumer:
        report = await poller.poll_once()
        assert (report.emitted, report.failed) == (2, 3)
        events = await collect(consumer, f"{source.name}:", 2)
    assert sorted(e.subject for e in events) == [
        f"{source.name}:ORD-f1",
        f"{source.name}:ORD-f5",
    ]
    tracking = await source.tracking()
    assert by_status(tracking) == {"emitted": ["f1", "f5"], "failed": ["f2", "f3", "f4"]}
    assert "amount is not a number" in tracking["f2"]["error"]
    assert "not a canonical event type" in tracking["f3"]["error"]
    assert "no customer" in tracking["f4"]["error"]

    async with events_from_now(kafka_bootstrap) as consumer:
        # Unchanged failed rows are not retried (nor logged again)…
        report = await poller.poll_once()
        assert (report.claimed, report.emitted, report.failed) == (0, 0, 0)
        # …a row fixed at the source is.
        await pg_pool.execute(f"UPDATE {source.table} SET amount = '18000' WHERE source_id = 'f2'")
        report = await poller.poll_once()
        assert (report.claimed, report.emitted) == (1, 1)
        fixed = await collect(consumer, f"{source.name}:", 1)
    assert [e.subject for e in fixed] == [f"{source.name}:ORD-f2"]
    assert (await source.tracking())["f2"]["status"] == "emitted"


async def test_the_process_polls_and_stops_cleanly_on_sigterm(
    source: Source, settings: Settings, kafka_bootstrap: str
) -> None:
    await source.add("p1")
    await source.add("p2")
    env = {
        **os.environ,
        "POLLER_QUERY": source.query,
        "POLLER_SOURCE_NAME": source.name,
        "POLLER_INTERVAL_SECONDS": "1",
        "DATABASE_URL": settings.database_url,
        # A source URL other than DATABASE_URL (the same database here): a pool of its own.
        "POLLER_DATABASE_URL": settings.database_url
        + ("&" if "?" in settings.database_url else "?")
        + "application_name=bridge-poller-source",
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
    }
    async with events_from_now(kafka_bootstrap) as consumer:
        process = start_source("poller", env)
        try:
            events = await collect(consumer, f"{source.name}:", 2, timeout=60, linger=0)
            assert len(events) == 2
            await source.add("p3")  # picked up by a later poll of the same process
            events = await collect(consumer, f"{source.name}:", 1, timeout=30, linger=0)
            assert [e.subject for e in events] == [f"{source.name}:ORD-p3"]
            output = await stopped_cleanly(process)
        finally:
            stop_process(process)  # an assertion failed above: never leave it running
    assert "poller_stopped" in output
    assert {r["status"] for r in (await source.tracking()).values()} == {"emitted"}


async def test_rows_the_canonical_model_refuses_are_marked_failed_and_the_poller_goes_on(
    source: Source, make_poller: Callable[..., Poller], kafka_bootstrap: str
) -> None:
    # Issue 7: a legacy "null date", an infinite timestamp, an over-long name or an absurd
    # amount fails that row (with the reason); a source_id too long to track is skipped
    # rather than failing every claim; the poller keeps going.
    await source.add("m1")
    await source.add("m2", occurred_at=datetime(1, 1, 1, tzinfo=UTC))
    await source.pool.execute(
        f"INSERT INTO {source.table} (source_id, event_type, amount, account_number,"
        " occurred_at) VALUES ('m3', 'order.completed', '1', '0123456789', 'infinity')"
    )
    await source.add("m4", name="n" * 201)
    await source.add("m5", amount="1000000000000")
    await source.add("x" * 3000)
    await source.add("m6")
    poller = make_poller(batch_size=50)
    async with events_from_now(kafka_bootstrap) as consumer:
        report = await poller.poll_once()
        events = await collect(consumer, f"{source.name}:", 2)
    assert (report.emitted, report.failed, report.skipped) == (2, 4, 1)
    assert sorted(e.subject for e in events) == [f"{source.name}:ORD-m1", f"{source.name}:ORD-m6"]
    tracking = await source.tracking()
    assert by_status(tracking) == {"emitted": ["m1", "m6"], "failed": ["m2", "m3", "m4", "m5"]}
    assert "before 2000-01-01" in tracking["m2"]["error"]
    assert "ahead of our clock" in tracking["m3"]["error"]
    assert "200 characters" in tracking["m4"]["error"]
    assert "below 1,000,000,000,000" in tracking["m5"]["error"]
    # The next poll is not stalled by any of them.
    assert (await poller.poll_once()).claimed == 0
