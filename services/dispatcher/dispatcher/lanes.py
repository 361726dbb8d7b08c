"""Per-key lanes: items of one key are handled one after another, in arrival order; other
keys proceed concurrently, `count` at a time, taking turns. An item's `done` is called only
once it is handled; at shutdown, queued items are dropped without it (Kafka hands them out
again) and in-flight ones get a grace period.

Each key has a queue of its own and a task that works through it; a turn is one of `count`
permits, taken for one item at a time, and handed out first come first served, so the keys
that have work are served round-robin. (Hashing keys onto a fixed set of queues instead lets
one busy customer hold up every customer that hashes behind it, and a partition taken over
from a dead instance would wait behind the survivor's whole backlog.)

An item that has to wait for a known time (its number's pacing slot, pacing.py) lends its
turn to other keys for the wait (`idle`): its own key's later items still wait behind it.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from typing import Generic, TypeVar

T = TypeVar("T")
Done = Callable[[], object]


class _Turn:
    """One item's hold on a permit; it knows whether it holds it, so that a cancellation
    while it waits to take the permit back never releases one it does not hold."""

    def __init__(self, permits: asyncio.Semaphore) -> None:
        self._permits = permits
        self.held = False

    async def take(self) -> None:
        await self._permits.acquire()
        self.held = True

    def give(self) -> None:
        if self.held:
            self.held = False
            self._permits.release()


# The turn of the item being handled in this task (unset outside the lanes: the retrier).
_CURRENT_TURN: ContextVar[_Turn | None] = ContextVar("lane_turn", default=None)


@asynccontextmanager
async def idle() -> AsyncIterator[None]:
    """Lend this item's turn to other keys while the body waits; take a turn again (at the
    back of the line) after it. Outside a lane it only runs the body."""
    turn = _CURRENT_TURN.get()
    if turn is None:
        yield
        return
    turn.give()
    try:
        yield
    finally:
        await turn.take()


class Lanes(Generic[T]):
    def __init__(self, count: int, handle: Callable[[T], Awaitable[None]], depth: int = 64) -> None:
        self._handle = handle
        # A key is here while it has items queued or one in hand; its task serves it.
        self._queues: dict[Hashable, deque[tuple[T, Done]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._permits = asyncio.Semaphore(count)
        # At most this many items wait (backpressure on the consumer, as a bounded queue).
        self._room = asyncio.Semaphore(count * depth)
        self._stopping = False

    async def submit(self, key: Hashable, item: T, done: Done) -> None:
        """Queue the item behind its key's earlier ones; waits while the lanes are full."""
        await self._room.acquire()
        queue = self._queues.get(key)
        if queue is not None:
            queue.append((item, done))  # its key's task will come to it
            return
        self._queues[key] = queue = deque([(item, done)])
        task = asyncio.create_task(self._serve(key, queue))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, key: Hashable, queue: deque[tuple[T, Done]]) -> None:
        # No await between the last look at the queue and forgetting the key: a submit
        # either lands before (and is served here) or starts a new task.
        while queue and not self._stopping:
            turn = _Turn(self._permits)
            await turn.take()
            try:
                if not queue or self._stopping:
                    break
                item, done = queue.popleft()
                self._room.release()
                _CURRENT_TURN.set(turn)
                await self._handle(item)
                done()
            finally:
                turn.give()
        if self._queues.get(key) is queue:
            del self._queues[key]

    async def drain(self, grace_seconds: float) -> None:
        """Stop: drop what has not started (not done, so read again), give in-flight items
        `grace_seconds` to finish, then cancel them (their leases are handed back)."""
        self._stopping = True
        for queue in self._queues.values():
            queue.clear()
        tasks = list(self._tasks)
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=grace_seconds)
        for task in pending:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
