"""Issue 12 against the real Redis: per-number pacing (dispatcher.pacing) and the double-fire
memory (dispatcher.doublefire). Two 'instances' are two clients."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import asyncpg
import pytest
from redis.asyncio import Redis

from bridge.config import Settings
from bridge.events import CanonicalEvent, Customer, EventData, new_event
from bridge.protect import data_keys
from dispatcher.doublefire import DoubleFires
from dispatcher.pacing import Pacer

pytestmark = pytest.mark.integration

PHONE = "2348031234567"
INTERVAL = 0.5


def pacers(
    settings: Settings, clients: tuple[Redis, ...], interval: float = INTERVAL
) -> list[Pacer]:
    prefix = f"test:pace:{uuid.uuid4().hex}"  # one Siteti account of this test's own
    keys = data_keys(settings)
    return [Pacer(c, keys, interval_seconds=interval, prefix=prefix) for c in clients]


# --- pacing ---------------------------------------------------------------------------------


async def test_racing_instances_get_slots_an_interval_apart(
    settings: Settings, two_clients: tuple[Redis, Redis]
) -> None:
    a, b = pacers(settings, two_clients)
    waits = await asyncio.gather(*(p.reserve(PHONE) for p in [a, b] * 4))
    # Reserved at (nearly) the same moment: the slots are now, now + 1 interval, + 2, …
    for n, wait in enumerate(sorted(waits)):
        assert abs(wait - n * INTERVAL) < 0.05, sorted(waits)


async def test_other_numbers_never_wait_for_a_busy_one(
    settings: Settings, two_clients: tuple[Redis, Redis]
) -> None:
    a, b = pacers(settings, two_clients)
    for _ in range(3):
        await a.reserve(PHONE)
    assert await b.reserve("2348039999999") == 0
    assert await b.reserve(PHONE) > 2 * INTERVAL


async def test_the_key_is_the_numbers_keyed_hash_and_lapses(
    settings: Settings, two_clients: tuple[Redis, Redis]
) -> None:
    (pacer,) = pacers(settings, two_clients[:1])
    await pacer.reserve(PHONE)
    key = pacer.key(PHONE)
    assert key.endswith(data_keys(settings).phone_index(PHONE)) and "8031234567" not in key
    ttl_ms = await two_clients[0].pttl(key)
    assert 0 < ttl_ms <= INTERVAL * 1000  # kept only while it can delay anyone
    await asyncio.sleep(INTERVAL + 0.1)
    assert await two_clients[0].exists(key) == 0
    assert await pacer.reserve(PHONE) == 0


async def test_a_send_held_past_its_slot_still_keeps_the_next_an_interval_away(
    settings: Settings, two_clients: tuple[Redis, Redis]
) -> None:
    a, b = pacers(settings, two_clients)
    async with a.turn(PHONE) as waited:
        assert waited == 0
        await asyncio.sleep(0.3)  # the governor or a retry held the call this long
    finished = time.monotonic()
    async with b.turn(PHONE) as waited:
        started = time.monotonic()
    assert waited > 0.4  # an interval from the end of the last send, not from its slot
    assert started - finished >= INTERVAL - 0.02


async def test_no_interval_means_no_pacing_and_no_key(
    settings: Settings, two_clients: tuple[Redis, Redis]
) -> None:
    (pacer,) = pacers(settings, two_clients[:1], interval=0)
    for _ in range(3):
        async with pacer.turn(PHONE) as waited:
            assert waited == 0
    assert await two_clients[0].exists(pacer.key(PHONE)) == 0


# --- the double-fire memory -----------------------------------------------------------------


def payment(reference: str, amount: str = "5000", at: datetime | None = None) -> CanonicalEvent:
    data = EventData(
        provider="dftest",
        transaction_reference=reference,
        amount=Decimal(amount),
        customer=Customer(account_number="0123456789"),
        occurred_at=at or datetime(2026, 11, 20, 14, 30, tzinfo=UTC),
    )
    return new_event(data, "payment.successful")


def memories(clients: tuple[Redis, ...], window: float = 120) -> list[DoubleFires]:
    prefix = f"test:fires:{uuid.uuid4().hex}"
    return [DoubleFires(c, window_seconds=window, prefix=prefix) for c in clients]


async def test_of_two_racing_fires_exactly_the_later_is_the_suspect(
    two_clients: tuple[Redis, Redis],
) -> None:
    a, b = memories(two_clients)
    first, second = payment("TX-1"), payment("TX-2")
    found = await asyncio.gather(a.first_of(first, "cust"), b.first_of(second, "cust"))
    suspects = [f for f in found if f is not None]
    assert len(suspects) == 1
    repeated = suspects[0]
    assert repeated.reference in ("dftest:TX-1", "dftest:TX-2")
    assert found.index(repeated) != [first.reference, second.reference].index(repeated.reference)


async def test_redeliveries_other_money_and_distant_times_are_not_double_fires(
    two_clients: tuple[Redis, Redis],
) -> None:
    a, b = memories(two_clients)
    first = payment("TX-1")
    assert await a.first_of(first, "cust") is None
    assert await b.first_of(first, "cust") is None  # the same event again
    assert await b.first_of(payment("TX-2", amount="5000.01"), "cust") is None
    assert await b.first_of(payment("TX-3"), "another customer") is None
    later = datetime(2026, 11, 20, 14, 32, 1, tzinfo=UTC)  # 121 s on: outside the window
    assert await b.first_of(payment("TX-4", at=later), "cust") is None
    suspect = await b.first_of(payment("TX-5", amount="5000.00"), "cust")
    assert suspect is not None and suspect.reference == "dftest:TX-1"


async def test_an_event_handled_again_is_never_the_repeat_of_a_later_one(
    two_clients: tuple[Redis, Redis],
) -> None:
    a, b = memories(two_clients)
    first, second = payment("TX-1"), payment("TX-2")
    assert await a.first_of(first, "cust") is None
    assert await b.first_of(second, "cust") is not None
    # The first is handled again (an outage mid-way, another instance after a rebalance).
    assert await b.first_of(first, "cust") is None
    again = await a.first_of(second, "cust")
    assert again is not None and again.event_id == first.id


async def test_a_zero_window_remembers_nothing(two_clients: tuple[Redis, Redis]) -> None:
    prefix = f"test:fires:{uuid.uuid4().hex}"
    memory = DoubleFires(two_clients[0], window_seconds=0, prefix=prefix)
    assert await memory.first_of(payment("TX-1"), "cust") is None
    assert await memory.first_of(payment("TX-2"), "cust") is None
    assert await two_clients[0].keys(f"{prefix}:*") == []


async def test_a_suspect_is_told_in_the_audit_story(
    two_clients: tuple[Redis, Redis], pg_pool: asyncpg.Pool
) -> None:
    (memory,) = memories(two_clients[:1])
    ref = uuid.uuid4().hex[:8]
    first = payment(f"TX-{ref}-1")
    second = payment(f"TX-{ref}-2", at=first.data.occurred_at + timedelta(seconds=2))  # type: ignore[operator]
    try:
        assert await memory.check(pg_pool, first, "cust") is None
        suspect = await memory.check(pg_pool, second, "cust")
        assert suspect is not None and suspect.event_id == first.id
        rows = await pg_pool.fetch(
            "SELECT reference, stage, detail, customer_hash FROM audit_log"
            " WHERE reference = ANY($1::text[])",
            [first.reference, second.reference],
        )
        assert [(r["reference"], r["stage"]) for r in rows] == [
            (second.reference, "double_fire_suspected")
        ]
        detail = rows[0]["detail"]
        assert detail["first_reference"] == first.reference
        assert detail["first_event_id"] == first.id
        assert detail["seconds_apart"] == 2 and detail["window_seconds"] == 120
        assert rows[0]["customer_hash"] == "cust"
    finally:
        for table, column in (("audit_log", "reference"), ("outbox", "key")):
            await pg_pool.execute(
                f"DELETE FROM {table} WHERE {column} = ANY($1::text[])",
                [first.reference, second.reference],
            )
