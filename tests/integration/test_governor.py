"""The cluster-wide governor against the real Redis: two 'instances' are two clients."""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid

from redis.asyncio import Redis

from dispatcher.governor import Governor, GovernorConfig
from tests.governor_tools import assert_confirmations_go_first


def config(limit: int, **kw: object) -> GovernorConfig:
    return GovernorConfig(limit, key_prefix=f"test:governor:{uuid.uuid4().hex}", **kw)  # type: ignore[arg-type]


async def test_two_instances_share_one_rate(two_clients: tuple[Redis, Redis]) -> None:
    cfg = config(600, safety=1.0)  # 10 per second, 100 ms apart
    governors = [Governor(client, cfg) for client in two_clients]
    granted: list[float] = []

    async def caller(governor: Governor) -> None:
        await governor.acquire()
        granted.append(time.monotonic())

    started = time.monotonic()
    await asyncio.gather(*(caller(governors[i % 2]) for i in range(20)))
    elapsed = time.monotonic() - started
    # 20 slots 100 ms apart: the first at once, the last 1.9 s later, whatever the split.
    assert 1.8 <= elapsed <= 2.6
    granted.sort()
    gaps = [b - a for a, b in itertools.pairwise(granted)]
    assert min(gaps) >= 0.08
    # No one-second window holds more than the rate allows (10, plus the fence post).
    assert max(sum(1 for t in granted if s <= t < s + 1) for s in granted) <= 11


async def test_pause_holds_every_instance(two_clients: tuple[Redis, Redis]) -> None:
    cfg = config(6000)
    first, second = (Governor(client, cfg) for client in two_clients)
    await first.pause(0.6, reason="429")  # what a 429 with Retry-After does
    started = time.monotonic()
    await second.acquire()
    assert time.monotonic() - started >= 0.55


async def test_remaining_at_the_floor_waits_for_reset(two_clients: tuple[Redis, Redis]) -> None:
    governor = Governor(two_clients[0], config(6000))
    await governor.observe(remaining=5, reset_at=time.time() + 5)  # budget left: no pause
    started = time.monotonic()
    await governor.acquire()
    assert time.monotonic() - started < 0.2
    await governor.observe(remaining=0, reset_at=time.time() + 0.7)
    started = time.monotonic()
    await governor.acquire()
    assert time.monotonic() - started >= 0.5


async def test_confirmations_go_before_bulk(two_clients: tuple[Redis, Redis]) -> None:
    cfg = config(1200, safety=1.0, bulk_max_wait_seconds=30)  # 50 ms apart
    governor = Governor(two_clients[0], cfg)
    order: list[str] = []

    async def call(name: str, priority: str) -> None:
        await governor.acquire(priority)  # type: ignore[arg-type]
        order.append(name)

    await assert_confirmations_go_first(call, order)


async def test_bulk_is_not_starved_forever(two_clients: tuple[Redis, Redis]) -> None:
    cfg = config(1200, safety=1.0, bulk_max_wait_seconds=0.5)
    governor = Governor(two_clients[0], cfg)
    stop = time.monotonic() + 3
    done: list[float] = []

    async def endless_confirmations() -> None:
        while time.monotonic() < stop:
            await governor.acquire("transactional")

    flood = [asyncio.create_task(endless_confirmations()) for _ in range(4)]
    started = time.monotonic()
    await governor.acquire("bulk")
    done.append(time.monotonic() - started)
    await asyncio.gather(*flood)
    assert done[0] < 2.0  # it waited its bound, then queued like everyone else
