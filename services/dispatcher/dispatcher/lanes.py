"""Per-key lanes: items of one key are handled one after another, in arrival order; other
keys proceed concurrently. An item is acked only once handled; at shutdown, queued items
are left unacked (Kafka hands them out again) and in-flight ones get a grace period."""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")
Ack = Callable[[], object]


class Lanes(Generic[T]):
    def __init__(self, count: int, handle: Callable[[T], Awaitable[None]], depth: int = 64) -> None:
        self._handle = handle
        self._queues: list[asyncio.Queue[tuple[T, Ack] | None]] = [
            asyncio.Queue(maxsize=depth) for _ in range(count)
        ]
        self._workers = [asyncio.create_task(self._work(q)) for q in self._queues]

    def lane_of(self, key: bytes | None) -> int:
        return zlib.crc32(key or b"") % len(self._queues)

    async def submit(self, key: bytes | None, item: T, ack: Ack) -> None:
        """Queue the item on its key's lane; waits while that lane is full (backpressure)."""
        await self._queues[self.lane_of(key)].put((item, ack))

    async def _work(self, queue: asyncio.Queue[tuple[T, Ack] | None]) -> None:
        while (entry := await queue.get()) is not None:
            item, ack = entry
            await self._handle(item)
            ack()

    async def drain(self, grace_seconds: float) -> None:
        """Stop: drop what has not started (unacked, so redelivered), give in-flight items
        `grace_seconds` to finish, then cancel them (their leases are handed back)."""
        for queue in self._queues:
            while not queue.empty():
                queue.get_nowait()
            queue.put_nowait(None)
        _, pending = await asyncio.wait(self._workers, timeout=grace_seconds)
        for worker in pending:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
