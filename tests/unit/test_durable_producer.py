"""DurableProducer: a producer the broker no longer accepts, or that failed to start, is
replaced, so sending resumes once Kafka is back without restarting the process."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError, OutOfOrderSequenceNumber

from bridge import kafka


class FakeProducer:
    """Each record's outcome is scripted: an exception to fail with, or None to succeed."""

    def __init__(self, outcomes: list[BaseException | None], start_error: Exception | None):
        self.outcomes = outcomes
        self.start_error = start_error
        self.started = self.stopped = False
        self.sent: list[bytes] = []

    async def start(self) -> None:
        if self.start_error is not None:
            raise self.start_error
        self.started = True

    async def stop(self) -> None:
        self.stopped = True

    async def send(
        self, topic: str, value: bytes, key: bytes | None, headers: Any = None
    ) -> asyncio.Future[Any]:
        assert self.started and not self.stopped
        self.sent.append(value)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        outcome = self.outcomes.pop(0) if self.outcomes else None
        if outcome is None:
            future.set_result("metadata")
        else:
            future.set_exception(outcome)
        return future


@pytest.fixture
def made(monkeypatch: pytest.MonkeyPatch) -> list[FakeProducer]:
    """The producers DurableProducer made, in order; scripts set per index in `script`."""
    producers: list[FakeProducer] = []
    scripts: dict[int, tuple[list[BaseException | None], Exception | None]] = {
        0: ([None, OutOfOrderSequenceNumber(), OutOfOrderSequenceNumber()], None),
        1: ([], KafkaConnectionError()),
    }

    def new_producer(_: str, options: Any = None) -> FakeProducer:
        outcomes, start_error = scripts.get(len(producers), ([], None))
        producers.append(FakeProducer(list(outcomes), start_error))
        return producers[-1]

    monkeypatch.setattr(kafka, "new_producer", new_producer)
    return producers


async def test_poisoned_producer_is_replaced_and_a_failed_start_retried(
    made: list[FakeProducer],
) -> None:
    producer = kafka.DurableProducer("broker:9092")
    await producer.start()
    await kafka.publish(producer, "t", b"k", b"first", 1)
    # Two records in flight fail with the broker's sequence error: one replacement, not two.
    in_flight = [await producer.send("t", v, b"k") for v in (b"second", b"third")]
    for future in in_flight:
        with pytest.raises(OutOfOrderSequenceNumber):
            await future
    await asyncio.sleep(0.05)  # the retired producer is stopped in the background
    assert producer.replacements == 1 and made[0].stopped
    # The replacement cannot start while Kafka is away: the send fails, and the next one
    # starts a third producer.
    with pytest.raises(KafkaConnectionError):
        await kafka.publish(producer, "t", b"k", b"fourth", 1)
    await kafka.publish(producer, "t", b"k", b"fifth", 1)
    assert [p.sent for p in made] == [[b"first", b"second", b"third"], [], [b"fifth"]]
    await producer.stop()
    assert made[2].stopped
