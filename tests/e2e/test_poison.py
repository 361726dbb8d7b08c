"""Issue 7: a poison record never stalls anything. Records no canonical event can come from
(an older or foreign producer's, a legacy "null date", NUL characters) are written straight
onto the events topic between good events of the same customer and of others: every good
event is sent once, in order, within seconds, and each poison record lands in the
dead-letter store as `unprocessable`, with its error."""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from bridge.events import CanonicalEvent, Customer, EventData, new_event
from tests.kafka_tools import record_of

from .harness import Pipeline, new_account, new_reference, wait_for

pytestmark = pytest.mark.e2e


def good(account: str, amount: int) -> CanonicalEvent:
    return new_event(
        EventData(
            provider="moniepoint",
            transaction_reference=new_reference(),
            amount=amount,
            customer=Customer(account_number=account),
        ),
        "payment.successful",
    )


def poisons(template: CanonicalEvent) -> list[bytes]:
    """Records that look like events to a careless producer, and are not."""
    document = template.model_dump(mode="json")

    def variant(**changes: Any) -> bytes:
        changed = {**document, "id": new_reference(), **changes}
        return orjson.dumps(changed)

    data = document["data"]
    return [
        b"not json at all",
        b'{"specversion": "1.0", "type": "payment.successful"}',
        variant(time="0001-01-01T00:00:00+05:00"),  # a legacy "null date"
        variant(data={**data, "transaction_reference": "MNP-\u0000-nul"}),
        variant(data={**data, "customer": {"account_number": "1\u0000"}}),
        variant(data={**data, "transaction_reference": {"a": 1}}),
        variant(data={**data, "amount": "-1e400"}),
    ]


async def test_poison_records_are_dead_lettered_and_good_events_flow(
    pipeline: Pipeline, tmp_path: Any
) -> None:
    first, second = new_account(), new_account()
    pipeline.import_customers(
        tmp_path, [(first, "08061110001", "returning", 0), (second, "08061110002", "returning", 0)]
    )
    sequence = [good(first, 100 + n) for n in range(4)]
    others = [good(second, 500 + n) for n in range(2)]
    bad = poisons(sequence[0])

    producer = AIOKafkaProducer(
        bootstrap_servers=pipeline.env["KAFKA_BOOTSTRAP_SERVERS"], acks="all"
    )
    await producer.start()
    topic = pipeline.env["EVENTS_TOPIC"]
    started = time.monotonic()
    try:
        # Poison between the first customer's good events, on its key (same partition and
        # lane), and the other customer's events interleaved.
        key = record_of(sequence[0])[0]
        for index, event in enumerate(sequence):
            await producer.send(topic, event.to_json(), key=key)
            for record in bad[index * 2 : index * 2 + 2]:
                await producer.send(topic, record, key=key)
            if index < len(others):
                await producer.send(topic, others[index].to_json(), key=record_of(others[index])[0])
        await producer.flush()
    finally:
        await producer.stop()

    refs = [e.reference for e in sequence + others]

    def sent() -> list[dict[str, Any]]:
        return [m for m in pipeline.sandbox_get("messages") if m["reference"] in refs]

    wait_for(lambda: len(sent()) >= len(refs), timeout=30, interval=0.2)
    elapsed = time.monotonic() - started
    time.sleep(1.0)  # a late duplicate would land now
    messages = sent()
    assert sorted(m["reference"] for m in messages) == sorted(refs)  # each exactly once
    first_customer = [m["reference"] for m in messages if m["to"] == "2348061110001"]
    assert first_customer == [e.reference for e in sequence]  # in order, poison skipped
    assert elapsed < 20, f"good events took {elapsed:.1f} s behind the poison"

    async def unprocessable() -> list[Any]:
        pool_row = await pipeline.fetchrow(
            "SELECT count(*) AS n, array_agg(last_error) AS errors FROM dead_letters"
            " WHERE reason = 'unprocessable'"
        )
        return [pool_row["n"], pool_row["errors"]]

    count, errors = await unprocessable()
    assert count == len(bad), errors
    assert all(error for error in errors)
    assert pipeline.processes["dispatcher-1"].popen.poll() is None  # type: ignore[union-attr]
