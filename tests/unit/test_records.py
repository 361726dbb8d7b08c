"""How a lane settles one record: outages are waited out, poison gives up after a bound."""

from __future__ import annotations

from typing import Any, ClassVar

import asyncpg
import pytest

from bridge.events import CanonicalEvent, Customer, EventData, new_event
from dispatcher import dlq
from dispatcher.records import Work, settle


class Pipeline:
    """Stands in for `Dispatcher`: fails `handle` with the given exceptions, in turn."""

    def __init__(self, *failures: BaseException) -> None:
        self.failures = list(failures)
        self.calls: list[tuple[str, Any]] = []

    async def handle(self, event: CanonicalEvent) -> str:
        self.calls.append(("handle", event.reference))
        if self.failures:
            raise self.failures.pop(0)
        return "sent"

    async def give_up(self, event: CanonicalEvent, error: str) -> None:
        self.calls.append(("give_up", error))

    async def give_up_record(self, record: dlq.RecordPosition, error: str) -> None:
        self.calls.append(("give_up_record", error))


POSITION = dlq.RecordPosition("bridge.events.v1", 3, 41, b"acct:1", b"{}")
EVENT = new_event(
    EventData(
        provider="moniepoint",
        transaction_reference="MNP-1",
        amount=10,
        customer=Customer(account_number="0123456789"),
    ),
    "payment.successful",
)


async def run(pipeline: Pipeline, work: Work, attempts: int = 3) -> list[float]:
    pauses: list[float] = []

    async def sleep(seconds: float) -> None:
        pauses.append(seconds)

    await settle(pipeline, work, poison_attempts=attempts, sleep=sleep)  # type: ignore[arg-type]
    return pauses


async def test_an_outage_is_waited_out_however_long() -> None:
    outages = [ConnectionRefusedError(111, "refused")] * 20 + [
        asyncpg.exceptions.CannotConnectNowError("starting up")
    ] * 5
    pipeline = Pipeline(*outages)
    pauses = await run(pipeline, Work(POSITION, EVENT))
    assert [name for name, _ in pipeline.calls].count("handle") == 26
    assert "give_up" not in [name for name, _ in pipeline.calls]
    assert len(pauses) == 25 and max(pauses) <= 5.0


async def test_a_poison_event_is_dead_lettered_after_the_bounded_attempts() -> None:
    pipeline = Pipeline(*[ValueError("year 0 is out of range")] * 10)
    await run(pipeline, Work(POSITION, EVENT), attempts=3)
    assert pipeline.calls == [
        ("handle", EVENT.reference),
        ("handle", EVENT.reference),
        ("handle", EVENT.reference),
        ("give_up", "ValueError: year 0 is out of range"),
    ]


async def test_outages_do_not_count_as_poison_attempts() -> None:
    pipeline = Pipeline(
        KeyError("bug"),
        ConnectionResetError(),
        KeyError("bug"),
        TimeoutError(),
        None,  # type: ignore[arg-type]
    )
    pipeline.failures = [f for f in pipeline.failures if f is not None]
    await run(pipeline, Work(POSITION, EVENT), attempts=3)
    assert [name for name, _ in pipeline.calls] == ["handle"] * 5  # sent on the fifth


async def test_a_record_that_is_no_event_is_dead_lettered_at_once() -> None:
    pipeline = Pipeline()
    await run(pipeline, Work(POSITION, None, "ValidationError: time: before 2000"))
    assert pipeline.calls == [("give_up_record", "ValidationError: time: before 2000")]


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (b"not json", "not a canonical event: event: Invalid JSON"),
        (b'{"specversion": "1.0"}', "not a canonical event: id: Field required"),
    ],
)
def test_reading_a_record_never_raises(value: bytes, error: str) -> None:
    from dispatcher.records import read

    class Message:
        topic, partition, offset = "t", 0, 7

    class Record:
        key, message = b"k", Message()
        headers: ClassVar = {
            "traceparent": b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        }

    Record.value = value  # type: ignore[attr-defined]
    work = read(Record())
    assert work.event is None and work.error.startswith(error)
    assert work.record.offset == 7
    # Still in its trace: the dead-letter lines of a foreign record join its producer's.
    assert work.traceparent == Record.headers["traceparent"]
