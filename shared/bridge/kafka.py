"""One durable Kafka producer per process (acks=all via idempotence)."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaProducer


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


async def publish(
    producer: AIOKafkaProducer, topic: str, key: bytes, value: bytes, within: float
) -> None:
    """Wait until the broker has acknowledged the record (acks=all) or raise.

    A timeout is not retried here: the producer retries internally, and a caller that
    answers non-2xx lets the provider redeliver, which the dispatcher dedupes.
    """
    await asyncio.wait_for(producer.send_and_wait(topic, value=value, key=key), within)
