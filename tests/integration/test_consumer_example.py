"""docs/examples/consumer.py against the real Kafka: it receives what the bridge's producer
writes, validates it against schemas/v1, skips what does not validate, dedupes on `id`, and
commits what it has processed."""

from __future__ import annotations

import asyncio
import importlib.util
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from types import ModuleType

import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.structs import TopicPartition

from bridge.config import get_settings
from bridge.events import CanonicalEvent, Customer, EventData, new_event
from bridge.kafka import new_producer
from bridge.protect import data_keys
from receipts.topics import OutboxRecord, records
from receipts.webhooks import parse_webhook
from tests.kafka_tools import record_of

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "consumer.py"


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("consumer_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def event(kind: str, reason: str | None = None) -> CanonicalEvent:
    data = EventData(
        provider="moniepoint",
        transaction_reference=f"TEST-{uuid.uuid4().hex[:12]}",
        amount=Decimal("5000.00"),
        customer=Customer(account_number="0123456789", name="Ada Obi"),
        reason=reason,
    )
    return new_event(data, kind)


@pytest.fixture
async def topic(kafka_bootstrap: str) -> AsyncIterator[str]:
    """A topic of its own (one partition, like one customer's key), so that events other
    tests left on bridge.events.v1 do not count."""
    name = f"test.consumer-example.{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)])
        yield name
        await admin.delete_topics([name])
    finally:
        await admin.close()


async def produce(bootstrap: str, topic: str, values: list[bytes], key: bytes) -> None:
    producer = new_producer(bootstrap)
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(topic, value=value, key=key)
    finally:
        await producer.stop()


async def committed(bootstrap: str, topic: str, group_id: str) -> int | None:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group_id)
    await consumer.start()
    try:
        offset: int | None = await consumer.committed(TopicPartition(topic, 0))
        return offset
    finally:
        await consumer.stop()


async def test_example_consumer_receives_and_validates_an_event(
    kafka_bootstrap: str, topic: str
) -> None:
    example = load_example()
    sent = event("payment.successful")
    await produce(kafka_bootstrap, topic, [sent.to_json()], record_of(sent)[0])
    group = f"test-consumer-example-{uuid.uuid4().hex[:8]}"
    handled = await asyncio.wait_for(
        example.main(max_events=1, group_id=group, topic=topic, bootstrap_servers=kafka_bootstrap),
        60,
    )
    assert handled == [orjson.loads(sent.to_json())]
    assert await committed(kafka_bootstrap, topic, group) == 1


async def test_example_consumer_skips_invalid_and_dedupes(kafka_bootstrap: str, topic: str) -> None:
    example = load_example()
    first = event("payment.successful")
    second = event("payment.failed", reason="insufficient funds")
    # A payment.failed without a reason breaks its schema; the redelivery has the same id.
    invalid = orjson.loads(event("payment.failed", reason="x").to_json())
    invalid["data"]["reason"] = None
    unknown = orjson.loads(first.to_json())
    unknown["type"] = "payment.teleported"
    unknown["dataschema"] = "urn:siteti-bridge:schema:payment.teleported:v1"
    values = [
        first.to_json(),
        orjson.dumps(invalid),
        b"not json",
        orjson.dumps(unknown),
        first.to_json(),
        second.to_json(),
    ]
    await produce(kafka_bootstrap, topic, values, record_of(first)[0])
    group = f"test-consumer-example-{uuid.uuid4().hex[:8]}"
    handled = await asyncio.wait_for(
        example.main(max_events=2, group_id=group, topic=topic, bootstrap_servers=kafka_bootstrap),
        60,
    )
    assert [e["id"] for e in handled] == [first.id, second.id]
    # Everything read was committed, the skipped messages included: none is read again.
    assert await committed(kafka_bootstrap, topic, group) == len(values)


def inbound(event_type: str, **data: object) -> OutboxRecord:
    """The record receipts writes for a Siteti webhook (receipts.topics), as it is relayed."""
    body = {"id": f"evt_{uuid.uuid4().hex}", "type": event_type, "data": data}
    (record,) = records(parse_webhook(orjson.dumps(body)), data_keys(get_settings()), "NG")
    return record


async def test_example_consumer_reads_replies_and_conversations(
    kafka_bootstrap: str, topic: str
) -> None:
    example = load_example()
    phone = {"from": "2348031234567"}
    reply = inbound("message.received", contact_id="ct_1", text="YES", **phone)
    state = inbound("conversation.state", contact_id="ct_1", state="open", **phone)
    # A reply with its number in clear breaks the schema (`from` must be sealed): skipped.
    clear = inbound("message.received", contact_id="ct_1", text="NO", **phone).payload
    clear["data"]["from"] = phone["from"]
    values = [orjson.dumps(v) for v in (reply.payload, clear, reply.payload, state.payload)]
    await produce(kafka_bootstrap, topic, values, reply.key.encode())
    group = f"test-consumer-example-{uuid.uuid4().hex[:8]}"
    handled = await asyncio.wait_for(
        example.main(max_events=2, group_id=group, topic=topic, bootstrap_servers=kafka_bootstrap),
        60,
    )
    assert handled == [reply.payload, state.payload]
    assert await committed(kafka_bootstrap, topic, group) == len(values)
