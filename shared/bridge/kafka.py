"""One durable Kafka producer per process (acks=all via idempotence)."""

from __future__ import annotations

import asyncio
import functools
from contextlib import suppress
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    InvalidProducerEpoch,
    OutOfOrderSequenceNumber,
    ProducerFenced,
    UnknownProducerId,
)

from .logs import get_logger

log = get_logger(__name__)

# After one of these the broker refuses every later batch of this producer id on the
# partition, and aiokafka keeps the id and its sequence numbers: only a new producer (new id,
# sequences from 0) sends again. A broker outage longer than request_timeout_ms causes it:
# aiokafka drops a batch that waited too long for a leader after numbering it, so the next
# batch's sequence has a gap.
_POISONED = (OutOfOrderSequenceNumber, UnknownProducerId, InvalidProducerEpoch, ProducerFenced)
_STOP_SECONDS = 30.0


def new_producer(bootstrap_servers: str) -> AIOKafkaProducer:
    # Idempotence forces acks=all and dedupes the producer's own retries; lz4 and a short
    # linger batch concurrent webhooks without adding visible latency.
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap_servers,
        enable_idempotence=True,
        acks="all",
        linger_ms=2,
        compression_type="lz4",
        max_batch_size=65536,
        request_timeout_ms=15000,
    )


class DurableProducer:
    """`new_producer`'s producer that lives through broker restarts.

    It starts lazily (again) when a start failed, and it replaces itself when the broker has
    lost track of its sequence numbers, which aiokafka never recovers from. Records already
    handed to the replaced producer fail or go out as they would have; a caller that did not
    get an acknowledgement retries, and consumers dedupe.
    """

    def __init__(self, bootstrap_servers: str) -> None:
        self._bootstrap_servers = bootstrap_servers
        self._producer = new_producer(bootstrap_servers)
        self._started = False
        self._lock = asyncio.Lock()
        self._retiring: set[asyncio.Task[None]] = set()
        self.replacements = 0

    async def start(self) -> None:
        """Connect; raises if the broker cannot be reached (a later send tries again)."""
        if self._started:
            return
        async with self._lock:
            if self._started:
                return
            producer = self._producer
            try:
                await producer.start()
            except BaseException:
                # An aiokafka producer that failed to start cannot be started again.
                self._replace(producer)
                raise
            self._started = True

    async def send(self, topic: str, value: bytes, key: bytes | None = None) -> asyncio.Future[Any]:
        """Queue a record; the returned future resolves once the broker acknowledged it."""
        await self.start()
        producer = self._producer
        future: asyncio.Future[Any] = await producer.send(topic, value=value, key=key)
        future.add_done_callback(functools.partial(self._check, producer))
        return future

    async def send_and_wait(self, topic: str, value: bytes, key: bytes | None = None) -> Any:
        return await (await self.send(topic, value, key))

    async def check_connection(self) -> None:
        """A metadata round trip: raises when the broker cannot be reached."""
        await self.start()
        await self._producer.client.fetch_all_metadata()

    async def stop(self) -> None:
        producer, started = self._producer, self._started
        self._started = False
        if started:
            await producer.stop()
        if self._retiring:
            await asyncio.gather(*self._retiring)

    def _check(self, producer: AIOKafkaProducer, future: asyncio.Future[Any]) -> None:
        if future.cancelled() or not isinstance(future.exception(), _POISONED):
            return
        if producer is self._producer:  # the first failure replaces it, not every one
            log.warning("kafka_producer_replaced", reason=repr(future.exception()))
            self._replace(producer)

    def _replace(self, producer: AIOKafkaProducer) -> None:
        self._producer = new_producer(self._bootstrap_servers)
        self._started = False
        self.replacements += 1
        task = asyncio.get_running_loop().create_task(_stop_quietly(producer))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)


async def _stop_quietly(producer: AIOKafkaProducer) -> None:
    # Its pending batches fail or drain; either way it must not outlive its replacement.
    with suppress(Exception):
        await asyncio.wait_for(producer.stop(), _STOP_SECONDS)


# What the sources publish through: the project's producer, or aiokafka's own (tests).
Publisher = AIOKafkaProducer | DurableProducer


async def publish(
    producer: DurableProducer, topic: str, key: bytes, value: bytes, within: float
) -> None:
    """Wait until the broker has acknowledged the record (acks=all) or raise.

    A timeout is not retried here: the producer retries internally, and a caller that
    answers non-2xx lets the provider redeliver, which the dispatcher dedupes.
    """
    await asyncio.wait_for(producer.send_and_wait(topic, value=value, key=key), within)
