"""Per-key lanes: order within a key, keys in parallel taking turns, backpressure, shutdown."""

from __future__ import annotations

import asyncio
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from dispatcher.lanes import Lanes, idle


async def test_one_keys_items_run_in_order_never_concurrently() -> None:
    running: set[str] = set()
    seen: list[tuple[str, int]] = []

    async def handle(item: tuple[str, int]) -> None:
        key, _ = item
        assert key not in running, "two items of one key at once"
        running.add(key)
        await asyncio.sleep(random.random() / 1000)
        running.discard(key)
        seen.append(item)

    lanes: Lanes[tuple[str, int]] = Lanes(4, handle)
    done: list[tuple[str, int]] = []
    for n in range(20):
        for key in ("a", "b", "c"):
            await lanes.submit(key, (key, n), lambda i=(key, n): done.append(i))
    await _until(lambda: len(done) == 60)
    for key in ("a", "b", "c"):
        assert [n for k, n in seen if k == key] == list(range(20))
    assert done == seen  # `done` follows each item's handling
    await lanes.drain(1)


async def test_a_new_key_is_served_within_one_turn_of_a_long_backlog() -> None:
    order: list[str] = []

    async def handle(item: str) -> None:
        await asyncio.sleep(0.001)
        order.append(item)

    lanes: Lanes[str] = Lanes(1, handle)
    for n in range(50):
        await lanes.submit(b"busy", f"busy-{n}", lambda: None)
    await lanes.submit(b"new", "new-0", lambda: None)
    await _until(lambda: len(order) == 51)
    # One worker, one busy customer with 50 queued: the newcomer waits one turn, not 50.
    assert order.index("new-0") <= 2
    await lanes.drain(1)


async def test_keys_run_in_parallel_up_to_the_count() -> None:
    active = 0
    peak = 0

    async def handle(_: int) -> None:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await asyncio.sleep(0.01)
        active -= 1

    lanes: Lanes[int] = Lanes(3, handle)
    finished: list[int] = []
    for key in range(10):
        await lanes.submit(key, key, lambda k=key: finished.append(k))
    await _until(lambda: len(finished) == 10)
    assert peak == 3
    await lanes.drain(1)


async def test_submit_waits_while_the_lanes_are_full() -> None:
    release = asyncio.Event()

    async def handle(_: int) -> None:
        await release.wait()

    lanes: Lanes[int] = Lanes(1, handle, depth=2)
    for n in range(3):  # one in flight, two waiting: full
        await lanes.submit("k", n, lambda: None)
    blocked = asyncio.create_task(lanes.submit("k", 3, lambda: None))
    await asyncio.sleep(0.05)
    assert not blocked.done()
    release.set()
    await asyncio.wait_for(blocked, 1)
    await lanes.drain(1)


async def test_drain_drops_what_has_not_started_and_finishes_in_flight() -> None:
    started = asyncio.Event()
    done: list[int] = []

    async def handle(_: int) -> None:
        started.set()
        await asyncio.sleep(0.05)

    lanes: Lanes[int] = Lanes(1, handle)
    for n in range(5):
        await lanes.submit("k", n, lambda n=n: done.append(n))
    await started.wait()
    await lanes.drain(grace_seconds=2)
    assert done == [0]  # the in-flight one finished; the rest are left for Kafka


async def test_drain_cancels_what_overruns_the_grace() -> None:
    cancelled = asyncio.Event()

    async def handle(_: int) -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    lanes: Lanes[int] = Lanes(1, handle)
    await lanes.submit("k", 1, lambda: None)
    await asyncio.sleep(0.01)
    await lanes.drain(grace_seconds=0.05)
    assert cancelled.is_set()


async def test_an_item_waiting_idle_lends_its_turn_but_keeps_its_keys_place() -> None:
    """Issue 12 (pacing): a customer waiting for its number's slot holds up nobody else."""
    released = asyncio.Event()
    order: list[str] = []

    async def handle(item: str) -> None:
        if item == "paced-1":
            async with idle():
                await released.wait()
        order.append(item)

    lanes: Lanes[str] = Lanes(1, handle)  # a single turn: only lending it lets others run
    await lanes.submit("paced", "paced-1", lambda: None)
    await lanes.submit("paced", "paced-2", lambda: None)
    for n in range(3):
        await lanes.submit(f"other-{n}", f"other-{n}", lambda: None)
    await _until(lambda: len(order) == 3)
    assert sorted(order) == ["other-0", "other-1", "other-2"]  # paced-2 waits behind paced-1
    released.set()
    await _until(lambda: len(order) == 5)
    assert order[3:] == ["paced-1", "paced-2"]
    await lanes.drain(1)


async def test_idle_outside_a_lane_just_runs_the_body() -> None:
    async with idle():
        ran = True
    assert ran


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=5), min_size=1, max_size=80))
def test_any_arrival_pattern_keeps_each_keys_order(keys: list[int]) -> None:
    async def run() -> None:
        seen: list[tuple[int, int]] = []

        async def handle(item: tuple[int, int]) -> None:
            await asyncio.sleep(0)
            seen.append(item)

        lanes: Lanes[tuple[int, int]] = Lanes(3, handle, depth=4)
        counts: dict[int, int] = {}
        for key in keys:
            counts[key] = counts.get(key, 0) + 1
            await lanes.submit(key, (key, counts[key]), lambda: None)
        await _until(lambda: len(seen) == len(keys))
        for key, count in counts.items():
            assert [n for k, n in seen if k == key] == list(range(1, count + 1))
        await lanes.drain(1)

    asyncio.run(run())


async def _until(condition: object, timeout: float = 5) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline, "condition not met"
        await asyncio.sleep(0.001)
