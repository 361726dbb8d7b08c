"""The outbox relay where rows are written (issue 8): relays in several processes share one
outbox table, and every row reaches its topic once in the steady state.

Real PostgreSQL and Kafka. Each relay has a pool and a producer of its own, as two processes
(receipts and a dispatcher, or two dispatchers) would. Delivery is at least once in general (a
relay that dies between Kafka's acknowledgement and its commit leaves its rows to be sent
again); without such a crash, no row may go out twice.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any

import asyncpg
import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bridge import audit
from bridge.config import Settings
from bridge.db import connect
from bridge.events import AUDIT_TOPIC
from bridge.kafka import DurableProducer, Headers
from tests.kafka_tools import consumer_from_now

ROWS = 600


class CountingProducer(DurableProducer):
    """A relay's producer that counts what it sent, to show that both relays took part."""

    def __init__(self, bootstrap_servers: str) -> None:
        super().__init__(bootstrap_servers)
        self.sent = 0

    async def send(
        self, topic: str, value: bytes, key: bytes | None = None, headers: Headers | None = None
    ) -> asyncio.Future[Any]:
        self.sent += 1
        return await super().send(topic, value, key, headers)


@pytest.fixture
async def private_topic(kafka_bootstrap: str) -> AsyncIterator[str]:
    name = f"test.relay.{uuid.uuid4().hex[:12]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, 3, 1)])
        yield name
        await admin.delete_topics([name])
    finally:
        await admin.close()


@asynccontextmanager
async def running(*relays: Any) -> AsyncIterator[None]:
    tasks = [asyncio.create_task(relay) for relay in relays]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with suppress(asyncio.CancelledError):
                await task


async def wait_until_relayed(pool: asyncpg.Pool, topic: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while await pool.fetchval("SELECT count(*) FROM outbox WHERE topic = $1", topic):
        assert time.monotonic() < deadline, f"outbox rows for {topic} still pending"
        await asyncio.sleep(0.1)


async def read_markers(
    consumer: AIOKafkaConsumer, run: str, expected: int, timeout: float = 30, linger: float = 2
) -> Counter[int]:
    """Row numbers of this run's records, counted: until `expected` arrived, then `linger`
    seconds more so that a duplicate would be seen too."""
    seen: Counter[int] = Counter()
    deadline = time.monotonic() + timeout
    settled_at: float | None = None
    while True:
        now = time.monotonic()
        if settled_at is None and sum(seen.values()) >= expected:
            settled_at = now + linger
        if (settled_at is not None and now >= settled_at) or now >= deadline:
            return seen
        for records in (await consumer.getmany(timeout_ms=300)).values():
            for record in records:
                payload = orjson.loads(record.value)
                detail = payload.get("detail", payload)
                if isinstance(detail, dict) and detail.get("run") == run:
                    seen[int(detail["row"])] += 1


async def test_two_relays_on_one_table_send_each_row_once(
    settings: Settings, kafka_bootstrap: str, private_topic: str
) -> None:
    run = uuid.uuid4().hex
    # Two "processes": a pool and a producer each; small batches so that they interleave.
    pools = [await connect(settings.database_url, max_size=2) for _ in range(2)]
    producers = [CountingProducer(kafka_bootstrap) for _ in range(2)]
    try:
        await pools[0].executemany(
            "INSERT INTO outbox (topic, key, payload) VALUES ($1, $2, $3)",
            [(private_topic, f"ref-{row % 7}", {"run": run, "row": row}) for row in range(ROWS)],
        )
        async with consumer_from_now(kafka_bootstrap, private_topic) as consumer:
            relays = [
                audit.OutboxRelay(pool, producer, batch_size=10, idle_seconds=0.05).run()
                for pool, producer in zip(pools, producers, strict=True)
            ]
            async with running(*relays):
                await wait_until_relayed(pools[0], private_topic)
                seen = await read_markers(consumer, run, ROWS)
    finally:
        for producer in producers:
            await producer.stop()
        for pool in pools:
            await pool.close()

    assert set(seen) == set(range(ROWS)), f"missing rows: {sorted(set(range(ROWS)) - set(seen))}"
    assert [row for row, count in seen.items() if count > 1] == []
    # Both relays took part, each sending only rows the other did not hold.
    assert all(producer.sent > 0 for producer in producers), [p.sent for p in producers]
    assert sum(producer.sent for producer in producers) == ROWS


async def test_dispatcher_rows_reach_the_audit_topic_without_receipts(
    settings: Settings, pg_pool: asyncpg.Pool, kafka_bootstrap: str
) -> None:
    # What the dispatcher's `outbox_relay` task runs, twice over (two dispatcher instances),
    # and nothing of receipts: its dead-letter audit rows still reach bridge.audit.v1, once.
    run = uuid.uuid4().hex
    references = [f"test:relay-{run[:8]}-{n}" for n in range(40)]
    async with consumer_from_now(kafka_bootstrap, AUDIT_TOPIC.name) as consumer:
        relays = [
            audit.relay_outbox(pg_pool, kafka_bootstrap, batch_size=5, idle_seconds=0.05)
            for _ in range(2)
        ]
        async with running(*relays):
            for row, reference in enumerate(references):
                await audit.record_now(
                    pg_pool,
                    reference=reference,
                    stage="dead_lettered",
                    source="dispatcher",
                    detail={"run": run, "row": row, "reason": "missing_contact"},
                )
            seen = await read_markers(consumer, run, len(references))
            await wait_until_relayed(pg_pool, AUDIT_TOPIC.name)

    assert seen == Counter(range(len(references)))
