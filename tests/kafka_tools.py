"""Reading what a test produced on a real topic: a consumer at the end, and a collector."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bridge.config import get_settings
from bridge.events import CanonicalEvent
from bridge.protect import sealer


@asynccontextmanager
async def consumer_from_now(bootstrap: str, topic: str) -> AsyncIterator[AIOKafkaConsumer]:
    """A consumer positioned at the current end of every partition of `topic`, so that it sees
    exactly what is produced after it is made."""
    # A bare producer is the public way to read a topic's partitions (it fetches metadata).
    probe = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await probe.start()
    try:
        partitions = await probe.partitions_for(topic)
    finally:
        await probe.stop()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_end(*tps)
        for tp in tps:
            await consumer.position(tp)  # resolve the end offsets before anything is sent
        yield consumer
    finally:
        await consumer.stop()


def events_from_now(bootstrap: str) -> AbstractAsyncContextManager[AIOKafkaConsumer]:
    """`consumer_from_now` on the test session's canonical-events topic (EVENTS_TOPIC)."""
    return consumer_from_now(bootstrap, get_settings().events_topic)


async def collect(
    consumer: AIOKafkaConsumer,
    subject_prefix: str | tuple[str, ...],
    expected: int,
    timeout: float = 30,
    linger: float = 2.0,
) -> list[CanonicalEvent]:
    """The canonical events whose subject starts with `subject_prefix`: until `expected` have
    arrived, then `linger` seconds more so that any extra (a duplicate) is seen too."""
    found: list[CanonicalEvent] = []
    deadline = time.monotonic() + timeout
    settled_at: float | None = None
    while True:
        now = time.monotonic()
        if settled_at is None and len(found) >= expected:
            settled_at = now + linger
        if (settled_at is not None and now >= settled_at) or now >= deadline:
            break
        batches = await consumer.getmany(timeout_ms=300)
        for records in batches.values():
            for record in records:
                event = CanonicalEvent.from_json(record.value)
                if event.subject.startswith(subject_prefix):
                    found.append(event)
    return found


def record_of(event: CanonicalEvent) -> tuple[bytes, bytes]:
    """The (key, value) ingest would publish for `event`: number sealed, key a keyed hash."""
    return sealer(get_settings())(event)
