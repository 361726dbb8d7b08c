"""Per-key lanes: items of one key are handled one after another, in arrival order; other
keys proceed concurrently, `count` at a time, taking turns. An item's `done` is called only
once it is handled; at shutdown, queued items are dropped without it (Kafka hands them out
again) and in-flight ones get a grace period.

Each key has a queue of its own and the workers serve the keys that have work round-robin,
one item per turn. (Hashing keys onto a fixed set of queues instead lets one busy customer
hold up every customer that hashes behind it, and a partition taken over from a dead
instance would wait behind the survivor's whole backlog.)
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")
Done = Callable[[], object]


class Lanes(Generic[T]):
    def __init__(self, count: int, handle: Callable[[T], Awaitable[None]], depth: int = 64) -> None:
        self._handle = handle
        self._queues: dict[Hashable, deque[tuple[T, Done]]] = {}
        # Keys with work and no worker on them, in turn order. A key is either here, being
        # worked on, or idle: never two of these, so its items never run concurrently.
        self._turns: deque[Hashable] = deque()
        self._ready = asyncio.Condition()
        # At most this many items wait (backpressure on the consumer, as a bounded queue).
        self._room = asyncio.Semaphore(count * depth)
        self._stopping = False
        self._workers = [asyncio.create_task(self._work()) for _ in range(count)]

    async def submit(self, key: Hashable, item: T, done: Done) -> None:
        """Queue the item behind its key's earlier ones; waits while the lanes are full."""
        await self._room.acquire()
        queue = self._queues.get(key)
        if queue is not None:
            queue.append((item, done))  # its turn is already due, or it is being worked on
            return
        self._queues[key] = deque([(item, done)])
        await self._take_turn(key)  # idle until now

    async def _take_turn(self, key: Hashable) -> None:
        """Put the key at the back of the line and wake a worker for it."""
        self._turns.append(key)
        async with self._ready:
            self._ready.notify()

    async def _next(self) -> Hashable | None:
        async with self._ready:
            await self._ready.wait_for(lambda: bool(self._turns) or self._stopping)
            return self._turns.popleft() if self._turns and not self._stopping else None

    async def _work(self) -> None:
        while (key := await self._next()) is not None:
            queue = self._queues[key]
            item, done = queue.popleft()
            self._room.release()
            await self._handle(item)
            done()
            if queue:
                await self._take_turn(key)  # more of this key
            else:
                self._queues.pop(key, None)

    async def drain(self, grace_seconds: float) -> None:
        """Stop: drop what has not started (not done, so read again), give in-flight items
        `grace_seconds` to finish, then cancel them (their leases are handed back)."""
        self._stopping = True
        self._queues.clear()
        self._turns.clear()
        async with self._ready:
            self._ready.notify_all()
        _, pending = await asyncio.wait(self._workers, timeout=grace_seconds)
        for worker in pending:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
